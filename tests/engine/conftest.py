"""Shared fixtures of tests/engine: the inputs of a tiny bundle (everything write_bundle takes) and the
bundle written from them, module-scoped so each test module builds them once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bundle_parts import HC, N_F, N_M
from engine.bundle import write_bundle
from engine.config import preset
from engine.data.tokenizer import Tokenizer
from engine.model import OneLayerTransformer
from engine.stats import HarvestResult
from engine.testing.synthetic import _unit_chunk, synthetic_text


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    return Tokenizer.train([synthetic_text(0, 6000)], vocab_size=300).to_json()


@pytest.fixture(scope="module")
def parts(tokenizer_json):
    """Everything write_bundle takes, for a tiny model (V from the tokenizer, 16 neurons, 40 features)."""
    V = Tokenizer.from_json(tokenizer_json).vocab_size
    config = preset("tiny").with_overrides(
        tokenizer={"vocab_size": V}, model={"d_mlp": N_M, "d_model": 16, "n_heads": 2, "n_ctx": 8},
        sae={"d_sae": N_F, "k": 4, "aux_k": 8}, harvest=HC.to_dict())
    torch.manual_seed(0)
    model = OneLayerTransformer(config.model)
    rng = np.random.default_rng(0)
    W_dec = rng.standard_normal((N_F, N_M)).astype(np.float32)
    sae_state = {"W_enc": torch.from_numpy(W_dec.T.copy()), "b_enc": torch.randn(N_F),
                 "W_dec": torch.from_numpy(W_dec), "b_dec": torch.randn(N_M)}
    features = _unit_chunk(rng, "feature", N_F, 0, 10_000, V, N_M, HC, ["DNA: ACGT runs", "héllo ✓ עברית", ""])
    neurons = _unit_chunk(rng, "neuron", N_M, 0, 10_000, V, N_F, HC, ["polysemantic"])
    S = HC.sample_tokens
    counts = rng.integers(0, 4, size=N_F)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    harvest = HarvestResult(
        features=features, neurons=neurons, n_tokens=10_000,
        density_hist_edges=np.linspace(-8, 0, 9), density_hist_counts=rng.integers(0, 9, size=8),
        sample_token_ids=rng.integers(0, V, size=S).astype(np.int32),
        sample_neuron_acts=rng.random((S, N_M)).astype(np.float16),
        sample_feature_indptr=indptr,
        sample_feature_token=rng.integers(0, S, size=int(indptr[-1])).astype(np.int32),
        sample_feature_value=rng.random(int(indptr[-1])).astype(np.float16),
        sample_context_starts=np.sort(rng.choice(10_000 // 10, S // 10, replace=False)).astype(np.int64) * 10,
    )
    curves = {"model/train_loss": np.stack([np.arange(5.0), np.linspace(5, 3, 5)], 1),
              "sae/l0": np.stack([np.arange(3.0), [4.0, 4.0, 4.0]], 1), "flat": np.zeros((0, 2))}
    metrics = {"mse": 0.5, "l0": 4.0, "loss_recovered": float("nan"), "nested": {"a": [1, 2]},
               "n_tokens": np.int64(8000)}
    return dict(config=config, tokenizer_json=tokenizer_json, model_state=model.state_dict(),
                sae_state=sae_state, harvest=harvest, metrics=metrics, curves=curves,
                extra_info={"corpus": "builtin", "note": "ünïcode"})


@pytest.fixture(scope="module")
def written(parts, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "run.h5"
    write_bundle(path, **parts)
    return path
