"""SAE training recipes: one ``SAETrainer`` subclass per module, registered here by the names in
``engine.config.SAE_RECIPES`` (the interface is in ``base.py``). Adding a recipe: one module, one line
here, and its name in SAE_RECIPES (which SAEConfig validates against; the test suite checks the two agree)."""

from __future__ import annotations

import torch

from engine.config import SAEConfig
from engine.train.recipes.anthropic_2023 import Anthropic2023Trainer
from engine.train.recipes.anthropic_2024_04 import Anthropic2024Trainer
from engine.train.recipes.base import SAETrainer
from engine.train.recipes.batchtopk import BatchTopKTrainer
from engine.train.recipes.jumprelu import JumpReLUTrainer
from engine.train.recipes.matryoshka import MatryoshkaTrainer
from engine.train.recipes.topk import TopKTrainer

__all__ = ["RECIPES", "SAETrainer", "make_trainer"]

RECIPES: dict[str, type[SAETrainer]] = {
    "topk": TopKTrainer,
    "2024-04": Anthropic2024Trainer,
    "2023": Anthropic2023Trainer,
    "jumprelu": JumpReLUTrainer,
    "batchtopk": BatchTopKTrainer,
    "matryoshka": MatryoshkaTrainer,
}


def make_trainer(cfg: SAEConfig, device: torch.device, total_steps: int) -> SAETrainer:
    """The trainer of ``cfg.recipe`` for a run of ``total_steps`` batches."""
    return RECIPES[cfg.recipe](cfg, device, total_steps)
