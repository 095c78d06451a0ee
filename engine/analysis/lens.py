"""The text lens: run any text through model + SAE and return everything the lens pane draws.

Shape legend: T tokens analysed (<= n_ctx), R rows recomputed (a suffix of T), M MLP neurons,
F SAE features, V vocab, K latents kept per token (TopK), P next-token predictions per position (5),
nnz non-zero features. ``top_k`` (the strongest units listed per token) is a separate setting.

For a text the engine computes, at every position t,

    h_t      = MLP activations of the model ("the neurons")                       (T, M)
    f_t      = SAE.encode(h_t)                                                     (T, F)
    ĥ_t      = SAE.decode(f_t)                 the reconstruction                  (T, M)

and the model's next-token distribution with a reconstruction *spliced* into the MLP
(``model.forward(idx, mlp_acts=...)``), with and without a clamp on chosen features:

    f'_t,i   = c_i · f_t,i     (clamp_mode="scale": 0 ablates, 2 doubles)
    f'_t,i   = c_i             (clamp_mode="set":   the same value at every position)
    base     = ĥ_t  + e_t                           clamped = SAE.decode(f'_t) + e_t

The error term ``e_t = h_t − ĥ_t`` is added when ``error_term=True`` (the default). Because the
SAE decoder is affine, the difference between ``clamped`` and ``base`` is exactly
(f'_t,i − f_t,i) · W_dec[i] either way, so the comparison isolates the clamp; the error term only
decides the baseline. With it, the baseline is the model's own prediction (h_t unchanged), which is
what a user reading "the model predicts ..." expects, and the SAE's reconstruction error does not
pollute the predictions shown. ``error_term=False`` gives the pure spliced-SAE model (baseline
= ĥ_t), as in the paper's "loss with the SAE" measure; both are offered.

Two forms of f. A TopK SAE (``engine.sae.SparseAutoencoder`` with recipe "topk") is kept sparse end
to end: ``encode_sparse`` gives the k kept latents of every token as indices and values (T, K), the
reconstruction is ĥ_t = Σ_k vals[t,k] · W_dec[idx[t,k]] + b_dec (``decode_sparse``), and a clamp edits
those (T, K) arrays (a "set" clamp adds one column for the tokens where the feature was not kept).
No (T, F) matrix is formed, which matters at 131k features. Any other SAE keeps the dense (T, F)
form, decoded through its non-zero entries. Both forms give the same numbers.

Texts of any length. The model reads at most n_ctx tokens at once, so a longer text is read as the
harvest reads its corpus, in context windows, here overlapping by half so every token has at least
n_ctx/2 tokens of left context: window k covers tokens [k·S, k·S + n_ctx) with S = n_ctx/2, and token
t takes its activations from the window in which it sits in the second half (the first window gives
its first n_ctx tokens). Which window a token belongs to depends on t alone, and inside a window the
model is causal, so the prefix reuse below stays exact. At most ``max_tokens`` tokens (default
``MAX_TOKENS``) are analysed; a longer text is truncated there and the result says so
(``truncated``, ``n_tokens_total``; a text far longer than that is not even tokenized whole:
``tokenize_bounded``). ``analyze(..., should_stop=f)`` asks ``f()`` between window
batches and raises ``engine.events.Cancelled`` when it says so (a newer request is waiting).
Only plain numpy data and Python strings leave this module (a ``LensResult`` can cross threads).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from engine.events import Cancelled
from engine.sae import SparseAutoencoder

__all__ = ["LensEngine", "LensResult", "CLAMP_MODES", "MAX_TOKENS", "window_plan"]

CLAMP_MODES = ("scale", "set")
MAX_TOKENS = 4096                  # tokens the lens analyses at most (a megabyte paste is truncated here)
WINDOW_BATCH = 16                  # context windows per model call


def window_plan(T: int, n_ctx: int) -> list[tuple[int, int, int]]:
    """(window start, first token taken, end) of each window reading T tokens (module docstring)."""
    if T <= n_ctx:
        return [(0, 0, T)]
    S = max(1, n_ctx // 2)
    plan, k = [(0, 0, n_ctx)], 1
    while plan[-1][2] < T:
        start = k * S
        plan.append((start, plan[-1][2], min(start + n_ctx, T)))
        k += 1
    return plan


@dataclass(frozen=True)
class Predictions:
    """Top-P next-token predictions at every position, and the log-prob of the actual next token."""

    ids: np.ndarray                 # int32 [T, P]
    probs: np.ndarray               # float32 [T, P]
    strs: list[list[str]]           # [T][P] readable token strings
    next_logprob: np.ndarray        # float32 [T]: log p(token t+1 | ..t); NaN at the last position


@dataclass(frozen=True)
class LensResult:
    text: str
    token_ids: np.ndarray           # int64 [T] (T <= max_tokens; read in context windows when T > n_ctx)
    tokens: list[str]               # [T] readable token strings
    offsets: np.ndarray             # int32 [T, 2] (start, end) character offsets into ``text``
    n_tokens_total: int             # tokens in the whole text (> T when truncated; -1: not counted,
                                    #   the text is far longer than max_tokens: see tokenize_bounded)
    truncated: bool                 # the text has more than max_tokens tokens
    n_ctx: int                      # the model's context: texts longer than this are read in windows
    unit_kind: str                  # which kind ``top_*`` and ``active_*`` rank
    top_ids: np.ndarray             # int32 [T, K] strongest units at each token (-1 pad)
    top_values: np.ndarray          # float32 [T, K]
    active_ids: np.ndarray          # int32 [U] units active anywhere in the text, by max activation
    active_max: np.ndarray          # float32 [U] their largest activation in the text
    active_count: np.ndarray        # int32 [U] how many tokens they fire on
    feat_indptr: np.ndarray         # int64 [T+1] CSR by token of the non-zero features
    feat_ids: np.ndarray            # int32 [nnz]
    feat_values: np.ndarray         # float32 [nnz]
    neuron_acts: np.ndarray         # float32 [T, M] dense neuron activations
    predictions: Predictions        # baseline (see module docstring)
    clamped: Predictions | None     # with the clamp applied; None without a clamp
    clamp: dict[int, float] = field(default_factory=dict)
    clamp_mode: str = "scale"
    error_term: bool = True

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    def acts_of(self, kind: str, index: int) -> np.ndarray:
        """Activation of one unit at every analysed token, float32 [T]."""
        if kind == "neuron":
            return self.neuron_acts[:, int(index)].copy()
        out = np.zeros(self.n_tokens, dtype=np.float32)
        rows = np.repeat(np.arange(self.n_tokens), np.diff(self.feat_indptr))
        hit = self.feat_ids == int(index)
        out[rows[hit]] = self.feat_values[hit]
        return out

    def features_at(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """All non-zero features at token t, strongest first: (ids int32, values float32)."""
        lo, hi = int(self.feat_indptr[t]), int(self.feat_indptr[t + 1])
        ids, vals = self.feat_ids[lo:hi], self.feat_values[lo:hi]
        order = np.argsort(-vals, kind="stable")
        return ids[order], vals[order]


@dataclass
class _Cache:
    """What the previous ``analyze`` computed, for reuse over the unchanged prefix of the next text."""

    ids: np.ndarray                 # int64 [T]
    feats: "_DenseFeatures | _TopKFeatures"
    base: Predictions
    base_key: tuple
    clamped: Predictions | None
    clamp_key: tuple | None
    result: "LensResult"


@dataclass(frozen=True)
class _DenseFeatures:
    """f as a dense (R, F) matrix: any SAE with ``encode``/``decode``."""

    f_RF: np.ndarray                # float32 (R, F)

    @property
    def n_features(self) -> int:
        return int(self.f_RF.shape[1])

    def rows(self, start: int, stop: int | None = None) -> "_DenseFeatures":
        return _DenseFeatures(self.f_RF[start:stop])

    def then(self, later: "_DenseFeatures") -> "_DenseFeatures":
        return _DenseFeatures(np.concatenate([self.f_RF, later.f_RF]))

    def clamped(self, clamp: dict[int, float], mode: str) -> "_DenseFeatures":
        f2_RF = self.f_RF.copy()
        for i, c in clamp.items():
            f2_RF[:, i] = f2_RF[:, i] * c if mode == "scale" else c
        return _DenseFeatures(f2_RF)

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row of each non-zero, its feature id, its value), row-major (CSR order)."""
        nz_rows, nz_cols = np.nonzero(self.f_RF)
        return nz_rows, nz_cols.astype(np.int32), self.f_RF[nz_rows, nz_cols].astype(np.float32)


