"""The step shared by the recipes whose codes are sparse (topk, batchtopk, matryoshka, jumprelu):
one dense matmul, the encoder; everything else works on the selected (row, latent) pairs.

    xc  = x_s - b_dec,   pre = xc W_enc + b_enc                         (B, F)  the one dense matmul
    P   = the recipe's pairs p = (b, i) with values v_p = f_bi          ``select_``: TopK per row (topk),
                                                                         TopK over the batch (batchtopk,
                                                                         matryoshka), pre > θ (jumprelu)
    x̂_ℓ = b_dec + Σ_{p: i < w_ℓ} v_p W_dec,i                            levels ℓ: one (w = F), or the
                                                                         nested prefixes w_1 < … < w_n = F
    L   = (1/n) Σ_ℓ Σ_b ‖x̂_ℓ,b - x_s,b‖² / Z  +  AuxK  +  the recipe's own terms (``extra_gradients_``)
          Z = Σ_b ‖x_s,b - x̄_s‖² (normalised MSE, Gao et al.) or B (plain per-token squared error)

AuxK (Gao et al. 2024; used by topk, batchtopk and matryoshka): the aux_k largest pre-activations
among the dead latents of each row reconstruct the residual e = x_s - x̂_n (held fixed),
+ aux_coeff · Σ‖ê - e‖² / Σ‖e - ē‖², with no ReLU on those pre-activations (see docs/sae-results.md).

Backward. With g_ℓ = dL/dx̂_ℓ (B, D), G_ℓ = Σ_{m ≥ ℓ} g_m (a latent of level ℓ is in every
reconstruction from ℓ on) and ℓ(p) the first level holding pair p's latent:

    dL/dv_p     = G_ℓ(p)[b] · W_dec,i                  a matmul sampled at the pairs
    dL/dpre_p   = dL/dv_p · [the pair passes gradient] (v_p = pre_p where it does)
    dL/dW_dec,i = Σ_{p ∋ i} v_p G_ℓ(p)[b]              embedding_bag over the pairs sorted by latent
    dL/dW_enc,i = Σ_{p ∋ i} dL/dpre_p xc_b,   dL/db_enc,i = Σ_{p ∋ i} dL/dpre_p
    dL/db_dec   = Σ_ℓ Σ_b g_ℓ,b - dL/db_enc · W_enc     (pre depends on -b_dec)

The AuxK pairs take rows of their own in the stacked gradient matrix (after the n levels' B rows).
Decoder rows stay unit norm (the gradient's component along each row removed before the Adam step,
rows renormalised after it), as in all four papers.

Shape legend: B batch, D d_in, F d_sae, P selected pairs, R rows of the stacked gradient matrix.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as Fn

from engine.train.recipes.base import SAETrainer, remove_parallel_component_, unit_norm_rows_

__all__ = ["SparseTrainer", "Pairs", "decode_pairs", "pair_weight_gradients_", "sampled_dot", "stable_argsort"]

Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]   # rows, latents, values, passes


class SparseTrainer(SAETrainer):
    """The sparse step above; subclasses choose the pairs (``select_``) and the loss's extras."""

    pre_encoder_bias = True
    normalised_mse: ClassVar[bool] = True     # Z = Σ‖x_s - x̄_s‖² (else Z = B)
    auxk: ClassVar[bool] = True               # train dead latents with AuxK

    def widths(self) -> tuple[int, ...]:
        """The nested reconstruction widths, ending at d_sae (one level but for matryoshka)."""
        return (self.cfg.d_sae,)

    def select_(self, pre_BF: torch.Tensor) -> Pairs:
        """The pairs: rows (non-decreasing), latents, values v and whether each passes gradient to pre."""
        raise NotImplementedError

    def extra_gradients_(self, pre_BF: torch.Tensor, G_RD: torch.Tensor, pairs: Pairs) -> dict[str, float]:
        """The recipe's own loss terms: add their gradients (``G_RD`` rows 0..B-1 are dL/dx̂ of the
        full reconstruction) and return {"sparsity_loss": ..., ...}; called before b_dec's gradient."""
        return {"sparsity_loss": 0.0}

    def constrain_gradients_(self) -> None:
        remove_parallel_component_(self.W_dec_FD.grad, self.W_dec_FD)

    def constrain_weights_(self) -> None:
        unit_norm_rows_(self.W_dec_FD)

    @torch.no_grad()
    def gradients_(self) -> dict[str, float]:
        cfg, B, D = self.cfg, self.x_BD.shape[0], self.cfg.d_in             # B: this rank's rows
        N = self.batch                                                      # the global batch's rows
        x, xc = self.x_BD, self.xc_BD
        W_enc, b_enc, W_dec, b_dec = self.W_enc_FD, self.b_enc_F, self.W_dec_FD, self.b_dec_D
        torch.sub(x, b_dec, out=xc)                                         # (B, D)
        pre = self.pre_BF
        torch.addmm(b_enc, xc, W_enc.t(), out=pre)                          # (B, F) the one matmul
        pairs = self.select_(pre)
        rows_P, lat_P, val_P, pass_P = pairs
        var_sum = max(float(self.batch_sq_dev(x)), 1e-12)                   # Σ‖x - x̄‖²
        Z = var_sum if self.normalised_mse else float(N)
        widths = self.widths()
        n_lev = len(widths)
        if n_lev == 1:
            err = self.err_BD
            torch.add(decode_pairs(rows_P, lat_P, val_P, W_dec, B), b_dec, out=err).sub_(x)   # e = x̂ - x
            sq_full = torch.dot(err.view(-1), err.view(-1)).item()
            recon = sq_full / Z
            G = err.mul_(2.0 / Z)                                           # dL/dx̂ (B, D)
            g_sum_D = G.sum(0)
            grad_rows_P = rows_P
        else:
            level_P = torch.bucketize(lat_P, torch.tensor(widths, device=self.device), right=True)
            err_LBD = torch.empty(n_lev, B, D, device=self.device)
            acc = (b_dec - x)                                               # x̂_0 - x with no latent
            for lev in range(n_lev):
                sel = level_P == lev
                acc = acc + decode_pairs(rows_P[sel], lat_P[sel], val_P[sel], W_dec, B)
                err_LBD[lev] = acc
            sq_L = err_LBD.pow(2).sum((1, 2))
            sq_full = sq_L[-1].item()
            recon = sq_L.sum().item() / (n_lev * Z)
            g_LBD = err_LBD.mul_(2.0 / (n_lev * Z))                         # dL/dx̂_ℓ
            g_sum_D = g_LBD.sum((0, 1))
            G = g_LBD.flip(0).cumsum(0).flip(0).reshape(n_lev * B, D)       # rows ℓB + b: G_ℓ[b]
            grad_rows_P = level_P * B + rows_P
            order = stable_argsort(grad_rows_P, n_lev * B)                  # sampled_dot wants grouped rows
            grad_rows_P, lat_P, val_P, pass_P = grad_rows_P[order], lat_P[order], val_P[order], pass_P[order]
        metrics = {"mse": sq_full / (N * D), "nmse": sq_full / var_sum, "l0": int((val_P > 0).sum()) / N}

        # AuxK: the dead latents' largest pre-activations model the residual e = x - x̂ (fixed).
        rows_list, lat_list, val_list, pass_list = [grad_rows_P], [lat_P], [val_P], [pass_P]
        G_grad, aux_loss = G, 0.0
        dead_F = self.dead_mask()
        n_aux = min(cfg.aux_k, int(dead_F.sum())) if self.auxk and cfg.aux_coeff > 0 else 0
        if n_aux > 0:
            resid = -(G[:B] * (Z / 2.0)) if n_lev == 1 else -(acc)          # e = x - x̂ of the full SAE
            dead_idx = dead_F.nonzero().squeeze(1)
            aux_vals, aux_local = pre.index_select(1, dead_idx).topk(n_aux, dim=1, sorted=False)   # (B, A)
            aux_idx = dead_idx[aux_local]
            denom = self.batch_sq_dev(resid).clamp_min(1e-12)
            aux_err = Fn.embedding_bag(aux_idx, W_dec, per_sample_weights=aux_vals, mode="sum") - resid
            aux_loss = cfg.aux_coeff * (aux_err.pow(2).sum() / denom).item()
            g_aux = aux_err.mul_(2.0 * cfg.aux_coeff / denom)               # dL_aux/dê (B, D)
            R0 = G.shape[0]
            G_grad = torch.cat([G, g_aux])
            rows_list.append(torch.arange(R0, R0 + B, device=self.device).repeat_interleave(n_aux))
            lat_list.append(aux_idx.reshape(-1))
            val_list.append(aux_vals.reshape(-1))
            pass_list.append(torch.ones(aux_vals.numel(), dtype=torch.bool, device=self.device))
        rows_A, lat_A = torch.cat(rows_list), torch.cat(lat_list)
        val_A, pass_A = torch.cat(val_list), torch.cat(pass_list)

        g_pre_A = sampled_dot(G_grad, W_dec, rows_A, lat_A).mul_(pass_A)   # dL/dpre at each pair
        pair_weight_gradients_(self, G_grad, rows_A, lat_A, val_A, g_pre_A)
        extra = self.extra_gradients_(pre, G_grad, pairs)
        torch.sub(g_sum_D, b_enc.grad @ W_enc, out=b_dec.grad)              # pre depends on -b_dec

        self.last_fired[lat_P[val_P > 0]] = self.n_seen + N
        metrics.update(aux_loss=aux_loss, **extra)
        metrics["loss"] = recon + aux_loss + metrics["sparsity_loss"]
        return metrics


