"""Ablation effects on the shown examples: the paper's blue/red underlines.

For one unit u (a feature of the bundle's SAE, or an MLP neuron) and a batch of token windows,
the model is run twice from the same residual stream — once as it is ("clean") and once with u's
contribution removed from the MLP output — and every token's log-likelihood is compared:

    feature i:  h'_t = h_t − f_i(h_t) · W_dec[i]           (its decoded direction in neuron space;
                                                            W_out then maps it to the residual)
    neuron j:   h'_t = h_t with h_t,j = 0
    Δ[b, t]     = log p'(x_t | x_<t) − log p(x_t | x_<t)    (ablated − clean), t ≥ 1

so Δ sits on the token that was *predicted*: Δ < 0 (blue in the app) means the unit helped predict
that token, Δ > 0 (red) that it worked against it. Δ[b, 0] has no prediction inside the window and
is NaN, as is every padding position. The SAE's reconstruction error stays in h' (only u's own
term goes), so with u silent h' = h and Δ = 0 exactly.

The model here is one-layer: the MLP writes straight to the unembedding, so the edit at position
t−1 is the only one that reaches the prediction of x_t, and the attention part of the forward pass
is shared between the two runs. One call is therefore one model forward over the batch plus one
extra unembedding of the positions where the unit is active (elsewhere Δ = 0 exactly); the clean part (residual, activations, clean log-likelihoods) is cached per
window, so a second unit on the same examples (the compare pane, a neuron after a feature) costs
only the unembedding.

Windows are stored examples: ``int`` arrays [B, W] padded with −1 (a window at the start or end of
a document). Each window's real tokens are read as one context starting at position 0, which is
not the position the harvest saw them at, and without the harvest context's earlier tokens: the
recomputed activations can differ from the stored ones a little; Δ is the effect in the window
as shown. Works for any model ``engine.model.OneLayerTransformer`` loads, including TransformerLens
imports (GELU / SoLU), and any SAE with SAELens orientation (``engine.sae.SparseAutoencoder``).
Only numpy leaves this module.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from engine.events import Cancelled

__all__ = ["AblationEngine", "feature_activation", "UNIT_KINDS"]

UNIT_KINDS = ("feature", "neuron")
BATCH = 64                       # windows per model call
CACHE_WINDOWS = 1024             # clean passes kept (about 20 demo dashboards; ~40 KB each at the demo's size)


def feature_activation(sae, h_NM: torch.Tensor, i: int) -> torch.Tensor:
    """f_i(h) for rows h (N, M) -> (N,), the same number ``sae.encode(h)[:, i]`` gives; for relu,
    jumprelu and gated SAEs from feature i's encoder column alone (no (N, F) matrix at 131k features)."""
    arch = getattr(sae, "architecture", None)
    x_NM = h_NM.to(sae.W_enc.dtype)
    if arch in ("relu", "jumprelu", "gated"):
        z_N = (x_NM - sae.b_dec) @ sae.W_enc[:, i]
        if arch == "gated":
            return torch.relu(z_N * sae.r_mag[i].exp() + sae.b_enc[i]) * (z_N + sae.b_gate[i] > 0)
        pre_N = z_N + sae.b_enc[i]
        return pre_N * (pre_N > sae.threshold[i]) if arch == "jumprelu" else torch.relu(pre_N)
    if getattr(sae, "k", None):
        vals_NK, idx_NK = sae.encode_sparse(x_NM)
        return (vals_NK * (idx_NK == i)).sum(dim=1)
    return sae.encode(x_NM)[:, i]


class _Clean:
    """One window's clean pass: residual (T, C), activations (T, M), log p of each next token (T-1,),
    and for a TopK SAE the kept latents of the predicting rows (T-1, K) (the full encode a TopK
    feature's activation needs, done once per window instead of once per unit)."""

    __slots__ = ("resid", "acts", "logp", "topk")

    def __init__(self, resid, acts, logp, topk=None):
        self.resid, self.acts, self.logp, self.topk = resid, acts, logp, topk


