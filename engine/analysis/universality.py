"""The family's matching sample and sparse activation correlation (universality, splitting).

Why not the harvest's paired sample: up to schema 4 that was the *first* ``sample_tokens`` tokens
of the validation split, one stretch of text, so most features never fired in it and the rest a
handful of times: their best-match correlations were noise (tiny runs gave features 0.25-0.31 vs
neurons 0.44, the wrong way round). Since schema 5 the paired sample follows the same rule
(``engine.analysis.spread``), but it is each member's own and smaller. The matching sample is
``n_tokens`` tokens in random whole contexts spread over the split (``spread_windows``), the same
windows for every model, and a unit is matched only when it is active on at least ``min_active``
of them (the paper likewise leaves out features too rare to measure); the units left out are NaN,
not 0, and the counts are reported.

``sparse_correlation_matches``: Pearson correlation of sparse activations without any dense
N x F or F x G matrix. With mean m and standard deviation s over the N tokens,

    r(a_i, b_j) = (Σ_t a_i(t) b_j(t) / N - m_i m_j) / (s_i s_j)

and the co-activation sums Σ_t a_i b_j are a sparse product Aᵀ B (non-zero only where i and j fire
together: at most N k_a k_b entries for TopK SAEs), computed ``chunk`` rows of Aᵀ at a time. A pair
that never fires together has r = -m_i m_j / (s_i s_j) <= 0, so every positive correlation is among
the co-active pairs: the top matches kept are the positive ones (a live unit with none has best
match 0 with id -1).

``logit_weight_correlations``: for matched features, the Pearson correlation over the vocabulary of
their direct logit weights (``engine.analysis.weights.logit_projection``: W_dec[f] through W_out,
the final LayerNorm's gain and W_U), each through its own model (the two seeds share the tokenizer).

Shape legend: N sample tokens, W windows, T context, M neurons, F / G units of A / B, K matches, V vocab.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from engine.analysis.spread import spread_contexts

__all__ = ["spread_windows", "neuron_acts", "feature_acts", "sparse_correlation_matches",
           "logit_weight_correlations", "DEFAULT_MATCH_TOKENS", "DEFAULT_MIN_ACTIVE"]

DEFAULT_MATCH_TOKENS = 65_536
DEFAULT_MIN_ACTIVE = 10


def spread_windows(tokens: np.ndarray, n_tokens: int, n_ctx: int, seed: int = 0) -> np.ndarray:
    """int64 [W, T]: about ``n_tokens`` tokens as whole non-overlapping contexts of T = n_ctx tokens at
    random places of ``tokens`` (sorted, so reads stay local), the same for the same arguments."""
    tokens = np.asarray(tokens)
    T = max(1, min(int(n_ctx), len(tokens)))
    picks = spread_contexts(len(tokens) // T, int(n_tokens) // T, seed)
    if picks.size == 0:
        return np.zeros((0, T), np.int64)
    return np.stack([tokens[p * T:(p + 1) * T] for p in picks]).astype(np.int64)


@torch.inference_mode()
def neuron_acts(model, windows_WT: np.ndarray, device: str = "cpu", batch: int = 32) -> np.ndarray:
    """float32 [W*T, M]: the model's MLP activations on the windows (each its own context)."""
    model = model.to(device).eval()
    out = []
    for s in range(0, len(windows_WT), batch):
        idx = torch.from_numpy(np.asarray(windows_WT[s:s + batch])).to(device)
        out.append(model.mlp_acts(idx).reshape(-1, model.cfg.d_mlp).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.d_mlp), np.float32)


@torch.inference_mode()
def feature_acts(sae, x_NM: np.ndarray, chunk: int = 4096, device: str = "cpu") -> sp.csr_matrix:
    """The SAE's feature activations on the rows of x as a sparse [N, F] matrix (its non-zeros only)."""
    sae = sae.to(device).eval()
    F = int(sae.cfg.d_sae)
    blocks = []
    for s in range(0, len(x_NM), chunk):
        f = sae.encode(torch.as_tensor(np.asarray(x_NM[s:s + chunk]), dtype=torch.float32, device=device))
        f = f.reshape(-1, F).float().cpu().numpy()
        blocks.append(sp.csr_matrix(np.where(f > 0, f, 0.0)))
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, F), dtype=np.float32)


