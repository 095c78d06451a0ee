"""Recipe "2023": Bricken et al. 2023, *Towards Monosemanticity* (Anthropic).

    pre = (x_s - b_dec) W_enc + b_enc,   f = ReLU(pre),   x̂ = f W_dec + b_dec
    L   = ‖x_s - x̂‖² + λ Σᵢ fᵢ                       (λ = cfg.l1_coeff, constant)

- W_dec rows unit norm: the gradient's component along each row is removed before the Adam step
  and the rows are renormalised after it (the paper's constraint).
- Initialisation: random unit decoder rows, W_enc = W_decᵀ, b_enc = 0, b_dec = the geometric median
  of the first inputs (the paper's b_dec initialisation).
- Constant learning rate cfg.lr (no cooldown).
- Dead-feature resampling at 10/20/30/40% of the run: the paper resamples four times, evenly spaced,
  early in training; here the spacing is widened so that short runs see enough data between
  resamples. Features silent over the preceding half-interval (at most cfg.dead_window activations)
  get an input drawn with probability ∝ (its loss)² as decoder row (unit norm) and as encoder
  column (0.2 × the mean live encoder norm), b_enc = 0, and their Adam moments are zeroed — the
  paper's procedure.

The five-matmul step itself is ``engine.train.recipes.dense``. Shape legend: N inputs, B batch,
D d_in, F d_sae.
"""

from __future__ import annotations

import torch

from engine.config import SAEConfig
from engine.train.recipes.base import remove_parallel_component_, unit_norm_rows_
from engine.train.recipes.dense import DenseL1Trainer

__all__ = ["Anthropic2023Trainer", "RESAMPLE_FRACTIONS"]

RESAMPLE_FRACTIONS = (0.1, 0.2, 0.3, 0.4)
RESAMPLE_ENCODER_NORM = 0.2       # a revived encoder column's norm, relative to the live mean


class Anthropic2023Trainer(DenseL1Trainer):
    pre_encoder_bias = True
    weighted_l1 = False
    resample_batches = 4          # batches of inputs scored to choose resampling directions

    def __init__(self, cfg: SAEConfig, device: torch.device, total_steps: int):
        super().__init__(cfg, device, total_steps)
        spacing = max(1, int(round(total_steps * 0.1)))
        self.resample_steps = tuple(int(round(total_steps * f)) for f in RESAMPLE_FRACTIONS)
        # dead = silent over the preceding half-interval between resamples
        self.dead_window = max(cfg.batch_size, min(cfg.dead_window, spacing * cfg.batch_size // 2))

    def lr_at(self, step: int) -> float:
        return self.cfg.lr

    def constrain_gradients_(self) -> None:
        remove_parallel_component_(self.W_dec_FD.grad, self.W_dec_FD)

    def constrain_weights_(self) -> None:
        unit_norm_rows_(self.W_dec_FD)

    @torch.no_grad()
    def resample_dead_(self, inputs_ND: torch.Tensor, seed: int) -> int:
        """The paper's resampling of features silent for `dead_window` activations. Returns how many."""
        dead = self.dead_mask().nonzero().squeeze(1)
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
        self.W_enc_FD[dead] = chosen_ND * (RESAMPLE_ENCODER_NORM * live_norm)
        self.b_enc_F[dead] = 0.0
        for i in (0, 1, 2):                                     # W_enc_FD, b_enc_F, W_dec_FD rows
            self.opt.exp_avg[i][dead] = 0.0
            self.opt.exp_avg_sq[i][dead] = 0.0
        self.last_fired[dead] = self.n_seen
        return n_dead
