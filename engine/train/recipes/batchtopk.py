"""Recipe "batchtopk": Bussmann, Leask & Nanda 2024, *BatchTopK Sparse Autoencoders*.

    pre = (x_s - b_dec) W_enc + b_enc,    f = BatchTopK_{k·B}(ReLU(pre)),    x̂ = f W_dec + b_dec
    L   = Σ‖x_s - x̂‖² / Σ‖x_s - x̄_s‖²  +  AuxK                            (as the topk recipe)

BatchTopK keeps the k·B largest activations of the whole (B, F) batch instead of k per row, so a
row uses as many latents as it needs and the *mean* L0 is k. It cannot be applied to one token at a
time, so training also learns the threshold that replaces it at inference: θ ← (1-r)·θ + r·(the
smallest activation kept in the batch), r = cfg.topk_threshold_lr = 0.01 (SAELens's
BatchTopKTrainingSAE; the paper averages the same minimum), started at the first batch's minimum
as dictionary_learning does rather than at SAELens's 0, which biases θ low on short runs. The SAE is then stored as a JumpReLU
SAE with θᵢ = θ for every latent, f = pre·[pre > θ] — as SAELens saves its BatchTopK SAEs.

Defaults and their sources: k = cfg.k (20, the topk default, docs/sae-results.md); AuxK with
k_aux = 512 and α = 1/32, unit-norm decoder rows, W_enc = W_decᵀ and b_dec = the geometric median
at initialisation — all as in the paper, which trains BatchTopK with the TopK recipe of Gao et al.
Dead latents: silent for cfg.dead_window activations, trained by AuxK (as topk).

Under torchrun the k·B largest are those of the *global* batch: each rank offers its own k·B
largest, the ranks gather them, and a rank keeps its activations at or above the global batch's
k·B-th largest (ties at that value may keep a few more); θ's update uses the global minimum kept.

The step is ``engine.train.recipes.sparse`` (one dense matmul; the rest on the k·B selected pairs).
Shape legend: B batch, F d_sae.
"""

from __future__ import annotations

from typing import Any

import torch

from engine.config import SAEConfig
from engine.train import distributed
from engine.train.recipes.sparse import Pairs, SparseTrainer, stable_argsort

__all__ = ["BatchTopKTrainer", "batch_topk"]


def batch_topk(pre_BF: torch.Tensor, k: int, global_rows: int | None = None) -> Pairs:
    """The k·N largest ReLU(pre) of the global batch of N = `global_rows` rows (this batch's B rows
    when None or for one process), as this rank's pairs, grouped by row (rows non-decreasing)."""
    B, F = pre_BF.shape
    vals, flat = pre_BF.view(-1).topk(min(k * (global_rows or B), B * F), sorted=False)
    if distributed.current().active and global_rows:
        kth = distributed.gather_rows(vals.reshape(1, -1)).view(-1).topk(min(k * global_rows, vals.numel()
                                                                            * distributed.current().world_size))
        keep = vals >= kth.values.min()
        vals, flat = vals[keep], flat[keep]
    order = stable_argsort(flat, B * F)
    flat, vals = flat[order], vals[order].relu_()
    return torch.div(flat, F, rounding_mode="floor"), torch.remainder(flat, F), vals, vals > 0


class BatchTopKTrainer(SparseTrainer):
    def __init__(self, cfg: SAEConfig, device: torch.device, total_steps: int):
        super().__init__(cfg, device, total_steps)
        self.threshold = -1.0         # the inference threshold θ (pre-activation units), an EMA; < 0: unset

    rank_invariant_metrics = frozenset({"threshold"})

    def select_(self, pre_BF: torch.Tensor) -> Pairs:
        pairs = batch_topk(pre_BF, self.cfg.k, self.batch)
        kept = pairs[2][pairs[3]]
        smallest = distributed.min_(float(kept.min()) if kept.numel() else float("inf"))
        if smallest != float("inf"):
            r = self.cfg.topk_threshold_lr if self.threshold >= 0 else 1.0
            self.threshold = (1 - r) * self.threshold + r * smallest
        return pairs

    def extra_gradients_(self, pre_BF, G_RD, pairs) -> dict[str, float]:
        return {"sparsity_loss": 0.0, "threshold": self.threshold}

    def inference_threshold(self) -> torch.Tensor:
        return torch.full((self.cfg.d_sae,), max(self.threshold, 0.0))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "threshold": self.threshold}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.threshold = float(state["threshold"])
