"""The toy model of Elhage et al. 2022, *Toy Models of Superposition*, trained many at once.

    x  ∈ Rⁿ, each xᵢ = 0 with probability S (the sparsity), else uniform on [0, 1]
    h  = W x                    ∈ Rᵐ   (m < n: the features must share the hidden dimensions)
    x' = ReLU(Wᵀ h + b)         ∈ Rⁿ
    L  = mean over the batch and the features of Iᵢ (xᵢ − x'ᵢ)²,   Iᵢ = rⁱ (r the importance decay)

As the paper's Colab does, a batch of *instances* (independent models, each with its own sparsity and
importance) trains as one set of tensors — W (I, m, n), b (I, n) — so a sweep over sparsity,
importance or seeds costs little more than one model. The loss is the sum over instances of each
instance's loss, so every instance's gradient is its own. Adam, batch 1024, lr 1e-2 for 2000 steps
falling linearly to 0 over the second half (the paper: AdamW at 1e-3 for 10,000 steps; the same
geometry in a fifth of the steps). The gradients are written by hand (``loss_and_gradients``; a
test checks them against autograd), as the SAE recipes' are: a third of autograd's time here.

``train_toys`` is a generator job (engine.events: StageStarted / Progress / StageFinished, a
CancelToken checked every step); ``train_toy`` trains one configuration as ``restarts`` seeds and
keeps the lowest loss (the paper's small models sometimes settle in a worse local minimum).

Shape legend: I instances, B batch, N features (n), M hidden (m).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Generator

import numpy as np
import torch

from engine import events
from engine.errors import UserError

__all__ = ["ToyConfig", "ToyBatch", "ToyResult", "ToyError", "train_toys", "train_toy", "importances",
           "sample_features", "loss_and_gradients", "MAX_FEATURES", "MAX_HIDDEN"]

MAX_FEATURES = 400
MAX_HIDDEN = 200
EVAL_ROWS = 8192            # inputs the final loss of every instance is measured on
EVAL_CHUNK = 64             # instances evaluated at a time (bounds the memory of a big sweep)
COOLDOWN_FRACTION = 0.5     # the learning rate falls linearly to 0 over the last half (settles sparse cells)
PROGRESS_EVERY = 50         # steps between Progress events (a step is ~0.1 ms: an event each is too many)


class ToyError(UserError, ValueError):
    """A toy-model setting out of range; the message names it and the allowed range."""


@dataclass(frozen=True)
class ToyConfig:
    """One toy model: n features into m hidden dimensions at sparsity S, importance rⁱ."""

    n_features: int = 5
    n_hidden: int = 2
    sparsity: float = 0.9
    importance_decay: float = 1.0      # r: Iᵢ = rⁱ (1: uniform importance)
    seed: int = 0
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-2
    restarts: int = 2                  # seeds trained side by side; the lowest loss is kept

    def validate(self) -> "ToyConfig":
        _check_int("features", self.n_features, 1, MAX_FEATURES)
        _check_int("hidden", self.n_hidden, 1, MAX_HIDDEN)
        _check_int("steps", self.steps, 1, 1_000_000)
        _check_int("batch size", self.batch_size, 1, 65_536)
        _check_int("restarts", self.restarts, 1, 64)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        if not 0.0 <= self.sparsity < 1.0:
            raise ToyError(f"sparsity must be in [0, 1) (the chance a feature is zero); got {self.sparsity!r}")
        if not 0.0 < self.importance_decay <= 1.0:
            raise ToyError(f"importance decay must be in (0, 1] (Iᵢ = rⁱ; 1 is uniform); got {self.importance_decay!r}")
        if not 0.0 < self.lr <= 1.0:
            raise ToyError(f"learning rate must be in (0, 1]; got {self.lr!r}")
        return self


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ToyError(f"{name} must be an integer from {low} to {high}; got {value!r}")


@dataclass(frozen=True)
class ToyBatch:
    """Instances trained together: each row of ``sparsity_I`` / ``importance_IN`` is one model."""

    n_features: int
    n_hidden: int
    sparsity_I: np.ndarray             # (I,)
    importance_IN: np.ndarray          # (I, N)
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-2
    seed: int = 0

    @property
    def n_instances(self) -> int:
        return int(self.sparsity_I.shape[0])


@dataclass(frozen=True)
class ToyResult:
    """Trained weights as numpy copies (safe to hand across threads)."""

    W_IMN: np.ndarray                  # (I, M, N) column i = feature i's direction in the hidden space
    b_IN: np.ndarray                   # (I, N)
    loss_I: np.ndarray                 # (I,) each instance's loss on EVAL_ROWS fresh inputs (the same for all)
    seconds: float
    steps: int


def importances(n_features: int, decay: float) -> np.ndarray:
    """(N,) Iᵢ = decayⁱ, i = 0 … n−1 (feature 0 the most important)."""
    return decay ** np.arange(n_features, dtype=np.float64)


def sample_features(density_I11: torch.Tensor, batch: int, n: int, gen: torch.Generator,
                    out_IBN: torch.Tensor | None = None) -> torch.Tensor:
    """(I, B, N): each feature 0 with probability S = 1 − density of its instance, else uniform on
    [0, 1]. One uniform u per entry gives both: present when u < density, and then u / density is
    uniform on [0, 1]."""
    I = density_I11.shape[0]
    u_IBN = torch.rand(I, batch, n, generator=gen, out=out_IBN)
    return torch.where(u_IBN < density_I11, u_IBN / density_I11, 0.0)


def loss_and_gradients(x_IBN: torch.Tensor, W_IMN: torch.Tensor, b_IN: torch.Tensor, weight_I1N: torch.Tensor,
                       grads: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(loss_I, dL/dW, dL/db) of the batch, by hand (a third of autograd's time at these sizes).

    pre = (x Wᵀ) W + b,  x' = ReLU(pre),  L = mean_{b,i} Iᵢ (x'ᵢ − xᵢ)²;  with
    d = dL/dpre = 2 Iᵢ (x' − x) [pre > 0] / (B N):  dL/db = Σ_b d,  dL/dW = hᵀ d + (d Wᵀ)ᵀ x."""
    B, N = x_IBN.shape[1], x_IBN.shape[2]
    h_IBM = torch.bmm(x_IBN, W_IMN.transpose(1, 2))                  # (I, B, M)
    pre_IBN = torch.baddbmm(b_IN[:, None, :], h_IBM, W_IMN)          # (I, B, N)
    err_IBN = pre_IBN.clamp_min(0.0) - x_IBN
    loss_I = (weight_I1N * err_IBN * err_IBN).sum(dim=(1, 2)) / (B * N)
    if not grads:
        return loss_I, None, None
    d_IBN = err_IBN.mul_(weight_I1N * (2.0 / (B * N))).mul_(pre_IBN > 0)
    grad_b_IN = d_IBN.sum(1)
    grad_W_IMN = torch.bmm(h_IBM.transpose(1, 2), d_IBN)                              # hᵀ d
    grad_W_IMN.baddbmm_(torch.bmm(d_IBN, W_IMN.transpose(1, 2)).transpose(1, 2), x_IBN)   # (d Wᵀ)ᵀ x
    return loss_I, grad_W_IMN, grad_b_IN


