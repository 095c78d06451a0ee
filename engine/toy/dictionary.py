"""Undo superposition with a dictionary: an SAE trained on a toy model's hidden layer h = W x, its
decoder rows matched against the true feature directions Wᵢ — the ground truth that dictionary
learning lacks on real models.

The SAE is the project's one implementation (``engine.sae``), trained by its job loop and recipes
(``engine.train.sae_job.train_sae``; TopK by default, k ≈ the expected number of active features)
on a ``ToyActivations`` source. The matching:

    cos_FN[f, i] = cos(W_dec[f], Wᵢ)            decoder row f against feature i's column of W
    best_cos_N   = max_f cos_FN[:, i]            per true feature (0 for a feature the model dropped)
    MMCS         = mean of best_cos_N over the represented features (‖Wᵢ‖ > ½)
    dead latents: never active on EVAL_ROWS fresh inputs
    split latents: a live latent within SPLIT_COS of a feature another live latent matches better

``recovery_sweep`` repeats model + SAE over sparsities: how recovery falls as S drops.

Shape legend: B batch, N features, M hidden (the SAE's d_in), F latents (d_sae).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generator, Iterator, Sequence

import numpy as np
import torch

from engine import events
from engine.config import SAE_RECIPES, SAEConfig
from engine.toy.measures import REPRESENTED_NORM
from engine.toy.model import ToyConfig, ToyError, importances, train_toy
from engine.train.sae_job import train_sae

__all__ = ["ToyActivations", "DictionaryConfig", "Recovery", "match_features", "train_dictionary",
           "recovery_sweep", "SweepPoint", "SPLIT_COS", "RECOVERED_COS", "SWEEP_SPARSITIES"]

SPLIT_COS = 0.9           # a second latent this close to a feature counts as a split of it
RECOVERED_COS = 0.9       # a feature whose best latent is this close counts as recovered
EVAL_ROWS = 8192
SWEEP_SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


class ToyActivations:
    """Hidden activations h = W x of a toy model, x drawn as in training; batch ``i`` is always the
    same (seeded by ``seed`` and ``i``), as ``train_sae``'s ActivationSource requires."""

    def __init__(self, W_MN: np.ndarray, sparsity: float, seed: int = 0) -> None:
        self.W_NM = torch.as_tensor(np.asarray(W_MN, dtype=np.float32).T.copy())   # (N, M)
        self.d_in = self.W_NM.shape[1]
        self.density = 1.0 - float(sparsity)
        self.seed = seed

    def batch(self, index: int, batch_size: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        u_BN = torch.rand(batch_size, self.W_NM.shape[0], generator=gen)
        x_BN = torch.where(u_BN < self.density, u_BN / self.density, 0.0)
        return x_BN @ self.W_NM                                                # (B, M)

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]:
        index = start
        while True:
            yield self.batch(index, batch_size)
            index += 1


