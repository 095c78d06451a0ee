"""The text lens: run any text through model + SAE and return everything the lens pane draws.

Shape legend: T tokens analysed (<= n_ctx), M MLP neurons, F SAE features, V vocab,
K strongest units listed per token, P next-token predictions per position (5), nnz non-zero features.

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

Texts longer than the model's context are truncated to their first n_ctx tokens; the result says so.
Only plain numpy data and Python strings leave this module (a ``LensResult`` can cross threads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["LensEngine", "LensResult", "CLAMP_MODES"]

CLAMP_MODES = ("scale", "set")


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
    token_ids: np.ndarray           # int64 [T]
    tokens: list[str]               # [T] readable token strings
    offsets: np.ndarray             # int32 [T, 2] (start, end) character offsets into ``text``
    n_tokens_total: int             # tokens in the whole text (> T when truncated)
    truncated: bool
    n_ctx: int
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
    request_id: int = 0             # opaque tag for "latest request wins" in the GUI

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


class LensEngine:
    """Analyse texts with a loaded model, SAE and tokenizer (CPU; fast enough per keystroke).

    ``model``: engine.model.OneLayerTransformer; ``sae``: anything with ``encode(x)->f`` and
    ``decode(f)->x_hat`` on raw MLP activations; ``tokenizer``: engine.tokenizer.Tokenizer.
    Not thread-safe by itself: use it from one worker thread at a time.
    """

    def __init__(self, model, sae, tokenizer, top_k: int = 8, n_predictions: int = 5):
        self.model = model.eval()
        self.sae = sae.eval() if hasattr(sae, "eval") else sae
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.n_predictions = n_predictions
        self.n_ctx = int(model.cfg.n_ctx)
        self.device = next(model.parameters()).device
        vocab = int(model.cfg.vocab_size)
        # Token strings are looked up thousands of times per analysis: cache them once.
        self._vocab_strs = [tokenizer.token_str(i) for i in range(vocab)]

    # ------------------------------------------------------------------ public
    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = self.tokenizer.encode_with_offsets(text)
        ids_T = np.asarray(ids, dtype=np.int64).reshape(-1)
        offsets_T2 = np.asarray(offsets, dtype=np.int32).reshape(-1, 2)
        return ids_T, offsets_T2

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
        request_id: int = 0,
    ) -> LensResult:
        """Tokenize ``text`` (truncated to n_ctx tokens) and run model + SAE; see the module docstring."""
        if unit_kind not in ("feature", "neuron"):
            raise ValueError(f"unit_kind must be 'feature' or 'neuron', not {unit_kind!r}")
        if clamp_mode not in CLAMP_MODES:
            raise ValueError(f"clamp_mode must be one of {CLAMP_MODES}, not {clamp_mode!r}")
        clamp = {int(k): float(v) for k, v in (clamp or {}).items()}

        all_ids_T, all_offsets_T2 = self.tokenize(text)
        n_total = int(all_ids_T.shape[0])
        ids_T, offsets_T2 = all_ids_T[: self.n_ctx], all_offsets_T2[: self.n_ctx]
        T = int(ids_T.shape[0])
        if T == 0:
            return self._empty(text, unit_kind, clamp, clamp_mode, error_term, request_id)

        idx = torch.as_tensor(ids_T, device=self.device).unsqueeze(0)       # (1, T)
        resid_1TC, mlp_in_1TC = self.model._pre_mlp(idx)                     # (1, T, C) x2
        h_TM = self.model.mlp.acts(mlp_in_1TC)[0]                            # (T, M)
        f_TF = self.sae.encode(h_TM)                                         # (T, F)
        h_hat_TM = self.sae.decode(f_TF)                                     # (T, M)
        err_TM = (h_TM - h_hat_TM) if error_term else torch.zeros_like(h_TM)

        base = self._predict(resid_1TC, h_hat_TM + err_TM, ids_T)
        clamped = None
        if clamp:
            f2_TF = f_TF.clone()
            for i, c in clamp.items():
                if not 0 <= i < f_TF.shape[1]:
                    raise ValueError(f"clamped feature {i} does not exist (the SAE has {f_TF.shape[1]})")
                f2_TF[:, i] = f_TF[:, i] * c if clamp_mode == "scale" else c
            clamped = self._predict(resid_1TC, self.sae.decode(f2_TF) + err_TM, ids_T)

        # Sparse features (CSR by token) and dense neurons: the pane can shade by any unit later.
        f_TF = f_TF.float().cpu()
        nz_rows, nz_cols = torch.nonzero(f_TF, as_tuple=True)
        feat_ids = nz_cols.numpy().astype(np.int32)
        feat_values = f_TF[nz_rows, nz_cols].numpy().astype(np.float32)
        feat_indptr = np.zeros(T + 1, dtype=np.int64)
        np.cumsum(np.bincount(nz_rows.numpy(), minlength=T), out=feat_indptr[1:])
        neuron_acts = h_TM.float().cpu().numpy().astype(np.float32, copy=True)

        acts_TU = f_TF if unit_kind == "feature" else h_TM.float().cpu()
        k = min(self.top_k, acts_TU.shape[1])
        top_vals, top_ids = torch.topk(acts_TU, k, dim=1)
        top_ids_np = top_ids.numpy().astype(np.int32)
        top_vals_np = top_vals.numpy().astype(np.float32)
        top_ids_np[top_vals_np <= 0] = -1
        top_vals_np[top_vals_np <= 0] = 0.0

        max_U = acts_TU.max(dim=0).values.numpy()
        count_U = (acts_TU > 0).sum(dim=0).numpy()
        active = np.flatnonzero(max_U > 0)
        order = active[np.argsort(-max_U[active], kind="stable")]

        return LensResult(
            text=text, token_ids=ids_T, tokens=[self.token_str(int(i)) for i in ids_T],
            offsets=offsets_T2, n_tokens_total=n_total, truncated=n_total > T, n_ctx=self.n_ctx,
            unit_kind=unit_kind, top_ids=top_ids_np, top_values=top_vals_np,
            active_ids=order.astype(np.int32), active_max=max_U[order].astype(np.float32),
            active_count=count_U[order].astype(np.int32),
            feat_indptr=feat_indptr, feat_ids=feat_ids, feat_values=feat_values,
            neuron_acts=neuron_acts, predictions=base, clamped=clamped, clamp=clamp,
            clamp_mode=clamp_mode, error_term=error_term, request_id=request_id,
        )

    @torch.inference_mode()
    def bare_forward(self, text: str) -> None:
        """Tokenize + model + SAE encode/decode + spliced logits, nothing else (the benchmark's floor)."""
        ids_T, _ = self.tokenize(text)
        idx = torch.as_tensor(ids_T[: self.n_ctx], device=self.device).unsqueeze(0)
        h_1TM = self.model.mlp_acts(idx)
        self.model(idx, mlp_acts=self.sae.decode(self.sae.encode(h_1TM)))

    # ------------------------------------------------------------------ helpers
    def _predict(self, resid_1TC: torch.Tensor, acts_TM: torch.Tensor, ids_T: np.ndarray) -> Predictions:
        logits_TV = self.model.logits_from_acts(resid_1TC, acts_TM.unsqueeze(0).to(resid_1TC.dtype))[0]
        logp_TV = torch.log_softmax(logits_TV.float(), dim=-1)
        top_logp, top_ids = torch.topk(logp_TV, self.n_predictions, dim=-1)   # (T, P)
        T = logp_TV.shape[0]
        next_lp = np.full(T, np.nan, dtype=np.float32)
        if T > 1:
            nxt = torch.as_tensor(ids_T[1:], device=logp_TV.device)
            next_lp[:-1] = logp_TV[:-1].gather(1, nxt[:, None])[:, 0].cpu().numpy()
        ids = top_ids.cpu().numpy().astype(np.int32)
        strs = [[self._vocab_strs[j] for j in row] for row in ids.tolist()]
        return Predictions(ids=ids, probs=top_logp.exp().cpu().numpy().astype(np.float32),
                           strs=strs, next_logprob=next_lp)

    def _empty(self, text, unit_kind, clamp, clamp_mode, error_term, request_id) -> LensResult:
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
            error_term=error_term, request_id=request_id,
        )
