"""Recipe "jumprelu": Rajamanoharan et al. 2024, *Jumping Ahead: Improving Reconstruction Fidelity
with JumpReLU Sparse Autoencoders* (Google DeepMind).

    pre = (x_s - b_dec) W_enc + b_enc,   f = pre · H(pre - θ)  (θ ≥ 0 learned per latent),   x̂ = f W_dec + b_dec
    L   = (1/B) Σ_b ‖x_s - x̂‖²  +  λ (1/B) Σ_b Σᵢ H(preᵢ - θᵢ)  +  α (1/B) Σ_b Σ_{i dead} ReLU(θᵢ - preᵢ)

H (the Heaviside step) has no useful derivative with respect to θ, so θ learns through the paper's
straight-through estimator with the rectangle kernel K(u) = [|u| < ½] of bandwidth ε:

    ∂f/∂θ ≈ -(θ/ε) K((pre - θ)/ε),     ∂H(pre - θ)/∂θ ≈ -(1/ε) K((pre - θ)/ε)

and, as in the paper and SAELens's default (``jumprelu_ste_to_input=False``), pre itself gets only
the exact gradient of f, H(pre - θ), so the encoder learns from the reconstruction alone. θ is
projected back to ≥ 0 after each step (SAELens; the paper trains log θ for the same purpose).

Defaults and their sources. Inputs scaled so that E‖x_s‖² ≈ D, the paper's normalisation (shared by
every recipe here). ε = cfg.jumprelu_bandwidth = 0.05: SAELens's default (the paper's 0.001 suits
its runs of 100k+ steps). θ₀ = cfg.jumprelu_init_threshold = 1.5 and λ = cfg.l0_coeff = 0.5: ours,
the best of those measured on the demo model at L0 ≤ 20 (docs/sae-results.md). The paper starts θ at 0.001 and its long runs
raise it; in the demo's ~500 steps Adam moves θ by at most ~lr per step (about 1 in all), so θ must
start near its final scale: with unit decoder rows, W_enc = W_decᵀ and this normalisation, the
initial pre-activations have a standard deviation of about 1.2 on the demo model, and θ₀ = 1.5 lets
about 10% of the latents fire on a token at the start; a higher θ₀ left more latents dead (27% at
θ₀ = 2.5), a lower one more L0. Unit-norm decoder rows, W_enc = W_decᵀ and
b_dec = the geometric median at initialisation: ours, the sparse recipes' shared setup. The
pre-encoder bias is a reparametrisation of the paper's b_enc.

Dead latents: Anthropic's pre-activation loss, as SAELens implements it (``pre_act_loss_coefficient``
of JumpReLUTrainingSAE, restricted to dead latents): a latent silent for cfg.dead_window activations is pulled up towards
its threshold by α·ReLU(θ - pre), α = cfg.pre_act_coeff = 3e-4 (ours; SAELens's "Anthropic setup"
is 3e-6 on its own loss scale). A dead latent's encoder row gets no other gradient, and Adam
normalises per parameter, so α's size matters little for it; 0 turns the pull off.

The step is ``engine.train.recipes.sparse`` (pairs: pre > θ), plus the threshold's gradient on the
pairs inside the estimator's window and the dead latents' pull (one (B, n_dead) matmul).
Shape legend: B batch, D d_in, F d_sae, Q pairs within the window, n dead latents.
"""

from __future__ import annotations

import torch

from engine.config import SAEConfig
from engine.train.recipes.sparse import Pairs, SparseTrainer, sampled_dot

__all__ = ["JumpReLUTrainer"]


class JumpReLUTrainer(SparseTrainer):
    normalised_mse = False          # the paper's loss: squared error per token, λ in its units
    auxk = False                    # dead latents: the pre-activation loss instead
    rank_invariant_metrics = frozenset({"threshold_mean"})

    def __init__(self, cfg: SAEConfig, device: torch.device, total_steps: int):
        super().__init__(cfg, device, total_steps)
        self.theta_F = self.add_parameter_("threshold_F", torch.full((cfg.d_sae,), cfg.jumprelu_init_threshold))

    def select_(self, pre_BF: torch.Tensor) -> Pairs:
        """The pairs with pre > θ: JumpReLU's active latents (rows non-decreasing: row-major order)."""
        rows, lat = (pre_BF > self.theta_F).nonzero(as_tuple=True)
        vals = pre_BF[rows, lat]
        return rows, lat, vals, torch.ones_like(vals, dtype=torch.bool)

    def extra_gradients_(self, pre_BF: torch.Tensor, G_RD: torch.Tensor, pairs: Pairs) -> dict[str, float]:
        cfg, B = self.cfg, self.batch               # B normalises: the global batch's rows
        theta, eps, lam = self.theta_F, cfg.jumprelu_bandwidth, cfg.l0_coeff
        l0_loss = lam * pairs[0].numel() / B
        # θ: the straight-through estimator on the pairs inside the window |pre - θ| < ε/2
        rows_Q, lat_Q = ((pre_BF - theta).abs_() < eps / 2).nonzero(as_tuple=True)
        g_f_Q = sampled_dot(G_RD, self.W_dec_FD, rows_Q, lat_Q)            # dL/df at those pairs
        g_theta_Q = g_f_Q.mul_(-theta[lat_Q] / eps).sub_(lam / (B * eps))
        theta.grad.zero_().index_add_(0, lat_Q, g_theta_Q)
        pre_act_loss = 0.0
        dead_idx = self.dead_mask().nonzero().squeeze(1)
        if cfg.pre_act_coeff > 0 and dead_idx.numel():
            gap = theta[dead_idx] - pre_BF.index_select(1, dead_idx)        # (B, n) θ - pre
            below = (gap > 0).float()
            pre_act_loss = cfg.pre_act_coeff * float(gap.relu_().sum()) / B
            c = cfg.pre_act_coeff / B
            # dL/dpre = -c where pre < θ: on W_enc (rows of the dead latents), b_enc, and +c on θ
            self.W_enc_FD.grad.index_add_(0, dead_idx, below.t() @ self.xc_BD, alpha=-c)
            count_n = below.sum(0)
            self.b_enc_F.grad.index_add_(0, dead_idx, count_n, alpha=-c)
            theta.grad.index_add_(0, dead_idx, count_n, alpha=c)
        return {"sparsity_loss": l0_loss + pre_act_loss, "l0_loss": l0_loss, "pre_act_loss": pre_act_loss,
                "threshold_mean": float(theta.mean())}

    def constrain_weights_(self) -> None:
        super().constrain_weights_()
        self.theta_F.clamp_(min=0.0)

    def inference_threshold(self) -> torch.Tensor:
        return self.theta_F.detach().clamp(min=0.0)