@dataclass(frozen=True)
class DictionaryConfig:
    """The SAE trained on the hidden layer; d_sae 0: twice the features; k 0: the expected number of
    active features n(1 − S), at least 1."""

    d_sae: int = 0
    recipe: str = "topk"
    k: int = 0
    steps: int = 500
    batch_size: int = 1024
    lr: float = 1e-2
    seed: int = 0

    def sae_config(self, n_features: int, n_hidden: int, sparsity: float) -> SAEConfig:
        if self.recipe not in SAE_RECIPES:
            raise ToyError(f"unknown SAE recipe {self.recipe!r}; choose one of {', '.join(SAE_RECIPES)}")
        d_sae = self.d_sae or 2 * n_features
        if d_sae < n_features:
            raise ToyError(f"the SAE needs at least as many latents as features ({n_features}); got {d_sae}")
        k = self.k or max(1, math.ceil(n_features * (1.0 - sparsity)))
        return SAEConfig(recipe=self.recipe, d_in=n_hidden, d_sae=d_sae, k=min(k, d_sae), aux_k=d_sae,
                         lr=self.lr, batch_size=self.batch_size, n_activations=self.steps * self.batch_size,
                         dead_window=self.steps * self.batch_size // 4, checkpoint_every=0, seed=self.seed)


@dataclass(frozen=True)
class Recovery:
    """How well the SAE's latents found the toy model's true features (numpy, thread-safe)."""

    cos_FN: np.ndarray            # (F, N) cosine of decoder row f with feature i's direction
    best_cos_N: np.ndarray        # (N,) per feature: its best latent's cosine (0: feature not represented)
    best_latent_N: np.ndarray     # (N,) that latent (-1: feature not represented)
    represented_N: np.ndarray     # (N,) bool, ‖Wᵢ‖ > ½
    dead_F: np.ndarray            # (F,) bool, never active on fresh inputs
    split_F: np.ndarray           # (F,) bool, a live latent duplicating another's feature
    W_dec_FM: np.ndarray          # (F, M) the SAE's decoder rows (for drawing beside the Wᵢ)
    mse: float = 0.0              # the SAE's final training MSE

    @property
    def mmcs(self) -> float:
        """Mean max cosine similarity over the represented features (nan: none represented)."""
        return float(self.best_cos_N[self.represented_N].mean()) if self.represented_N.any() else float("nan")

    @property
    def n_recovered(self) -> int:
        return int((self.best_cos_N >= RECOVERED_COS).sum())

    @property
    def n_dead(self) -> int:
        return int(self.dead_F.sum())

    @property
    def n_split(self) -> int:
        return int(self.split_F.sum())


def match_features(W_dec_FM: np.ndarray, W_MN: np.ndarray, active_F: np.ndarray) -> Recovery:
    """Match decoder rows to the true directions (columns of W) by cosine; ``active_F``: how often each
    latent fired on fresh inputs (0: dead)."""
    W_dec_FM = np.asarray(W_dec_FM, dtype=np.float64)
    W_MN = np.asarray(W_MN, dtype=np.float64)
    norms_N = np.linalg.norm(W_MN, axis=0)
    dec_FM = W_dec_FM / np.maximum(np.linalg.norm(W_dec_FM, axis=1, keepdims=True), 1e-12)
    cos_FN = dec_FM @ (W_MN / np.maximum(norms_N, 1e-12))
    represented_N = norms_N > REPRESENTED_NORM
    dead_F = np.asarray(active_F) == 0
    live_cos_FN = np.where(dead_F[:, None], -np.inf, cos_FN)
    F, N = cos_FN.shape
    best_latent_N = np.where(represented_N & (F > 0), live_cos_FN.argmax(axis=0), -1)
    best_cos_N = np.where(best_latent_N >= 0, cos_FN[np.maximum(best_latent_N, 0), np.arange(N)], 0.0)
    best_cos_N = np.where(np.isfinite(live_cos_FN.max(axis=0)) & represented_N, best_cos_N, 0.0)
    split_F = np.zeros(F, dtype=bool)
    for i in np.flatnonzero(represented_N):
        close = np.flatnonzero((live_cos_FN[:, i] >= SPLIT_COS) & (np.arange(F) != best_latent_N[i]))
        split_F[close] = True
    return Recovery(cos_FN=cos_FN, best_cos_N=best_cos_N, best_latent_N=best_latent_N.astype(int),
                    represented_N=represented_N, dead_F=dead_F, split_F=split_F, W_dec_FM=W_dec_FM)


def train_dictionary(W_MN: np.ndarray, sparsity: float, cfg: DictionaryConfig = DictionaryConfig(),
                     cancel: events.CancelToken | None = None) -> Generator[object, None, Recovery]:
    """Generator: train an SAE on the hidden layer of the toy model ``W_MN`` at ``sparsity`` (the
    job loop's events, stage "sae") and match it to the true features; returns a Recovery."""
    M, N = np.shape(W_MN)
    sae_cfg = cfg.sae_config(N, M, sparsity)
    source = ToyActivations(W_MN, sparsity, seed=cfg.seed)
    result = yield from train_sae(sae_cfg, source, cancel=cancel)
    with torch.no_grad():
        fresh_BM = ToyActivations(W_MN, sparsity, seed=cfg.seed + 7919).batch(0, EVAL_ROWS)
        active_F = (result.sae.encode(fresh_BM) > 0).sum(0).numpy()
    recovery = match_features(result.sae.W_dec.detach().numpy(), W_MN, active_F)
    return Recovery(**{**recovery.__dict__, "mse": float(result.final.get("mse", float("nan")))})


@dataclass(frozen=True)
class SweepPoint:
    sparsity: float
    n_represented: int
    mmcs: float                   # over the represented features
    recovered_fraction: float     # of all n features: best latent's cosine ≥ RECOVERED_COS
    n_dead: int
    n_split: int


def recovery_sweep(toy: ToyConfig, sparsities: Sequence[float] = SWEEP_SPARSITIES,
                   cfg: DictionaryConfig = DictionaryConfig(),
                   cancel: events.CancelToken | None = None) -> Generator[object, None, list[SweepPoint]]:
    """Generator: for each sparsity, train the toy model ``toy`` at it (stage "toy") and an SAE on its
    hidden layer (stage "sae"); returns one SweepPoint per sparsity. Stage indices count the whole sweep."""
    points = []
    for sparsity in sparsities:
        model = yield from train_toy(ToyConfig(**{**toy.__dict__, "sparsity": float(sparsity)}), cancel)
        W_MN = model.W_IMN[0]
        rec = yield from train_dictionary(W_MN, sparsity, cfg, cancel)
        points.append(SweepPoint(sparsity=float(sparsity), n_represented=int(rec.represented_N.sum()),
                                 mmcs=rec.mmcs, recovered_fraction=rec.n_recovered / W_MN.shape[1],
                                 n_dead=rec.n_dead, n_split=rec.n_split))
    return points
