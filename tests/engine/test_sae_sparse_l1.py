"""The L1 recipes ("2023", "2024-04") take a sparse step once few latents fire: the same gradients
and the same training as their five-matmul dense step (engine/train/recipes/dense.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import SAEConfig
from engine.data.activations import ArrayActivationSource
from engine.events import Progress
from engine.train.recipes import dense, make_trainer
from engine.train.sae_job import train_sae

from tests.engine.test_sae_training import _autograd_loss, synthetic

RECIPES_L1 = ("2023", "2024-04")


def _trainer(recipe: str, max_density: float, l1: float = 0.3):
    torch.manual_seed(0)
    cfg = SAEConfig(recipe=recipe, d_in=16, d_sae=64, batch_size=32, l1_coeff=l1)
    tr = make_trainer(cfg, torch.device("cpu"), total_steps=100)
    x = torch.rand(32, 16) * 3
    tr.initialise(x)
    with torch.no_grad():
        tr.b_enc_F.normal_(-1.0, 0.5)                     # few latents fire: density well under 50%
        tr.b_dec_D.normal_(0, 0.1)
        tr.W_dec_FD.mul_(torch.rand(64, 1) + 0.5)         # non-unit rows exercise the 2024-04 penalty
    tr.sparse_max_density = max_density
    return tr, x


def _step_gradients(tr, x):
    torch.mul(x, tr.scale, out=tr.x_BD)
    for p in tr.params:
        p.grad.zero_()
    return tr.gradients_()


@pytest.mark.parametrize("recipe", RECIPES_L1)
def test_sparse_and_dense_steps_equal_autograd(recipe):
    grads, losses = {}, {}
    for path, max_density in (("dense", 0.0), ("sparse", 1.0)):
        tr, x = _trainer(recipe, max_density)
        ref_loss, ref_grads = _autograd_loss(tr, x)
        metrics = _step_gradients(tr, x)
        assert tr.sparse_steps_ == (path == "sparse")
        assert 0 < metrics["l0"] < 0.5 * 64
        assert metrics["loss"] == pytest.approx(ref_loss, rel=1e-5)
        for name, p, g in zip(tr.param_names, tr.params, ref_grads):
            assert g.abs().max() > 0, (recipe, name)
            assert torch.allclose(p.grad, g, rtol=1e-5, atol=1e-5 * g.abs().max().item()), (recipe, path, name)
        grads[path] = [p.grad.clone() for p in tr.params]
        losses[path] = metrics
    for gd, gs in zip(grads["dense"], grads["sparse"]):
        assert torch.allclose(gd, gs, rtol=1e-5, atol=1e-6 * gd.abs().max().item())
    for key in ("loss", "mse", "sparsity_loss", "l0"):
        assert losses["sparse"][key] == pytest.approx(losses["dense"][key], rel=1e-6)


@pytest.mark.parametrize("recipe", RECIPES_L1)
def test_sparse_step_with_no_active_latent(recipe):
    tr, x = _trainer(recipe, 1.0)
    with torch.no_grad():
        tr.b_enc_F.fill_(-1e3)                            # nothing fires
    ref_loss, ref_grads = _autograd_loss(tr, x)
    metrics = _step_gradients(tr, x)
    assert tr.sparse_steps_ == 1 and metrics["l0"] == 0
    assert metrics["loss"] == pytest.approx(ref_loss, rel=1e-5)
    for p, g in zip(tr.params, ref_grads):
        assert torch.allclose(p.grad, g, atol=1e-6)


def _curves(recipe: str) -> tuple[list[float], list[float], list[float]]:
    data, _ = synthetic(n=8192, d=32, m=48, p=0.05)
    cfg = SAEConfig(recipe=recipe, d_in=32, d_sae=128, batch_size=256, n_activations=256 * 40,
                    l1_coeff=3.0, lr=2e-2, dead_window=256 * 8)
    loss, mse, l0 = [], [], []
    for event in train_sae(cfg, ArrayActivationSource(data, seed=0)):
        if isinstance(event, Progress):
            loss.append(event.metrics["loss"])
            mse.append(event.metrics["mse"])
            l0.append(event.metrics["l0"])
    return loss, mse, l0


@pytest.mark.parametrize("recipe", RECIPES_L1)
def test_seeded_training_is_the_same_on_either_path(recipe, monkeypatch):
    """40 steps (2023: resampling included): always dense, always sparse and the default switch
    (dense while many latents fire, sparse once few do) give the same loss curve."""
    runs, switch_at = {}, dense.SPARSE_MAX_DENSITY
    for name, max_density in (("dense", 0.0), ("sparse", 1.0), ("switch", switch_at)):
        monkeypatch.setattr(dense, "SPARSE_MAX_DENSITY", max_density)
        runs[name] = _curves(recipe)
    loss_d, mse_d, l0_d = runs["dense"]
    l0_frac = np.array(l0_d) / 128
    assert l0_frac[0] > switch_at > l0_frac[-1]     # the switch happens within the run
    for name in ("sparse", "switch"):
        loss, mse, l0 = runs[name]
        np.testing.assert_allclose(loss, loss_d, rtol=1e-4)
        np.testing.assert_allclose(mse, mse_d, rtol=1e-4)
        np.testing.assert_allclose(l0, l0_d, rtol=1e-3, atol=0.05)
