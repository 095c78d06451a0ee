"""The paper's phase diagram for one extra feature: n = 2 features into m = 1 dimension.

Feature 0 has importance 1; the extra feature 1 has relative importance ``r`` (rows, log-spaced);
both have the same feature density 1 − S (columns, log-spaced). Every cell is one instance of one
batched training (``model.train_toys``), ``restarts`` seeds per cell, the lowest loss kept (sparse
cells have two minima, dedicated and superposed, and one seed lands in the worse one about a third of
the time; compared on common inputs, three seeds find the better one in all but a few cells). Batches
of 256 for 1000 steps at lr 2e-2: a 20 × 20 diagram is 1200 models, and at the single model's
1024 × 2000 it would take ~8× longer for the same regions. Each cell
is then one of the paper's three regions, by the norms of the two columns of W (1, 2):

    NOT_REPRESENTED  ‖W₁‖ ≤ ½                 the extra feature is dropped
    DEDICATED        ‖W₁‖ > ½, ‖W₀‖ ≤ ½       the extra feature has the dimension to itself
    SUPERPOSITION    ‖W₁‖ > ½, ‖W₀‖ > ½       both share it (an antipodal pair)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator

import numpy as np

from engine import events
from engine.toy.measures import REPRESENTED_NORM
from engine.toy.model import ToyBatch, ToyError, train_toys

__all__ = ["PhaseDiagram", "phase_diagram", "classify", "NOT_REPRESENTED", "DEDICATED", "SUPERPOSITION",
           "REGION_NAMES"]

NOT_REPRESENTED, DEDICATED, SUPERPOSITION = 0, 1, 2
REGION_NAMES = ("not represented", "dedicated dimension", "superposition")


@dataclass(frozen=True)
class PhaseDiagram:
    importance_R: np.ndarray          # (R,) the extra feature's importance relative to feature 0
    density_C: np.ndarray             # (C,) feature density 1 − S
    region_RC: np.ndarray             # (R, C) NOT_REPRESENTED | DEDICATED | SUPERPOSITION
    norms_RC2: np.ndarray             # (R, C, 2) ‖W₀‖, ‖W₁‖ of the kept seed
    loss_RC: np.ndarray               # (R, C)
    seconds: float


def classify(norms_2: np.ndarray) -> int:
    """The region of one cell from (‖W₀‖, ‖W₁‖)."""
    base, extra = (float(v) > REPRESENTED_NORM for v in norms_2)
    if not extra:
        return NOT_REPRESENTED
    return SUPERPOSITION if base else DEDICATED


def phase_diagram(size: int = 20, importance_range: tuple[float, float] = (0.1, 10.0),
                  density_range: tuple[float, float] = (0.01, 1.0), restarts: int = 3, steps: int = 1000,
                  batch_size: int = 256, lr: float = 2e-2, seed: int = 0,
                  cancel: events.CancelToken | None = None) -> Generator[object, None, PhaseDiagram]:
    """Generator: the size × size diagram as one batched training (stage "phase"); returns a PhaseDiagram."""
    if not 2 <= size <= 64:
        raise ToyError(f"the phase diagram's size must be from 2 to 64 cells a side; got {size!r}")
    if not 1 <= restarts <= 16:
        raise ToyError(f"restarts must be from 1 to 16; got {restarts!r}")
    (i_lo, i_hi), (d_lo, d_hi) = importance_range, density_range
    if not (0 < i_lo < i_hi) or not (0 < d_lo < d_hi <= 1):
        raise ToyError("the phase diagram needs 0 < low < high importance and 0 < low < high ≤ 1 density")
    importance_R = np.geomspace(i_lo, i_hi, size)
    density_C = np.geomspace(d_lo, d_hi, size)
    R = C = size
    cell_K = np.repeat(np.arange(R * C), restarts)                 # instance k is cell cell_K[k]
    rows, cols = np.divmod(cell_K, C)
    importance_K2 = np.stack([np.ones(len(cell_K)), importance_R[rows]], axis=1)
    spec = ToyBatch(2, 1, 1.0 - density_C[cols], importance_K2, steps=steps, batch_size=batch_size, lr=lr,
                    seed=seed)
    result = yield from train_toys(spec, cancel, stage="phase")
    loss_CR = result.loss_I.reshape(R * C, restarts)
    best = loss_CR.argmin(axis=1) + np.arange(R * C) * restarts    # the kept instance of every cell
    norms_RC2 = np.abs(result.W_IMN[best, 0, :]).reshape(R, C, 2)
    region_RC = np.array([classify(v) for v in norms_RC2.reshape(-1, 2)]).reshape(R, C)
    return PhaseDiagram(importance_R=importance_R, density_C=density_C, region_RC=region_RC,
                        norms_RC2=norms_RC2, loss_RC=loss_CR.min(axis=1).reshape(R, C),
                        seconds=result.seconds)
