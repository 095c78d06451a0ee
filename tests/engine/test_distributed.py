"""Training under the real torchrun: 2 gloo processes equal 1 process on the same global batch, a
2-process checkpoint resumes in 1 process on the same data, and only rank 0 writes.

The workers are ``tests/ddp_child.py`` started by ``python -m torch.distributed.run`` with a c10d
rendezvous on 127.0.0.1 (a free port).

Tolerance: the ranks' gradients are summed in another order than one process's matmuls add them,
so results agree to float32 rounding amplified by training. Stated: 2e-4 of the largest value of
each compared tensor — for the model, of its largest weight (the attention's key bias has no true
gradient, softmax being shift-invariant, so Adam turns its rounding noise into steps of the size
of the learning rate in both runs alike: ~5e-5 apart after 24 steps, every other tensor ~5e-7).
Measured here: SAE weights and curves of every recipe agree to ~3e-7, the model's losses to 1e-9.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.events import run_to_completion

CHILD = Path(__file__).resolve().parents[1] / "ddp_child.py"
_spec = importlib.util.spec_from_file_location("ddp_child", CHILD)
ddp_child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ddp_child)
make_jobs = ddp_child.make_jobs
REPO = Path(__file__).resolve().parents[2]
RTOL = 2e-4
RECIPES = ("topk", "batchtopk", "2023", "2024-04", "jumprelu", "matryoshka")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], audit: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    audit.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--nnodes", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
           "--max-restarts", "0", str(CHILD), *args[:1], str(audit), *args[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _rank1_writes(audit: Path, roots: list[Path]) -> list[str]:
    """What rank 1 wrote inside the test's folders (its audit report; the report itself excluded)."""
    entries = json.loads((audit / "rank1.json").read_text())
    inside = [e for e in entries if any(e.split(" ", 1)[1].startswith(str(r)) for r in roots)]
    return inside


def _close(a, b) -> float:
    """max |a - b| relative to max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(b).max()), 1e-12)
    return float(np.abs(a - b).max()) / scale


def _same_model(state: dict, reference: dict) -> None:
    scale = max(float(v.abs().max()) for v in reference.values())
    for name, value in reference.items():
        assert float((state[name] - value).abs().max()) < RTOL * scale, name


# --------------------------------------------------------------------------------------------- the CLI
def test_torchrun_cli_run_equals_one_process(tmp_path):
    """``torchrun -m engine.cli run`` with the flags of a single process: the same model, SAE and
    curves, one bundle, written by rank 0 alone."""
    from engine.bundle import open_bundle
    from engine.cli.main import main

    flags = ["run", "--preset", "tiny", "--device", "cpu", "--max-chars", "120000", "--tokens", "20480",
             "--sae-activations", "20480", "--d-sae", "64", "--harvest-tokens", "3000", "--quiet"]
    audit = tmp_path / "audit"
    two, one = tmp_path / "two", tmp_path / "one"
    proc = _torchrun(["cli", "--", *flags, "--out", str(two / "b.h5"), "--workdir", str(two / "work")], audit)
    assert proc.stdout.count("bundle written") == 1                   # rank 0 alone reports
    assert main([*flags, "--out", str(one / "b.h5"), "--workdir", str(one / "work")]) == 0
    home = Path(os.environ["SUPERPOS_HOME"])
    assert _rank1_writes(audit, [two, home]) == []

    with open_bundle(two / "b.h5") as b2, open_bundle(one / "b.h5") as b1:
        _same_model(b2.load_model().state_dict(), b1.load_model().state_dict())
        s2, s1 = b2.load_sae().state_dict(), b1.load_sae().state_dict()
        for name in s1:
            assert _close(s2[name], s1[name]) < RTOL, name
        c2, c1 = b2.curves, b1.curves
        for curve in ("model/train_loss", "model/val_loss", "sae/loss", "sae/l0", "sae/dead_fraction"):
            assert c2[curve].shape == c1[curve].shape, curve
            assert _close(c2[curve], c1[curve]) < RTOL, curve


def test_a_batch_the_ranks_cannot_split_is_refused_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m",
         "engine.cli", "train-model", "--preset", "tiny", "--device", "cpu", "--batch-size", "15",
         "--out", str(tmp_path / "m")], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.startswith("superpos: error:")]
    assert lines and "15" in lines[0] and "split evenly" in lines[0] and "--batch-size" in lines[0]


# ------------------------------------------------------------------------------ crash, resume in 1 process
SPEC = {
    "vocab": 64,
    "model": {"vocab_size": 64, "n_ctx": 16, "d_model": 16, "n_heads": 2, "d_mlp": 32},
    "train": {"tokens": 24 * 8 * 16, "batch_size": 8, "lr": 1e-2, "warmup_steps": 4, "eval_every": 6,
              "eval_batches": 2, "checkpoint_every": 6},
    "sae": {"d_in": 24, "d_sae": 48, "k": 4, "aux_k": 8, "batch_size": 256, "n_activations": 30 * 256,
            "dead_window": 1024, "checkpoint_every": 5, "lr": 4e-3, "l1_coeff": 1.0},
    "recipes": list(RECIPES),
    "stop_model": 15,            # crash after 15 of 24 steps: the checkpoint of step 12 survives
    "stop_sae": 13,              # after 13 of 30: the checkpoint of step 10 survives
}


def _finish(spec: dict) -> dict:
    """Run the spec's jobs to the end in this (single) process; their final weights and curves."""
    model_job, sae_job = make_jobs(spec)
    model = run_to_completion(model_job)
    out = {"model": {k: v.clone() for k, v in model.model.state_dict().items()},
           "model_curves": model.curves, "model_steps": model.steps}
    for recipe in spec["recipes"]:
        result = run_to_completion(sae_job(recipe))
        out[recipe] = (result.sae.state_dict(), result.curves, result.n_activations)
    return out


