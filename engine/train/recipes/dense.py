"""The ReLU-with-L1 step shared by the "2023" and "2024-04" recipes: five dense matmuls, or one
and a sparse rest once the codes are sparse.

    xc  = x_s - b_dec  (pre-encoder bias)  or  x_s        (B, D)
    f   = ReLU(xc W_enc + b_enc)                           (B, F)   matmul 1
    x̂   = f W_dec + b_dec                                  (B, D)   matmul 2
    L   = ‖x_s - x̂‖² + λ Σᵢ fᵢ wᵢ                          sums over D and F, mean over B
          wᵢ = 1 (plain L1)  or  ‖W_dec,i‖ (decoder-norm-weighted L1)

Backward, with e = x̂ - x_s and g_x̂ = 2e / B:
    dL/dW_dec = fᵀ g_x̂ (+ λ/B · Σ_b f_bi · W_dec,i / ‖W_dec,i‖ when weighted)          matmul 3
    dL/dpre   = (g_x̂ W_decᵀ + λ wᵢ / B) ⊙ [pre > 0]                                    matmul 4
    dL/dW_encᵀ = (dL/dpre)ᵀ xc,  dL/db_enc = Σ_b dL/dpre                                 matmul 5
    dL/db_dec = Σ_b g_x̂ (- dL/db_enc · W_enc with the pre-encoder bias)

Everything but the matmuls is elementwise and in place.

Once few latents fire (at most SPARSE_MAX_DENSITY of the B·F pairs, measured on each batch after
the encoder) matmuls 2-5 are replaced by work on the P active pairs p = (b, i) only — the same
maths, summed in another order (tests/engine/test_sae_sparse_l1.py checks both against autograd):
    x̂_b       = b_dec + Σ_{p ∈ b} f_p W_dec,i                      embedding_bag       (decode_pairs)
    dL/dpre_p = g_x̂,b · W_dec,i + λ wᵢ / B                         sampled matmul      (sampled_dot)
    dL/dW_dec,i = Σ_{p ∋ i} f_p g_x̂,b,  dL/dW_enc,i = Σ_{p ∋ i} dL/dpre_p xc_b      (pair_weight_gradients_)
The encoder stays dense. Early in training about half the latents fire and the dense step is
the faster; the switch is per batch, so it follows the run's L0 both ways.

Shape legend: B batch, D d_in, F d_sae.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from engine.config import SAEConfig
from engine.train.recipes.base import SAETrainer
from engine.train.recipes.sparse import decode_pairs, pair_weight_gradients_, sampled_dot

__all__ = ["DenseL1Trainer", "SPARSE_MAX_DENSITY"]

# The sparse path at or below this fraction of active (row, latent) pairs. Measured (demo sizes,
# B = F = 4096, D = 512, one thread; benchmarks/bench_sae_vs_saelens.py --crossover prints it):
# the sparse step is 4.1x faster at density 0.006, 2.3x at 0.061, even at 0.13 and 0.5x at 0.27.
SPARSE_MAX_DENSITY = 0.1


class DenseL1Trainer(SAETrainer):
    """ReLU SAE with an L1 penalty; subclasses set the two switches and the schedules."""

    weighted_l1: ClassVar[bool] = False      # penalty λ Σ fᵢ‖W_dec,i‖ instead of λ Σ fᵢ

    def __init__(self, cfg: SAEConfig, device: torch.device, total_steps: int):
        super().__init__(cfg, device, total_steps)
        B, F = self.local_batch, cfg.d_sae
        self.gf_BF = torch.empty(B, F, device=device, dtype=torch.float32)
        self.mask_BF = torch.empty(B, F, dtype=torch.bool, device=device)
        self.sparse_max_density = SPARSE_MAX_DENSITY
        self.sparse_steps_ = 0            # steps that took the sparse path (benchmarks and tests read it)

    def l1_at(self, step: int) -> float:
        """λ at `step`."""
        return self.cfg.l1_coeff

    @torch.no_grad()
    def gradients_(self) -> dict[str, float]:
        cfg, R, F = self.cfg, self.x_BD.shape[0], self.cfg.d_sae   # R: this rank's rows
        B = self.batch                                  # B normalises: the global batch's rows
        x, xc, err = self.x_BD, self.xc_BD, self.err_BD
        W_enc, b_enc, W_dec, b_dec = self.W_enc_FD, self.b_enc_F, self.W_dec_FD, self.b_dec_D
        if self.pre_encoder_bias:
            torch.sub(x, b_dec, out=xc)                                     # (B, D)
        else:
            xc.copy_(x)
        f = self.pre_BF
        torch.addmm(b_enc, xc, W_enc.t(), out=f)                            # (B, F) matmul 1
        torch.gt(f, 0, out=self.mask_BF)                                   # ReLU's support
        n_active = int(torch.count_nonzero(self.mask_BF))                   # (10x faster than mask.sum())
        sparse = n_active <= self.sparse_max_density * R * F
        self.sparse_steps_ += sparse
        if sparse:
            rows_P, lat_P = self.mask_BF.nonzero(as_tuple=True)            # row-major: rows non-decreasing
            val_P = f[rows_P, lat_P]
            f_sum_F = torch.zeros(F, device=self.device).index_add_(0, lat_P, val_P)
            torch.add(decode_pairs(rows_P, lat_P, val_P, W_dec, R), b_dec, out=err)   # x̂
        else:
            rows_P = lat_P = val_P = None
            f.relu_()
            f_sum_F = f.sum(0)                                              # (F,)
            torch.addmm(b_dec, f, W_dec, out=err)                           # (B, D) matmul 2: x̂
        err.sub_(x)                                                         # e = x̂ - x
        sq_err = torch.dot(err.view(-1), err.view(-1)).item() / B
        lam = self.l1_at(self.steps_done)
        dec_norm_F = W_dec.norm(dim=1)                                      # (F,)
        if self.weighted_l1:
            sparsity = lam * torch.dot(f_sum_F, dec_norm_F).item() / B
            sparsity_grad_F = dec_norm_F * (lam / B)
        else:
            sparsity = lam * f_sum_F.sum().item() / B
            sparsity_grad_F = torch.full_like(dec_norm_F, lam / B)
        g_err = err.mul_(2.0 / B)                                           # dL/dx̂ (B, D)
        if rows_P is not None:                                              # dL/dpre at the active pairs
            g_pre_P = sampled_dot(g_err, W_dec, rows_P, lat_P).add_(sparsity_grad_F[lat_P])
            pair_weight_gradients_(self, g_err, rows_P, lat_P, val_P, g_pre_P)
        else:
            torch.mm(f.t(), g_err, out=W_dec.grad)                          # matmul 3: dL/dW_dec
            g = self.gf_BF
            torch.mm(g_err, W_dec.t(), out=g)                               # matmul 4: dL/df
            g.add_(sparsity_grad_F).mul_(self.mask_BF)                      # dL/dpre
            torch.mm(g.t(), xc, out=W_enc.grad)                             # matmul 5: dL/dW_encᵀ
            torch.sum(g, 0, out=b_enc.grad)
        if self.weighted_l1:                                                # d(λ Σ fᵢ‖wᵢ‖)/dwᵢ
            W_dec.grad.addcmul_(W_dec, (f_sum_F * (lam / B) / dec_norm_F.clamp_min(1e-12))[:, None])
        torch.sum(g_err, 0, out=b_dec.grad)
        if self.pre_encoder_bias:                                           # pre depends on -b_dec
            b_dec.grad.sub_(b_enc.grad @ W_enc)
        fired_F = f_sum_F > 0
        self.last_fired[fired_F] = self.n_seen + B
        mse = sq_err / cfg.d_in
        return {"mse": mse, "sparsity_loss": sparsity, "l0": n_active / B, "loss": sq_err + sparsity}
