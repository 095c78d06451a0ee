"""Feature and neuron statistics: everything the dashboards show, as numpy columns.

``harvest(model, sae, tokens, cfg)`` streams the first ``cfg.n_tokens`` held-out tokens through the
model and the SAE as consecutive context windows of ``n_ctx`` tokens (a last partial window is
dropped) and computes, with the same unit-agnostic code for the F features (f = sae.encode(h)) and
the M neurons (h = model.mlp_acts(x)):

    density_u   = #{t : a_u(t) > 0} / N                         fraction of tokens active
    max_u       = max_t a_u(t)
    mean_u      = Σ_t a_u(t) / #{t : a_u(t) > 0}                 mean when active
    hist_u[b]   = #{t : a_u(t) ∈ (b·max_u/B, (b+1)·max_u/B]}     B equal bins over (0, max_u]
    top_u       = the K token positions with the largest a_u(t) > 0 (one example per position)
    interval_uj = P positions drawn uniformly among {t : a_u(t) ∈ (j·max_u/I, (j+1)·max_u/I]}
    r(f_i, h_m) = Pearson correlation over the N tokens (zeros included)

Two passes, because the bins need the max. Pass 1 accumulates counts, sums, the max, the top-K and
the correlation sums; pass 2 the histograms and the interval samples. Both work on the *nonzero*
activations of a chunk of sequences (a TopK SAE has k of F features active per token), held as (row,
unit, value) in row-major order — so the flat index ``row * D + unit`` is ascending and "activation
of unit u at row r" is a ``searchsorted``. Pass 1 keeps those sparse chunks (up to ``cache_bytes``),
so pass 2 re-runs neither the SAE nor, usually, the model. Top-K and interval bookkeeping is
vectorised: a chunk's candidates are first filtered against the current K-th best value (or P-th
smallest sampling key) of their unit, so after the first chunks only a few survivors are sorted and
merged.

Interval sampling is reservoir sampling with a deterministic key: every token position gets a
32-bit hash key (seeded by ``cfg.seed``) and each (unit, interval) keeps the P positions with the
smallest keys among its tokens in that interval — for each unit a uniform sample without
replacement, independent of chunking and of the cache (units share keys, which costs nothing).

Example windows show ``ctx_left`` tokens before and ``ctx_right`` after the example token, within
its context window (outside it: token -1, activation 0); with ``eos_id`` they also stop at the
document boundary (the EOS token itself stays visible).

Direct logit effects of a direction d in neuron space (feature i: d = W_dec[i]; neuron m: d = e_m):

    logit_effect(d) = W_U · (γ ⊙ C(W_out · d))          (V,)

with γ the final LayerNorm's gain and C the mean-subtraction LayerNorm applies; the LayerNorm's
division by the residual's norm is dropped (the paper's approximation: a direction's effect up to
a positive per-token scale). Neuron alignment: the A largest |W_dec[i, m]| of a feature's decoder
row (signed) and their share of the row's L1 norm; for a neuron, the A features whose decoder rows
load most on it (largest |W_dec[:, m]|) and their share of that column's L1 norm.

Shape legend: N harvested tokens, n chunk rows (tokens), T context, D units of one kind, F features,
M neurons, C d_model, V vocab, K top examples, I intervals, P per interval, W window, B bins,
A alignment entries, L logits, E examples, S sample tokens.
"""

from __future__ import annotations

import contextlib
import time
from typing import Generator, Iterator

import numpy as np
import torch

from engine.config import HarvestConfig
from engine.events import CancelToken, Cancelled, Progress, RateMeter
from engine.stats import HarvestResult, UnitStats
from engine.errors import UserError

__all__ = ["harvest", "HarvestError", "logit_effects", "decoder_alignment"]

_NO_KEY = 1 << 62          # "empty slot" sampling key (real keys are < 2**32)
_M32 = 0xFFFFFFFF


class HarvestError(UserError, ValueError):
    """The harvest cannot run on what it was given; the message says why."""


# ---------------------------------------------------------------------------------------- helpers
def _hash_key(pos: torch.Tensor, seed: int) -> torch.Tensor:
    """A 32-bit pseudo-random key per token position (int64 in [0, 2**32))."""
    h = (pos * 0x9E3779B1 + (seed + 1) * 0xC2B2AE3D) & _M32
    h ^= h >> 16
    h = (h * 0x7FEB352D) & _M32
    h ^= h >> 15
    return h


def _segment_rank(group: torch.Tensor) -> torch.Tensor:
    """For a sorted 1-D group id tensor, each element's 0-based rank within its run of equal ids."""
    n = group.numel()
    if n == 0:
        return group.clone()
    start = torch.ones(n, dtype=torch.bool, device=group.device)
    start[1:] = group[1:] != group[:-1]
    idx = torch.arange(n, device=group.device)
    first = torch.where(start, idx, torch.zeros_like(idx))
    return idx - torch.cummax(first, 0).values


