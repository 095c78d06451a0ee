"""The one-layer transformer of *Towards Monosemanticity*, written to be read top to bottom.

    tokens -> token embedding + learned positions                    x: (B, T, C)
    x = x + Attention(LayerNorm(x))                                  one causal multi-head block
    h = ReLU(W_in LayerNorm(x) + b_in)                               h: (B, T, d_mlp)  <- "the neurons"
                          (a loaded TransformerLens model: GELU, GELU-tanh or SoLU+LayerNorm; cfg.act_fn)
    x = x + W_out h + b_out
    logits = W_U LayerNorm(x)                                        (B, T, vocab), untied unembedding

Shape legend: B batch, T positions, C residual width (d_model), H heads, M MLP neurons, V vocab.

Two hooks make the model an instrument rather than a black box:
* ``mlp_acts(idx)`` returns the post-ReLU MLP activations h for any batch;
* ``forward(idx, mlp_acts=...)`` *replaces* h by a given tensor (an SAE reconstruction, zeros for
  zero-ablation, an edited copy for clamping) — or ``mlp_edit=fn`` transforms h in flight.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.config import ModelConfig

__all__ = ["OneLayerTransformer", "ModelConfig", "linear_cross_entropy", "LOSS_CHUNK_ROWS"]

LOSS_CHUNK_ROWS = 1024  # rows of logits alive at once in the fused loss (1024 x 4096 fp32 = 16 MB: in L3)


class _LinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(h_i W^T + b, y_i) and its gradients in one pass over row chunks of h.

    The plain path materialises the (N, V) logits, then log-softmax reads and writes them, and its
    backward does both again: ~6 passes over 64 MB per step for the demo. Here each chunk of rows is
    multiplied out, turned into softmax - onehot in place while it is in cache, and immediately
    multiplied back into dh (N, C), dW (V, C) and db (V): the same three matmuls, no (N, V) tensor.
    The gradients are computed in the forward (the loss is the end of the graph) and scaled by the
    incoming gradient in ``backward``.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk):   # h (N, C), weight (V, C), bias (V,) | None, targets (N,)
        N, V = h.shape[0], weight.shape[0]
        dh = torch.empty_like(h)
        dW = torch.zeros_like(weight)
        db = torch.zeros_like(bias) if bias is not None else None
        buf = h.new_empty(min(chunk, N), V)
        total = torch.zeros((), dtype=torch.float64)
        inv_n = 1.0 / N
        for s in range(0, N, chunk):
            hc, tc = h[s:s + chunk], targets[s:s + chunk, None]
            lg = buf[:hc.shape[0]]                                      # (n, V) logits of this chunk
            if bias is None:
                torch.mm(hc, weight.t(), out=lg)
            else:
                torch.addmm(bias, hc, weight.t(), out=lg)
            m = lg.amax(dim=1, keepdim=True)                            # (n, 1)
            target_logit = lg.gather(1, tc)                             # (n, 1)
            lg.sub_(m).exp_()
            z = lg.sum(dim=1, keepdim=True)                             # (n, 1)
            total += (m + z.log() - target_logit).sum().double()        # sum of -log p(y)
            lg.mul_(z.reciprocal_().mul_(inv_n))                        # softmax / N
            lg.scatter_add_(1, tc, lg.new_full(tc.shape, -inv_n))       # (softmax - onehot) / N
            torch.mm(lg, weight, out=dh[s:s + chunk])                   # dL/dh rows
            dW.addmm_(lg.t(), hc)                                       # dL/dW += dlogits^T h
            if db is not None:
                db.add_(lg.sum(dim=0))
        ctx.save_for_backward(dh, dW, db)
        ctx.has_bias = bias is not None
        return (total * inv_n).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        dh, dW, db = ctx.saved_tensors
        return dh * grad, dW * grad, (db * grad if ctx.has_bias else None), None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, chunk: int = LOSS_CHUNK_ROWS) -> torch.Tensor:
    """``F.cross_entropy(F.linear(h, weight, bias), targets)`` (mean) without the (N, V) logits when
    training on fp32: h (N, C), weight (V, C), targets (N,) int64. Under autocast, without grad, or
    for other dtypes it is the plain expression (the fused pass needs all of h's and W's gradients)."""
    fused = (torch.is_grad_enabled() and h.dtype == torch.float32 and weight.dtype == torch.float32
             and not torch.is_autocast_enabled(h.device.type) and h.device.type == "cpu")
    if not fused:
        return F.cross_entropy(F.linear(h, weight, bias).float(), targets)
    return _LinearCrossEntropy.apply(h, weight, bias, targets, int(chunk))


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.head_dim
        HD = self.n_heads * self.d_head                                        # = C unless cfg.d_head is set
        self.qkv = nn.Linear(cfg.d_model, 3 * HD)
        self.proj = nn.Linear(HD, cfg.d_model)

    def forward(self, x: torch.Tensor, qk_pos: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, C). qk_pos (T, C), shortformer models only, is added to the queries' and keys' input."""
        B, T, _ = x.shape
        HD = self.n_heads * self.d_head
        q, k, v = self.qkv(x).split(HD, dim=2)                                 # 3 x (B, T, H*Dh)
        if qk_pos is not None:
            q_pos, k_pos = F.linear(qk_pos, self.qkv.weight[:2 * HD]).split(HD, dim=-1)   # (T, H*Dh) each
            q, k = q + q_pos, k + k_pos
        q = q.view(B, T, self.n_heads, self.d_head).transpose(1, 2)            # (B, H, T, Dh)
        k = k.view(B, T, self.n_heads, self.d_head).transpose(1, 2)            # (B, H, T, Dh)
        v = v.view(B, T, self.n_heads, self.d_head).transpose(1, 2)            # (B, H, T, Dh)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)            # (B, H, T, Dh)
        y = y.transpose(1, 2).contiguous().view(B, T, HD)                      # (B, T, H*Dh)
        return self.proj(y)                                                    # (B, T, C)


