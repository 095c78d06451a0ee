"""Training under the real torchrun: 2 gloo processes equal 1 process on the same global batch, a
2-process checkpoint resumes in 1 process on the same data, and only rank 0 writes.

The workers are ``tests/ddp_child.py`` started by ``python -m torch.distributed.run`` with a c10d
rendezvous on 127.0.0.1 (a free port).

Tolerance: the ranks' gradients are summed in another order than one process's matmuls add them,
so results agree to float32 rounding amplified by training. Stated: 2e-4 of the largest value of
each compared tensor — for the model, of its largest weight (the attention's key bias has no true
gradient, softmax being shift-invariant, so Adam turns its rounding noise into steps of the size
of the learning rate in both runs alike: ~5e-5 apart after 24 steps, every other tensor ~5e-7).
Measured (benchmarks/bench_distributed.py prints it): SAE weights of every recipe 1e-7 to 1.2e-6,
loss curves ~3e-7, the model's loss curve 1e-7.
The whole pipeline through the CLI is held to looser bounds, stated below (PIPELINE_*).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.jobs import run_to_completion
from engine.testing.distributed_jobs import TINY_SPEC, tiny_jobs

CHILD = Path(__file__).resolve().parents[1] / "ddp_child.py"
REPO = Path(__file__).resolve().parents[2]
RTOL = 2e-4
# The whole pipeline (through the CLI): the SAE trains on the activations of a model that is itself
# only equal to float rounding, so its differences are those of the model's amplified by TopK's
# choices (one flipped choice moves a latent's row): measured 4e-3 (model, its worst tensor, the
# attention's key bias) and 2e-2 (SAE weights, relative Frobenius norm); losses agree to 2e-6.
# Every stage alone, on the same inputs, is held to RTOL (test_a_two_process_checkpoint_...).
PIPELINE_MODEL_TOL = 2e-2
PIPELINE_SAE_TOL = 0.1
RECIPES = ("topk", "batchtopk", "2023", "2024-04", "jumprelu", "matryoshka")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STRAY_ENGINE = "raise ImportError('a stray engine.py in the working folder was imported instead of superpos')\n"


def _stray_folder(root: Path) -> Path:
    """A working folder holding an ``engine.py`` of its own, as many ML repositories have: torchrun is
    started from there, so a launch path that the working folder can shadow fails."""
    folder = root / "ml-repo"
    folder.mkdir(exist_ok=True)
    (folder / "engine.py").write_text(STRAY_ENGINE)
    return folder


def _torchrun(args: list[str], cwd: Path, timeout: float = 300, nproc: int = 2,
              script: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--nnodes", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
           "--max-restarts", "0", *(script or [str(CHILD)]), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


FLAGS = ["run", "--preset", "tiny", "--device", "cpu", "--max-chars", "80000", "--tokens", "12800",
         "--sae-activations", "12288", "--d-sae", "64", "--harvest-tokens", "2000", "--quiet"]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One torchrun of 2 gloo processes (its start-up is the slow part): the crash job of SPEC, then
    ``superpos run FLAGS``. Returns the folder: ckpt/ (the crash's checkpoints), two/ (the run's
    work folder and bundle), audit/rank1.json, stdout.txt."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "audit").mkdir()
    (root / "spec.json").write_text(json.dumps({**SPEC, "ckpt": str(root / "ckpt")}))
    proc = _torchrun([str(root / "audit"), str(root / "spec.json"), "--", *FLAGS,
                      "--out", str(root / "two" / "b.h5"), "--workdir", str(root / "two" / "work")],
                     cwd=_stray_folder(root))
    (root / "stdout.txt").write_text(proc.stdout)
    return root


def _close(a, b) -> float:
    """max |a - b| relative to max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(b).max()), 1e-12)
    return float(np.abs(a - b).max()) / scale