class _Chunk:
    """The nonzero activations of one chunk of n rows (whole sequences) for D units.

    row, unit: int64 (nnz,) sorted by (row, unit); val: float32 (nnz,). ``flat = row * D + unit``
    (ascending) is what window look-ups search.
    """

    __slots__ = ("_row", "_unit", "_val", "n", "D", "_flat", "dense")

    def __init__(self, row: torch.Tensor | None, unit: torch.Tensor | None, val: torch.Tensor | None,
                 n: int, D: int, dense: torch.Tensor | None = None):
        self._row, self._unit, self._val, self.n, self.D = row, unit, val, n, D
        self._flat = None
        self.dense = dense          # float32 (n, D) for dense chunks; their sparse form is made on demand

    @classmethod
    def from_dense(cls, acts_nD: torch.Tensor) -> "_Chunk":
        """A chunk from an (n, D) matrix of ReLU outputs: kept dense where a quarter or more is nonzero."""
        n, D = acts_nD.shape
        acts_nD = acts_nD.float()
        nnz = int(torch.count_nonzero(acts_nD)) if acts_nD.numel() < (1 << 24) else \
            int((acts_nD[: max(1, n // 16)] != 0).sum()) * (n // max(1, n // 16))   # estimate
        if nnz * 4 >= n * D:
            return cls(None, None, None, n, D, dense=acts_nD)
        row, unit = torch.nonzero(acts_nD, as_tuple=True)              # row-major order
        return cls(row, unit, acts_nD[row, unit], n, D)

    def _sparsify(self) -> None:
        self._row, self._unit = torch.nonzero(self.dense, as_tuple=True)
        self._val = self.dense[self._row, self._unit]

    @property
    def row(self) -> torch.Tensor:
        if self._row is None:
            self._sparsify()
        return self._row

    @property
    def unit(self) -> torch.Tensor:
        if self._unit is None:
            self._sparsify()
        return self._unit

    @property
    def val(self) -> torch.Tensor:
        if self._val is None:
            self._sparsify()
        return self._val

    @classmethod
    def from_topk(cls, vals_nk: torch.Tensor, idx_nk: torch.Tensor, D: int) -> "_Chunk":
        """From a TopK SAE's (values, indices) per row, without forming the dense (n, D) matrix."""
        n, k = vals_nk.shape
        idx_nk, order = idx_nk.sort(dim=1)
        vals_nk = vals_nk.gather(1, order)
        live = vals_nk > 0
        row = torch.arange(n, device=idx_nk.device)[:, None].expand(n, k)
        return cls(row[live], idx_nk[live], vals_nk[live].float(), n, D)

    @property
    def flat(self) -> torch.Tensor:
        if self._flat is None:
            self._flat = self.row * self.D + self.unit
        return self._flat

    def nbytes(self) -> int:
        return self.dense.numel() * 4 if self.dense is not None else self.val.numel() * 28

    def windows(self, row_E: torch.Tensor, unit_E: torch.Tensor, T: int, left: int, right: int) -> torch.Tensor:
        """Activations (E, W) of unit_E at rows row_E-left … row_E+right, within each row's sequence."""
        off_W = torch.arange(-left, right + 1, device=row_E.device)
        t_EW = (row_E % T)[:, None] + off_W[None, :]
        inside_EW = (t_EW >= 0) & (t_EW < T)
        query_EW = (row_E[:, None] + off_W[None, :]).clamp(0, self.n - 1) * self.D + unit_E[:, None]
        if self.dense is not None:
            rows_EW = (row_E[:, None] + off_W[None, :]).clamp(0, self.n - 1)
            got_EW = self.dense[rows_EW, unit_E[:, None].expand_as(rows_EW)]
            return torch.where(inside_EW, got_EW, torch.zeros((), device=row_E.device))
        if self.flat.numel() == 0:
            return torch.zeros(query_EW.shape, dtype=torch.float32, device=row_E.device)
        at_EW = torch.searchsorted(self.flat, query_EW).clamp_(max=self.flat.numel() - 1)
        hit_EW = (self.flat[at_EW] == query_EW) & inside_EW
        return torch.where(hit_EW, self.val[at_EW], torch.zeros((), device=row_E.device))


class _Tally:
    """Running statistics of D units of one kind (features or neurons) over both passes."""

    def __init__(self, kind: str, D: int, cfg: HarvestConfig, T: int, device: torch.device):
        self.kind, self.D, self.T, self.device = kind, D, T, device
        self.K, self.I, self.P, self.B = cfg.top_k, cfg.n_intervals, cfg.per_interval, cfg.hist_bins
        self.left, self.right, self.seed = cfg.ctx_left, cfg.ctx_right, cfg.seed
        W = self.left + 1 + self.right
        z = dict(device=device)
        self.count_D = torch.zeros(D, dtype=torch.int64, **z)
        self.sum_D = torch.zeros(D, dtype=torch.float64, **z)
        self.sumsq_D = torch.zeros(D, dtype=torch.float64, **z)
        self.max_D = torch.zeros(D, dtype=torch.float32, **z)
        self.top_val_DK = torch.full((D, self.K), -float("inf"), **z)
        self.top_pos_DK = torch.full((D, self.K), -1, dtype=torch.int64, **z)
        self.top_win_DKW = torch.zeros((D, self.K, W), dtype=torch.float32, **z)
        self.hist_DB = torch.zeros(D * self.B, dtype=torch.int64, **z)
        self.res_key_GP = torch.full((D * self.I, self.P), _NO_KEY, dtype=torch.int64, **z)
        self.res_pos_GP = torch.full((D * self.I, self.P), -1, dtype=torch.int64, **z)
        self.res_win_GPW = torch.zeros((D * self.I, self.P, W), dtype=torch.float16, **z)
        self.cache: list[_Chunk] | None = []

    # -------------------------------------------------------------- pass 1
    def pass1(self, ch: _Chunk, pos0: int) -> None:
        thr_D = self.top_val_DK[:, -1]
        if ch.dense is not None:                                        # column reductions, (n, D)
            a_nD = ch.dense
            self.count_D += (a_nD > 0).sum(0)
            self.sum_D += a_nD.sum(0)
            self.sumsq_D += torch.linalg.vector_norm(a_nD, dim=0).square()
            torch.maximum(self.max_D, a_nD.amax(0), out=self.max_D)
            # top-K candidates: above the unit's current K-th best and not below the chunk's own K-th
            cand = a_nD > thr_D
            if bool(torch.isinf(thr_D).any()):                          # early chunks: a top-K not yet full
                cand &= a_nD >= a_nD.topk(min(self.K, ch.n), dim=0).values[-1]
                cand &= a_nD > 0
            c_row, c_unit = torch.nonzero(cand, as_tuple=True)
            c_val, c_pos = a_nD[c_row, c_unit], c_row + pos0
        else:
            unit, val = ch.unit, ch.val
            self.count_D += torch.bincount(unit, minlength=self.D)
            self.sum_D += torch.bincount(unit, weights=val, minlength=self.D)          # per chunk in fp32
            self.sumsq_D += torch.bincount(unit, weights=val * val, minlength=self.D)
            self.max_D.scatter_reduce_(0, unit, val, reduce="amax")
            # top-K: only values above the unit's current K-th best can enter.
            keep = val > thr_D[unit]
            c_unit, c_val, c_pos = unit[keep], val[keep], ch.row[keep] + pos0
        if c_unit.numel() == 0:
            return
        # positive float32 bit patterns order like the values: sort by (unit asc, value desc) at once
        desc = 0x7FFFFFFF - c_val.view(torch.int32).long()
        order = torch.argsort(c_unit * (1 << 31) + desc, stable=True)          # ties: earlier position first
        c_unit, c_val, c_pos = c_unit[order], c_val[order], c_pos[order]
        rank = _segment_rank(c_unit)
        keep = rank < self.K
        c_unit, c_val, c_pos, rank = c_unit[keep], c_val[keep], c_pos[keep], rank[keep]
        new_val_DK = torch.full_like(self.top_val_DK, -float("inf"))
        new_pos_DK = torch.full_like(self.top_pos_DK, -1)
        new_val_DK[c_unit, rank] = c_val
        new_pos_DK[c_unit, rank] = c_pos
        self._merge_top(new_val_DK, new_pos_DK)

    def _merge_top(self, new_val_Dk: torch.Tensor, new_pos_Dk: torch.Tensor) -> None:
        """Merge candidates (D, k) into the running top-K; zeros never enter; ties keep the earlier."""
        new_val_Dk = torch.where(new_val_Dk > 0, new_val_Dk, torch.full((), -float("inf"), device=self.device))
        both_val = torch.cat([self.top_val_DK, new_val_Dk], dim=1)              # (D, K + k)
        both_pos = torch.cat([self.top_pos_DK, new_pos_Dk], dim=1)
        both_val, pick = both_val.sort(dim=1, descending=True, stable=True)     # old (earlier) entries win ties
        self.top_val_DK = both_val[:, :self.K].contiguous()
        self.top_pos_DK = both_pos.gather(1, pick[:, :self.K])

    # -------------------------------------------------------------- pass 2
    def pass2(self, ch: _Chunk, pos0: int, gather_windows: bool) -> None:
        """Histograms and interval reservoirs; with gather_windows, also the windows of new entries."""
        key_n = _hash_key(torch.arange(pos0, pos0 + ch.n, device=self.device), self.seed)
        res_thr_G = self.res_key_GP[:, -1]
        if ch.dense is not None:
            a_nD, D, B, I = ch.dense, self.D, self.B, self.I
            active = a_nD > 0
            frac = a_nD / self.max_D.clamp_min(1e-30)                        # in (0, 1] where active
            units_f = torch.arange(D, device=self.device, dtype=torch.float32)
            if D * (B + 1) < (1 << 24):               # bin ids exact in float32: no int64 (n, D) arrays
                # ceil(frac·B) is 0 for inactive entries: each unit gets B+1 bins, the first a dummy
                bin_f = torch.ceil(frac * B).clamp_(max=B).add_(units_f * (B + 1))
                counts = torch.bincount(bin_f.int().view(-1), minlength=D * (B + 1))
                self.hist_DB += counts.view(D, B + 1)[:, 1:].reshape(-1)
            else:
                bin_l = (torch.ceil(frac * B) - 1).clamp_(0, B - 1).long() + units_f.long() * B
                self.hist_DB += torch.bincount(bin_l[active], minlength=D * B)
            # a superset of the reservoir candidates without per-element gathers: key below the
            # unit's largest filled threshold, or an activation in one of its still-open intervals
            # (two bands of intervals, so the loose thresholds of the sparse top intervals do not
            # let the crowded bottom ones through)
            thr_DI = res_thr_G.view(D, I)
            c1, c2 = max(1, I // 5), max(2, I // 2)                           # bands [0,c1) [c1,c2) [c2,I)
            key_n1 = key_n[:, None]
            f_I = frac * I
            if I < 3:  # too few intervals for three bands: one threshold over all of them
                maybe = key_n1 < thr_DI.amax(1)
            else:
                maybe = torch.where(f_I < c1, key_n1 < thr_DI[:, :c1].amax(1),
                                    torch.where(f_I < c2, key_n1 < thr_DI[:, c1:c2].amax(1),
                                                key_n1 < thr_DI[:, c2:].amax(1)))  # (n, D) bool
            maybe &= active
            c_row, c_unit = torch.nonzero(maybe, as_tuple=True)
            c_frac = frac[c_row, c_unit]
            group = c_unit * I + (torch.ceil(c_frac * I).long() - 1).clamp_(0, I - 1)
            key = key_n[c_row]
            keep = key < res_thr_G[group]
            group, key, c_row, c_unit = group[keep], key[keep], c_row[keep], c_unit[keep]
        else:
            unit, val, row = ch.unit, ch.val, ch.row
            frac = val / self.max_D[unit]                                    # in (0, 1]
            hist_bin = (torch.ceil(frac * self.B).long() - 1).clamp_(0, self.B - 1)
            self.hist_DB += torch.bincount(unit * self.B + hist_bin, minlength=self.D * self.B)
            # interval reservoirs: keep the P smallest hash keys per (unit, interval).
            group = unit * self.I + (torch.ceil(frac * self.I).long() - 1).clamp_(0, self.I - 1)
            key = key_n[row]
            keep = key < res_thr_G[group]
            group, key, c_row, c_unit = group[keep], key[keep], row[keep], unit[keep]
        if group.numel():
            order = torch.argsort(group * (1 << 32) + key)
            group, key, c_row, c_unit = group[order], key[order], c_row[order], c_unit[order]
            rank = _segment_rank(group)
            keep = rank < self.P
            group, key, c_row, c_unit, rank = group[keep], key[keep], c_row[keep], c_unit[keep], rank[keep]
            groups, slot = torch.unique_consecutive(group, return_inverse=True)
            G, P = groups.numel(), self.P
            cand_key = torch.full((G, P), _NO_KEY, dtype=torch.int64, device=self.device)
            cand_pos = torch.full((G, P), -1, dtype=torch.int64, device=self.device)
            cand_key[slot, rank] = key
            cand_pos[slot, rank] = c_row + pos0
            both_key = torch.cat([self.res_key_GP[groups], cand_key], dim=1)        # (G, 2P)
            both_pos = torch.cat([self.res_pos_GP[groups], cand_pos], dim=1)
            both_key, pick = both_key.sort(dim=1)
            pick = pick[:, :P]
            self.res_key_GP[groups] = both_key[:, :P]
            self.res_pos_GP[groups] = both_pos.gather(1, pick)
            if gather_windows:
                cand_win = torch.zeros((G, P, self.res_win_GPW.shape[-1]), dtype=torch.float16, device=self.device)
                cand_win[slot, rank] = ch.windows(c_row, c_unit, self.T, self.left, self.right).half()
                both_win = torch.cat([self.res_win_GPW[groups], cand_win], dim=1)    # (G, 2P, W)
                self.res_win_GPW[groups] = both_win[torch.arange(G, device=self.device)[:, None], pick]
        if gather_windows:
            self.gather_top_windows(ch, pos0)

    def gather_top_windows(self, ch: _Chunk, pos0: int) -> None:
        """Windows of the top examples that lie in this chunk."""
        here = (self.top_pos_DK >= pos0) & (self.top_pos_DK < pos0 + ch.n)
        u, k = torch.nonzero(here, as_tuple=True)
        if u.numel():
            self.top_win_DKW[u, k] = ch.windows(self.top_pos_DK[u, k] - pos0, u, self.T, self.left, self.right)

    def gather_interval_windows(self, ch: _Chunk, pos0: int) -> None:
        """Windows of the (final) interval examples that lie in this chunk."""
        here = (self.res_pos_GP >= pos0) & (self.res_pos_GP < pos0 + ch.n)
        g, p = torch.nonzero(here, as_tuple=True)
        if g.numel():
            unit = torch.div(g, self.I, rounding_mode="floor")
            win = ch.windows(self.res_pos_GP[g, p] - pos0, unit, self.T, self.left, self.right)
            self.res_win_GPW[g, p] = win.half()

    # -------------------------------------------------------------- result
    def finish(self, tokens_N: np.ndarray, n_tokens: int, eos_id: int | None) -> dict:
        D, I, P, T = self.D, self.I, self.P, self.T
        count = self.count_D.cpu().numpy()
        max_act = self.max_D.cpu().numpy().astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_act = np.where(count > 0, self.sum_D.cpu().numpy() / np.maximum(count, 1), 0.0)
        top_val = self.top_val_DK.cpu().numpy()
        top_pos = np.where(top_val > 0, self.top_pos_DK.cpu().numpy(), -1)
        top_tokens, top_mask = _window_tokens(tokens_N, top_pos, T, self.left, self.right, eos_id)
        top_acts = np.where(top_mask, self.top_win_DKW.cpu().numpy(), 0.0)

        # intervals: order each reservoir by its example's activation (descending)
        res_pos = self.res_pos_GP.cpu().numpy()
        res_win = self.res_win_GPW.cpu().numpy().astype(np.float32)
        center = np.where(res_pos >= 0, res_win[..., self.left], -np.inf)
        order = np.argsort(-center, axis=1, kind="stable")
        res_pos = np.take_along_axis(res_pos, order, axis=1)
        res_win = np.take_along_axis(res_win, order[..., None], axis=1)
        int_tokens, int_mask = _window_tokens(tokens_N, res_pos, T, self.left, self.right, eos_id)
        int_acts = np.where(int_mask, res_win, 0.0)
        W = self.left + 1 + self.right
        edges = max_act[:, None] * (np.arange(I + 1, dtype=np.float32) / I)[None, :]
        bounds = np.stack([edges[:, :-1], edges[:, 1:]], axis=-1).astype(np.float32)

        return dict(
            kind=self.kind,
            density=count.astype(np.float64) / max(n_tokens, 1),
            max_act=max_act,
            mean_act=mean_act.astype(np.float32),
            act_hist=self.hist_DB.cpu().numpy().reshape(D, self.B).astype(np.int64),
            top_tokens=top_tokens.astype(np.int32),
            top_acts=top_acts.astype(np.float16),
            top_center=self.left,
            interval_tokens=int_tokens.reshape(D, I, P, W).astype(np.int32),
            interval_acts=int_acts.reshape(D, I, P, W).astype(np.float16),
            interval_bounds=bounds,
            top_token_ids=_top_token_ids(top_tokens[:, :, self.left]),
        )


def _window_tokens(tokens_N: np.ndarray, pos: np.ndarray, T: int, left: int, right: int,
                   eos_id: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (..., W) of the windows around positions pos (...) (-1: none), and the visible mask."""
    off_W = np.arange(-left, right + 1)
    t = (np.maximum(pos, 0) % T)[..., None] + off_W
    mask = (pos[..., None] >= 0) & (t >= 0) & (t < T)
    idx = np.clip(np.maximum(pos, 0)[..., None] + off_W, 0, len(tokens_N) - 1)
    tok = np.where(mask, tokens_N[idx], -1)
    if eos_id is not None and tok.size:
        eos = tok == eos_id
        # left of the centre: hide positions with an EOS strictly between them and the centre
        eos_left = eos[..., :left]
        after = np.flip(np.cumsum(np.flip(eos_left, -1), -1), -1) - eos_left  # EOS at j' > j (left part)
        mask[..., :left] &= after == 0
        # right of the centre: hide positions with an EOS strictly between the centre and them
        eos_right = eos[..., left + 1:]
        before = np.cumsum(eos_right, -1) - eos_right
        mask[..., left + 1:] &= before == 0
        tok = np.where(mask, tok, -1)
    return tok, mask


def _top_token_ids(center_NK: np.ndarray, n: int = 5) -> np.ndarray:
    """The n most frequent ids per row (ties: earlier first appearance first), -1 ignored and padding."""
    N, K = center_NK.shape
    same_NKK = center_NK[:, :, None] == center_NK[:, None, :]
    count_NK = same_NKK.sum(-1)
    earlier = np.tril(np.ones((K, K), dtype=bool), -1)                    # [k, j]: j < k
    first_NK = ~(same_NKK & earlier[None]).any(-1)
    valid = first_NK & (center_NK >= 0)
    sort_key = np.where(valid, -count_NK * (K + 1) + np.arange(K)[None, :], np.iinfo(np.int64).max)
    order = np.argsort(sort_key, axis=1, kind="stable")[:, :n]
    ids = np.take_along_axis(center_NK, order, axis=1)
    ok = np.take_along_axis(valid, order, axis=1)
    out = np.full((N, n), -1, dtype=np.int32)
    out[:, : ids.shape[1]] = np.where(ok, ids, -1)
    return out


# ---------------------------------------------------------------------------------------- weights
@torch.no_grad()
def logit_effects(model, directions_DM: torch.Tensor, n_logits: int, n_bins: int,
                  chunk: int = 1024) -> dict[str, np.ndarray]:
    """Direct logit effects W_U · (γ ⊙ C(W_out · d)) of D directions d in neuron space (see module doc).

    Returns top/bottom ids and values (D, L), a histogram of all V values per direction (D, B) over
    its own (min, max), and that range (D, 2).
    """
    W_U = model.unembed.weight.float()                                   # (V, C)
    W_out = model.mlp.W_out.weight.float()                               # (C, M)
    gain = model.ln_final.weight.float()                                 # (C,)
    W_out_c = W_out - W_out.mean(dim=0, keepdim=True)                     # LayerNorm removes the mean
    G_MV = (W_U @ (gain[:, None] * W_out_c)).t()                         # (M, V)
    D, V = directions_DM.shape[0], G_MV.shape[1]
    L = min(n_logits, V)
    out = {name: [] for name in ("top_ids", "top_values", "bottom_ids", "bottom_values", "hist", "range")}
    for i in range(0, D, chunk):
        eff_dV = directions_DM[i:i + chunk].float().to(G_MV.device) @ G_MV          # (d, V)
        tv, ti = eff_dV.topk(L, dim=1)
        bv, bi = eff_dV.topk(L, dim=1, largest=False)
        lo, hi = eff_dV.min(dim=1).values, eff_dV.max(dim=1).values
        span = (hi - lo).clamp_min(1e-12)
        b = ((eff_dV - lo[:, None]) / span[:, None] * n_bins).long().clamp_(0, n_bins - 1)
        b += torch.arange(eff_dV.shape[0], device=b.device)[:, None] * n_bins
        hist = torch.bincount(b.reshape(-1), minlength=eff_dV.shape[0] * n_bins).reshape(-1, n_bins)
        for name, value in (("top_ids", ti), ("top_values", tv), ("bottom_ids", bi), ("bottom_values", bv),
                            ("hist", hist), ("range", torch.stack([lo, hi], dim=1))):
            out[name].append(value.cpu().numpy())
    return {
        "logit_top_ids": np.concatenate(out["top_ids"]).astype(np.int32),
        "logit_top_values": np.concatenate(out["top_values"]).astype(np.float32),
        "logit_bottom_ids": np.concatenate(out["bottom_ids"]).astype(np.int32),
        "logit_bottom_values": np.concatenate(out["bottom_values"]).astype(np.float32),
        "logit_hist": np.concatenate(out["hist"]).astype(np.int64),
        "logit_range": np.concatenate(out["range"]).astype(np.float32),
    }


@torch.no_grad()
def decoder_alignment(W_dec_FM: torch.Tensor, n_align: int) -> tuple[dict, dict]:
    """Neuron alignment of features (rows of W_dec) and loading features of neurons (its columns)."""
    out = []
    for mat in (W_dec_FM.float(), W_dec_FM.float().t()):
        a = min(n_align, mat.shape[1])
        mag = mat.abs()
        top_mag, ids = mag.topk(a, dim=1)
        l1 = top_mag.sum(1) / mag.sum(1).clamp_min(1e-30)
        out.append({"align_ids": ids.cpu().numpy().astype(np.int32),
                    "align_values": mat.gather(1, ids).cpu().numpy().astype(np.float32),
                    "align_l1": l1.cpu().numpy().astype(np.float32)})
    return out[0], out[1]


def _correlations(cross_FM: torch.Tensor, feat: _Tally, neur: _Tally, n_tokens: int, n_corr: int,
                  chunk: int = 4096) -> tuple[dict, dict]:
    """Top Pearson correlations feature→neurons and neuron→features from the accumulated sums."""
    N = float(max(n_tokens, 1))
    mu_f, mu_n = feat.sum_D / N, neur.sum_D / N
    sd_f = (feat.sumsq_D / N - mu_f.square()).clamp_min(0).sqrt()
    sd_n = (neur.sumsq_D / N - mu_n.square()).clamp_min(0).sqrt()
    F, M = cross_FM.shape
    a_f, a_n = min(n_corr, M), min(n_corr, F)
    f_ids, f_vals = [], []
    n_best_val = torch.full((M, a_n), -float("inf"), dtype=torch.float64, device=cross_FM.device)
    n_best_ids = torch.full((M, a_n), -1, dtype=torch.int64, device=cross_FM.device)
    for i in range(0, F, chunk):
        cov = cross_FM[i:i + chunk].double() / N - mu_f[i:i + chunk, None] * mu_n[None, :]
        den = sd_f[i:i + chunk, None] * sd_n[None, :]
        r = torch.where(den > 0, cov / den.clamp_min(1e-300), torch.zeros((), dtype=cov.dtype, device=cov.device))
        r = r.clamp_(-1.0, 1.0)                                                # (f, M)
        v, ids = r.topk(a_f, dim=1)
        f_vals.append(v)
        f_ids.append(ids)
        v, ids = r.t().topk(min(a_n, r.shape[0]), dim=1)                       # (M, a)
        both_v = torch.cat([n_best_val, v], dim=1)
        both_i = torch.cat([n_best_ids, ids + i], dim=1)
        n_best_val, pick = both_v.topk(a_n, dim=1)
        n_best_ids = both_i.gather(1, pick)
    feats = {"corr_ids": torch.cat(f_ids).cpu().numpy().astype(np.int32),
             "corr_values": torch.cat(f_vals).cpu().numpy().astype(np.float32)}
    neurs = {"corr_ids": n_best_ids.cpu().numpy().astype(np.int32),
             "corr_values": n_best_val.cpu().numpy().astype(np.float32)}
    return feats, neurs


def _cross_add_(cross_FM: torch.Tensor, ch: _Chunk, neurons_nM: torch.Tensor,
                use_scipy: bool | None = None) -> None:
    """cross += fᵀ · h for the chunk's sparse features f (n, F) and dense neurons h (n, M).

    On a CPU scipy's CSR product (one thread, no conversion of the transposed matrix) is the fastest
    here; elsewhere a torch sparse COO product.
    """
    if ch.val.numel() == 0:
        return
    if use_scipy if use_scipy is not None else ch.val.device.type == "cpu":
        import scipy.sparse as sp

        row, unit = ch.row.numpy(), ch.unit.numpy().astype(np.int32)
        indptr = np.zeros(ch.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=ch.n), out=indptr[1:])
        f_nF = sp.csr_matrix((ch.val.numpy(), unit, indptr), shape=(ch.n, ch.D))
        cross_FM += torch.from_numpy(np.asarray(f_nF.T @ neurons_nM.float().numpy()))
    else:
        f_Fn = torch.sparse_coo_tensor(torch.stack([ch.unit, ch.row]), ch.val, (ch.D, ch.n),
                                       check_invariants=False)
        cross_FM += torch.sparse.mm(f_Fn, neurons_nM.float()).to(cross_FM.dtype)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with n intra-op threads (None: unchanged), restoring the setting after."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------- the job
def _density_histogram(density_F: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    live = density_F[density_F > 0]
    if live.size == 0:
        return np.linspace(-8.0, 0.0, n_bins + 1), np.zeros(n_bins, dtype=np.int64)
    logd = np.log10(live)
    lo, hi = float(logd.min()), float(logd.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(logd, bins=n_bins, range=(lo, hi))
    return edges.astype(np.float64), counts.astype(np.int64)


def harvest(model, sae, tokens: np.ndarray, cfg: HarvestConfig, device: str | torch.device = "cpu",
            cancel: CancelToken | None = None, eos_id: int | None = None, *,
            batch_size: int | None = None, cache_bytes: int = 1 << 30, bookkeeping_threads: int | None = 1,
            ) -> Generator[Progress, None, HarvestResult]:
    """Statistics of every feature and neuron over the first ``cfg.n_tokens`` of ``tokens``.

    Generator: yields ``Progress(stage="harvest", unit="tokens")`` per chunk (``total`` counts both
    passes) and returns a ``HarvestResult`` whose ``labels``/``scores`` are left for
    ``engine.analysis.labels.label_units``. ``batch_size``: sequences per chunk (default: sized so a chunk's
    dense feature matrix stays near 128 MB). ``cache_bytes``: memory for pass 1's activations
    (features as nonzeros, neurons dense where they are dense), which spares pass 2 the forward
    passes; a kind that does not fit is recomputed instead (200k tokens of the demo sizes: ~540 MB).
    ``bookkeeping_threads``: intra-op threads for the many small bookkeeping ops on a CPU (the
    forward keeps the global setting): one thread avoids OpenMP's synchronisation stalls, up to 10x
    on a busy 2-core machine, and loses little on an idle one because the ops are memory-bound.
    Moves model and SAE to ``device``.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    sae = sae.to(device).eval()
    T_max = int(model.cfg.n_ctx)
    n_avail = min(int(cfg.n_tokens), int(len(tokens)))
    if n_avail <= 0:
        raise HarvestError("no held-out tokens to harvest: the validation split is empty")
    T = min(T_max, n_avail)
    n_seq = n_avail // T
    N = n_seq * T
    tokens_N = np.asarray(tokens[:N]).astype(np.int64)
    if tokens_N.min() < 0 or tokens_N.max() >= model.cfg.vocab_size:
        raise HarvestError(f"token ids outside the model's vocabulary (0…{model.cfg.vocab_size - 1}): "
                           "the tokens do not belong to this model")
    F, M = int(sae.W_dec.shape[0]), int(sae.W_dec.shape[1])
    if batch_size is None:
        batch_size = max(1, min(256, (32 << 20) // (T * max(F, M))))
    feat = _Tally("feature", F, cfg, T, device)
    neur = _Tally("neuron", M, cfg, T, device)
    cross_dtype = torch.float64 if F * M * 8 <= (512 << 20) else torch.float32
    cross_FM = torch.zeros((F, M), dtype=cross_dtype, device=device)
    S = min(int(cfg.sample_tokens), N)
    sample_neur: list[np.ndarray] = []
    sample_feat: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    cached_bytes = 0
    meter = RateMeter(2 * N)

    def check_cancel() -> None:
        if cancel is not None and cancel.cancelled:
            raise Cancelled("harvest cancelled")

    topk_sae = getattr(sae, "k", None) is not None and hasattr(sae, "encode_sparse")

    def forward(s0: int, s1: int, need_features: bool):
        """Neurons (n, M) and the features' raw form: TopK (values, indices) (n, k), or (n, F)."""
        idx = torch.from_numpy(tokens_N[s0 * T:s1 * T]).view(s1 - s0, T).to(device)
        h_nM = model.mlp_acts(idx).reshape(-1, M)                              # (n, M)
        if not need_features:
            return h_nM, None
        if topk_sae:
            return h_nM, sae.encode_sparse(h_nM)
        return h_nM, sae.encode(h_nM).reshape(-1, F)

    def feature_chunk(raw) -> _Chunk:
        return _Chunk.from_topk(*raw, F) if topk_sae else _Chunk.from_dense(raw)

    book_threads = bookkeeping_threads if device.type == "cpu" else None
    t_start = time.perf_counter()
    with torch.inference_mode():
        # ---------------------------------------------------------------- pass 1
        for s0 in range(0, n_seq, batch_size):
            check_cancel()
            s1 = min(n_seq, s0 + batch_size)
            pos0 = s0 * T
            h_nM, f_raw = forward(s0, s1, True)
            with _torch_threads(book_threads):
                fch = feature_chunk(f_raw)
                del f_raw
                nch = _Chunk.from_dense(h_nM)
                feat.pass1(fch, pos0)
                neur.pass1(nch, pos0)
                _cross_add_(cross_FM, fch, h_nM)
            if pos0 < S:
                rows = min(S - pos0, h_nM.shape[0])
                sample_neur.append(h_nM[:rows].half().cpu().numpy())
                m = fch.row < rows
                sample_feat.append((fch.unit[m].cpu().numpy(), (fch.row[m] + pos0).cpu().numpy(),
                                    fch.val[m].cpu().numpy()))
            for tally, ch in ((feat, fch), (neur, nch)):
                if tally.cache is not None:
                    if cached_bytes + ch.nbytes() <= cache_bytes:
                        tally.cache.append(ch)
                        cached_bytes += ch.nbytes()
                    else:
                        cached_bytes -= sum(c.nbytes() for c in tally.cache)
                        tally.cache = None
            done = s1 * T
            rate, eta = meter.update(done)
            yield Progress(stage="harvest", done=done, total=2 * N, rate=rate, eta_s=eta, unit="tokens",
                           metrics={"pass": 1.0})
        # ---------------------------------------------------------------- pass 2
        for i, s0 in enumerate(range(0, n_seq, batch_size)):
            check_cancel()
            s1 = min(n_seq, s0 + batch_size)
            pos0 = s0 * T
            h_nM = f_raw = None
            if feat.cache is None or neur.cache is None:
                h_nM, f_raw = forward(s0, s1, feat.cache is None)
            with _torch_threads(book_threads):
                fch = feat.cache[i] if feat.cache is not None else feature_chunk(f_raw)
                nch = neur.cache[i] if neur.cache is not None else _Chunk.from_dense(h_nM)
                # a cached kind gathers its windows afterwards, only for the final examples
                feat.pass2(fch, pos0, gather_windows=feat.cache is None)
                neur.pass2(nch, pos0, gather_windows=neur.cache is None)
            done = N + s1 * T
            rate, eta = meter.update(done)
            yield Progress(stage="harvest", done=done, total=2 * N, rate=rate, eta_s=eta, unit="tokens",
                           metrics={"pass": 2.0})

        with _torch_threads(book_threads):
            for tally in (feat, neur):
                for i, ch in enumerate(tally.cache or []):
                    tally.gather_top_windows(ch, i * batch_size * T)
                    tally.gather_interval_windows(ch, i * batch_size * T)
                tally.cache = None

        # ---------------------------------------------------------------- weights-only statistics
        W_dec_FM = sae.W_dec.detach()
        with _torch_threads(book_threads):          # mostly top-k and histograms: faster on one thread
            f_logits = logit_effects(model, W_dec_FM, cfg.n_logits, cfg.hist_bins)
            n_logits = logit_effects(model, torch.eye(M, device=device), cfg.n_logits, cfg.hist_bins)
            f_align, n_align = decoder_alignment(W_dec_FM, cfg.n_align)
            f_corr, n_corr = _correlations(cross_FM, feat, neur, N, cfg.n_align)

    features = UnitStats(**feat.finish(tokens_N, N, eos_id), **f_logits, **f_align, **f_corr)
    neurons = UnitStats(**neur.finish(tokens_N, N, eos_id), **n_logits, **n_align, **n_corr)
    edges, counts = _density_histogram(features.density, cfg.hist_bins)

    units = np.concatenate([u for u, _, _ in sample_feat]) if sample_feat else np.zeros(0, np.int64)
    rows = np.concatenate([r for _, r, _ in sample_feat]) if sample_feat else np.zeros(0, np.int64)
    vals = np.concatenate([v for _, _, v in sample_feat]) if sample_feat else np.zeros(0, np.float32)
    order = np.lexsort((rows, units))
    indptr = np.zeros(F + 1, dtype=np.int64)
    np.cumsum(np.bincount(units, minlength=F), out=indptr[1:])
    result = HarvestResult(
        features=features,
        neurons=neurons,
        n_tokens=N,
        density_hist_edges=edges,
        density_hist_counts=counts,
        sample_token_ids=tokens_N[:S].astype(np.int32),
        sample_neuron_acts=(np.concatenate(sample_neur) if sample_neur else np.zeros((0, M), np.float16)),
        sample_feature_indptr=indptr,
        sample_feature_token=rows[order].astype(np.int32),
        sample_feature_value=vals[order].astype(np.float16),
    )
    yield Progress(stage="harvest", done=2 * N, total=2 * N, rate=2 * N / max(time.perf_counter() - t_start, 1e-9),
                   eta_s=0.0, unit="tokens", metrics={"seconds": time.perf_counter() - t_start})
    return result
