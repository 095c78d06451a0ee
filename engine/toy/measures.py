"""What the paper measures on a trained toy model's W (M, N), column i = feature i's direction Wᵢ.

    ‖Wᵢ‖                                  is feature i represented (≈ 1) or dropped (≈ 0)
    superposition_i = Σ_{j≠i} (Ŵᵢ·Wⱼ)²    how much other features share its direction
    Dᵢ = ‖Wᵢ‖² / Σⱼ (Ŵᵢ·Wⱼ)²              feature dimensionality: the fraction of a dimension it owns
                                           (1, 3/4, 2/3, 1/2, 2/5, 1/3 … as the sparsity grows)
    WᵀW (N, N)                            the features' interference matrix

Plus, for m = 2, the angles of the represented features around the origin (a pentagon: 72° apart).
All functions take and return numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["ToyMeasures", "measure", "neighbour_angles", "REPRESENTED_NORM", "DIMENSIONALITY_LEVELS"]

REPRESENTED_NORM = 0.5       # ‖Wᵢ‖ above this: the feature is represented
# The levels feature dimensionality sticks at in the paper's Figure (uniform importance), high to low
DIMENSIONALITY_LEVELS = (Fraction(1), Fraction(3, 4), Fraction(2, 3), Fraction(1, 2), Fraction(2, 5),
                         Fraction(1, 3))
_EPS = 1e-12


@dataclass(frozen=True)
class ToyMeasures:
    norms_N: np.ndarray               # (N,) ‖Wᵢ‖
    superposition_N: np.ndarray       # (N,) Σ_{j≠i} (Ŵᵢ·Wⱼ)²
    dimensionality_N: np.ndarray      # (N,) Dᵢ (0 for a dropped feature)
    gram_NN: np.ndarray               # (N, N) WᵀW

    @property
    def represented_N(self) -> np.ndarray:
        return self.norms_N > REPRESENTED_NORM


def measure(W_MN: np.ndarray) -> ToyMeasures:
    """The paper's measures of one model's W (M, N)."""
    W_MN = np.asarray(W_MN, dtype=np.float64)
    gram_NN = W_MN.T @ W_MN                               # (N, N) Wᵢ·Wⱼ
    norms_N = np.sqrt(np.clip(np.diag(gram_NN), 0.0, None))
    proj_NN = gram_NN / np.maximum(norms_N, _EPS)[:, None]   # row i: Ŵᵢ·Wⱼ
    sq_NN = proj_NN ** 2
    total_N = sq_NN.sum(axis=1)                           # Σⱼ (Ŵᵢ·Wⱼ)², j = i included (= ‖Wᵢ‖²)
    superposition_N = total_N - np.diag(sq_NN)
    dimensionality_N = np.where(total_N > _EPS, norms_N ** 2 / np.maximum(total_N, _EPS), 0.0)
    return ToyMeasures(norms_N=norms_N, superposition_N=superposition_N, dimensionality_N=dimensionality_N,
                       gram_NN=gram_NN)


def neighbour_angles(W_2N: np.ndarray, min_norm: float = REPRESENTED_NORM) -> np.ndarray:
    """m = 2: the angles in degrees between angularly neighbouring represented features (they sum
    to 360°; a pentagon gives five of 72°). Empty when fewer than two features are represented."""
    W_2N = np.asarray(W_2N, dtype=np.float64)
    if W_2N.shape[0] != 2:
        raise ValueError("neighbour angles need a model with 2 hidden dimensions")
    keep = np.hypot(W_2N[0], W_2N[1]) > min_norm
    if keep.sum() < 2:
        return np.zeros(0)
    theta = np.sort(np.degrees(np.arctan2(W_2N[1, keep], W_2N[0, keep])) % 360.0)
    return np.diff(np.append(theta, theta[0] + 360.0))
