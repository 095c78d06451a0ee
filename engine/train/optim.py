"""The optimisers of the two training jobs.

``Adam``        the SAE trainers' Adam (no weight decay) over a fixed list of tensors, step t:
                    m ← β₁m + (1-β₁)g,   v ← β₂v + (1-β₂)g²,
                    p ← p - lr · (m / (1-β₁ᵗ)) / (√(v / (1-β₂ᵗ)) + ε)
``make_adamw``  the model job's AdamW with nanoGPT's parameter groups.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.torch_version import TorchVersion

from engine.config import TrainConfig

__all__ = ["Adam", "make_adamw"]


class Adam:
    """Adam (no weight decay) over a fixed list of tensors, fused where torch has the kernel.

    Not torch.optim.Adam: constructing the first torch.optim optimizer imports torch._dynamo,
    measured at 25 s on the shared test machine, and the trainers need none of its generality.
    Row-wise resets (the 2023 recipe's resampling) just zero slices of ``exp_avg`` / ``exp_avg_sq``.
    ``names`` key the tensors in ``state_dict()`` (default "0", "1", ...).
    """

    def __init__(self, params: Sequence[torch.Tensor], names: Sequence[str] | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.names = tuple(names) if names is not None else tuple(str(i) for i in range(len(self.params)))
        if len(self.names) != len(self.params):
            raise ValueError(f"{len(self.names)} names for {len(self.params)} tensors")
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self.fused = _has_fused_adam(self.params[0].device)

    @torch.no_grad()
    def step(self, lr: float) -> None:
        grads = [p.grad for p in self.params]
        for s in self.steps:
            s.add_(1)
        if self.fused:
            torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq, [], self.steps, lr=lr,
                               beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps,
                               amsgrad=False, maximize=False)
            return
        for p, g, m, v, s in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, self.steps):
            t = float(s)
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / math.sqrt(1 - self.beta2**t)).add_(self.eps)
            p.addcdiv_(m, denom, value=-lr / (1 - self.beta1**t))

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, m, v, s in zip(self.names, self.exp_avg, self.exp_avg_sq, self.steps):
            out[f"{name}.exp_avg"] = m.detach().cpu().clone()
            out[f"{name}.exp_avg_sq"] = v.detach().cpu().clone()
            out[f"{name}.step"] = s.detach().cpu().clone()
        return out

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, m, v, s in zip(self.names, self.exp_avg, self.exp_avg_sq, self.steps):
            m.copy_(state[f"{name}.exp_avg"])
            v.copy_(state[f"{name}.exp_avg_sq"])
            s.copy_(state[f"{name}.step"])


def _has_fused_adam(device: torch.device) -> bool:
    """torch._fused_adam_ has CUDA kernels in every supported torch (>= 2.2), CPU kernels from 2.4."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and TorchVersion(torch.__version__) >= "2.4"


def make_adamw(model: torch.nn.Module, cfg: TrainConfig, **options: bool) -> torch.optim.AdamW:
    """nanoGPT's AdamW: weight decay cfg.weight_decay on matrices (2-D), none on biases and LayerNorm gains.
    ``options``: torch's implementation choice (``fused=True`` / ``foreach=True``: ``AccelPolicy.adamw_kwargs``)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **options)
