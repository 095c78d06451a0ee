"""The live view's engine data: count-table baselines against a direct computation, predictions' shape."""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.config import ModelConfig
from engine.model import OneLayerTransformer
from engine.train.glimpse import BIGRAM_K, baseline_losses, sample_predictions


def test_baselines_equal_the_count_tables_cross_entropy():
    rng = np.random.default_rng(0)
    V = 7
    train = rng.integers(0, V, 500)
    train[1::2] = (train[::2] + 1) % V                  # every odd token follows its predecessor: bigram helps
    val = rng.integers(0, V, 101)
    val[1::2] = (val[:-1:2] + 1) % V
    g = baseline_losses(train, val, V)
    uni = np.bincount(train, minlength=V) + BIGRAM_K
    want_uni = -np.mean([math.log(uni[t] / uni.sum()) for t in val])
    pair = np.zeros((V, V))
    for a, b in zip(train[:-1], train[1:]):
        pair[a, b] += 1
    want_bi = -np.mean([math.log((pair[a, b] + BIGRAM_K) / (pair[a].sum() + BIGRAM_K * V))
                        for a, b in zip(val[:-1], val[1:])])
    assert g.kind == "baselines"
    assert math.isclose(g.values["unigram"], want_uni, rel_tol=1e-9)
    assert math.isclose(g.values["bigram"], want_bi, rel_tol=1e-9)
    assert g.values["bigram"] < g.values["unigram"]


def test_predictions_are_the_models_top_guesses_at_fixed_windows():
    torch.manual_seed(0)
    model = OneLayerTransformer(ModelConfig(vocab_size=30, n_ctx=8, d_model=16, n_heads=2, d_mlp=32))
    model.train()
    val = np.random.default_rng(1).integers(0, 30, 200)
    g = sample_predictions(model, val, step=5, done=100, n_positions=4, top=3)
    assert model.training                                # the training loop's mode is left as it was
    assert g.kind == "predictions" and g.step == 5 and len(g.rows) == 4
    again = sample_predictions(model, val, step=6, done=120, n_positions=4, top=3)
    assert [r[:2] for r in g.rows] == [r[:2] for r in again.rows]        # the same positions every time
    model.eval()
    for context, actual, preds in g.rows:
        s = next(i for i in range(len(val) - 8) if tuple(val[i + 8 - len(context):i + 8]) == context
                 and val[i + 8] == actual)
        probs = torch.softmax(model(torch.as_tensor(val[s:s + 8])[None])[0, -1], -1)
        top_p, top_i = probs.topk(3)
        assert [i for i, _ in preds] == top_i.tolist()
        np.testing.assert_allclose([p for _, p in preds], top_p.tolist(), rtol=1e-5)
