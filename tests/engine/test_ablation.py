"""AblationEngine against a brute-force per-position computation, the zero-activation identity,
the clean cache, padding, cancellation and bad units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.analysis.ablation import AblationEngine, feature_activation
from engine.config import ModelConfig, SAEConfig
from engine.events import Cancelled
from engine.model import OneLayerTransformer
from engine.sae import SparseAutoencoder

V, M, F, N_CTX = 50, 32, 48, 12


def _model(act_fn: str = "relu") -> OneLayerTransformer:
    torch.manual_seed(0)
    model = OneLayerTransformer(ModelConfig(vocab_size=V, n_ctx=N_CTX, d_model=16, n_heads=2, d_mlp=M, act_fn=act_fn))
    with torch.no_grad():                      # larger weights than the init: effects well above float noise
        for p in model.parameters():
            p.mul_(8.0) if p.dim() == 2 else None
    return model.eval()


def _sae(recipe: str) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(recipe=recipe, d_in=M, d_sae=F, k=6, seed=3))
    with torch.no_grad():
        sae.b_enc.fill_(-0.05)
        if sae.architecture == "jumprelu":
            sae.threshold.fill_(0.1)
    return sae.eval()


def _windows(seed: int = 0, B: int = 5, W: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.integers(0, V, size=(B, W))
    w[1, :3] = -1                                # a window at a document's start
    w[2, -2:] = -1                               # ... and one at its end
    w[3, :] = -1                                 # an empty slot
    w[3, 4] = 7                                  # one token: nothing is predicted
    return w


def _brute(model, sae, kind, index, windows):
    """Δ by the definition: for each token, a fresh forward over its prefix with and without the edit."""
    out = np.full(windows.shape, np.nan, np.float32)

    def edit(h):
        if kind == "neuron":
            h = h.clone()
            h[..., index] = 0
            return h
        return h - sae.encode(h)[..., index:index + 1] * sae.W_dec[index]

    with torch.no_grad():
        for b, w in enumerate(windows):
            keep = np.flatnonzero(w >= 0)
            seq = torch.as_tensor(w[keep])
            for j in range(1, len(keep)):
                prefix = seq[:j][None]
                clean = torch.log_softmax(model(prefix)[0, -1], -1)[seq[j]]
                ablated = torch.log_softmax(model(prefix, mlp_edit=edit)[0, -1], -1)[seq[j]]
                out[b, keep[j]] = float(ablated - clean)
    return out


@pytest.mark.parametrize("recipe", ["2023", "topk", "jumprelu"])
def test_feature_effects_equal_brute_force(recipe):
    model, sae, w = _model(), _sae(recipe), _windows()
    engine = AblationEngine(model, sae, batch=2)          # several batches
    h = model.mlp_acts(torch.as_tensor(np.where(w >= 0, w, 0)))
    f = sae.encode(h)                                      # pick the feature firing most on these windows
    index = int(f.reshape(-1, F).gt(0).sum(0).argmax())
    got = engine.effects("feature", index, w)
    want = _brute(model, sae, "feature", index, w)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[:, 0]).all() and np.isnan(got[3]).all() and np.isnan(got[1, :4]).all()
    assert np.abs(got[~np.isnan(got)]).max() > 1e-3       # the feature does something here
    np.testing.assert_allclose(got, want, atol=2e-5, equal_nan=True)


@pytest.mark.parametrize("act_fn", ["relu", "gelu", "solu_ln"])
def test_neuron_effects_equal_brute_force(act_fn):
    model, w = _model(act_fn), _windows(1)
    got = AblationEngine(model).effects("neuron", 5, w)
    np.testing.assert_allclose(got, _brute(model, None, "neuron", 5, w), atol=2e-5, equal_nan=True)


def test_silent_feature_changes_nothing():
    model, sae, w = _model(), _sae("2023"), _windows(2)
    with torch.no_grad():
        sae.b_enc[11] = -1e6                               # feature 11 never fires
    got = AblationEngine(model, sae).effects("feature", 11, w)
    real = ~np.isnan(got)
    assert real.sum() > 20 and (got[real] == 0.0).all()    # exactly, not approximately


def test_feature_activation_matches_encode():
    h = torch.randn(40, M) * 2
    for recipe in ("2023", "topk", "jumprelu"):
        sae = _sae(recipe)
        full = sae.encode(h)
        for i in (0, 7, F - 1):
            torch.testing.assert_close(feature_activation(sae, h, i), full[:, i])


def test_clean_pass_is_cached_across_units():
    model, sae, w = _model(), _sae("topk"), _windows(3)
    engine = AblationEngine(model, sae)
    engine.effects("feature", 1, w)
    first = engine.clean_forwards
    assert first == 4                                      # 5 windows, one with nothing to predict
    engine.effects("feature", 2, w)
    engine.effects("neuron", 3, w[:2])
    assert engine.clean_forwards == first


def test_cancel_and_bad_units():
    model, sae, w = _model(), _sae("topk"), _windows()
    engine = AblationEngine(model, sae, batch=1)
    with pytest.raises(Cancelled):
        engine.effects("feature", 0, w, should_stop=lambda: True)
    with pytest.raises(ValueError, match="feature 48 does not exist"):
        engine.effects("feature", F, w)
    with pytest.raises(ValueError, match="needs the SAE"):
        AblationEngine(model).effects("feature", 0, w)
    with pytest.raises(ValueError, match="unit kind"):
        engine.effects("head", 0, w)


def test_real_bundle(real_tiny_bundle):
    """The stored model and SAE of a real run: effects on a dashboard's examples, finite where predicted."""
    from engine.bundle import open_bundle

    with open_bundle(real_tiny_bundle) as b:
        engine = AblationEngine(b.load_model(), b.load_sae())
        dash = b.dashboard("feature", 0)
        w = dash.top_tokens
        got = engine.effects("feature", 0, w)
    assert got.shape == w.shape
    predicted = (w >= 0) & (np.cumsum(w >= 0, axis=1) > 1)
    assert np.isfinite(got[predicted]).all() and np.isnan(got[~predicted]).all()
