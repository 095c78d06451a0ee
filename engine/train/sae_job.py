"""How the sparse autoencoder is learned: three recipes, one generator job.

``train_sae(cfg, source, ...)`` yields ``events.Progress`` after every step and returns an
``SAETrainResult`` whose SAE works on raw MLP activations (input scaling folded into its weights).

All recipes train on scaled inputs x_s = s·x with s = √D / mean‖x‖ over the first batches (the
April 2024 convention; for "2023" and "topk" it is a pure reparametrisation of λ and of the
learning rate, so the same λ means the same thing whatever the model's activation scale).

Loss per batch (sums over D and F, mean over the batch B):

    "2023"     pre = (x_s - b_dec) W_enc + b_enc,  f = ReLU(pre),  x̂ = f W_dec + b_dec
               L = ‖x_s - x̂‖² + λ Σᵢ fᵢ
               W_dec rows unit norm: the gradient's component along each row is removed before the
               Adam step and the rows are renormalised after it. b_dec starts at the geometric median.
               Dead-feature resampling at 10/20/30/40% of the run (the paper's four evenly spaced
               resamples, widened so that short runs see enough data): features silent over the
               preceding half-interval get an input drawn with probability ∝ (its loss)² as decoder
               row (unit norm) and as encoder column (0.2 × mean live encoder norm), b_enc = 0, and
               their Adam moments are zeroed.
    "2024-04"  pre = x_s W_enc + b_enc (no pre-encoder bias),  f = ReLU(pre),  x̂ = f W_dec + b_dec
               L = ‖x_s - x̂‖² + λ Σᵢ fᵢ ‖W_dec,i‖        (λ warmed up linearly over the first 5%)
               W_dec rows random directions of norm 0.1, W_enc = W_decᵀ, biases 0; gradient norm
               clipped to cfg.grad_clip; LR decays linearly to 0 over the last cfg.cooldown_fraction.
    "topk"     pre = (x_s - b_dec) W_enc + b_enc,  f = ReLU(TopK_k(pre)),  x̂ = f W_dec + b_dec
               L = Σ‖x_s - x̂‖² / Σ‖x_s - x̄_s‖² + aux_coeff · Σ‖e - ê‖² / Σ‖e - ē‖²   (sums over the batch)
               where e = x_s - x̂ (held fixed) and ê = Σ over the aux_k largest pre-activations among
               dead latents of preᵢ W_dec,i (AuxK, Gao et al. 2024; without their ReLU, see below). Unit-norm decoder rows as
               in "2023"; W_enc = W_decᵀ at init; b_dec = geometric median; linear LR cooldown.

Speed: the forward and backward passes are written by hand (no autograd) into preallocated
buffers. For "topk" only the encoder is a dense matmul; the decoder and every gradient touch only
the B·k selected (row, latent) pairs: decode by ``embedding_bag``, the gradient with respect to the
selected activations by a sampled matmul (``torch.sparse.sampled_addmm``), and the weight
gradients by ``embedding_bag`` over the pairs sorted by latent. The dense recipes use five matmuls
with ``out=`` buffers.

Shape legend: B batch, D d_in, F d_sae, K k, P selected (row, latent) pairs, A aux latents per row.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as Fn

from engine import events
from engine.config import SAEConfig
from engine.errors import TrainingDiverged
from engine.sae import SparseAutoencoder

__all__ = ["train_sae", "SAETrainResult", "ActivationSource", "CHECKPOINT_NAME", "geometric_median"]

CHECKPOINT_NAME = "sae_checkpoint.pt"
RESAMPLE_FRACTIONS = (0.1, 0.2, 0.3, 0.4)
RESAMPLE_BATCHES = 4          # batches of inputs scored to choose resampling directions
INIT_BATCHES = 2              # batches used for the input scale and the geometric median
L1_WARMUP_FRACTION = 0.05     # 2024-04: λ warmed up over the first 5%


class ActivationSource(Protocol):
    """What train_sae needs: batches (B, D) float32, the same sequence for the same start index."""

    d_in: int

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]: ...


@dataclass
class SAETrainResult:
    sae: SparseAutoencoder                  # folded to raw activations, eval mode, on the CPU
    curves: dict[str, np.ndarray]           # name -> (n, 2) columns (activations seen, value)
    seconds: float
    n_activations: int
    steps: int = 0
    scale: float = 1.0                      # s of x_s = s·x used during training (already folded)
    final: dict[str, float] = field(default_factory=dict)


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


# ---------------------------------------------------------------------------------------------
class _Trainer:
    """Parameters, Adam, buffers and one hand-written training step for one recipe."""

    def __init__(self, cfg: SAEConfig, device: torch.device, total_steps: int):
        self.cfg = cfg
        self.device = device
        self.total_steps = total_steps
        D, F, B = cfg.d_in, cfg.d_sae, cfg.batch_size
        kw = dict(device=device, dtype=torch.float32)
        # W_enc is kept transposed, (F, D), so that both weight gradients come out row-major.
        self.W_enc_FD = torch.nn.Parameter(torch.zeros(F, D, **kw))
        self.b_enc_F = torch.nn.Parameter(torch.zeros(F, **kw))
        self.W_dec_FD = torch.nn.Parameter(torch.zeros(F, D, **kw))
        self.b_dec_D = torch.nn.Parameter(torch.zeros(D, **kw))
        self.params = [self.W_enc_FD, self.b_enc_F, self.W_dec_FD, self.b_dec_D]
        for p in self.params:
            p.grad = torch.zeros_like(p)
        self.opt = _Adam(self.params, betas=(0.9, 0.999), eps=1e-8)
        self.scale = 1.0
        self.last_fired = torch.zeros(F, dtype=torch.long, device=device)  # activations seen at last firing
        self.n_seen = 0
        self.step = 0
        # buffers reused every step (fresh big allocations cost page faults)
        self.x_BD = torch.empty(B, D, **kw)
        self.xc_BD = torch.empty(B, D, **kw)
        self.err_BD = torch.empty(B, D, **kw)
        self.pre_BF = torch.empty(B, F, **kw)
        if cfg.recipe == "topk":
            self.vals_BK = torch.empty(B, cfg.k, **kw)
            self.idx_BK = torch.empty(B, cfg.k, dtype=torch.long, device=device)
        else:
            self.gf_BF = torch.empty(B, F, **kw)
            self.mask_BF = torch.empty(B, F, dtype=torch.bool, device=device)

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def initialise(self, sample_ND: torch.Tensor) -> None:
        cfg = self.cfg
        D, F = cfg.d_in, cfg.d_sae
        sample_ND = sample_ND.to(self.device, torch.float32)
        mean_norm = sample_ND.norm(dim=1).mean().item()
        self.scale = math.sqrt(D) / mean_norm if mean_norm > 0 else 1.0
        xs_ND = sample_ND * self.scale
        gen = torch.Generator().manual_seed(cfg.seed)
        W_dec_FD = torch.randn(F, D, generator=gen).to(self.device)
        W_dec_FD /= W_dec_FD.norm(dim=1, keepdim=True)
        if cfg.recipe == "2024-04":
            W_dec_FD *= 0.1
            self.b_dec_D.zero_()
        else:
            self.b_dec_D.copy_(geometric_median(xs_ND[:8192].cpu()).to(self.device))
        self.W_dec_FD.copy_(W_dec_FD)
        self.W_enc_FD.copy_(W_dec_FD)            # W_enc = W_decᵀ (stored transposed)
        self.b_enc_F.zero_()

    # ------------------------------------------------------------------ schedules
    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if cfg.recipe == "2023" or cfg.cooldown_fraction <= 0:
            return cfg.lr
        start = int(self.total_steps * (1 - cfg.cooldown_fraction))
        if step < start:
            return cfg.lr
        return cfg.lr * max(0.0, (self.total_steps - step) / max(1, self.total_steps - start))

    def l1_at(self, step: int) -> float:
        cfg = self.cfg
        if cfg.recipe == "2024-04":
            warm = max(1, int(self.total_steps * L1_WARMUP_FRACTION))
            return cfg.l1_coeff * min(1.0, (step + 1) / warm)
        return cfg.l1_coeff

    def dead_mask(self, window: int) -> torch.Tensor:
        return (self.n_seen - self.last_fired) >= window

    # ------------------------------------------------------------------ one step
    @torch.no_grad()
    def train_step(self, x_BD: torch.Tensor, dead_window: int) -> dict[str, float]:
        B = x_BD.shape[0]
        if B != self.x_BD.shape[0]:
            raise ValueError(f"batch of {B} rows, expected {self.x_BD.shape[0]}")
        torch.mul(x_BD.to(self.device, torch.float32), self.scale, out=self.x_BD)
        for p in self.params:
            p.grad.zero_()
        if self.cfg.recipe == "topk":
            metrics = self._topk_grads(dead_window)
        else:
            metrics = self._dense_grads()
        if self.cfg.recipe in ("2023", "topk"):
            _remove_parallel_component_(self.W_dec_FD.grad, self.W_dec_FD)
        if self.cfg.recipe == "2024-04" and self.cfg.grad_clip > 0:
            norm = math.sqrt(sum(float(torch.dot(p.grad.view(-1), p.grad.view(-1))) for p in self.params))
            if norm > self.cfg.grad_clip:
                for p in self.params:
                    p.grad.mul_(self.cfg.grad_clip / (norm + 1e-6))
        lr = self.lr_at(self.step)
        if math.isfinite(metrics["loss"]):
            self.opt.step(lr)
            if self.cfg.recipe in ("2023", "topk"):
                _unit_norm_rows_(self.W_dec_FD)
        self.n_seen += B
        self.step += 1
        metrics["lr"] = lr
        metrics["dead_fraction"] = self.dead_mask(dead_window).float().mean().item()
        return metrics

    @torch.no_grad()
    def _dense_grads(self) -> dict[str, float]:
        """2023 / 2024-04: five dense matmuls, everything else elementwise in place."""
        cfg, B = self.cfg, self.x_BD.shape[0]
        x, xc, err = self.x_BD, self.xc_BD, self.err_BD
        W_enc, b_enc, W_dec, b_dec = self.W_enc_FD, self.b_enc_F, self.W_dec_FD, self.b_dec_D
        if cfg.recipe == "2023":
            torch.sub(x, b_dec, out=xc)                                     # (B, D)
        else:
            xc.copy_(x)
        f = self.pre_BF
        torch.addmm(b_enc, xc, W_enc.t(), out=f)                            # (B, F) matmul 1
        f.relu_()
        torch.addmm(b_dec, f, W_dec, out=err)                               # (B, D) matmul 2: x̂
        err.sub_(x)                                                         # e = x̂ - x
        sq_err = torch.dot(err.view(-1), err.view(-1)).item() / B
        torch.gt(f, 0, out=self.mask_BF)
        l0 = self.mask_BF.sum().item() / B
        f_sum_F = f.sum(0)                                                  # (F,)
        lam = self.l1_at(self.step)
        dec_norm_F = W_dec.norm(dim=1)                                      # (F,)
        if cfg.recipe == "2023":
            sparsity = lam * f_sum_F.sum().item() / B
            sparsity_grad_F = torch.full_like(dec_norm_F, lam / B)
        else:
            sparsity = lam * torch.dot(f_sum_F, dec_norm_F).item() / B
            sparsity_grad_F = dec_norm_F * (lam / B)
        g_err = err.mul_(2.0 / B)                                           # dL/dx̂ (B, D)
        torch.mm(f.t(), g_err, out=W_dec.grad)                              # matmul 3: dL/dW_dec
        if cfg.recipe == "2024-04":                                         # d(λ Σ fᵢ‖wᵢ‖)/dwᵢ
            W_dec.grad.addcmul_(W_dec, (f_sum_F * (lam / B) / dec_norm_F.clamp_min(1e-12))[:, None])
        b_dec.grad.copy_(g_err.sum(0))
        g = self.gf_BF
        torch.mm(g_err, W_dec.t(), out=g)                                   # matmul 4: dL/df
        g.add_(sparsity_grad_F).mul_(self.mask_BF)                          # dL/dpre
        torch.mm(g.t(), xc, out=W_enc.grad)                                 # matmul 5: dL/dW_encᵀ
        torch.sum(g, 0, out=b_enc.grad)
        if cfg.recipe == "2023":                                            # pre depends on -b_dec
            b_dec.grad.sub_(b_enc.grad @ W_enc)
        fired_F = f_sum_F > 0
        self.last_fired[fired_F] = self.n_seen + B
        mse = sq_err / cfg.d_in
        return {"mse": mse, "sparsity_loss": sparsity, "l0": l0, "loss": sq_err + sparsity}

    @torch.no_grad()
    def _topk_grads(self, dead_window: int) -> dict[str, float]:
        """TopK + AuxK: one dense matmul; the rest works on the selected (row, latent) pairs."""
        cfg, B, D, F = self.cfg, self.x_BD.shape[0], self.cfg.d_in, self.cfg.d_sae
        x, xc, err = self.x_BD, self.xc_BD, self.err_BD
        W_enc, b_enc, W_dec, b_dec = self.W_enc_FD, self.b_enc_F, self.W_dec_FD, self.b_dec_D
        torch.sub(x, b_dec, out=xc)                                         # (B, D)
        pre = self.pre_BF
        torch.addmm(b_enc, xc, W_enc.t(), out=pre)                          # (B, F) the one matmul
        vals, idx = self.vals_BK, self.idx_BK
        torch.topk(pre, cfg.k, dim=1, sorted=False, out=(vals, idx))        # (B, K)
        vals.relu_()
        x_hat = Fn.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")  # (B, D)
        torch.add(x_hat, b_dec, out=err).sub_(x)                            # e = x̂ - x
        sq_err_sum = torch.dot(err.view(-1), err.view(-1)).item()
        # normalised MSE, as Gao et al.: the AuxK coefficient 1/32 is relative to this scale
        var_sum = max(float((x - x.mean(0)).pow(2).sum()), 1e-12)           # Σ‖x - x̄‖²
        nmse = sq_err_sum / var_sum
        l0 = (vals > 0).sum().item() / B
        g_err = err.mul_(2.0 / var_sum)                                     # dL/dx̂ (B, D)

        # AuxK: the dead latents' largest pre-activations model the residual error.
        dead_F = self.dead_mask(dead_window)
        n_dead = int(dead_F.sum())
        aux_loss = 0.0
        rows_list, lat_list, val_list = [torch.arange(B, device=self.device).repeat_interleave(cfg.k)], \
            [idx.reshape(-1)], [vals.reshape(-1)]
        pass_list = [vals.reshape(-1) > 0]                                  # pairs whose ReLU passes gradient
        G_grad = g_err                                                      # rows of dL/dx̂ per pair
        n_aux = min(cfg.aux_k, n_dead) if cfg.aux_coeff > 0 else 0
        if n_aux > 0:
            dead_idx = dead_F.nonzero().squeeze(1)                          # (n_dead,)
            aux_vals, aux_local = pre.index_select(1, dead_idx).topk(n_aux, dim=1, sorted=False)  # (B, A)
            aux_idx = dead_idx[aux_local]
            # No ReLU here (unlike the main TopK): a latent dies when its pre-activations sink below
            # the others', often below 0, and a ReLU would then cut off the gradient that is meant
            # to revive it. Measured on the demo model: with the ReLU the aux loss stayed at its
            # starting value and the dead fraction kept growing.
            resid = -(err * (var_sum / 2.0))                                # e = x - x̂ (fixed)
            denom = (resid - resid.mean(0)).pow(2).sum().clamp_min(1e-12)
            aux_err = Fn.embedding_bag(aux_idx, W_dec, per_sample_weights=aux_vals, mode="sum") - resid
            aux_loss = cfg.aux_coeff * (aux_err.pow(2).sum() / denom).item()
            g_aux = aux_err.mul_(2.0 * cfg.aux_coeff / denom)               # dL_aux/dê (B, D)
            G_grad = torch.cat([g_err, g_aux])                              # (2B, D)
            rows_list.append(torch.arange(B, 2 * B, device=self.device).repeat_interleave(n_aux))
            lat_list.append(aux_idx.reshape(-1))
            val_list.append(aux_vals.reshape(-1))
            pass_list.append(torch.ones(aux_vals.numel(), dtype=torch.bool, device=self.device))
        rows_P = torch.cat(rows_list) if len(rows_list) > 1 else rows_list[0]
        lat_P = torch.cat(lat_list) if len(lat_list) > 1 else lat_list[0]
        val_P = torch.cat(val_list) if len(val_list) > 1 else val_list[0]

        # dL/dvalue for each pair = G_grad[row] · W_dec[latent], a matmul sampled at the pairs.
        g_val_P = _sampled_dot(G_grad, W_dec, rows_P, lat_P)
        g_pre_P = g_val_P.mul_(torch.cat(pass_list) if len(pass_list) > 1 else pass_list[0])

        # Weight gradients: sums over the pairs of each latent, by embedding_bag on sorted pairs.
        order = _stable_argsort(lat_P, F)
        lat_sorted = lat_P[order]
        per_lat = torch.bincount(lat_sorted, minlength=F)
        offsets = torch.zeros(F, dtype=torch.long, device=self.device)
        torch.cumsum(per_lat[:-1], 0, out=offsets[1:])
        rows_sorted = rows_P[order]
        W_dec.grad.copy_(Fn.embedding_bag(rows_sorted, G_grad, offsets, per_sample_weights=val_P[order], mode="sum"))
        g_pre_sorted = g_pre_P[order]
        W_enc.grad.copy_(Fn.embedding_bag(torch.remainder(rows_sorted, B), xc, offsets,
                                          per_sample_weights=g_pre_sorted, mode="sum"))
        b_enc.grad.index_add_(0, lat_sorted, g_pre_sorted)
        torch.sum(g_err, 0, out=b_dec.grad)
        b_dec.grad.sub_(b_enc.grad @ W_enc)                                 # pre depends on -b_dec

        fired = idx[vals > 0]
        self.last_fired[fired] = self.n_seen + B
        return {"mse": sq_err_sum / (B * D), "nmse": nmse, "sparsity_loss": 0.0, "aux_loss": aux_loss,
                "l0": l0, "loss": nmse + aux_loss}

    # ------------------------------------------------------------------ 2023 resampling
    @torch.no_grad()
    def resample_dead_(self, inputs_ND: torch.Tensor, window: int, seed: int) -> int:
        """The paper's resampling of features silent for `window` activations. Returns how many."""
        dead = self.dead_mask(window).nonzero().squeeze(1)
        n_dead = dead.numel()
        if n_dead == 0:
            return 0
        xs_ND = inputs_ND.to(self.device, torch.float32) * self.scale
        losses = []
        for chunk in xs_ND.split(4096):
            xc = chunk - self.b_dec_D
            f = torch.relu(torch.addmm(self.b_enc_F, xc, self.W_enc_FD.t()))
            x_hat = torch.addmm(self.b_dec_D, f, self.W_dec_FD)
            losses.append((x_hat - chunk).pow(2).sum(1))
        loss_N = torch.cat(losses).double()
        probs = loss_N.pow(2)
        if not torch.isfinite(probs).all() or probs.sum() <= 0:
            probs = torch.ones_like(probs)
        gen = torch.Generator().manual_seed(seed)
        pick = torch.multinomial(probs.cpu(), n_dead, replacement=n_dead > probs.numel(), generator=gen)
        chosen_ND = xs_ND[pick.to(self.device)] - self.b_dec_D
        chosen_ND /= chosen_ND.norm(dim=1, keepdim=True).clamp_min(1e-8)
        alive = torch.ones(self.cfg.d_sae, dtype=torch.bool, device=self.device)
        alive[dead] = False
        enc_norms = self.W_enc_FD.norm(dim=1)
        live_norm = enc_norms[alive].mean().item() if alive.any() else 1.0
        self.W_dec_FD[dead] = chosen_ND
        self.W_enc_FD[dead] = chosen_ND * (0.2 * live_norm)
        self.b_enc_F[dead] = 0.0
        for i in (0, 1, 2):                                     # W_enc_FD, b_enc_F, W_dec_FD rows
            self.opt.exp_avg[i][dead] = 0.0
            self.opt.exp_avg_sq[i][dead] = 0.0
        self.last_fired[dead] = self.n_seen
        return n_dead

    # ------------------------------------------------------------------ result and checkpoints
    @torch.no_grad()
    def to_sae(self) -> SparseAutoencoder:
        sae = SparseAutoencoder(self.cfg)
        sae.W_enc.copy_(self.W_enc_FD.t().cpu())
        sae.b_enc.copy_(self.b_enc_F.cpu())
        sae.W_dec.copy_(self.W_dec_FD.cpu())
        sae.b_dec.copy_(self.b_dec_D.cpu())
        sae.fold_scaling_(self.scale, pre_encoder_bias=self.cfg.recipe != "2024-04")
        return sae.eval()

    def state(self) -> dict[str, Any]:
        return {
            "params": {name: p.detach().cpu().clone() for name, p in zip(PARAM_NAMES, self.params)},
            "opt": self.opt.state(),
            "last_fired": self.last_fired.cpu().clone(),
            "n_seen": self.n_seen,
            "step": self.step,
            "scale": self.scale,
        }

    @torch.no_grad()
    def load_state(self, state: dict[str, Any]) -> None:
        for name, p in zip(PARAM_NAMES, self.params):
            p.copy_(state["params"][name])
        self.opt.load_state(state["opt"])
        self.last_fired.copy_(state["last_fired"])
        self.n_seen = int(state["n_seen"])
        self.step = int(state["step"])
        self.scale = float(state["scale"])


