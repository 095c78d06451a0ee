"""evaluate(): loss recovered is 1 for an exact reconstruction and 0 for a zero one; the rest adds up."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.config import ModelConfig, SAEConfig
from engine.analysis.evaluate import METRIC_KEYS, evaluate, evaluate_job, json_safe
from engine.events import Cancelled, CancelToken, Progress, StageFinished, StageStarted
from engine.jobs import collect
from engine.model import OneLayerTransformer
from engine.sae import SparseAutoencoder


@pytest.fixture(scope="module")
def model_and_tokens():
    torch.manual_seed(0)
    model = OneLayerTransformer(ModelConfig(vocab_size=64, n_ctx=16, d_model=16, n_heads=2, d_mlp=32)).eval()
    with torch.no_grad():                     # make the MLP matter to the loss
        model.mlp.W_out.weight.mul_(30)
        model.mlp.W_in.weight.mul_(5)
        model.unembed.weight.mul_(50)
    tokens = np.random.default_rng(0).integers(0, 64, size=3000).astype(np.uint16)
    return model, tokens


def _sae(d_in: int, W_enc, W_dec) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(recipe="2023", d_in=d_in, d_sae=d_in))
    state = {"W_enc": W_enc, "b_enc": torch.zeros(d_in), "W_dec": W_dec, "b_dec": torch.zeros(d_in)}
    return SparseAutoencoder.from_state_dict(sae.cfg, state)


def test_identity_sae_recovers_everything(model_and_tokens):
    model, tokens = model_and_tokens
    eye = torch.eye(32)
    m = evaluate(model, _sae(32, eye, eye), tokens, n_tokens=1000, batch_size=8)
    assert set(METRIC_KEYS) <= set(m)
    assert m["n_tokens"] == (1000 // 16) * 16
    assert abs(m["loss_zero_ablation"] - m["loss_clean"]) > 0.05  # the MLP matters in this model
    assert m["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert m["loss_sae"] == pytest.approx(m["loss_clean"], abs=1e-6)
    assert m["mse"] < 1e-10 and m["fvu"] < 1e-8
    # f = x: l0 is the mean number of active neurons, density their firing rate
    acts = model.mlp_acts(torch.from_numpy(tokens[: m["n_tokens"]].astype(np.int64)).reshape(-1, 16))
    active = (acts > 0).reshape(-1, 32)
    assert m["l0"] == pytest.approx(active.sum(1).float().mean().item(), rel=1e-6)
    assert np.allclose(m["feature_density"], active.float().mean(0).numpy())
    assert m["ultralow_threshold"] == 1e-6


def test_zero_sae_recovers_nothing(model_and_tokens):
    model, tokens = model_and_tokens
    m = evaluate(model, _sae(32, torch.eye(32), torch.zeros(32, 32)), tokens, n_tokens=800)
    assert m["loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    assert m["fvu"] > 1.0 - 1e-9                         # predicting 0 is worse than predicting the mean


def test_dead_features_and_json(model_and_tokens):
    model, tokens = model_and_tokens
    W_enc = torch.eye(32)
    W_enc[:, :4] = 0                                     # features 0..3 never fire (pre = 0 -> ReLU 0)
    m = evaluate(model, _sae(32, W_enc, torch.eye(32)), tokens, n_tokens=640)
    assert m["dead_fraction"] >= 4 / 32
    assert m["ultralow_fraction"] == 0.0  # with < 1e6 tokens no live feature is below 1e-6; dead counts apart
    assert abs(m["loss_recovered"] - 1) > 1e-3          # dropping features costs something
    text = json.dumps(json_safe(m))
    assert "feature_density" not in json.loads(text)


def test_topk_sae_evaluates(model_and_tokens):
    model, tokens = model_and_tokens
    sae = SparseAutoencoder(SAEConfig(recipe="topk", d_in=32, d_sae=128, k=6))
    m = evaluate(model, sae, tokens, n_tokens=512)
    assert m["l0"] <= 6 + 1e-9
    assert len(m["feature_density"]) == 128


def test_cli_eval_prints_the_issue_keys(tmp_path, capsys):
    from engine.cli import main
    from engine.testing.synthetic import write_synthetic_bundle

    path = write_synthetic_bundle(tmp_path / "b.h5", n_features=64, n_neurons=32, vocab_size=300, n_tokens=5000)
    assert main(["eval", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    extra = ("dead_judged_on_tokens", "eval_never_active_fraction")          # what "dead" was counted on
    assert [k for k in shown if k not in extra] == list(METRIC_KEYS) and shown["dead_judged_on_tokens"] == 5000
    assert main(["eval", str(tmp_path / "missing.h5"), "--json"]) == 1
    assert "missing.h5" in capsys.readouterr().err


def test_evaluate_job_reports_progress_per_batch_and_cancels(model_and_tokens):
    model, tokens = model_and_tokens
    eye = torch.eye(32)
    sae = _sae(32, eye, eye)
    metrics, events = collect(evaluate_job(model, sae, tokens, n_tokens=1000, batch_size=8))
    assert isinstance(events[0], StageStarted) and events[0].stage == "evaluate"
    assert events[0].total == metrics["n_tokens"] == (1000 // 16) * 16
    progress = [e for e in events if isinstance(e, Progress)]
    assert len(progress) == -(-(1000 // 16) // 8) and all(e.unit == "tokens" for e in progress)
    assert progress[-1].done == progress[-1].total == metrics["n_tokens"]
    assert isinstance(events[-1], StageFinished) and events[-1].summary["loss_recovered"] == metrics["loss_recovered"]
    plain = evaluate(model, sae, tokens, n_tokens=1000, batch_size=8)
    assert {k: v for k, v in plain.items() if k != "feature_density"} == \
        {k: v for k, v in metrics.items() if k != "feature_density"}

    model.train()
    cancel = CancelToken()
    job = evaluate_job(model, sae, tokens, n_tokens=1000, batch_size=8, cancel=cancel)
    next(job), next(job)                                  # started, first batch
    assert torch.is_grad_enabled()                        # no_grad holds inside the job, not in the driver
    cancel.cancel()
    with pytest.raises(Cancelled):
        next(job)
    assert model.training and not sae.training            # modes restored on cancel
    model.eval()