@dataclass(frozen=True)
class _TopKFeatures:
    """f as the k kept latents of every row: indices and values (R, K); the rest of f is 0."""

    idx_RK: np.ndarray              # int64 (R, K) latent ids, ascending within a row
    vals_RK: np.ndarray             # float32 (R, K) their activations (>= 0; ReLU may give 0)
    F: int

    @property
    def n_features(self) -> int:
        return self.F

    def rows(self, start: int, stop: int | None = None) -> "_TopKFeatures":
        return _TopKFeatures(self.idx_RK[start:stop], self.vals_RK[start:stop], self.F)

    def then(self, later: "_TopKFeatures") -> "_TopKFeatures":
        return _TopKFeatures(np.concatenate([self.idx_RK, later.idx_RK]),
                             np.concatenate([self.vals_RK, later.vals_RK]), self.F)

    def clamped(self, clamp: dict[int, float], mode: str) -> "_TopKFeatures":
        idx_RK, vals_RK = self.idx_RK, self.vals_RK.copy()
        for i, c in clamp.items():
            hit_RK = idx_RK == i                                        # at most one per row
            if mode == "scale":
                vals_RK[hit_RK] *= c                                    # not kept: 0 · c = 0
                continue
            vals_RK[hit_RK] = c
            # rows that did not keep latent i get it as an extra column (value 0 where they did)
            missing_R = ~hit_RK.any(axis=1)
            idx_RK = np.concatenate([idx_RK, np.full((len(idx_RK), 1), i, idx_RK.dtype)], axis=1)
            vals_RK = np.concatenate([vals_RK, np.where(missing_R, c, 0.0).astype(vals_RK.dtype)[:, None]], axis=1)
        return _TopKFeatures(idx_RK, vals_RK, self.F)

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nz_rows, nz_k = np.nonzero(self.vals_RK > 0)                    # ids ascend within a row
        return nz_rows, self.idx_RK[nz_rows, nz_k].astype(np.int32), self.vals_RK[nz_rows, nz_k]


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def _concat(old: Predictions, new: Predictions, q: int) -> Predictions:
    """Rows [0, q) of ``old`` followed by ``new`` (which starts at row q)."""
    return Predictions(ids=np.concatenate([old.ids[:q], new.ids]),
                       probs=np.concatenate([old.probs[:q], new.probs]),
                       strs=old.strs[:q] + new.strs,
                       next_logprob=np.concatenate([old.next_logprob[:q], new.next_logprob]))


