"""The sparse autoencoder: *what* is learned (how it is learned: ``engine/train/recipes/``, one trainer per recipe).

One formula for every recipe, on RAW MLP activations x (no normalisation at use time):

    pre = (x - b_dec) @ W_enc + b_enc                      (B, F)  pre-activations
    f   = ReLU(pre)                                         architecture "relu"      (SAELens "standard")
    f   = ReLU(TopK_k(pre))  (all but the k largest -> 0)   architecture "topk"
    f   = pre · [pre > θ]    (θ ≥ 0 per feature)            architecture "jumprelu"
    f   = ReLU(z·exp(r_mag) + b_enc) · [z + b_gate > 0],    architecture "gated" (imported SAEs only:
          z = (x - b_dec) @ W_enc                            SAELens / dictionary_learning gated SAEs)
    x̂   = f @ W_dec + b_dec                                 (B, D)  reconstruction

The architecture is the recipe's (``engine.config.SAE_RECIPE_INFO``): "2023" and "2024-04" train a
relu SAE, "topk" a topk one, and "jumprelu", "batchtopk" and "matryoshka" a jumprelu one (BatchTopK
and Matryoshka select over the whole batch in training and, as SAELens does, are stored with the
learned threshold that replaces that selection at inference).

Tensors are named and oriented as SAELens does: W_enc [D, F], b_enc [F], W_dec [F, D], b_dec [D],
threshold [F] (jumprelu only), b_gate [F] and r_mag [F] (gated only; b_enc is SAELens's b_mag); row i
of W_dec is feature i's direction in neuron space.

Training may work on scaled inputs x_s = s·x (the April 2024 update scales so that ‖x_s‖ ≈ √D) and,
for "2024-04", without the pre-encoder bias (pre = x_s @ W_enc + b_enc). The trainer folds both into
the weights before it hands the SAE back, so the formula above holds exactly for the stored SAE:

    W_enc' = s·W_enc,  W_dec' = W_dec / s,  b_dec' = b_dec / s,  b_enc' = b_enc + b_dec'·W_enc'

(the last only where training had no pre-encoder bias). Pre-activations, and so feature activations
f and the jumprelu threshold θ, are unchanged by the fold; the 2024-04 penalty Σ fᵢ‖W_dec,i‖
computed on the stored SAE is therefore 1/s of the one seen in training.

Shape legend: B batch (tokens), D d_in (MLP neurons), F d_sae (features), K k (active latents).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from engine.config import SAE_RECIPE_INFO, SAEConfig

__all__ = ["SparseAutoencoder", "STATE_KEYS", "architecture_of"]

STATE_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")
EXTRA_STATE_KEYS = {"relu": (), "topk": (), "jumprelu": ("threshold",), "gated": ("b_gate", "r_mag")}


def architecture_of(cfg: SAEConfig) -> str:
    """The SAE's encoder: an imported SAE's ``cfg.architecture``, else the recipe's ("relu", "topk", "jumprelu")."""
    return cfg.architecture or SAE_RECIPE_INFO[cfg.recipe].architecture