def _frobenius(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a - b‖ / ‖b‖."""
    return float((a - b).norm()) / max(float(b.norm()), 1e-12)


def _same_model(state: dict, reference: dict) -> None:
    scale = max(float(v.abs().max()) for v in reference.values())
    for name, value in reference.items():
        assert float((state[name] - value).abs().max()) < RTOL * scale, name


# --------------------------------------------------------------------------------------------- the CLI
def test_the_documented_torchrun_line_is_not_shadowed_by_a_stray_engine_py(tmp_path):
    """docs/distributed.md starts ``torchrun --no-python superpos ...``: the installed command, whose own
    folder (not the working folder) comes first on its path. ``-m engine.cli`` from the same folder
    imports the stray ``engine.py`` instead, which is why the docs no longer say it."""
    import shutil

    folder = _stray_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    shadowed = subprocess.run([sys.executable, "-m", "engine.cli", "--version"], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)
    assert shadowed.returncode != 0 and "stray engine.py" in shadowed.stderr
    if shutil.which("superpos") is None:
        pytest.skip("the superpos command is not installed (pip install -e .)")
    proc = _torchrun(["--version"], cwd=folder, nproc=1, script=["--no-python", "superpos"], timeout=120)
    assert proc.stdout.startswith("superpos ")


def test_torchrun_cli_run_equals_one_process(two_processes, tmp_path):
    """torchrun of ``superpos run`` with the flags of a single process: the same model, SAE and
    curves, one bundle, reported by rank 0 alone."""
    from engine.bundle import open_bundle
    from engine.cli.main import main

    assert (two_processes / "stdout.txt").read_text().count("bundle written") == 1
    one = tmp_path / "one"
    assert main([*FLAGS, "--out", str(one / "b.h5"), "--workdir", str(one / "work")]) == 0
    with open_bundle(two_processes / "two" / "b.h5") as b2, open_bundle(one / "b.h5") as b1:
        m2, m1 = b2.load_model().state_dict(), b1.load_model().state_dict()
        s2, s1 = b2.load_sae().state_dict(), b1.load_sae().state_dict()
        c2, c1 = b2.curves(), b1.curves()
    for name in m1:
        assert _frobenius(m2[name], m1[name]) < PIPELINE_MODEL_TOL, name
    for name in s1:
        assert _frobenius(s2[name], s1[name]) < PIPELINE_SAE_TOL, name
    for curve, tol in (("model/train_loss", 1e-4), ("model/val_loss", 1e-4), ("sae/loss", 1e-2),
                       ("sae/l0", 1e-2), ("sae/dead_fraction", 0.05)):
        assert c2[curve].shape == c1[curve].shape and np.array_equal(c2[curve][:, 0], c1[curve][:, 0]), curve
        assert _close(c2[curve][:, 1], c1[curve][:, 1]) < tol, curve


def test_ranks_other_than_0_write_nothing(two_processes):
    """Rank 1 trained the model and the SAEs, read the tokenizer and the token cache, and wrote no
    file, folder, checkpoint or bundle (its audit hook saw every Python-level write)."""
    entries = json.loads((two_processes / "audit" / "rank1.json").read_text())
    roots = (str(two_processes), os.environ["SUPERPOS_HOME"])
    assert [e for e in entries if e.split(" ", 1)[1].startswith(roots)] == []
    assert (two_processes / "ckpt" / "model_checkpoint.pt").exists()      # rank 0 did write
    assert (two_processes / "two" / "b.h5").exists()


def test_a_batch_the_ranks_cannot_split_is_refused_in_one_line(monkeypatch):
    from engine.config import ConfigError, ModelConfig, TrainConfig
    from engine.train import distributed
    from engine.train.model_job import train_model

    monkeypatch.setattr(distributed, "_current", distributed.Context(rank=0, world_size=2))
    tokens = np.zeros(1000, np.uint16)
    with pytest.raises(ConfigError) as err:
        next(train_model(ModelConfig(vocab_size=8, n_ctx=8, d_model=8, n_heads=2, d_mlp=8),
                         TrainConfig(batch_size=15), tokens, tokens, device="cpu"))
    message = str(err.value)
    assert "\n" not in message and "15" in message and "split evenly" in message and "--batch-size" in message


# ------------------------------------------------------------------------------ crash, resume in 1 process
SPEC = {
    **TINY_SPEC,
    "recipes": list(RECIPES),
    "stop_model": 15,            # crash after 15 of 24 steps: the checkpoint of step 12 survives
    "stop_sae": 13,              # after 13 of 30: the checkpoint of step 10 survives
}


def _finish(spec: dict) -> dict:
    """Run the spec's jobs to the end in this (single) process; their final weights and curves."""
    model_job, sae_job = tiny_jobs(spec)
    model = run_to_completion(model_job)
    out = {"model": {k: v.clone() for k, v in model.model.state_dict().items()},
           "model_curves": model.curves, "model_steps": model.steps}
    for recipe in spec["recipes"]:
        result = run_to_completion(sae_job(recipe))
        out[recipe] = (result.sae.state_dict(), result.curves, result.n_activations)
    return out


def test_a_two_process_checkpoint_resumes_in_one_process(two_processes):
    """Two processes crash mid-run; one process resumes from rank 0's checkpoints and finishes with
    what an uninterrupted single-process run gives: same data, same steps, same weights. The
    checkpoints are made from 2-process training, so this also checks 2 processes == 1 for every recipe."""
    spec = json.loads((two_processes / "spec.json").read_text())
    state = torch.load(two_processes / "ckpt" / "model_checkpoint.pt", weights_only=True)
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


def test_commands_that_are_not_distributed_refuse_torchrun_in_one_line(monkeypatch, capsys, tmp_path):
    from engine.cli.main import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["info", str(tmp_path / "x.h5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "superpos info does not run under torchrun" in err[0]


def test_a_family_under_torchrun_is_refused_before_any_work(monkeypatch, tmp_path):
    from engine.config import ConfigError, preset
    from engine.pipeline import run_pipeline
    from engine.train import distributed

    monkeypatch.setattr(distributed, "_current", distributed.Context(rank=0, world_size=2))
    with pytest.raises(ConfigError, match="not distributed yet"):
        next(run_pipeline(preset("tiny"), tmp_path / "b.h5", workdir=tmp_path / "w", family_sizes=(64, 128)))
    assert not (tmp_path / "w").exists()