def _moments(A: sp.csr_matrix, min_active: int):
    """Per column: mean, std over the N rows, and whether it is matched (active often enough, varies)."""
    N = max(1, A.shape[0])
    mean = np.asarray(A.sum(axis=0), np.float64).ravel() / N
    sq = np.asarray(A.multiply(A).sum(axis=0), np.float64).ravel() / N
    std = np.sqrt(np.maximum(sq - mean ** 2, 0.0))
    active = np.bincount(A.indices, minlength=A.shape[1]) if A.nnz else np.zeros(A.shape[1], np.int64)
    return mean, std, (active >= max(1, int(min_active))) & (std > 1e-12)


def sparse_correlation_matches(A_NF: sp.spmatrix, B_NG: sp.spmatrix, k: int = 5,
                               min_active: int = DEFAULT_MIN_ACTIVE, chunk: int = 2048):
    """(ids int32 [F, K], correlations f32 [F, K]): each unit of A's K best positively correlated units
    of B over the N shared rows (see module doc). A unit active on fewer than ``min_active`` rows
    (or constant) is not matched (ids -1, NaN) and is never a match; a matched unit with no positive
    correlation has best match 0 (id -1); other padding is -1 / NaN."""
    A, B = sp.csr_matrix(A_NF, dtype=np.float64), sp.csr_matrix(B_NG, dtype=np.float64)
    if A.shape[0] != B.shape[0]:
        raise ValueError("both activation matrices must hold the same tokens (rows)")
    N = max(1, A.shape[0])
    mean_a, std_a, live_a = _moments(A, min_active)
    mean_b, std_b, live_b = _moments(B, min_active)
    F, G = A.shape[1], B.shape[1]
    K = max(1, min(int(k), G))
    ids = np.full((F, K), -1, np.int32)
    values = np.full((F, K), np.nan, np.float32)
    values[live_a, 0] = 0.0
    At = A.T.tocsr()
    inv_b = np.where(live_b, 1.0 / np.where(std_b > 0, std_b, 1.0), 0.0)
    for s in range(0, F, chunk):
        e = min(F, s + chunk)
        C = (At[s:e] @ B).tocoo()
        rows, cols = C.row, C.col
        r = (C.data / N - mean_a[s + rows] * mean_b[cols]) / np.where(std_a[s + rows] > 0, std_a[s + rows], 1.0)
        r = r * inv_b[cols]
        keep = live_a[s + rows] & live_b[cols] & (r > 0)
        rows, cols, r = rows[keep], cols[keep], r[keep]
        order = np.lexsort((-r, rows))
        rows, cols, r = rows[order], cols[order], r[order]
        starts = np.searchsorted(rows, np.arange(e - s))
        rank = np.arange(len(rows)) - starts[rows]
        top = rank < K
        ids[s + rows[top], rank[top]] = cols[top]
        values[s + rows[top], rank[top]] = r[top]
    return ids, values


def logit_weight_correlations(model_a, W_dec_a: np.ndarray, model_b, W_dec_b: np.ndarray,
                              ids_FK: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """float32 [F, K]: for each feature f of A and each matched feature ids[f, j] of B (-1: NaN), the
    correlation over the vocabulary of their logit weights, each through its own model."""
    from engine.analysis.matching import standardised
    from engine.analysis.weights import logit_projection

    ids_FK = np.asarray(ids_FK)
    out = np.full(ids_FK.shape, np.nan, np.float32)
    proj_a, proj_b = logit_projection(model_a), logit_projection(model_b)
    Wa = torch.as_tensor(np.asarray(W_dec_a), dtype=torch.float32)
    Wb = torch.as_tensor(np.asarray(W_dec_b), dtype=torch.float32)
    with torch.no_grad():
        for s in range(0, len(ids_FK), chunk):
            e = min(len(ids_FK), s + chunk)
            la = standardised(proj_a(Wa[s:e]), dim=1)[0]                                 # (f, V)
            block = ids_FK[s:e]
            valid = block >= 0
            if not valid.any():
                continue
            uniq, inverse = np.unique(block[valid], return_inverse=True)
            lb = standardised(proj_b(Wb[torch.from_numpy(uniq.astype(np.int64))]), dim=1)[0]   # (u, V)
            rows = np.nonzero(valid)[0]
            corr = (la[torch.from_numpy(rows)] * lb[torch.from_numpy(inverse)]).mean(dim=1)
            tmp = out[s:e]
            tmp[valid] = corr.numpy()
    return out