@torch.no_grad()
def pair_weight_gradients_(trainer: SAETrainer, G_RD: torch.Tensor, rows_P: torch.Tensor, lat_P: torch.Tensor,
                           val_P: torch.Tensor, g_pre_P: torch.Tensor) -> None:
    """The weight gradients of a sparse step, written into ``trainer``'s W_dec, W_enc and b_enc grads:

        dL/dW_dec,i = Σ_{p ∋ i} v_p G[r_p],   dL/dW_enc,i = Σ_{p ∋ i} dL/dpre_p xc[r_p mod B],
        dL/db_enc,i = Σ_{p ∋ i} dL/dpre_p

    — ``embedding_bag`` over the pairs sorted by latent (rows r_p index ``G_RD``; row r of ``G_RD``
    belongs to input row r mod B, as the stacked level and AuxK blocks do)."""
    B, F = trainer.xc_BD.shape[0], trainer.W_dec_FD.shape[0]
    order = stable_argsort(lat_P, F)
    lat_sorted = lat_P[order]
    offsets = torch.zeros(F, dtype=torch.long, device=G_RD.device)
    torch.cumsum(torch.bincount(lat_sorted, minlength=F)[:-1], 0, out=offsets[1:])
    rows_sorted = rows_P[order]
    trainer.W_dec_FD.grad.copy_(Fn.embedding_bag(rows_sorted, G_RD, offsets, per_sample_weights=val_P[order],
                                                 mode="sum"))
    g_pre_sorted = g_pre_P[order]
    rows_x = rows_sorted if G_RD.shape[0] == B else torch.remainder(rows_sorted, B)
    trainer.W_enc_FD.grad.copy_(Fn.embedding_bag(rows_x, trainer.xc_BD, offsets, per_sample_weights=g_pre_sorted,
                                                 mode="sum"))
    trainer.b_enc_F.grad.zero_().index_add_(0, lat_sorted, g_pre_sorted)


