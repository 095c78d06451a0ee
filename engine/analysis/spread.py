"""Whole contexts at random places: the one rule both samples of held-out text use.

A stretch of held-out text cut into consecutive contexts of T tokens has ``n_contexts`` slots;
``spread_contexts`` picks ``n_pick`` of them uniformly without replacement (seeded), sorted so reads
stay local. The harvest's paired sample (``engine.analysis.harvest``) and a family's matching sample
(``engine.analysis.universality.spread_windows``) are both such picks: a sample of the first tokens
would be one or two documents (one language, one topic) and most units would never fire in it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["spread_contexts"]


def spread_contexts(n_contexts: int, n_pick: int, seed: int = 0) -> np.ndarray:
    """int64 [W], sorted: W = min(n_contexts, max(1, n_pick)) distinct slot indices in [0, n_contexts)
    drawn uniformly at random, the same for the same arguments (none when ``n_contexts`` is 0)."""
    n_contexts = int(n_contexts)
    if n_contexts <= 0:
        return np.zeros(0, np.int64)
    W = min(n_contexts, max(1, int(n_pick)))
    return np.sort(np.random.default_rng(seed).choice(n_contexts, size=W, replace=False)).astype(np.int64)
