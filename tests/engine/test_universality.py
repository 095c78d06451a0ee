"""The family's matching sample, sparse correlation and logit-weight correlation against brute force."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from engine.analysis.universality import logit_weight_correlations, sparse_correlation_matches, spread_windows
from engine.config import preset
from engine.model import OneLayerTransformer


def _sparse_acts(rng, n, units, density):
    x = np.maximum(rng.standard_normal((n, units)), 0) * (rng.random((n, units)) < density)
    return x.astype(np.float32)


def test_sparse_correlation_equals_brute_force_and_leaves_rare_units_out():
    rng = np.random.default_rng(3)
    A, B = _sparse_acts(rng, 400, 29, 0.2), _sparse_acts(rng, 400, 37, 0.2)
    B[:, 5] = A[:, 2] * 2.0 + 0.1 * (A[:, 2] > 0)      # a near-copy: A/2's best match is B/5
    A[:, 4] = 0.0
    A[:3, 4] = 1.0                                      # active on 3 tokens: fewer than min_active
    B[:, 9] = 0.0                                       # dead here: never anyone's match
    ids, corr = sparse_correlation_matches(sp.csr_matrix(A), sp.csr_matrix(B), k=3, min_active=5, chunk=7)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.corrcoef(A.T.astype(np.float64), B.T.astype(np.float64))[:29, 29:]
    full[:, 9] = -np.inf
    full = np.where(full > 0, full, -np.inf)            # only positive correlations are kept
    order = np.argsort(-full, axis=1, kind="stable")[:, :3]
    want = np.take_along_axis(full, order, 1)
    live = (A > 0).sum(0) >= 5
    assert not live[4] and live.sum() == 28
    for f in np.flatnonzero(live):
        finite = np.isfinite(want[f])
        np.testing.assert_allclose(corr[f][finite], want[f][finite], atol=1e-5)
        assert (ids[f][finite] == order[f][finite]).all()
        assert (ids[f][~finite] == -1).all()
    assert ids[2, 0] == 5 and corr[2, 0] > 0.95
    assert (ids[4] == -1).all() and np.isnan(corr[4]).all()
    assert not (ids == 9).any()


def test_spread_windows_are_whole_contexts_at_random_places():
    tokens = np.arange(10_000)
    w = spread_windows(tokens, 1_000, 64, seed=1)
    assert w.shape == (15, 64) and (np.diff(w, axis=1) == 1).all() and (w[:, 0] % 64 == 0).all()
    assert w[-1, 0] - w[0, 0] > 5_000                  # spread over the split, not its first stretch
    assert (spread_windows(tokens, 1_000, 64, seed=1) == w).all()
    assert not (spread_windows(tokens, 1_000, 64, seed=2) == w).all()


def test_logit_weight_correlation_is_the_correlation_of_the_direct_logit_weights():
    cfg = preset("tiny").model
    torch.manual_seed(0)
    ma, mb = OneLayerTransformer(cfg), OneLayerTransformer(cfg)
    rng = np.random.default_rng(0)
    Wa = rng.standard_normal((6, cfg.d_mlp)).astype(np.float32)
    Wb = rng.standard_normal((4, cfg.d_mlp)).astype(np.float32)
    ids = np.array([[0, 3], [1, -1], [2, 2], [3, 0], [0, 1], [-1, -1]], np.int32)
    got = logit_weight_correlations(ma, Wa, mb, Wb, ids, chunk=4)

    def logits(model, d):
        W_out = model.mlp.W_out.weight.detach().double().numpy()
        W_out = W_out - W_out.mean(0, keepdims=True)
        g = model.ln_final.weight.detach().double().numpy()
        return model.unembed.weight.detach().double().numpy() @ (g * (W_out @ d))

    for f in range(6):
        for j in range(2):
            if ids[f, j] < 0:
                assert np.isnan(got[f, j])
                continue
            want = np.corrcoef(logits(ma, Wa[f]), logits(mb, Wb[ids[f, j]]))[0, 1]
            assert abs(got[f, j] - want) < 1e-4
