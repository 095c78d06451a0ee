"""Recipe "matryoshka": Matryoshka BatchTopK — Bussmann, Nabeshima, Karvonen & Nanda 2025, *Learning
Multi-Level Features with Matryoshka Sparse Autoencoders* (and Nabeshima 2024, *Matryoshka SAEs*).

    f   = BatchTopK_{k·B}(ReLU((x_s - b_dec) W_enc + b_enc))                  (as batchtopk)
    x̂_ℓ = b_dec + Σ_{i < w_ℓ} fᵢ W_dec,i       for nested widths w_1 < … < w_n = F
    L   = (1/n) Σ_ℓ Σ‖x_s - x̂_ℓ‖² / Σ‖x_s - x̄_s‖²  +  AuxK on the full reconstruction

Every prefix of the dictionary must reconstruct the input on its own, so the first latents learn
the general features and later ones refine them rather than splitting and absorbing them. The
levels weigh equally, as in the paper and in SAELens's MatryoshkaBatchTopKTrainingSAE (which sums
them; the mean keeps the loss on the topk recipe's scale, so lr and the AuxK α mean the same).

Prefix widths: cfg.matryoshka_widths (CLI ``--matryoshka-widths 256,512,1024,2048,4096``); by
default five doubling widths d_sae/16, /8, /4, /2, d_sae (``engine.config.nested_widths``) — the
paper's dictionaries are nested in the same geometric way, each level roughly twice the previous.
Inference as batchtopk: the learned threshold θ, stored as a JumpReLU SAE (as SAELens does).
Dead latents: AuxK on the full residual (SAELens's default, ``use_matryoshka_aux_loss=False``).

The step is ``engine.train.recipes.sparse`` with one gradient row block per level.
"""

from __future__ import annotations

import torch

from engine.config import SAEConfig, nested_widths
from engine.train.recipes.batchtopk import BatchTopKTrainer

__all__ = ["MatryoshkaTrainer"]


class MatryoshkaTrainer(BatchTopKTrainer):
    def __init__(self, cfg: SAEConfig, device: torch.device, total_steps: int):
        super().__init__(cfg, device, total_steps)
        self._widths = nested_widths(cfg)

    def widths(self) -> tuple[int, ...]:
        return self._widths
