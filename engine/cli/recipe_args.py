"""The SAE-recipe flags shared by ``superpos run`` / ``train-sae``, generated from the recipe registry
(``engine.config.SAE_RECIPE_INFO``) so that a new recipe appears in every command's choices and help."""

from __future__ import annotations

import argparse
from typing import Any

from engine.config import SAE_RECIPE_INFO, SAE_RECIPES

__all__ = ["add_recipe_arguments", "recipe_changes", "int_list"]


def int_list(text: str) -> tuple[int, ...]:
    """'256,512,1024' -> (256, 512, 1024), for argparse."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_recipe_arguments(group: Any, default: str | None = None) -> None:
    """--recipe, --k, --l1, --l0 and --matryoshka-widths on a parser or argument group."""
    help_text = "SAE training recipe: " + "; ".join(f"{n}: {i.label}" for n, i in SAE_RECIPE_INFO.items())
    group.add_argument("--recipe", choices=SAE_RECIPES, default=default,
                       help=help_text + (f"; default {default}" if default else ""))
    group.add_argument("--k", type=int, help="topk / batchtopk / matryoshka: active features per activation "
                                             "vector (batchtopk, matryoshka: on average over a batch)")
    group.add_argument("--l1", type=float, help="2023 / 2024-04: sparsity penalty lambda on L1")
    group.add_argument("--l0", type=float, help="jumprelu: sparsity penalty lambda on L0")
    group.add_argument("--matryoshka-widths", type=int_list, metavar="W1,W2,...",
                       help="matryoshka: nested prefix widths, increasing, ending at the dictionary size "
                            "(default d_sae/16, /8, /4, /2, d_sae)")


def recipe_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The SAEConfig fields those flags set (the ones given)."""
    names = {"recipe": "recipe", "k": "k", "l1": "l1_coeff", "l0": "l0_coeff",
             "matryoshka_widths": "matryoshka_widths"}
    return {key: getattr(args, arg) for arg, key in names.items() if getattr(args, arg, None) is not None}
