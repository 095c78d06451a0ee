"""SparseAutoencoder: shapes, names, the one formula, sparse paths and the fold of input scaling."""

from __future__ import annotations

import pytest
import torch

from engine.config import SAE_RECIPES, SAEConfig
from engine.sae import STATE_KEYS, SparseAutoencoder


def _random_sae(recipe: str, d_in=16, d_sae=48, k=5) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(recipe=recipe, d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
    return sae


@pytest.mark.parametrize("recipe", SAE_RECIPES)
def test_shapes_and_state_dict(recipe):
    sae = _random_sae(recipe)
    if sae.architecture == "jumprelu":
        with torch.no_grad():
            sae.threshold.abs_()                          # θ ≥ 0, as every trainer stores it
    assert tuple(sae.W_enc.shape) == (16, 48) and tuple(sae.W_dec.shape) == (48, 16)
    assert tuple(sae.b_enc.shape) == (48,) and tuple(sae.b_dec.shape) == (16,)
    assert tuple(sae.state_dict()) == sae.state_keys
    assert sae.state_keys == STATE_KEYS + (("threshold",) if sae.architecture == "jumprelu" else ())
    x = torch.rand(3, 7, 16)
    x_hat, f = sae(x)
    assert x_hat.shape == (3, 7, 16) and f.shape == (3, 7, 48)
    assert (f >= 0).all()
    clone = SparseAutoencoder.from_state_dict(sae.cfg, sae.state_dict())
    assert torch.equal(clone(x)[0], x_hat)
    assert not clone.training


def test_formula_matches_docstring():
    sae = _random_sae("2023")
    x = torch.rand(10, 16)
    f = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    assert torch.allclose(sae.encode(x), f, atol=1e-6)
    assert torch.allclose(sae.decode(f), f @ sae.W_dec + sae.b_dec, atol=1e-6)


def test_jumprelu_formula_and_its_threshold():
    sae = _random_sae("jumprelu")
    assert sae.architecture == "jumprelu" and sae.k is None
    with torch.no_grad():
        sae.threshold.uniform_(0.0, 0.4)
    x = torch.rand(20, 16)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    f = sae.encode(x)
    assert torch.allclose(f, pre * (pre > sae.threshold), atol=1e-6)
    assert 0 < (f > 0).float().mean() < (pre > 0).float().mean()      # the threshold removes some
    state = sae.state_dict()
    del state["threshold"]
    with pytest.raises(ValueError, match="threshold"):
        SparseAutoencoder.from_state_dict(sae.cfg, state)


def test_topk_keeps_k_and_sparse_decode_agrees():
    sae = _random_sae("topk", k=5)
    x = torch.rand(32, 16)
    f = sae.encode(x)
    assert ((f > 0).sum(1) <= 5).all() and (f > 0).sum() > 0
    pre = sae.pre_acts(x)
    kth = pre.topk(5, dim=1).values[:, -1:]
    assert torch.all((f > 0) <= (pre >= kth))          # only the k largest can be active
    assert torch.allclose(sae.reconstruct(x), sae.decode(f), atol=1e-5)


def test_from_state_dict_rejects_wrong_shapes():
    sae = _random_sae("topk")
    state = sae.state_dict()
    state["W_dec"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="W_dec"):
        SparseAutoencoder.from_state_dict(sae.cfg, state)
    with pytest.raises(ValueError, match="lacks"):
        SparseAutoencoder.from_state_dict(sae.cfg, {"W_enc": sae.W_enc})


@pytest.mark.parametrize("pre_encoder_bias", [True, False])
def test_fold_scaling_gives_the_same_features_on_raw_inputs(pre_encoder_bias):
    trained = _random_sae("2023")          # as if trained on x_s = s·x
    s = 3.7
    x = torch.rand(20, 16)
    xs = s * x
    if pre_encoder_bias:
        f_s = torch.relu((xs - trained.b_dec) @ trained.W_enc + trained.b_enc)
    else:
        f_s = torch.relu(xs @ trained.W_enc + trained.b_enc)
    x_hat_s = f_s @ trained.W_dec + trained.b_dec
    folded = SparseAutoencoder.from_state_dict(trained.cfg, trained.state_dict())
    folded.fold_scaling_(s, pre_encoder_bias=pre_encoder_bias)
    x_hat, f = folded(x)
    assert torch.allclose(f, f_s, atol=1e-4)
    assert torch.allclose(x_hat, x_hat_s / s, atol=1e-4)