class SparseAutoencoder(nn.Module):
    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        self.architecture = architecture_of(cfg)
        D, F = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.empty(D, F))     # (D, F)
        self.b_enc = nn.Parameter(torch.zeros(F))        # (F,)
        self.W_dec = nn.Parameter(torch.empty(F, D))     # (F, D)
        self.b_dec = nn.Parameter(torch.zeros(D))        # (D,)
        if self.architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(F))  # (F,) θ, SAELens's name
        if self.architecture == "gated":
            self.b_gate = nn.Parameter(torch.zeros(F))     # (F,) the gate's bias
            self.r_mag = nn.Parameter(torch.zeros(F))      # (F,) log of the magnitude path's per-feature scale
        self.reset_parameters()

    @property
    def state_keys(self) -> tuple[str, ...]:
        """The tensors this SAE stores: STATE_KEYS, plus ``threshold`` for a jumprelu SAE."""
        return STATE_KEYS + EXTRA_STATE_KEYS[self.architecture]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random unit-norm decoder rows (seeded by cfg.seed), encoder = decoder transpose, zero biases."""
        gen = torch.Generator().manual_seed(self.cfg.seed)
        W_dec_FD = torch.randn(self.cfg.d_sae, self.cfg.d_in, generator=gen)
        W_dec_FD /= W_dec_FD.norm(dim=1, keepdim=True)
        self.W_dec.copy_(W_dec_FD)
        self.W_enc.copy_(W_dec_FD.t())
        self.b_enc.zero_()
        self.b_dec.zero_()

    # ------------------------------------------------------------------ the maths
    @property
    def k(self) -> int | None:
        """k of a topk SAE (per-token TopK at use time), else None."""
        return self.cfg.k if self.architecture == "topk" else None

    def pre_acts(self, x_BD: torch.Tensor) -> torch.Tensor:
        """(x - b_dec) @ W_enc + b_enc -> (B, F)."""
        return torch.addmm(self.b_enc, x_BD - self.b_dec, self.W_enc)

    def encode_sparse(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TopK only: the k kept activations and their latent indices, each (B, K)."""
        if self.k is None:
            raise ValueError("encode_sparse is defined for the topk recipe only")
        vals_BK, idx_BK = self.pre_acts(x_BD).topk(self.k, dim=-1, sorted=False)
        return vals_BK.relu_(), idx_BK

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Feature activations f (B, F) for activations x (B, D); leading dims beyond B are kept."""
        lead = x_BD.shape[:-1]
        x_BD = x_BD.reshape(-1, self.cfg.d_in).to(self.W_enc.dtype)
        if self.architecture == "jumprelu":
            pre_BF = self.pre_acts(x_BD)
            f_BF = pre_BF * (pre_BF > self.threshold)
        elif self.architecture == "gated":
            z_BF = (x_BD - self.b_dec) @ self.W_enc
            f_BF = torch.relu(z_BF * self.r_mag.exp() + self.b_enc) * (z_BF + self.b_gate > 0)
        elif self.k is None:
            f_BF = torch.relu(self.pre_acts(x_BD))
        else:
            vals_BK, idx_BK = self.encode_sparse(x_BD)
            f_BF = torch.zeros(x_BD.shape[0], self.cfg.d_sae, dtype=vals_BK.dtype, device=vals_BK.device)
            f_BF.scatter_(1, idx_BK, vals_BK)
        return f_BF.reshape(*lead, self.cfg.d_sae)

    def decode(self, f_BF: torch.Tensor) -> torch.Tensor:
        """Reconstruction x̂ = f @ W_dec + b_dec; leading dims are kept."""
        lead = f_BF.shape[:-1]
        x_hat_BD = torch.addmm(self.b_dec, f_BF.reshape(-1, self.cfg.d_sae), self.W_dec)
        return x_hat_BD.reshape(*lead, self.cfg.d_in)

    def decode_sparse(self, vals_BK: torch.Tensor, idx_BK: torch.Tensor) -> torch.Tensor:
        """x̂ from (values, indices) without forming f: Σ_k vals[b,k] · W_dec[idx[b,k]] + b_dec."""
        x_hat_BD = torch.nn.functional.embedding_bag(idx_BK, self.W_dec, per_sample_weights=vals_BK, mode="sum")
        return x_hat_BD + self.b_dec

    def forward(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂, f): reconstruction (…, D) and feature activations (…, F)."""
        f_BF = self.encode(x_BD)
        return self.decode(f_BF), f_BF

    def reconstruct(self, x_BD: torch.Tensor) -> torch.Tensor:
        """x̂ only; uses the sparse decode for topk (no (B, F) matrix)."""
        if self.k is None:
            return self.forward(x_BD)[0]
        lead = x_BD.shape[:-1]
        x_BD = x_BD.reshape(-1, self.cfg.d_in).to(self.W_enc.dtype)
        vals_BK, idx_BK = self.encode_sparse(x_BD)
        return self.decode_sparse(vals_BK, idx_BK).reshape(*lead, self.cfg.d_in)

    # ------------------------------------------------------------------ conveniences
    @torch.no_grad()
    def fold_scaling_(self, scale: float, pre_encoder_bias: bool = True) -> "SparseAutoencoder":
        """Turn an SAE trained on x_s = scale·x (optionally without pre-encoder bias) into one on raw x."""
        if not pre_encoder_bias:
            # pre = x_s W + b_enc = (x_s - b_dec) W + (b_enc + b_dec W)
            self.b_enc.add_(self.b_dec @ self.W_enc)
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)
        return self

    @classmethod
    def from_state_dict(cls, cfg: SAEConfig, state: dict) -> "SparseAutoencoder":
        sae = cls(cfg)
        missing = [key for key in sae.state_keys if key not in state]
        if missing:
            raise ValueError(f"SAE state lacks {', '.join(missing)}")
        expected = {"W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,),
                    "W_dec": (cfg.d_sae, cfg.d_in), "b_dec": (cfg.d_in,), "threshold": (cfg.d_sae,),
                    "b_gate": (cfg.d_sae,), "r_mag": (cfg.d_sae,)}
        tensors = {}
        for key in sae.state_keys:
            value = torch.as_tensor(state[key]).float()
            if tuple(value.shape) != expected[key]:
                raise ValueError(f"SAE tensor {key} has shape {tuple(value.shape)}, expected {expected[key]}")
            tensors[key] = value
        sae.load_state_dict(tensors)
        return sae.eval()

    def extra_repr(self) -> str:
        k = f", k={self.k}" if self.k else ""
        return f"recipe={self.cfg.recipe!r}, architecture={self.architecture!r}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}{k}"
