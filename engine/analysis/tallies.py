"""The running per-unit tallies of the harvest: what it keeps while the tokens stream past.

One ``UnitTally`` holds D units of one kind (features or neurons) over the harvest's two passes,
fed one ``Chunk`` at a time (``pos0``: the chunk's first token position):

    pass 1   count_u, Σ a_u, Σ a_u², max_u; the K positions with the largest a_u(t) > 0
    pass 2   hist_u[b] over B equal bins of (0, max_u]; P positions per interval of (0, max_u]
             (I intervals); the activation windows of the examples

Top-K and interval bookkeeping is vectorised: a chunk's candidates are first filtered against the
current K-th best value (or P-th smallest sampling key) of their unit, so after the first chunks
only a few survivors are sorted and merged.

Interval sampling is reservoir sampling with a deterministic key: every token position gets a
32-bit hash key (``hash_key``, seeded by ``HarvestConfig.seed``) and each (unit, interval) keeps the
P positions with the smallest keys among its tokens in that interval — for each unit a uniform
sample without replacement, independent of chunking and of the cache (units share keys, which
costs nothing).

Example windows show ``ctx_left`` tokens before and ``ctx_right`` after the example token, within
its context window (outside it: token -1, activation 0); with ``eos_id`` they also stop at the
document boundary (the EOS token itself stays visible).

``correlations`` turns the two kinds' sums and the cross products Σ_t f_i(t)·h_m(t) into Pearson
correlations over the N tokens (zeros included):

    r(f_i, h_m) = (Σ f_i h_m / N - μ_i μ_m) / (σ_i σ_m)

Shape legend: N harvested tokens, n chunk rows, T context, D units of one kind, F features,
M neurons, K top examples, I intervals, P per interval, G = D·I reservoirs, W window, B bins,
E examples.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.analysis.chunks import Chunk
from engine.config import HarvestConfig

__all__ = ["UnitTally", "hash_key", "window_tokens", "top_token_ids", "correlations"]

_NO_KEY = 1 << 62          # "empty slot" sampling key (real keys are < 2**32)
_M32 = 0xFFFFFFFF


def hash_key(pos: torch.Tensor, seed: int) -> torch.Tensor:
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


class UnitTally:
    """Running statistics of D units of one kind (features or neurons) over both passes."""

    def __init__(self, kind: str, D: int, cfg: HarvestConfig, T: int, device: torch.device):
        self.kind, self.D, self.T, self.device = kind, D, T, device
        self.K, self.I, self.P, self.B = cfg.top_k, cfg.n_intervals, cfg.per_interval, cfg.hist_bins
        self.left, self.right, self.seed = cfg.ctx_left, cfg.ctx_right, cfg.seed
        W = self.left + 1 + self.right
        z = dict(device=device)
        self.count_D = torch.zeros(D, dtype=torch.int64, **z)
        self.sum_D = torch.zeros(D, dtype=torch.float64, **z)
        self.neg_sum_D = torch.zeros(D, dtype=torch.float64, **z)   # Σ of a < 0 (GELU / SoLU neurons only)
        self.sumsq_D = torch.zeros(D, dtype=torch.float64, **z)
        self.max_D = torch.zeros(D, dtype=torch.float32, **z)
        self.top_val_DK = torch.full((D, self.K), -float("inf"), **z)
        self.top_pos_DK = torch.full((D, self.K), -1, dtype=torch.int64, **z)
        self.top_win_DKW = torch.zeros((D, self.K, W), dtype=torch.float32, **z)
        self.hist_DB = torch.zeros(D * self.B, dtype=torch.int64, **z)
        self.res_key_GP = torch.full((D * self.I, self.P), _NO_KEY, dtype=torch.int64, **z)
        self.res_pos_GP = torch.full((D * self.I, self.P), -1, dtype=torch.int64, **z)
        self.res_win_GPW = torch.zeros((D * self.I, self.P, W), dtype=torch.float16, **z)
        self.cache: list[Chunk] | None = []

    # -------------------------------------------------------------- pass 1
    def pass1(self, ch: Chunk, pos0: int) -> None:
        thr_D = self.top_val_DK[:, -1]
        if ch.dense is not None:                                        # column reductions, (n, D)
            a_nD = ch.dense
            self.count_D += (a_nD > 0).sum(0)
            self.sum_D += a_nD.sum(0)
            self.neg_sum_D += a_nD.clamp_max(0).sum(0)
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
    def pass2(self, ch: Chunk, pos0: int, gather_windows: bool) -> None:
        """Histograms and interval reservoirs; with gather_windows, also the windows of new entries."""
        key_n = hash_key(torch.arange(pos0, pos0 + ch.n, device=self.device), self.seed)
        res_thr_G = self.res_key_GP[:, -1]
        if ch.dense is not None:
            a_nD, D, B, I = ch.dense, self.D, self.B, self.I
            active = a_nD > 0
            # in (0, 1] where active; 0 where not (GELU / SoLU neurons of imported models go negative)
            frac = (a_nD / self.max_D.clamp_min(1e-30)).clamp_min_(0)
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

    def gather_top_windows(self, ch: Chunk, pos0: int) -> None:
        """Windows of the top examples that lie in this chunk."""
        here = (self.top_pos_DK >= pos0) & (self.top_pos_DK < pos0 + ch.n)
        u, k = torch.nonzero(here, as_tuple=True)
        if u.numel():
            self.top_win_DKW[u, k] = ch.windows(self.top_pos_DK[u, k] - pos0, u, self.T, self.left, self.right)

    def gather_interval_windows(self, ch: Chunk, pos0: int) -> None:
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
            pos_sum = (self.sum_D - self.neg_sum_D).cpu().numpy()                  # mean over a > 0 only
            mean_act = np.where(count > 0, pos_sum / np.maximum(count, 1), 0.0)
        top_val = self.top_val_DK.cpu().numpy()
        top_pos = np.where(top_val > 0, self.top_pos_DK.cpu().numpy(), -1)
        top_tokens, top_mask = window_tokens(tokens_N, top_pos, T, self.left, self.right, eos_id)
        top_acts = np.where(top_mask, self.top_win_DKW.cpu().numpy(), 0.0)

        # intervals: order each reservoir by its example's activation (descending)
        res_pos = self.res_pos_GP.cpu().numpy()
        res_win = self.res_win_GPW.cpu().numpy().astype(np.float32)
        center = np.where(res_pos >= 0, res_win[..., self.left], -np.inf)
        order = np.argsort(-center, axis=1, kind="stable")
        res_pos = np.take_along_axis(res_pos, order, axis=1)
        res_win = np.take_along_axis(res_win, order[..., None], axis=1)
        int_tokens, int_mask = window_tokens(tokens_N, res_pos, T, self.left, self.right, eos_id)
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
            top_token_ids=top_token_ids(top_tokens[:, :, self.left]),
        )


def window_tokens(tokens_N: np.ndarray, pos: np.ndarray, T: int, left: int, right: int,
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


def top_token_ids(center_NK: np.ndarray, n: int = 5) -> np.ndarray:
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


def correlations(cross_FM: torch.Tensor, feat: UnitTally, neur: UnitTally, n_tokens: int, n_corr: int,
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

