"""Setting names as the command line spells them: a ``ConfigError`` about ``model.n_heads`` is
reported as ``--n-heads``, so the user sees the flag they typed (``engine.config`` does the checking)."""

from __future__ import annotations

import argparse
from typing import Callable, Mapping, TypeVar

from engine.config import PRECISIONS, ConfigError, is_device_name

__all__ = ["RUN_FLAGS", "SAE_FLAGS", "validated", "add_device_arguments"]

T = TypeVar("T")

RUN_FLAGS: Mapping[str, str] = {
    "corpus.max_chars": "--max-chars", "corpus.seed": "--seed", "tokenizer.vocab_size": "--vocab-size",
    "model.vocab_size": "--vocab-size", "model.n_ctx": "--n-ctx", "model.d_model": "--d-model",
    "model.d_mlp": "--d-mlp", "model.n_heads": "--n-heads", "train.tokens": "--tokens",
    "train.batch_size": "--batch-size", "train.lr": "--lr", "train.seed": "--seed", "sae.d_sae": "--d-sae",
    "sae.k": "--k", "sae.l1_coeff": "--l1", "sae.n_activations": "--sae-activations",
    "sae.recipe": "--recipe", "harvest.n_tokens": "--harvest-tokens", "device": "--device",
    "sae.l0_coeff": "--l0", "sae.matryoshka_widths": "--matryoshka-widths",
    "precision": "--precision", "compile": "--compile",
}
SAE_FLAGS: Mapping[str, str] = {
    "sae.d_sae": "--d-sae", "sae.k": "--k", "sae.aux_k": "--aux-k", "sae.l1_coeff": "--l1", "sae.lr": "--lr",
    "sae.n_activations": "--n-activations", "sae.batch_size": "--batch-size",
    "sae.dead_window": "--dead-window", "sae.seed": "--seed", "sae.recipe": "--recipe",
    "sae.l0_coeff": "--l0", "sae.matryoshka_widths": "--matryoshka-widths",
    "device": "--device", "precision": "--precision",
}


def _device(text: str) -> str:
    name = text.strip().lower()
    if is_device_name(name):
        return name
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, not {text!r}")


def add_device_arguments(p, precision: bool = True, compile: bool = False, default: str = "auto") -> None:
    """``--device`` (and ``--precision``, ``--compile``): where and how a command computes
    (``engine.train.accel``; docs/gpu.md). Every command's ``--device`` is this one."""
    p.add_argument("--device", default=default, type=_device, metavar="auto|cpu|cuda|cuda:N|mps",
                   help=f"where to compute (auto: CUDA, then Apple MPS, then CPU; default {default})")
    if precision:
        p.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="auto: bf16 autocast on a CUDA GPU with bf16 and TF32 matmuls, fp32 elsewhere; "
                            "fp32: exact fp32 everywhere; bf16: bf16 autocast (very slow on a CPU). "
                            "Weights are stored fp32 whatever the choice")
    if compile:
        p.add_argument("--compile", action="store_true",
                       help="torch.compile the transformer (CUDA GPUs with triton; ignored on a CPU)")


def validated(build: Callable[[], T], flags: Mapping[str, str]) -> T:
    """``build()`` (which constructs and validates a config), its ConfigError prefixed by the flag."""
    try:
        return build()
    except ConfigError as exc:
        flag = flags.get(exc.field or "")
        if flag is None:
            raise
        raise ConfigError(f"{flag}: {exc}", exc.field) from None