class _Adam:
    """Adam (β 0.9, 0.999; no weight decay: the paper's AdamW at decay 0) over a few tensors, in place."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params, self.t = params, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def step(self, grads: list[torch.Tensor], lr: float) -> None:
        self.t += 1
        c1, c2 = 1 - 0.9 ** self.t, 1 - 0.999 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.lerp_(g, 0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            p.addcdiv_(m, v.div(c2).sqrt_().add_(1e-8), value=-lr / c1)


@torch.no_grad()
def evaluate_loss(W_IMN: torch.Tensor, b_IN: torch.Tensor, density_I11: torch.Tensor, weight_I1N: torch.Tensor,
                  gen: torch.Generator, rows: int = EVAL_ROWS) -> torch.Tensor:
    """(I,) every instance's loss on the same ``rows`` uniforms (common random numbers: the restarts of
    one setting are compared on identical inputs, not on their own noisy last batches)."""
    I, N = b_IN.shape
    out = torch.empty(I)
    for start in range(0, I, EVAL_CHUNK):
        sl = slice(start, start + EVAL_CHUNK)
        u_1EN = torch.rand(1, rows, N, generator=gen)
        x_IEN = torch.where(u_1EN < density_I11[sl], u_1EN / density_I11[sl], 0.0)
        out[sl] = loss_and_gradients(x_IEN, W_IMN[sl], b_IN[sl], weight_I1N[sl], grads=False)[0]
    return out


def train_toys(spec: ToyBatch, cancel: events.CancelToken | None = None,
               stage: str = "toy") -> Generator[object, None, ToyResult]:
    """Generator: train every instance of ``spec`` at once; yields StageStarted, Progress every
    PROGRESS_EVERY steps and StageFinished; returns a ToyResult. Raises events.Cancelled when
    ``cancel`` is set (checked every step)."""
    I, N, M, B = spec.n_instances, spec.n_features, spec.n_hidden, spec.batch_size
    gen = torch.Generator().manual_seed(spec.seed)
    W_IMN = torch.empty(I, M, N)
    for i in range(I):                                   # Xavier-normal, as the paper's Colab
        W_IMN[i].normal_(0.0, (2.0 / (M + N)) ** 0.5, generator=gen)
    b_IN = torch.zeros(I, N)
    density_I11 = torch.as_tensor(1.0 - np.asarray(spec.sparsity_I), dtype=torch.float32).reshape(I, 1, 1)
    weight_I1N = torch.as_tensor(spec.importance_IN, dtype=torch.float32).reshape(I, 1, N)
    opt = _Adam([W_IMN, b_IN])
    cooldown = int(spec.steps * (1 - COOLDOWN_FRACTION))
    u_IBN = torch.empty(I, B, N)
    yield events.StageStarted(stage, total=spec.steps, unit="steps")
    t0 = time.perf_counter()
    for step in range(spec.steps):
        if cancel is not None and cancel.cancelled:
            raise events.Cancelled("toy-model training cancelled")
        x_IBN = sample_features(density_I11, B, N, gen, u_IBN)
        loss_I, grad_W, grad_b = loss_and_gradients(x_IBN, W_IMN, b_IN, weight_I1N)
        opt.step([grad_W, grad_b], spec.lr * min(1.0, (spec.steps - step) / max(1, spec.steps - cooldown)))
        if (step + 1) % PROGRESS_EVERY == 0 or step + 1 == spec.steps:
            yield events.Progress(stage=stage, done=step + 1, total=spec.steps, step=step + 1, unit="steps",
                                  metrics={"loss": float(loss_I.mean())})
    loss_I = evaluate_loss(W_IMN, b_IN, density_I11, weight_I1N, gen).numpy().astype(np.float64)
    seconds = time.perf_counter() - t0
    yield events.StageFinished(stage, seconds=seconds, summary={"loss": float(loss_I.mean())})
    return ToyResult(W_IMN=W_IMN.numpy().copy(), b_IN=b_IN.numpy().copy(),
                     loss_I=loss_I, seconds=seconds, steps=spec.steps)


def train_toy(cfg: ToyConfig, cancel: events.CancelToken | None = None,
              stage: str = "toy") -> Generator[object, None, ToyResult]:
    """Generator: one configuration trained as ``cfg.restarts`` seeds side by side; returns the
    lowest-loss one as a ToyResult of one instance."""
    cfg.validate()
    R = cfg.restarts
    spec = ToyBatch(cfg.n_features, cfg.n_hidden, np.full(R, cfg.sparsity),
                    np.tile(importances(cfg.n_features, cfg.importance_decay), (R, 1)),
                    steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    result = yield from train_toys(spec, cancel, stage)
    best = int(np.argmin(result.loss_I))
    return ToyResult(W_IMN=result.W_IMN[best:best + 1], b_IN=result.b_IN[best:best + 1],
                     loss_I=result.loss_I[best:best + 1], seconds=result.seconds, steps=result.steps)
