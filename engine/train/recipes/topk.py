"""Recipe "topk": Gao et al. 2024, *Scaling and evaluating sparse autoencoders* (OpenAI).

    pre = (x_s - b_dec) W_enc + b_enc,   f = ReLU(TopK_k(pre)),   x̂ = f W_dec + b_dec
    L   = Σ‖x_s - x̂‖² / Σ‖x_s - x̄_s‖²  +  aux_coeff · Σ‖e - ê‖² / Σ‖e - ē‖²    (sums over the batch)

where e = x_s - x̂ (held fixed) and ê = Σ over the aux_k largest pre-activations among dead latents
of preᵢ W_dec,i (AuxK). From the paper: the normalised MSE, k_aux = 512 (cfg.aux_k) and
α = 1/32 (cfg.aux_coeff), unit-norm decoder rows (the gradient's component along each row removed
before the Adam step, rows renormalised after it), W_enc = W_decᵀ at initialisation, b_dec = the
geometric median of the first inputs. Ours, measured on the demo model (docs/sae-results.md): no
ReLU on AuxK's pre-activations (see ``gradients_``), dead = silent for cfg.dead_window activations
(10% of the demo run), k = 20, a linear LR cooldown over the last cfg.cooldown_fraction.

Speed: only the encoder is a dense matmul; the decoder and every gradient touch only the B·k
selected (row, latent) pairs: decode by ``embedding_bag``, the gradient with respect to the selected
activations by a sampled matmul (``torch.sparse.sampled_addmm``), and the weight gradients by
``embedding_bag`` over the pairs sorted by latent — the step shared with batchtopk, matryoshka and
jumprelu, ``engine.train.recipes.sparse``; this module only chooses the pairs.

Shape legend: B batch, F d_sae, K k.
"""

from __future__ import annotations

import torch

from engine.config import SAEConfig
from engine.train.recipes.sparse import Pairs, SparseTrainer, sampled_dot, stable_argsort

__all__ = ["TopKTrainer", "sampled_dot", "stable_argsort"]


class TopKTrainer(SparseTrainer):
    def __init__(self, cfg: SAEConfig, device: torch.device, total_steps: int):
        super().__init__(cfg, device, total_steps)
        B = self.local_batch
        self.vals_BK = torch.empty(B, cfg.k, device=device, dtype=torch.float32)
        self.idx_BK = torch.empty(B, cfg.k, dtype=torch.long, device=device)
        self.rows_P = torch.arange(B, device=device).repeat_interleave(cfg.k)

    def select_(self, pre_BF: torch.Tensor) -> Pairs:
        """The k largest pre-activations of every row, through a ReLU."""
        vals, idx = self.vals_BK, self.idx_BK
        torch.topk(pre_BF, self.cfg.k, dim=1, sorted=False, out=(vals, idx))   # (B, K)
        vals.relu_()
        val_P = vals.reshape(-1)
        return self.rows_P, idx.reshape(-1), val_P, val_P > 0