PARAM_NAMES = ("W_enc_FD", "b_enc_F", "W_dec_FD", "b_dec_D")


def _sampled_dot(G_RD: torch.Tensor, W_FD: torch.Tensor, rows_P: torch.Tensor, lat_P: torch.Tensor) -> torch.Tensor:
    """G[rows_P[p]] · W[lat_P[p]] for every pair p (rows_P grouped in increasing order).

    CPU/CUDA: a matmul evaluated only at the pairs (torch.sparse.sampled_addmm on a CSR pattern);
    elsewhere (MPS) a gather and a row-wise dot.
    """
    if G_RD.device.type not in ("cpu", "cuda"):
        return (G_RD[rows_P] * W_FD[lat_P]).sum(1)
    n_rows, F = G_RD.shape[0], W_FD.shape[0]
    counts_R = torch.bincount(rows_P, minlength=n_rows)
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=G_RD.device)
    torch.cumsum(counts_R, 0, out=crow[1:])
    with warnings.catch_warnings():      # "CSR support is in beta": we use one well-tested op
        warnings.simplefilter("ignore")
        pattern = torch.sparse_csr_tensor(crow, lat_P, torch.zeros(len(lat_P), dtype=G_RD.dtype, device=G_RD.device),
                                          size=(n_rows, F), check_invariants=False)
    return torch.sparse.sampled_addmm(pattern, G_RD, W_FD.t(), beta=0.0).values()