def _solu(x: torch.Tensor) -> torch.Tensor:
    return x * x.softmax(dim=-1)


_ACT_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "solu_ln": _solu}


class MLP(nn.Module):
    """h = act(W_in x + b_in); ``cfg.act_fn`` "relu" for superpos's own models, or a TransformerLens
    model's gelu / gelu_new / solu_ln (SoLU followed by a LayerNorm over the M neurons, ``ln``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_in = nn.Linear(cfg.d_model, cfg.d_mlp)    # weight (M, C)
        self.W_out = nn.Linear(cfg.d_mlp, cfg.d_model)   # weight (C, M)
        self.act_fn = _ACT_FNS[cfg.act_fn]
        if cfg.act_fn == "solu_ln":
            self.ln = nn.LayerNorm(cfg.d_mlp)

    def acts(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act_fn(self.W_in(x))                    # (B, T, M)
        return self.ln(h) if hasattr(self, "ln") else h


class OneLayerTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)   # (V, C)
        self.pos_emb = nn.Embedding(cfg.n_ctx, cfg.d_model)        # (T_max, C)
        self.ln_attn = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_mlp = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.ln_final = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.unembed_bias)  # W_U, weight (V, C)
        self.apply(self._init_weights)
        # GPT-2 style: residual-writing projections scaled down by sqrt(2 * n_layer) (here n_layer = 1).
        for w in (self.attn.proj.weight, self.mlp.W_out.weight):
            nn.init.normal_(w, mean=0.0, std=0.02 / math.sqrt(2))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ forward pieces
    def _pre_mlp(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual stream after attention, and the MLP's (normalised) input. idx: (B, T) token ids."""
        B, T = idx.shape
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence of {T} tokens exceeds the model context of {self.cfg.n_ctx}")
        pos = self.pos_emb(torch.arange(T, device=idx.device))  # (T, C)
        x = self.tok_emb(idx)                              # (B, T, C)
        if self.cfg.shortformer:                           # positions reach queries and keys only
            x = x + self.attn(self.ln_attn(x), qk_pos=pos)
        else:
            x = x + pos
            x = x + self.attn(self.ln_attn(x))             # (B, T, C)
        return x, self.ln_mlp(x)                           # (B, T, C), (B, T, C)

    def mlp_acts(self, idx: torch.Tensor) -> torch.Tensor:
        """Post-ReLU MLP activations ("the neurons") for token ids idx (B, T) -> (B, T, M)."""
        _, mlp_in = self._pre_mlp(idx)
        return self.mlp.acts(mlp_in)

    def resid_and_acts(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual stream after attention (B, T, C) and the MLP activations (B, T, M) for idx (B, T).

        With ``logits_from_acts`` this splits ``forward`` at the MLP, so evaluation, the harvest and
        the lens can read, replace or edit the activations: ``logits_from_acts(*resid_and_acts(idx))``
        equals ``forward(idx)``.
        """
        resid, mlp_in = self._pre_mlp(idx)
        return resid, self.mlp.acts(mlp_in)

    def logits_from_acts(self, resid: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) from the post-attention residual (B, T, C) and MLP activations (B, T, M)."""
        return self.unembed(self._final_norm(resid, acts))             # (B, T, V)

    def _final_norm(self, resid: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """ln_final(resid + W_out acts): the unembedding's input (B, T, C)."""
        return self.ln_final(resid + self.mlp.W_out(acts))

    def _unembed_input(self, idx, mlp_acts, mlp_edit) -> tuple[torch.Tensor, torch.Tensor]:
        """The unembedding's input (B, T, C) and the activations used (B, T, M), see ``forward``."""
        resid, mlp_in = self._pre_mlp(idx)
        acts = self.mlp.acts(mlp_in) if mlp_acts is None else mlp_acts.to(resid.dtype)
        if mlp_edit is not None:
            acts = mlp_edit(acts)
        return self._final_norm(resid, acts), acts

    def forward(
        self,
        idx: torch.Tensor,
        mlp_acts: torch.Tensor | None = None,
        mlp_edit: Callable[[torch.Tensor], torch.Tensor] | None = None,
        return_acts: bool = False,
    ):
        """Logits (B, T, V) for token ids idx (B, T).

        mlp_acts: if given (B, T, M), it *replaces* the MLP's post-ReLU activations.
        mlp_edit: if given, a function applied to the activations before W_out.
        return_acts: also return the activations actually used, as (logits, acts).
        """
        x, acts = self._unembed_input(idx, mlp_acts, mlp_edit)
        logits = self.unembed(x)
        return (logits, acts) if return_acts else logits

    def loss(self, idx: torch.Tensor, targets: torch.Tensor, mlp_acts: torch.Tensor | None = None,
             mlp_edit: Callable[[torch.Tensor], torch.Tensor] | None = None, fused: bool = True) -> torch.Tensor:
        """Mean next-token cross-entropy (nats); mlp_acts / mlp_edit as in ``forward``.

        fused: the output layer and the cross-entropy as one chunked pass (``linear_cross_entropy``,
        the same maths without the (B, T, V) logits); False is the plain logits-then-loss path."""
        x, _ = self._unembed_input(idx, mlp_acts, mlp_edit)
        x, targets = x.reshape(-1, x.size(-1)), targets.reshape(-1)
        if fused:
            return linear_cross_entropy(x, self.unembed.weight, self.unembed.bias, targets)
        return F.cross_entropy(self.unembed(x).float(), targets)

    # ------------------------------------------------------------------ conveniences
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_state_dict(cls, cfg: ModelConfig, state: dict[str, torch.Tensor]) -> "OneLayerTransformer":
        model = cls(cfg)
        model.load_state_dict(state)
        return model.eval()
