"""Recipe "2024-04": Anthropic's April 2024 update to the 2023 recipe (*Circuits Updates — April 2024*).

    pre = x_s W_enc + b_enc  (no pre-encoder bias),   f = ReLU(pre),   x̂ = f W_dec + b_dec
    L   = ‖x_s - x̂‖² + λ Σᵢ fᵢ ‖W_dec,i‖             (λ warmed up linearly over the first 5%)

- Inputs scaled so that E‖x_s‖ = √D (the update's convention, shared by every recipe here).
- No decoder-norm constraint: the penalty weighs each feature by its decoder norm instead.
- Initialisation: W_dec rows random directions of norm 0.1, W_enc = W_decᵀ, biases 0.
- Gradient norm clipped to cfg.grad_clip (1.0 by default); learning rate decays linearly to 0 over
  the last cfg.cooldown_fraction (0.2 by default) of the run.

The update trained with a learning rate of about 5e-5 over far longer runs; the default 2e-3 is the
one tuned for topk (docs/sae-results.md). The five-matmul step itself is
``engine.train.recipes.dense``. Shape legend: N inputs, D d_in, F d_sae.
"""

from __future__ import annotations

import math

import torch

from engine.train.recipes.dense import DenseL1Trainer

__all__ = ["Anthropic2024Trainer", "L1_WARMUP_FRACTION", "DECODER_INIT_NORM"]

L1_WARMUP_FRACTION = 0.05
DECODER_INIT_NORM = 0.1


class Anthropic2024Trainer(DenseL1Trainer):
    pre_encoder_bias = False
    weighted_l1 = True

    @torch.no_grad()
    def init_parameters_(self, xs_ND: torch.Tensor, W_dec_FD: torch.Tensor) -> None:
        W_dec_FD *= DECODER_INIT_NORM
        self.b_dec_D.zero_()
        self.W_dec_FD.copy_(W_dec_FD)
        self.W_enc_FD.copy_(W_dec_FD)            # W_enc = W_decᵀ (stored transposed)
        self.b_enc_F.zero_()

    def l1_at(self, step: int) -> float:
        warm = max(1, int(self.total_steps * L1_WARMUP_FRACTION))
        return self.cfg.l1_coeff * min(1.0, (step + 1) / warm)

    def constrain_gradients_(self) -> None:
        if self.cfg.grad_clip <= 0:
            return
        norm = math.sqrt(sum(float(torch.dot(p.grad.view(-1), p.grad.view(-1))) for p in self.params))
        if norm > self.cfg.grad_clip:
            for p in self.params:
                p.grad.mul_(self.cfg.grad_clip / (norm + 1e-6))