def decode_pairs(rows_P: torch.Tensor, lat_P: torch.Tensor, val_P: torch.Tensor, W_FD: torch.Tensor,
                 n_rows: int) -> torch.Tensor:
    """(n_rows, D): row b is Σ over the pairs of row b of val · W[lat] (rows_P non-decreasing)."""
    offsets = torch.zeros(n_rows, dtype=torch.long, device=W_FD.device)
    torch.cumsum(torch.bincount(rows_P, minlength=n_rows)[:-1], 0, out=offsets[1:])
    return Fn.embedding_bag(lat_P, W_FD, offsets, per_sample_weights=val_P, mode="sum")


def sampled_dot(G_RD: torch.Tensor, W_FD: torch.Tensor, rows_P: torch.Tensor, lat_P: torch.Tensor) -> torch.Tensor:
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


def stable_argsort(ids: torch.Tensor, n_values: int) -> torch.Tensor:
    """Stable argsort of small non-negative ids. On the CPU numpy's radix sort of int16 is ~50x
    faster than torch.sort (measured: 98k ids, 13 ms vs 970 ms on the shared 2-core machine)."""
    if ids.device.type != "cpu":
        return torch.sort(ids, stable=True).indices
    small = ids.numpy().astype(np.int16 if n_values <= np.iinfo(np.int16).max else np.int32)
    return torch.from_numpy(np.argsort(small, kind="stable"))
