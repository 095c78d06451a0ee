"""Setting names as the command line spells them: a ``ConfigError`` about ``model.n_heads`` is
reported as ``--n-heads``, so the user sees the flag they typed (``engine.config`` does the checking)."""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar

from engine.config import ConfigError

__all__ = ["RUN_FLAGS", "SAE_FLAGS", "validated"]

T = TypeVar("T")

RUN_FLAGS: Mapping[str, str] = {
    "corpus.max_chars": "--max-chars", "corpus.seed": "--seed", "tokenizer.vocab_size": "--vocab-size",
    "model.vocab_size": "--vocab-size", "model.n_ctx": "--n-ctx", "model.d_model": "--d-model",
    "model.d_mlp": "--d-mlp", "model.n_heads": "--n-heads", "train.tokens": "--tokens",
    "train.batch_size": "--batch-size", "train.lr": "--lr", "train.seed": "--seed", "sae.d_sae": "--d-sae",
    "sae.k": "--k", "sae.l1_coeff": "--l1", "sae.n_activations": "--sae-activations",
    "sae.recipe": "--recipe", "harvest.n_tokens": "--harvest-tokens", "device": "--device",
    "sae.l0_coeff": "--l0", "sae.matryoshka_widths": "--matryoshka-widths",
}
SAE_FLAGS: Mapping[str, str] = {
    "sae.d_sae": "--d-sae", "sae.k": "--k", "sae.aux_k": "--aux-k", "sae.l1_coeff": "--l1", "sae.lr": "--lr",
    "sae.n_activations": "--n-activations", "sae.batch_size": "--batch-size",
    "sae.dead_window": "--dead-window", "sae.seed": "--seed", "sae.recipe": "--recipe",
    "sae.l0_coeff": "--l0", "sae.matryoshka_widths": "--matryoshka-widths",
}


def validated(build: Callable[[], T], flags: Mapping[str, str]) -> T:
    """``build()`` (which constructs and validates a config), its ConfigError prefixed by the flag."""
    try:
        return build()
    except ConfigError as exc:
        flag = flags.get(exc.field or "")
        if flag is None:
            raise
        raise ConfigError(f"{flag}: {exc}", exc.field) from None
