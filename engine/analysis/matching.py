"""Matching the features of two dictionaries: top-k by decoder cosine and by activation correlation.

Both are chunked: a block of ``chunk`` rows of A against all of B at a time, keeping the running
top-k, so memory is ``chunk x F_b`` scores and never a dense F_a x F_b matrix (at 131,072 x 131,072
that would be 64 GiB). On a GPU pass ``device="cuda"``; the blocks are plain matmuls.

- ``decoder_matches(W_a, W_b)``: cosine of decoder rows (feature directions in neuron space).
- ``correlation_matches(acts_a, acts_b)``: Pearson correlation of dense activations on the same
  tokens (a family's matching uses it for the two models' neurons; the features' correlation is the
  sparse ``engine.analysis.universality.sparse_correlation_matches`` on the matching sample, see
  ``engine.analysis.family_match``). A unit that never varies on those tokens (dead there) gets no
  matches (-1 / NaN) and is never anyone's match.
- ``standardised(x, dim)``: x centred and scaled to unit variance along ``dim`` (the one helper:
  the correlations here and the logit-weight correlation in ``universality``).
- ``best_match_summary``: the median best-match value, the figure the paper compares (features 0.72
  vs neurons 0.46 across two model seeds).

Shape legend: N tokens, D d_in, F / G units of A / B, K matches kept.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["decoder_matches", "correlation_matches", "standardised", "best_match_summary", "duplicate_copies"]


def _top_k(score_block, k: int, valid_rows: torch.Tensor | None = None):
    k = min(k, score_block.shape[1])
    values, ids = torch.topk(score_block, k, dim=1)
    ids = ids.to(torch.int32)
    bad = ~torch.isfinite(values)
    if valid_rows is not None:
        bad |= ~valid_rows[:, None]
    values = values.masked_fill(bad, float("nan"))
    ids = ids.masked_fill(bad, -1)
    return ids, values


def _blocked(a_rows: torch.Tensor, b_cols: torch.Tensor, k: int, chunk: int, valid_a=None):
    """Top-k of a_rows @ b_cols (F x G) per row, computed ``chunk`` rows at a time."""
    F = a_rows.shape[0]
    k_out = min(k, b_cols.shape[1])
    ids = np.full((F, k_out), -1, np.int32)
    values = np.full((F, k_out), np.nan, np.float32)
    for start in range(0, F, chunk):
        stop = min(F, start + chunk)
        block = a_rows[start:stop] @ b_cols
        i, v = _top_k(block, k_out, None if valid_a is None else valid_a[start:stop])
        ids[start:stop], values[start:stop] = i.cpu().numpy(), v.float().cpu().numpy()
    return ids, values


def decoder_matches(W_a_FD, W_b_GD, k: int = 5, chunk: int = 4096, device: str = "cpu"):
    """(ids int32 [F, K], cosines f32 [F, K]): the K decoder rows of B closest in cosine to each of A's."""
    a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(W_a_FD), dtype=torch.float32, device=device), dim=1)
    b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(W_b_GD), dtype=torch.float32, device=device), dim=1)
    return _blocked(a, b.T.contiguous(), k, chunk)


def duplicate_copies(W_FD, threshold: float = 0.95, rows=None, chunk: int = 1024) -> np.ndarray:
    """bool [F] (or [len(rows)] for the given rows): True for a decoder row that is a copy of an
    earlier one (cosine above ``threshold`` with a row of lower index): keeping the False rows keeps
    one feature per group of near-identical ones. L1 SAEs grow such copies (splitting a feature's
    activation over two identical rows costs the same penalty); TopK ones hardly do. Exact and
    chunked (no F x F matrix); asking about a few ``rows`` costs a few rows' products."""
    W = np.asarray(W_FD, np.float32)
    W = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
    rows = np.arange(len(W)) if rows is None else np.asarray(rows, np.int64).reshape(-1)
    out = np.zeros(len(rows), bool)
    for i0 in range(0, len(rows), chunk):
        r = rows[i0:i0 + chunk]
        if not len(r) or r.max() == 0:
            continue
        sims = W[r] @ W[:r.max()].T                                   # (chunk, rows before the last)
        earlier = np.arange(sims.shape[1])[None, :] < r[:, None]
        out[i0:i0 + chunk] = ((sims > threshold) & earlier).any(axis=1)
    return out


def standardised(x: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, live): x centred and divided by its standard deviation along ``dim``, so the mean of
    z_a * z_b along ``dim`` is Pearson's r; a slice that does not vary (std <= 1e-8) is all 0 in z
    and False in ``live`` (it correlates with nothing)."""
    x = x - x.mean(dim, keepdim=True)
    std = x.pow(2).mean(dim, keepdim=True).sqrt()
    live = std > 1e-8
    z = torch.where(live, x / torch.where(live, std, torch.ones_like(std)), torch.zeros_like(x))
    return z, live.squeeze(dim)


def correlation_matches(acts_a_NF, acts_b_NG, k: int = 5, chunk: int = 2048, device: str = "cpu"):
    """(ids int32 [F, K], correlations f32 [F, K]) of the units of B best correlated with each of A's
    over the N shared tokens (rows of both arrays are the same tokens)."""
    if np.shape(acts_a_NF)[0] != np.shape(acts_b_NG)[0]:
        raise ValueError("both activation arrays must hold the same tokens (rows)")
    za, live_a = standardised(torch.as_tensor(np.asarray(acts_a_NF), dtype=torch.float32, device=device))
    zb, live_b = standardised(torch.as_tensor(np.asarray(acts_b_NG), dtype=torch.float32, device=device))
    n = max(1, za.shape[0])
    cols = zb / n                            # dead columns are 0 here and -inf below: never picked
    dead_penalty = torch.where(live_b, 0.0, float("-inf"))
    F = za.shape[1]
    k_out = min(k, zb.shape[1])
    ids = np.full((F, k_out), -1, np.int32)
    values = np.full((F, k_out), np.nan, np.float32)
    zaT = za.T.contiguous()
    for start in range(0, F, chunk):
        stop = min(F, start + chunk)
        block = zaT[start:stop] @ cols + dead_penalty
        i, v = _top_k(block, k_out, live_a[start:stop])
        ids[start:stop], values[start:stop] = i.cpu().numpy(), v.cpu().numpy()
    return ids, values


def best_match_summary(values_FK: np.ndarray) -> dict[str, float]:
    """{"median": median of each unit's best match (NaN rows skipped), "n": units with a match}."""
    best = np.asarray(values_FK, np.float64)[:, 0] if np.size(values_FK) else np.zeros(0)
    best = best[np.isfinite(best)]
    return {"median": float(np.median(best)) if best.size else float("nan"), "n": float(best.size)}
