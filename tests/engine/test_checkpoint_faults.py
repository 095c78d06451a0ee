"""Checkpoints met by --resume that cannot be used are refused with one line of ours (never torch's
text), for model and SAE checkpoints alike; a divergence says which checkpoint it keeps, if any."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from engine.cli.main import main
from engine.config import ModelConfig, TrainConfig
from engine.errors import CheckpointError, TrainingDiverged
from engine.events import Cancelled, CancelToken, Progress
from engine.jobs import collect
from engine.train.checkpoint import load_checkpoint
from engine.train.model_job import CHECKPOINT_NAME, train_model

MODEL = ModelConfig(vocab_size=64, n_ctx=16, d_model=16, n_heads=2, d_mlp=32)
TRAIN = TrainConfig(tokens=40 * 8 * 16, batch_size=8, lr=1e-2, warmup_steps=5, eval_every=10,
                    eval_batches=2, checkpoint_every=10, seed=3)
TOKENS = (np.cumsum(np.random.default_rng(0).integers(1, 3, 20000)) % 64).astype(np.uint16)


def _train(train_cfg, folder, resume=False, cancel=None):
    return train_model(MODEL, train_cfg, TOKENS[:18000], TOKENS[18000:], device="cpu", checkpoint_dir=folder,
                       resume=resume, cancel=cancel)


def _pickled(path):
    torch.save({"model": collections.OrderedDict(a=1), "hook": Exception("runs code on load")}, path)


def _one_clean_line(text: str) -> None:
    assert "\n" not in text.strip() and "\x1b" not in text and "Weights only load failed" not in text


def test_divergence_before_the_first_checkpoint_says_none_exists(tmp_path):
    bad = TRAIN.replace(lr=1e30, warmup_steps=1, grad_clip=1e30)
    with pytest.raises(TrainingDiverged) as info:
        collect(_train(bad, tmp_path))
    message = str(info.value)
    assert "no checkpoint had been written yet (the first is due at step 10)" in message
    assert "is kept" not in message and not (tmp_path / CHECKPOINT_NAME).exists()


def test_divergence_after_a_checkpoint_names_the_one_it_keeps(tmp_path):
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        for event in _train(TRAIN, tmp_path, cancel=cancel):
            if isinstance(event, Progress) and event.step == 12:
                cancel.cancel()                                # saves the checkpoint of step 12
    kept = (tmp_path / CHECKPOINT_NAME).read_bytes()
    bad = TRAIN.replace(lr=1e30, warmup_steps=1, grad_clip=1e30)
    with pytest.raises(TrainingDiverged, match=rf"the checkpoint of step 12 \({tmp_path / CHECKPOINT_NAME}\) is kept"):
        collect(_train(bad, tmp_path, resume=True))
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == kept


def test_a_pickled_model_checkpoint_is_refused_in_one_line(tmp_path):
    _pickled(tmp_path / CHECKPOINT_NAME)
    with pytest.raises(CheckpointError) as info:
        collect(_train(TRAIN, tmp_path, resume=True))
    message = str(info.value)
    assert message.startswith(f"the model checkpoint {tmp_path / CHECKPOINT_NAME} holds pickled Python objects")
    assert "does not load such files (they can run code)" in message
    _one_clean_line(message)


def test_a_pickled_or_damaged_sae_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    acts = tmp_path / "acts.npy"
    np.save(acts, np.random.default_rng(0).standard_normal((512, 8)).astype(np.float32))
    args = ["train-sae", "--activations", str(acts), "--out", str(tmp_path / "s.h5"), "--checkpoint-dir",
            str(tmp_path), "--d-sae", "16", "--k", "2", "--aux-k", "4", "--n-activations", "512",
            "--batch-size", "128", "--device", "cpu", "--quiet", "--resume"]
    ckpt = tmp_path / "sae_checkpoint.pt"
    _pickled(ckpt)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"superpos: error: the SAE checkpoint {ckpt} holds pickled Python objects")
    assert "unexpected" not in err and "UnpicklingError" not in err
    _one_clean_line(err)
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"the SAE checkpoint {ckpt} is damaged or not a PyTorch checkpoint; delete it" in err
    _one_clean_line(err)


def test_a_checkpoint_of_something_else_is_named_as_such(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="is not a superpos model checkpoint \\(it lacks model, optimizer"):
        load_checkpoint(tmp_path / "x.pt", ("model", "optimizer"), "model checkpoint")