def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path):
    """Two processes crash mid-run; one process resumes from rank 0's checkpoints and finishes with
    what an uninterrupted single-process run gives: same data, same steps, same weights. The
    checkpoints are made from 2-process training, so this also checks 2 processes == 1 for every recipe."""
    ckpt, audit = tmp_path / "ckpt", tmp_path / "audit"
    spec = {**SPEC, "ckpt": str(ckpt)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    _torchrun(["crash", str(tmp_path / "spec.json")], audit)
    assert _rank1_writes(audit, [tmp_path / "ckpt"]) == []
    state = torch.load(ckpt / "model_checkpoint.pt", weights_only=True)
    assert state["step"] == 12                                       # rank 0 wrote the last checkpoint due

    resumed = _finish({**spec, "resume": True})
    reference = _finish(SPEC)
    assert resumed["model_steps"] == reference["model_steps"] == 24
    _same_model(resumed["model"], reference["model"])
    for curve in ("model/train_loss", "model/val_loss"):
        assert _close(resumed["model_curves"][curve], reference["model_curves"][curve]) < RTOL, curve
    for recipe in RECIPES:
        sae_r, curves_r, n_r = resumed[recipe]
        sae_1, curves_1, n_1 = reference[recipe]
        assert n_r == n_1 == 30 * 256, recipe
        for name, value in sae_1.items():
            assert _close(sae_r[name], value) < RTOL, (recipe, name)
        for curve in ("sae/loss", "sae/l0", "sae/dead_fraction"):
            assert _close(curves_r[curve], curves_1[curve]) < RTOL, (recipe, curve)


@pytest.mark.parametrize("world", [2])
def test_the_global_batch_is_split_into_contiguous_blocks(world, monkeypatch):
    """Rank r of W trains on rows [r·B/W, (r+1)·B/W) of the global batch; the blocks tile it."""
    from engine.train import distributed

    batch = torch.arange(12).reshape(6, 2)
    blocks = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "_current", distributed.Context(rank=rank, world_size=world))
        blocks.append(distributed.block(batch))
        assert distributed.is_writer() == (rank == 0)
    assert torch.equal(torch.cat(blocks), batch)
    assert torch.equal(blocks[1], batch[3:])