class _Adam:
    """Adam (no weight decay) over a fixed list of tensors, fused where torch has the kernel.

    Not torch.optim.Adam: constructing the first torch.optim optimizer imports torch._dynamo,
    measured at 25 s on the shared test machine, and the trainer needs none of its generality.
    Row-wise resets (resampling) just zero slices of exp_avg / exp_avg_sq.
    """

    def __init__(self, params: list[torch.Tensor], betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]
        self.fused = hasattr(torch, "_fused_adam_") and params[0].device.type in ("cpu", "cuda")

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

    def state(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, m, v, s in zip(PARAM_NAMES, self.exp_avg, self.exp_avg_sq, self.steps):
            out[f"{name}.exp_avg"] = m.detach().cpu().clone()
            out[f"{name}.exp_avg_sq"] = v.detach().cpu().clone()
            out[f"{name}.step"] = s.detach().cpu().clone()
        return out

    @torch.no_grad()
    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, m, v, s in zip(PARAM_NAMES, self.exp_avg, self.exp_avg_sq, self.steps):
            m.copy_(state[f"{name}.exp_avg"])
            v.copy_(state[f"{name}.exp_avg_sq"])
            s.copy_(state[f"{name}.step"])


def _stable_argsort(ids: torch.Tensor, n_values: int) -> torch.Tensor:
    """Stable argsort of small non-negative ids. On the CPU numpy's radix sort of int16 is ~50x
    faster than torch.sort (measured: 98k ids, 13 ms vs 970 ms on the shared 2-core machine)."""
    if ids.device.type != "cpu":
        return torch.sort(ids, stable=True).indices
    small = ids.numpy().astype(np.int16 if n_values <= np.iinfo(np.int16).max else np.int32)
    return torch.from_numpy(np.argsort(small, kind="stable"))


@torch.no_grad()
def _remove_parallel_component_(grad_FD: torch.Tensor, W_FD: torch.Tensor) -> None:
    """grad_i -= (grad_i · ŵ_i) ŵ_i for unit rows ŵ_i (keeps the step tangent to the sphere)."""
    inv = 1.0 / W_FD.norm(dim=1).clamp_min(1e-12)
    coeff_F = (grad_FD * W_FD).sum(1) * inv * inv
    grad_FD.addcmul_(W_FD, coeff_F[:, None], value=-1.0)


@torch.no_grad()
def _unit_norm_rows_(W_FD: torch.Tensor) -> None:
    W_FD.div_(W_FD.norm(dim=1, keepdim=True).clamp_min(1e-12))


# ---------------------------------------------------------------------------------------------
def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _curves_to_arrays(curves: dict[str, list]) -> dict[str, np.ndarray]:
    return {name: np.asarray(points, dtype=np.float64).reshape(-1, 2) for name, points in curves.items()}


CURVE_KEYS = {"sae/mse": "mse", "sae/l0": "l0", "sae/dead_fraction": "dead_fraction", "sae/lr": "lr",
              "sae/loss": "loss"}


def train_sae(cfg: SAEConfig, source: ActivationSource, device: str | torch.device = "cpu",
              checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
              cancel: events.CancelToken | None = None):
    """Generator: train an SAE on `source`; yields Progress(stage="sae"), returns SAETrainResult.

    Raises events.Cancelled (after saving a checkpoint) when `cancel` is set, and
    TrainingDiverged when the loss becomes NaN/inf (the last good checkpoint is kept).
    """
    device = torch.device(device)
    src_d_in = getattr(source, "d_in", cfg.d_in)
    if src_d_in != cfg.d_in:
        raise ValueError(f"activations have {src_d_in} columns but the SAE expects d_in={cfg.d_in}")
    total_steps = max(1, cfg.n_activations // cfg.batch_size)
    total = total_steps * cfg.batch_size
    trainer = _Trainer(cfg, device, total_steps)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    cfg_json = json.dumps(cfg.to_dict(), sort_keys=True)
    curves: dict[str, list] = {name: [] for name in CURVE_KEYS}
    data_pos = 0                      # batches consumed from the source (training + resampling)
    seconds_before = 0.0
    resamples_done = 0
    spacing = max(1, int(round(total_steps * 0.1)))
    resample_steps = [int(round(total_steps * f)) for f in RESAMPLE_FRACTIONS] if cfg.recipe == "2023" else []
    resample_window = max(cfg.batch_size, min(cfg.dead_window, spacing * cfg.batch_size // 2))

    if resume and ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("config") != cfg_json:
            raise ValueError(f"checkpoint {ckpt_path} was made with a different SAE configuration; "
                             "delete it or train without resume")
        trainer.load_state(state["trainer"])
        data_pos = int(state["data_pos"])
        seconds_before = float(state["seconds"])
        resamples_done = int(state["resamples_done"])
        curves = {name: [tuple(row) for row in state["curves"][name].tolist()] for name in CURVE_KEYS}
    else:
        init_batches = []
        for batch in source.iter_batches(cfg.batch_size, start=0):
            init_batches.append(batch)
            if len(init_batches) >= INIT_BATCHES:
                break
        if not init_batches:
            raise ValueError("the activation source gave no data")
        trainer.initialise(torch.cat(init_batches))

    def save_checkpoint(seconds: float) -> str | None:
        if ckpt_path is None:
            return None
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({
            "config": cfg_json,
            "trainer": trainer.state(),
            "data_pos": data_pos,
            "seconds": seconds,
            "resamples_done": resamples_done,
            "curves": {name: torch.tensor(points, dtype=torch.float64).reshape(-1, 2)
                       for name, points in curves.items()},
        }, ckpt_path)
        return str(ckpt_path)

    t_start = time.perf_counter()
    meter = events.RateMeter(total)
    last_metrics: dict[str, float] = {}
    batches = source.iter_batches(cfg.batch_size, start=data_pos)
    while trainer.step < total_steps:
        elapsed = seconds_before + time.perf_counter() - t_start
        if cancel is not None and cancel.cancelled:
            raise events.Cancelled("SAE training cancelled", checkpoint=save_checkpoint(elapsed))
        if resamples_done < len(resample_steps) and trainer.step >= resample_steps[resamples_done]:
            inputs = []
            for _ in range(RESAMPLE_BATCHES):
                inputs.append(_next_batch(batches))
                data_pos += 1
            trainer.resample_dead_(torch.cat(inputs), resample_window, seed=cfg.seed * 1_000_003 + trainer.step)
            resamples_done += 1
            continue
        x_BD = _next_batch(batches)
        data_pos += 1
        metrics = trainer.train_step(x_BD, cfg.dead_window if cfg.recipe != "2023" else resample_window)
        if not math.isfinite(metrics["loss"]):
            raise TrainingDiverged(
                f"SAE loss became {metrics['loss']} at step {trainer.step} "
                f"({trainer.n_seen:,} activations); try a lower learning rate or check the activations "
                "for NaN/inf" + (f"; last good checkpoint: {ckpt_path}" if ckpt_path and ckpt_path.exists() else ""))
        last_metrics = metrics
        for name, key in CURVE_KEYS.items():
            curves[name].append((trainer.n_seen, metrics[key]))
        if ckpt_path is not None and cfg.checkpoint_every > 0 and trainer.step % cfg.checkpoint_every == 0:
            save_checkpoint(seconds_before + time.perf_counter() - t_start)
        rate, eta = meter.update(trainer.n_seen)
        yield events.Progress(stage="sae", done=trainer.n_seen, total=total, step=trainer.step,
                              metrics={k: float(v) for k, v in metrics.items()}, rate=rate, eta_s=eta,
                              unit="activations")
    seconds = seconds_before + time.perf_counter() - t_start
    if ckpt_path is not None:
        save_checkpoint(seconds)
    return SAETrainResult(sae=trainer.to_sae(), curves=_curves_to_arrays(curves), seconds=seconds,
                          n_activations=trainer.n_seen, steps=trainer.step, scale=trainer.scale,
                          final={k: float(v) for k, v in last_metrics.items()})


def _next_batch(batches: Iterator[torch.Tensor]) -> torch.Tensor:
    try:
        return next(batches)
    except StopIteration:
        raise ValueError("the activation source ran out of data") from None
