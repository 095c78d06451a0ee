"""Model training: learns, resumes exactly, stops on divergence and on cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import ModelConfig, TrainConfig
from engine.events import Cancelled, CancelToken, Progress
from engine.jobs import collect
from engine.train.model_job import batch_at, lr_at, train_model, unigram_entropy

MODEL = ModelConfig(vocab_size=64, n_ctx=16, d_model=16, n_heads=2, d_mlp=32)
TRAIN = TrainConfig(tokens=40 * 8 * 16, batch_size=8, lr=1e-2, warmup_steps=5, eval_every=10,
                    eval_batches=2, checkpoint_every=10, seed=3)


def _tokens(n=20000, seed=0):
    # A sequence with strong local structure: next token = previous + small step (mod V).
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.integers(1, 3, n)) % MODEL.vocab_size).astype(np.uint16)


def test_learns_below_unigram_entropy(tmp_path):
    tokens = _tokens()
    result, events = collect(train_model(MODEL, TRAIN, tokens[:18000], tokens[18000:], device="cpu"))
    assert result.final_val_loss < 0.75 * unigram_entropy(tokens, MODEL.vocab_size)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == result.steps == 40
    assert {"train_loss", "lr"} <= set(progress[0].metrics)
    assert result.curves["model/train_loss"].shape == (40, 2)
    assert np.all(np.diff(result.curves["model/train_loss"][:, 0]) > 0)


def test_kill_and_resume_gives_identical_weights(tmp_path):
    tokens = _tokens()
    straight, _ = collect(train_model(MODEL, TRAIN, tokens[:18000], tokens[18000:], device="cpu"))

    cancel = CancelToken()
    gen = train_model(MODEL, TRAIN, tokens[:18000], tokens[18000:], device="cpu",
                      checkpoint_dir=tmp_path, cancel=cancel)
    with pytest.raises(Cancelled):
        for event in gen:
            if isinstance(event, Progress) and event.step == 17:  # between checkpoints: cancel saves one
                cancel.cancel()
    resumed, events = collect(train_model(MODEL, TRAIN, tokens[:18000], tokens[18000:], device="cpu",
                                      checkpoint_dir=tmp_path, resume=True))
    assert [e for e in events if isinstance(e, Progress)][0].step == 18
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=0)
    np.testing.assert_array_equal(resumed.curves["model/train_loss"], straight.curves["model/train_loss"])


def test_divergence_stops_with_message_and_keeps_checkpoint(tmp_path):
    tokens = _tokens()
    bad = TRAIN.replace(lr=1e30, warmup_steps=1, grad_clip=1e30)
    from engine.errors import TrainingDiverged
    with pytest.raises(TrainingDiverged, match="diverged"):
        collect(train_model(MODEL, bad, tokens[:18000], tokens[18000:], device="cpu", checkpoint_dir=tmp_path))


def test_schedule_and_batches_are_deterministic():
    assert lr_at(0, 100, TRAIN) == pytest.approx(TRAIN.lr / TRAIN.warmup_steps)
    assert lr_at(99, 100, TRAIN) == pytest.approx(TRAIN.lr * TRAIN.min_lr_ratio, rel=1e-2)
    tokens = _tokens()
    x1, y1 = batch_at(tokens, 7, 4, 16, seed=1)
    x2, y2 = batch_at(tokens, 7, 4, 16, seed=1)
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1])
    with pytest.raises(ValueError, match="training tokens"):
        batch_at(tokens[:5], 0, 4, 16, seed=1)


def test_live_metric_names_are_the_stored_curve_names():
    tokens = _tokens()
    result, events = collect(train_model(MODEL, TRAIN, tokens[:18000], tokens[18000:], device="cpu"))
    progress = [e for e in events if isinstance(e, Progress)]
    keys = {key for p in progress for key in p.metrics}
    assert keys == {"train_loss", "val_loss", "lr"}
    assert {f"model/{key}" for key in keys} == set(result.curves)
    for key in keys:
        shown = [(p.done, p.metrics[key]) for p in progress if key in p.metrics]
        np.testing.assert_allclose(result.curves[f"model/{key}"], np.asarray(shown))


def test_a_model_worse_than_uniform_is_said_not_passed_silently():
    from engine.events import Message

    tokens = _tokens()
    wild = TRAIN.replace(lr=10.0, warmup_steps=1)            # the accepted maximum: finite, useless
    result, events = collect(train_model(MODEL, wild, tokens[:18000], tokens[18000:], device="cpu"))
    warnings = [e.text for e in events if isinstance(e, Message) and e.level == "warning"]
    assert result.final_val_loss > np.log(MODEL.vocab_size)
    assert any("learned nothing" in w and "--lr" in w for w in warnings)
    good, events = collect(train_model(MODEL, TRAIN, tokens[:18000], tokens[18000:], device="cpu"))
    assert not any(isinstance(e, Message) and "learned nothing" in e.text for e in events)