class LensEngine:
    """Analyse texts with a loaded model, SAE and tokenizer (CPU; fast enough per keystroke).

    ``model``: engine.model.OneLayerTransformer; ``sae``: anything with ``encode(x)->f`` and
    ``decode(f)->x_hat`` on raw MLP activations; ``tokenizer``: engine.data.tokenizer.Tokenizer.
    Not thread-safe by itself: use it from one worker thread at a time.

    ``incremental=True`` (default) reuses the previous call's work over the unchanged token prefix
    (exact: the model is causal); ``False`` recomputes everything each call. ``sparse`` chooses the
    form of f (module docstring): None (default) takes the (T, K) form for a TopK
    ``SparseAutoencoder`` and the dense form otherwise; False forces the dense form (benchmarks).
    """

    def __init__(self, model, sae, tokenizer, top_k: int = 8, n_predictions: int = 5,
                 incremental: bool = True, sparse: bool | None = None, max_tokens: int = MAX_TOKENS):
        self.model = model.eval()
        self.max_tokens = int(max_tokens)
        self.incremental = incremental
        topk = isinstance(sae, SparseAutoencoder) and sae.k is not None
        if sparse and not topk:
            raise ValueError("the sparse (T, K) form needs a TopK SparseAutoencoder")
        self.sparse = topk if sparse is None else sparse
        self._cache: _Cache | None = None
        self.sae = sae.eval() if hasattr(sae, "eval") else sae
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.n_predictions = n_predictions
        self.n_ctx = int(model.cfg.n_ctx)
        self.device = next(model.parameters()).device
        vocab = int(model.cfg.vocab_size)
        # The decoder as numpy, for sparse decoding (a view of the parameters on CPU, not a copy).
        W_dec, b_dec = getattr(sae, "W_dec", None), getattr(sae, "b_dec", None)
        if W_dec is not None and b_dec is not None and W_dec.device.type == "cpu" and W_dec.dim() == 2:
            self._W_dec_FM = W_dec.detach().float().numpy()
            self._b_dec_M = b_dec.detach().float().numpy()
        else:
            self._W_dec_FM = self._b_dec_M = None
        # Token strings are looked up thousands of times per analysis: cache them once.
        self._vocab_strs = tokenizer.readable_strings()[:vocab]   # bytes as ⟨0xCD⟩

    # ------------------------------------------------------------------ public
    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = self.tokenizer.encode_with_offsets(text)
        ids_T = np.asarray(ids, dtype=np.int64).reshape(-1)
        offsets_T2 = np.asarray(offsets, dtype=np.int32).reshape(-1, 2)
        return ids_T, offsets_T2

    def tokenize_bounded(self, text: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(ids [T], offsets [T, 2], tokens in the whole text or -1) with T <= max_tokens.

        A megabyte is never tokenized whole (1 MB took 1.4 s holding the GIL, so the GUI froze): a
        prefix of 8 characters per token is tokenized, growing 4x until it gives more than
        ``max_tokens`` + 16 tokens. The tokens kept end well before the prefix's cut, so they equal
        the whole text's; the total is then not counted (-1)."""
        limit = self.max_tokens
        n_chars = min(len(text), 8 * limit)
        while True:
            ids_T, offsets_T2 = self.tokenize(text[:n_chars])
            if n_chars >= len(text):
                return ids_T[:limit], offsets_T2[:limit], int(ids_T.shape[0])
            if ids_T.shape[0] > limit + 16:
                return ids_T[:limit], offsets_T2[:limit], -1
            n_chars = min(len(text), 4 * n_chars)

    def token_str(self, token_id: int) -> str:
        return self._vocab_strs[token_id] if 0 <= token_id < len(self._vocab_strs) else ""

    @torch.inference_mode()
    def analyze(
        self,
        text: str,
        unit_kind: str = "feature",
        clamp: dict[int, float] | None = None,
        clamp_mode: str = "scale",
        error_term: bool = True,
        should_stop=None,
    ) -> LensResult:
        """Tokenize ``text`` (at most ``max_tokens`` tokens) and run model + SAE; see the module docstring."""
        if unit_kind not in ("feature", "neuron"):
            raise ValueError(f"unit_kind must be 'feature' or 'neuron', not {unit_kind!r}")
        if clamp_mode not in CLAMP_MODES:
            raise ValueError(f"clamp_mode must be one of {CLAMP_MODES}, not {clamp_mode!r}")
        clamp = {int(k): float(v) for k, v in (clamp or {}).items()}

        ids_T, offsets_T2, n_total = self.tokenize_bounded(text)
        T = int(ids_T.shape[0])
        if T == 0:
            return self._empty(text, unit_kind, clamp, clamp_mode, error_term)

        # Incremental: the model is causal, so positions before the first changed token keep their
        # activations and predictions. Reuse them from the previous call (typing at the end of a
        # text re-encodes only the last token or two; typing past the context re-encodes nothing).
        cache = self._cache if self.incremental else None
        p = _common_prefix(cache.ids, ids_T) if cache is not None else 0
        base_key = (error_term,)
        clamp_key = (tuple(sorted(clamp.items())), clamp_mode, error_term) if clamp else None
        if (cache is not None and p == T == len(cache.ids) and cache.base_key == base_key
                and cache.clamp_key == clamp_key and cache.result.unit_kind == unit_kind):
            # the analysed tokens did not change (an edit past the context): only the text did
            return replace(cache.result, text=text, offsets=offsets_T2, n_tokens_total=n_total,
                           truncated=n_total != T)

        resid_1TC, h_1TM = self._resid_and_acts(ids_T, should_stop)         # (1, T, C), (1, T, M)
        h_TM = h_1TM[0]                                                      # (T, M)
        if p < T:
            new = self._encode(h_TM[p:])                                     # rows p..T-1
            feats = new if p == 0 else cache.feats.rows(0, p).then(new)
        else:
            feats = cache.feats.rows(0, T)
        F = feats.n_features

        # predictions: rows before q are reusable (row p-1's "actual next token" may have changed),
        # if they were computed with the same settings
        q = max(0, p - 1)
        q_base = q if cache is not None and cache.base_key == base_key else 0
        q_clamp = q if cache is not None and clamp and cache.clamp_key == clamp_key else 0
        q0 = min(q_base, q_clamp) if clamp else q_base
        h_hat_RM = self._decode(feats.rows(q0))                              # (T-q0, M)
        err_RM = (h_TM[q0:] - h_hat_RM) if error_term else torch.zeros_like(h_hat_RM)
        d = q_base - q0
        base = self._predict(resid_1TC[:, q_base:], h_hat_RM[d:] + err_RM[d:], ids_T, q_base)
        if q_base > 0:
            base = _concat(cache.base, base, q_base)
        clamped = None
        if clamp:
            for i in clamp:
                if not 0 <= i < F:
                    raise ValueError(f"clamped feature {i} does not exist (the SAE has {F})")
            f2 = feats.rows(q_clamp).clamped(clamp, clamp_mode)
            d = q_clamp - q0
            clamped = self._predict(resid_1TC[:, q_clamp:], self._decode(f2) + err_RM[d:], ids_T, q_clamp)
            if q_clamp > 0:
                clamped = _concat(cache.clamped, clamped, q_clamp)

        # Sparse features (CSR by token) and dense neurons: the pane can shade by any unit later.
        # Small post-processing runs in numpy: torch's thread pool only adds latency at this size.
        nz_rows, feat_ids, feat_values = feats.csr()                         # (nnz,) each, CSR order
        feat_indptr = np.zeros(T + 1, dtype=np.int64)
        np.cumsum(np.bincount(nz_rows, minlength=T), out=feat_indptr[1:])
        neuron_acts = h_TM.float().cpu().numpy().astype(np.float32, copy=True)

        K = self.top_k
        top_ids_np = np.full((T, K), -1, np.int32)
        top_vals_np = np.zeros((T, K), np.float32)
        if unit_kind == "feature":
            order = np.lexsort((-feat_values, nz_rows))                      # by token, strongest first
            rank = np.arange(order.size) - feat_indptr[nz_rows[order]]
            keep = order[rank < K]
            top_ids_np[nz_rows[keep], rank[rank < K]] = feat_ids[keep]
            top_vals_np[nz_rows[keep], rank[rank < K]] = feat_values[keep]
            max_U = np.zeros(F, np.float32)
            np.maximum.at(max_U, feat_ids, feat_values)
            count_U = np.bincount(feat_ids, minlength=F)
        else:
            k = min(K, neuron_acts.shape[1])
            part = np.argpartition(-neuron_acts, k - 1, axis=1)[:, :k]
            vals = np.take_along_axis(neuron_acts, part, axis=1)
            o = np.argsort(-vals, axis=1, kind="stable")
            top_ids_np[:, :k] = np.take_along_axis(part, o, axis=1)
            top_vals_np[:, :k] = np.take_along_axis(vals, o, axis=1)
            top_ids_np[top_vals_np <= 0] = -1
            top_vals_np[top_vals_np <= 0] = 0.0
            max_U = neuron_acts.max(axis=0)
            count_U = (neuron_acts > 0).sum(axis=0)
        active = np.flatnonzero(max_U > 0)
        ranked = active[np.argsort(-max_U[active], kind="stable")]

        result = LensResult(
            text=text, token_ids=ids_T, tokens=[self.token_str(int(i)) for i in ids_T],
            offsets=offsets_T2, n_tokens_total=n_total, truncated=n_total != T, n_ctx=self.n_ctx,
            unit_kind=unit_kind, top_ids=top_ids_np, top_values=top_vals_np,
            active_ids=ranked.astype(np.int32), active_max=max_U[ranked].astype(np.float32),
            active_count=count_U[ranked].astype(np.int32),
            feat_indptr=feat_indptr, feat_ids=feat_ids, feat_values=feat_values,
            neuron_acts=neuron_acts, predictions=base, clamped=clamped, clamp=clamp,
            clamp_mode=clamp_mode, error_term=error_term,
        )
        self._cache = _Cache(ids=ids_T.copy(), feats=feats, base=base, base_key=base_key,
                             clamped=clamped, clamp_key=clamp_key, result=result)
        return result

    @torch.inference_mode()
    def bare_forward(self, text: str) -> None:
        """Tokenize + model (in the same context windows) + SAE encode/decode + spliced logits, nothing
        else (the benchmark's floor)."""
        ids_T, _, _ = self.tokenize_bounded(text)
        resid_1TC, h_1TM = self._resid_and_acts(ids_T)
        h_hat_1TM = self.sae.reconstruct(h_1TM) if self.sparse else self.sae.decode(self.sae.encode(h_1TM))
        self.model.logits_from_acts(resid_1TC, h_hat_1TM.to(resid_1TC.dtype))

    # ------------------------------------------------------------------ helpers
    def _resid_and_acts(self, ids_T: np.ndarray, should_stop=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's residual (1, T, C) and MLP activations (1, T, M), read in context windows."""
        T, n_ctx = int(ids_T.shape[0]), self.n_ctx
        ids = torch.as_tensor(ids_T, device=self.device)
        if T <= n_ctx:
            return self.model.resid_and_acts(ids.unsqueeze(0))
        plan = window_plan(T, n_ctx)
        full = [w for w in plan if w[0] + n_ctx <= T]            # equal-length windows, batched
        parts_r, parts_h = [], []
        for a in range(0, len(full), WINDOW_BATCH):
            if should_stop is not None and should_stop():
                raise Cancelled("a newer lens request replaced this one")
            group = full[a:a + WINDOW_BATCH]
            idx_BT = torch.stack([ids[s:s + n_ctx] for s, _, _ in group])
            r_BTC, h_BTM = self.model.resid_and_acts(idx_BT)
            for b, (s, take, end) in enumerate(group):
                parts_r.append(r_BTC[b, take - s:end - s])
                parts_h.append(h_BTM[b, take - s:end - s])
        for s, take, end in plan[len(full):]:                    # the last, shorter window
            r_1TC, h_1TM = self.model.resid_and_acts(ids[s:end].unsqueeze(0))
            parts_r.append(r_1TC[0, take - s:])
            parts_h.append(h_1TM[0, take - s:])
        return torch.cat(parts_r).unsqueeze(0), torch.cat(parts_h).unsqueeze(0)

    def _encode(self, h_RM: torch.Tensor) -> "_DenseFeatures | _TopKFeatures":
        if not self.sparse:
            return _DenseFeatures(self.sae.encode(h_RM).float().cpu().numpy())     # (R, F)
        vals_RK, idx_RK = self.sae.encode_sparse(h_RM.to(self.sae.W_enc.dtype))     # (R, K) each
        idx_RK, order_RK = idx_RK.sort(dim=1)                                      # CSR order by id
        vals_RK = vals_RK.gather(1, order_RK)
        return _TopKFeatures(idx_RK.cpu().numpy(), vals_RK.float().cpu().numpy(), int(self.sae.cfg.d_sae))

    def _decode(self, feats: "_DenseFeatures | _TopKFeatures") -> torch.Tensor:
        """x̂ = f @ W_dec + b_dec, summing only the kept / non-zero features (L0 << F): (R, M)."""
        if isinstance(feats, _TopKFeatures):
            idx_RK = torch.from_numpy(feats.idx_RK).to(self.device)
            vals_RK = torch.from_numpy(feats.vals_RK).to(self.device, self.sae.W_dec.dtype)
            return self.sae.decode_sparse(vals_RK, idx_RK)                          # (R, M)
        f_RF = feats.f_RF
        if self._W_dec_FM is None:
            return self.sae.decode(torch.from_numpy(np.ascontiguousarray(f_RF)).to(self.device))
        from scipy.sparse import csr_matrix

        x_hat_RM = np.asarray(csr_matrix(f_RF) @ self._W_dec_FM) + self._b_dec_M
        return torch.from_numpy(x_hat_RM.astype(np.float32)).to(self.device)

    def _predict(self, resid_1RC: torch.Tensor, acts_RM: torch.Tensor, ids_T: np.ndarray, start: int = 0) -> Predictions:
        """Predictions for positions start..T-1 (resid and acts hold those rows only)."""
        logits_RV = self.model.logits_from_acts(resid_1RC, acts_RM.unsqueeze(0).to(resid_1RC.dtype))[0]
        logp_TV = torch.log_softmax(logits_RV.float(), dim=-1)
        top_logp, top_ids = torch.topk(logp_TV, self.n_predictions, dim=-1)   # (R, P)
        T = logp_TV.shape[0]
        next_lp = np.full(T, np.nan, dtype=np.float32)
        if start + T < len(ids_T) + 1 and T > 0:
            nxt_ids = ids_T[start + 1:start + T]                             # actual next tokens
            n = len(nxt_ids)
            if n:
                nxt = torch.as_tensor(nxt_ids, device=logp_TV.device)
                next_lp[:n] = logp_TV[:n].gather(1, nxt[:, None])[:, 0].cpu().numpy()
        ids = top_ids.cpu().numpy().astype(np.int32)
        strs = [[self._vocab_strs[j] for j in row] for row in ids.tolist()]
        return Predictions(ids=ids, probs=top_logp.exp().cpu().numpy().astype(np.float32),
                           strs=strs, next_logprob=next_lp)

    def _empty(self, text, unit_kind, clamp, clamp_mode, error_term) -> LensResult:
        P, K = self.n_predictions, self.top_k
        M = int(self.model.cfg.d_mlp)
        empty_pred = Predictions(np.zeros((0, P), np.int32), np.zeros((0, P), np.float32), [],
                                 np.zeros(0, np.float32))
        return LensResult(
            text=text, token_ids=np.zeros(0, np.int64), tokens=[], offsets=np.zeros((0, 2), np.int32),
            n_tokens_total=0, truncated=False, n_ctx=self.n_ctx, unit_kind=unit_kind,
            top_ids=np.zeros((0, K), np.int32), top_values=np.zeros((0, K), np.float32),
            active_ids=np.zeros(0, np.int32), active_max=np.zeros(0, np.float32),
            active_count=np.zeros(0, np.int32), feat_indptr=np.zeros(1, np.int64),
            feat_ids=np.zeros(0, np.int32), feat_values=np.zeros(0, np.float32),
            neuron_acts=np.zeros((0, M), np.float32), predictions=empty_pred,
            clamped=empty_pred if clamp else None, clamp=clamp, clamp_mode=clamp_mode,
            error_term=error_term,
        )