class AblationEngine:
    """Δ log-likelihood of every token of stored examples when one unit is ablated (module docstring).

    ``model``: engine.model.OneLayerTransformer; ``sae``: the dictionary's SAE (None: neurons only).
    Not thread-safe: use one engine from one worker thread at a time.
    """

    def __init__(self, model, sae=None, batch: int = BATCH, cache_windows: int = CACHE_WINDOWS):
        self.model = model.eval()
        self.sae = sae.eval() if sae is not None and hasattr(sae, "eval") else sae
        self.batch = int(batch)
        self.cache_windows = int(cache_windows)
        self.n_ctx = int(model.cfg.n_ctx)
        self.vocab = int(model.cfg.vocab_size)
        self.device = next(model.parameters()).device
        self._clean: OrderedDict[bytes, _Clean] = OrderedDict()
        self.clean_forwards = 0                       # windows run through the model (tests, benchmark)

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def effects(self, kind: str, index: int, windows, should_stop=None) -> np.ndarray:
        """Δ [B, W] float32 for windows [B, W] (−1 padding; NaN where no prediction); raises
        ``Cancelled`` between batches when ``should_stop()`` says so, ``ValueError`` on a bad unit."""
        windows_BW = np.asarray(windows, dtype=np.int64)
        if windows_BW.ndim != 2:
            raise ValueError(f"windows must be [B, W], not of shape {windows_BW.shape}")
        self._check_unit(kind, int(index))
        out_BW = np.full(windows_BW.shape, np.nan, np.float32)
        rows = [self._real(w) for w in windows_BW]
        for a in range(0, len(rows), self.batch):
            if should_stop is not None and should_stop():
                raise Cancelled("a newer ablation request replaced this one")
            group = [(b, keep) for b, keep in enumerate(rows[a:a + self.batch], start=a) if keep.size > 1]
            if not group:
                continue
            cleans = self._clean_of([windows_BW[b, keep] for b, keep in group])
            deltas = self._ablated_delta(kind, int(index), cleans, [windows_BW[b, keep] for b, keep in group])
            for (b, keep), d in zip(group, deltas):
                out_BW[b, keep[1:]] = d
        return out_BW

    def clear_cache(self) -> None:
        self._clean.clear()

    # ------------------------------------------------------------------ pieces
    def _check_unit(self, kind: str, index: int) -> None:
        if kind not in UNIT_KINDS:
            raise ValueError(f"unit kind must be 'feature' or 'neuron', not {kind!r}")
        if kind == "feature":
            if self.sae is None:
                raise ValueError("ablating a feature needs the SAE")
            n = int(self.sae.W_dec.shape[0])
        else:
            n = int(self.model.cfg.d_mlp)
        if not 0 <= index < n:
            raise ValueError(f"{kind} {index} does not exist (there are {n})")

    def _real(self, window_W: np.ndarray) -> np.ndarray:
        """Positions of a window's real tokens (at most n_ctx of them, the last ones: the centre of a
        stored example sits after its left context)."""
        keep = np.flatnonzero((window_W >= 0) & (window_W < self.vocab))
        return keep[-self.n_ctx:]

    def _clean_of(self, seqs: list[np.ndarray]) -> list[_Clean]:
        """The cached clean pass of each sequence; the missing ones in one batched forward."""
        keys = [s.tobytes() for s in seqs]
        todo = [k for k in dict.fromkeys(keys) if k not in self._clean]
        if todo:
            todo_seqs = {k: s for k, s in zip(keys, seqs) if k in todo}
            by_len: dict[int, list[bytes]] = {}
            for k in todo:                           # equal lengths batch without padding
                by_len.setdefault(len(todo_seqs[k]), []).append(k)
            for T, ks in by_len.items():
                idx_BT = torch.as_tensor(np.stack([todo_seqs[k] for k in ks]), device=self.device)
                resid_BTC, acts_BTM = self.model.resid_and_acts(idx_BT)
                logp_BT = _next_logp(self.model.logits_from_acts(resid_BTC, acts_BTM), idx_BT)
                self.clean_forwards += len(ks)
                topk = None
                if self.sae is not None and getattr(self.sae, "k", None):
                    M = acts_BTM.shape[-1]
                    vals, idx = self.sae.encode_sparse(acts_BTM[:, :-1].reshape(-1, M).to(self.sae.W_enc.dtype))
                    topk = (vals.reshape(len(ks), T - 1, -1), idx.reshape(len(ks), T - 1, -1))
                for b, k in enumerate(ks):
                    self._clean[k] = _Clean(resid_BTC[b], acts_BTM[b], logp_BT[b],
                                            None if topk is None else (topk[0][b], topk[1][b]))
        out = []
        for k in keys:
            self._clean.move_to_end(k)
            out.append(self._clean[k])
        while len(self._clean) > self.cache_windows:
            self._clean.popitem(last=False)
        return out

    def _ablated_delta(self, kind: str, index: int, cleans: list[_Clean], seqs: list[np.ndarray]) -> list[np.ndarray]:
        """Δ (T-1,) per sequence. The rows of all sequences that predict a token are stacked; only those
        the ablation changes go through the unembedding again (one call), the others keep Δ = 0 exactly."""
        resid_NC = torch.cat([c.resid[:-1] for c in cleans])
        acts_NM = torch.cat([c.acts[:-1] for c in cleans])
        clean_N = torch.cat([c.logp for c in cleans])
        target_N = torch.as_tensor(np.concatenate([s[1:] for s in seqs]), device=self.device)
        if kind == "neuron":
            changed_N = acts_NM[:, index] != 0
            ablated_NM = acts_NM[changed_N].clone()
            ablated_NM[:, index] = 0.0
        else:
            if cleans[0].topk is not None:                       # TopK: from the cached encode
                vals_NK = torch.cat([c.topk[0] for c in cleans])
                idx_NK = torch.cat([c.topk[1] for c in cleans])
                f_N = (vals_NK * (idx_NK == index)).sum(dim=1)
            else:
                f_N = feature_activation(self.sae, acts_NM, index)
            changed_N = f_N != 0
            direction_M = self.sae.W_dec[index].to(acts_NM.dtype)
            ablated_NM = acts_NM[changed_N] - f_N[changed_N].to(acts_NM.dtype)[:, None] * direction_M
        delta_N = torch.zeros_like(clean_N)
        if bool(changed_N.any()):
            logits_1RV = self.model.logits_from_acts(resid_NC[changed_N][None], ablated_NM[None])
            lp_R = torch.log_softmax(logits_1RV[0].float(), dim=-1).gather(1, target_N[changed_N][:, None])[:, 0]
            delta_N[changed_N] = lp_R - clean_N[changed_N]
        delta = delta_N.cpu().numpy().astype(np.float32)
        bounds = np.cumsum([0] + [c.logp.shape[0] for c in cleans])
        return [delta[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def _next_logp(logits_BTV: torch.Tensor, idx_BT: torch.Tensor) -> torch.Tensor:
    """log p(x_{t+1} | x_≤t) for t < T-1: (B, T-1) float32."""
    logp = torch.log_softmax(logits_BTV[:, :-1].float(), dim=-1)
    return logp.gather(2, idx_BT[:, 1:, None])[..., 0]
