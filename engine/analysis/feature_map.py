"""The feature map: a 2-D embedding of every decoder direction of a family, computed at build time.

UMAP with the cosine metric (umap-learn, the optional extra ``superpos[map]``) as in the paper's
visualizer; without umap-learn, or with ``method="pca"``, the first two principal components of the
unit-normalised decoder rows (what the map pane then says it shows). The result is stored in the
bundle (/family/map, engine.bundle.family) so the app never computes it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["embed_decoders", "umap_available"]


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except Exception:       # not installed, or its numba / llvmlite stack does not load
        return False
    return True


def embed_decoders(decoders: Sequence[np.ndarray], method: str = "auto", seed: int = 0,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(xy f32 [n, 2], member int16 [n], unit int32 [n], method used) for the rows of every member's
    W_dec [F_i, D]; ``method``: "umap" (cosine), "pca", or "auto" (umap when installed, else pca)."""
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"map method must be auto, umap or pca, not {method!r}")
    rows = [np.asarray(w, np.float32) for w in decoders]
    X = np.concatenate(rows) if rows else np.zeros((0, 2), np.float32)
    member = np.concatenate([np.full(len(w), i, np.int16) for i, w in enumerate(rows)]) if rows else np.zeros(0, np.int16)
    unit = np.concatenate([np.arange(len(w), dtype=np.int32) for w in rows]) if rows else np.zeros(0, np.int32)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    use = "umap" if method == "umap" or (method == "auto" and umap_available() and len(X) > 15) else "pca"
    if use == "umap":
        import umap

        xy = umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_neighbors=15,
                       min_dist=0.1).fit_transform(X)
        label = "umap-cosine"
    else:
        xy = _pca2(X)
        label = "pca"
    return np.asarray(xy, np.float32), member, unit, label


def _pca2(X: np.ndarray) -> np.ndarray:
    if len(X) == 0:
        return np.zeros((0, 2), np.float32)
    Xc = X - X.mean(0, keepdims=True)
    # the D x D covariance is small (D = d_mlp): its eigenvectors, not an n x D SVD
    cov = Xc.T @ Xc / max(1, len(X) - 1)
    _, vecs = np.linalg.eigh(cov)
    top = vecs[:, ::-1][:, :2]
    xy = Xc @ top
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy.astype(np.float32)
