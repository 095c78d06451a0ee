"""What every SAE recipe shares: the ``SAETrainer`` interface, parameters, Adam, buffers, bookkeeping.

*What* is learned is ``engine.sae.SparseAutoencoder``; *how* is one ``SAETrainer`` subclass per
recipe (one module each in this package, registered by name in ``RECIPES``). The job loop,
``engine.train.sae_job.train_sae``, only ever calls

    trainer = RECIPES[cfg.recipe](cfg, device, total_steps)
    trainer.initialise(sample_ND)              once, on the first batches (a resumed run loads instead)
    metrics = trainer.step(x_BD)               one optimiser step on raw activations -> {name: float}
    trainer.resample_steps                     steps before which the trainer wants `resample_batches`
    trainer.resample_dead_(inputs_ND, seed)    fresh batches, and what it does with them (2023 only)
    trainer.state_dict() / load_state_dict()   checkpoints: tensors and plain numbers
    trainer.to_sae()                           the SAE on raw activations (input scaling folded in)

and it stores each metric ``key`` as the curve ``f"sae/{key}"``.

Conventions shared by every recipe:

- training sees scaled inputs x_s = s·x, s = √D / mean‖x‖ over the first batches (the April 2024
  convention; for "2023" and "topk" a pure reparametrisation of λ and of the learning rate, so the
  same λ means the same thing whatever the model's activation scale);
- W_enc is kept transposed, (F, D), so that both weight gradients come out row-major;
- the forward and backward passes are written by hand (no autograd) into the preallocated ``p.grad``
  and (B, ·) buffers: fresh big allocations cost page faults on every step;
- a latent is *dead* when it has not fired for ``dead_window`` activations (``last_fired`` holds the
  activations seen when each latent last fired). A recipe decides what, if anything, that triggers;
- under torchrun (``engine.train.distributed``) each rank holds ``local_batch`` = B/W rows of the
  global batch of ``batch`` = cfg.batch_size rows. Losses are normalised by the *global* batch
  (``self.batch``) and its statistics (``batch_sq_dev``), so the step sums the ranks' gradients and
  additive metrics in one all-reduce (``sync_``), takes the latest firing of each latent over the
  ranks, and the parameters stay identical on every rank; metrics that are the same on every rank
  (a threshold) are named in ``rank_invariant_metrics``. With one process all of it is the identity.

A new recipe subclasses ``SAETrainer``, implements ``gradients_`` (and the hooks it needs), and gets
one line in ``engine/train/recipes/__init__.py`` (and its name in ``engine.config.SAE_RECIPES``).

Shape legend: N sample rows, B batch, D d_in, F d_sae.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from engine.config import SAEConfig
from engine.sae import SparseAutoencoder
from engine.train import distributed
from engine.train.optim import Adam

__all__ = ["SAETrainer", "PARAM_NAMES", "geometric_median", "remove_parallel_component_", "unit_norm_rows_"]

PARAM_NAMES = ("W_enc_FD", "b_enc_F", "W_dec_FD", "b_dec_D")
GEOMETRIC_MEDIAN_ROWS = 8192      # rows of the first batches used for b_dec's geometric median


class SAETrainer:
    """Parameters, Adam, buffers and one hand-written training step; subclasses supply the maths."""

    # pre = (x_s - b_dec) W_enc + b_enc when True, pre = x_s W_enc + b_enc when False (folded by to_sae)
    pre_encoder_bias: ClassVar[bool] = True
    resample_batches: ClassVar[int] = 0      # batches of inputs each resample_dead_ call gets
    rank_invariant_metrics: ClassVar[frozenset[str]] = frozenset()   # equal on every rank: not summed

    def __init__(self, cfg: SAEConfig, device: torch.device, total_steps: int):
        self.cfg = cfg
        self.device = device
        self.total_steps = total_steps
        self.batch = cfg.batch_size                                   # rows of the global batch
        self.local_batch = cfg.batch_size // distributed.current().world_size   # this rank's rows
        D, F, B = cfg.d_in, cfg.d_sae, self.local_batch
        kw = dict(device=device, dtype=torch.float32)
        self.W_enc_FD = torch.nn.Parameter(torch.zeros(F, D, **kw))
        self.b_enc_F = torch.nn.Parameter(torch.zeros(F, **kw))
        self.W_dec_FD = torch.nn.Parameter(torch.zeros(F, D, **kw))
        self.b_dec_D = torch.nn.Parameter(torch.zeros(D, **kw))
        self.params = [self.W_enc_FD, self.b_enc_F, self.W_dec_FD, self.b_dec_D]
        self.param_names = list(PARAM_NAMES)
        for p in self.params:
            p.grad = torch.zeros_like(p)
        self.opt = Adam(self.params, self.param_names, betas=(0.9, 0.999), eps=1e-8)
        self.scale = 1.0
        self.last_fired = torch.zeros(F, dtype=torch.long, device=device)  # activations seen at last firing
        self.n_seen = 0
        self.steps_done = 0
        self.dead_window = cfg.dead_window
        self.resample_steps: tuple[int, ...] = ()
        # buffers reused every step
        self.x_BD = torch.empty(B, D, **kw)          # x_s
        self.xc_BD = torch.empty(B, D, **kw)         # the encoder's input (x_s - b_dec or x_s)
        self.err_BD = torch.empty(B, D, **kw)        # x̂ - x_s, then dL/dx̂
        self.pre_BF = torch.empty(B, F, **kw)        # pre-activations (dense recipes: then f)

    def add_parameter_(self, name: str, value: torch.Tensor) -> torch.nn.Parameter:
        """A further trained tensor (e.g. JumpReLU's threshold): Adam-stepped and checkpointed like the
        four weights; call from a subclass's ``__init__``."""
        p = torch.nn.Parameter(value.to(self.device, torch.float32))
        p.grad = torch.zeros_like(p)
        self.params.append(p)
        self.param_names.append(name)
        self.opt = Adam(self.params, self.param_names, betas=(0.9, 0.999), eps=1e-8)
        return p

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def initialise(self, sample_ND: torch.Tensor) -> None:
        """Input scale s from `sample_ND` (raw activations), then the recipe's initial parameters."""
        D, F = self.cfg.d_in, self.cfg.d_sae
        sample_ND = sample_ND.to(self.device, torch.float32)
        mean_norm = sample_ND.norm(dim=1).mean().item()
        self.scale = math.sqrt(D) / mean_norm if mean_norm > 0 else 1.0
        gen = torch.Generator().manual_seed(self.cfg.seed)
        W_dec_FD = torch.randn(F, D, generator=gen).to(self.device)
        W_dec_FD /= W_dec_FD.norm(dim=1, keepdim=True)
        self.init_parameters_(sample_ND * self.scale, W_dec_FD)

    @torch.no_grad()
    def init_parameters_(self, xs_ND: torch.Tensor, W_dec_FD: torch.Tensor) -> None:
        """Default: unit decoder rows `W_dec_FD` (random directions), W_enc = W_decᵀ, b_enc = 0 and
        b_dec = the geometric median of the scaled sample (Bricken et al. 2023; Gao et al. 2024)."""
        self.b_dec_D.copy_(geometric_median(xs_ND[:GEOMETRIC_MEDIAN_ROWS].cpu()).to(self.device))
        self.W_dec_FD.copy_(W_dec_FD)
        self.W_enc_FD.copy_(W_dec_FD)            # W_enc = W_decᵀ (stored transposed)
        self.b_enc_F.zero_()

    # ------------------------------------------------------------------ schedules and bookkeeping
    def lr_at(self, step: int) -> float:
        """cfg.lr, decayed linearly to 0 over the last cfg.cooldown_fraction of the run."""
        cfg = self.cfg
        if cfg.cooldown_fraction <= 0:
            return cfg.lr
        start = int(self.total_steps * (1 - cfg.cooldown_fraction))
        if step < start:
            return cfg.lr
        return cfg.lr * max(0.0, (self.total_steps - step) / max(1, self.total_steps - start))

    def dead_mask(self) -> torch.Tensor:
        """(F,) bool: latents that have not fired for `dead_window` activations."""
        return (self.n_seen - self.last_fired) >= self.dead_window

    # ------------------------------------------------------------------ one step
    @torch.no_grad()
    def step(self, x_BD: torch.Tensor) -> dict[str, float]:
        """One Adam step on a batch of raw activations; returns the batch's metrics, "loss" among them.

        A non-finite loss skips the update (the job then stops with TrainingDiverged)."""
        B = x_BD.shape[0]
        if B != self.x_BD.shape[0]:
            raise ValueError(f"batch of {B} rows, expected {self.x_BD.shape[0]}")
        torch.mul(x_BD.to(self.device, torch.float32), self.scale, out=self.x_BD)
        for p in self.params:
            p.grad.zero_()
        metrics = self.sync_(self.gradients_())
        self.constrain_gradients_()
        lr = self.lr_at(self.steps_done)
        if math.isfinite(metrics["loss"]):
            self.opt.step(lr)
            self.constrain_weights_()
        self.n_seen += self.batch
        self.steps_done += 1
        metrics["lr"] = lr
        metrics["dead_fraction"] = self.dead_mask().float().mean().item()
        return metrics

    def sync_(self, metrics: dict[str, float]) -> dict[str, float]:
        """Under torchrun: the global batch's gradients and metrics from every rank's share (summed),
        and each latent's latest firing; one process: `metrics` unchanged."""
        if not distributed.current().active:
            return metrics
        summed = [k for k in metrics if k not in self.rank_invariant_metrics]
        values = torch.tensor([float(metrics[k]) for k in summed], dtype=torch.float32, device=self.device)
        distributed.all_reduce_sum_([p.grad for p in self.params] + [values])
        distributed.all_reduce_max_(self.last_fired)
        return {**metrics, **dict(zip(summed, values.tolist()))}

    def batch_sq_dev(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Σ_b ‖x_b - x̄‖² over the global batch (0-dim tensor), from this rank's rows `x_BD`."""
        if not distributed.current().active:
            return (x_BD - x_BD.mean(0)).pow(2).sum()
        parts = distributed.sum_(torch.cat([x_BD.sum(0), x_BD.pow(2).sum().reshape(1)]).double())
        sum_D, sq = parts[:-1], parts[-1]
        return (sq - sum_D.dot(sum_D) / self.batch).clamp_min(0.0).float()

    def gradients_(self) -> dict[str, float]:
        """Loss and gradients for the batch in ``x_BD`` (x_s): fills ``p.grad`` of every parameter and
        ``last_fired``; returns the metrics ("loss", "mse", "l0", "sparsity_loss", ...)."""
        raise NotImplementedError

    def constrain_gradients_(self) -> None:
        """Hook between the backward pass and the Adam step (projection, clipping)."""

    def constrain_weights_(self) -> None:
        """Hook after the Adam step (renormalisation)."""

    def resample_dead_(self, inputs_ND: torch.Tensor, seed: int) -> int:
        """Re-initialise dead latents from raw `inputs_ND`; returns how many. Called by the job before
        each step in ``resample_steps`` (empty unless the recipe resamples)."""
        raise NotImplementedError(f"the {self.cfg.recipe} recipe does not resample")

    # ------------------------------------------------------------------ result and checkpoints
    @torch.no_grad()
    def to_sae(self) -> SparseAutoencoder:
        sae = SparseAutoencoder(self.cfg)
        sae.W_enc.copy_(self.W_enc_FD.t().cpu())
        sae.b_enc.copy_(self.b_enc_F.cpu())
        sae.W_dec.copy_(self.W_dec_FD.cpu())
        sae.b_dec.copy_(self.b_dec_D.cpu())
        if sae.architecture == "jumprelu":
            sae.threshold.copy_(self.inference_threshold().cpu())   # pre-activations: unchanged by the fold
        sae.fold_scaling_(self.scale, pre_encoder_bias=self.pre_encoder_bias)
        return sae.eval()

    def inference_threshold(self) -> torch.Tensor:
        """(F,) θ of the stored jumprelu SAE, in pre-activation units (recipes of that architecture)."""
        raise NotImplementedError(f"the {self.cfg.recipe} recipe does not train a jumprelu SAE")

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {name: p.detach().cpu().clone() for name, p in zip(self.param_names, self.params)},
            "opt": self.opt.state_dict(),
            "last_fired": self.last_fired.cpu().clone(),
            "n_seen": self.n_seen,
            "step": self.steps_done,
            "scale": self.scale,
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, p in zip(self.param_names, self.params):
            p.copy_(state["params"][name])
        self.opt.load_state_dict(state["opt"])
        self.last_fired.copy_(state["last_fired"])
        self.n_seen = int(state["n_seen"])
        self.steps_done = int(state["step"])
        self.scale = float(state["scale"])


def geometric_median(points_ND: torch.Tensor, iters: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: argmin_y Σ ‖pᵢ - y‖, started at the mean."""
    points_ND = points_ND.double()
    y_D = points_ND.mean(0)
    for _ in range(iters):
        w_N = 1.0 / (points_ND - y_D).norm(dim=1).clamp_min(eps)
        y_new = (w_N[:, None] * points_ND).sum(0) / w_N.sum()
        if (y_new - y_D).norm() < eps * (1 + y_D.norm()):
            y_D = y_new
            break
        y_D = y_new
    return y_D.float()


@torch.no_grad()
def remove_parallel_component_(grad_FD: torch.Tensor, W_FD: torch.Tensor) -> None:
    """grad_i -= (grad_i · ŵ_i) ŵ_i for unit rows ŵ_i (keeps the step tangent to the sphere)."""
    inv = 1.0 / W_FD.norm(dim=1).clamp_min(1e-12)
    coeff_F = (grad_FD * W_FD).sum(1) * inv * inv
    grad_FD.addcmul_(W_FD, coeff_F[:, None], value=-1.0)


@torch.no_grad()
def unit_norm_rows_(W_FD: torch.Tensor) -> None:
    W_FD.div_(W_FD.norm(dim=1, keepdim=True).clamp_min(1e-12))
