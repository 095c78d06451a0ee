"""A unit whose true trigger is the token " zq": its examples, for the explanation and scoring tests."""

from __future__ import annotations

import numpy as np

VOCAB = [" the", " cat", " sat", " zq", " on", " mat", "\n", " a", " dog", " ran"]
ZQ = 3
W = 8


def example(rng, active: bool):
    """One window of W tokens; an active one holds " zq" twice, with activations 2-10 there."""
    tokens = rng.choice([t for t in range(len(VOCAB)) if t != ZQ], size=W)
    acts = np.zeros(W, np.float32)
    if active:
        where = rng.choice(W, size=2, replace=False)
        tokens[where] = ZQ
        acts[where] = rng.uniform(2.0, 10.0, size=2)
    return tokens.astype(np.int64), acts
