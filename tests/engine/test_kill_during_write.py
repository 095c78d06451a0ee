"""``kill -9`` at any moment of a write or a run: the previous bundle is intact, the half-written file
is never taken for a bundle, the next write into the folder removes it, and ``--resume`` completes.

The writer runs in a child process, slowed a little per dataset (a slow disk) so the parent can kill
it while the temporary file is open; the parent polls for that file and sends SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine.fileio as fileio
from bundle_parts import copy_bundle
from engine.bundle import BundleError, open_bundle, write_bundle
from engine.cli.main import main
from engine.config import preset
from engine.jobs import collect
from engine.pipeline import run_pipeline

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")

REPO = Path(__file__).resolve().parents[2]
SLOW_WRITES = """
import time
import engine.bundle.write as w
_column = w.BundleWriter.write_column
def slow(self, *args, **kwargs):
    time.sleep(0.05)
    return _column(self, *args, **kwargs)
w.BundleWriter.write_column = slow
"""
SYNTHETIC = SLOW_WRITES + """
import sys
from engine.testing.synthetic import write_synthetic_bundle
write_synthetic_bundle(sys.argv[1], n_features=256, n_neurons=32, vocab_size=300, n_tokens=5000, sample_tokens=256)
"""
CFG = dict(train={"tokens": 30_000}, sae={"n_activations": 40_000}, harvest={"n_tokens": 4_000, "eval_tokens": 2_000})
RUN = SLOW_WRITES + f"""
import sys
from engine.config import preset
from engine.jobs import run_to_completion
from engine.pipeline import run_pipeline
cfg = preset("tiny").with_overrides(**{CFG!r})
run_to_completion(run_pipeline(cfg, sys.argv[1], workdir=sys.argv[2]))
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if fileio.is_partial(p)]


def _kill_when(code: str, args: list[str], ready, timeout: float = 120.0) -> None:
    """Start ``code`` in a child, SIGKILL it as soon as ``ready()`` holds (fail if it never does)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if child.poll() is not None:
                pytest.fail(f"the child finished (rc {child.returncode}) before the moment to kill it: "
                            f"{child.stderr.read().decode()[-1500:]}")
            if time.monotonic() > deadline:
                pytest.fail("the moment to kill never came")
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()


@pytest.mark.parametrize("moment", [0, 600_000])       # bytes of the partial file written so far
def test_sigkill_during_a_bundle_write_keeps_the_previous_bundle(moment, tmp_path, written, parts, capsys):
    target = copy_bundle(written, tmp_path, "run.h5")
    before = target.read_bytes()

    def partial_has_grown() -> bool:
        found = _partials(tmp_path)
        return bool(found) and found[0].stat().st_size >= moment

    _kill_when(SYNTHETIC, [str(target)], partial_has_grown)
    assert target.read_bytes() == before
    with open_bundle(target) as b:
        assert b.n_features == written_n_features(written)
    [left] = _partials(tmp_path)
    assert not left.name.endswith(".h5")                 # not named like a bundle, and refused as one:
    with pytest.raises(BundleError, match="temporary file of an unfinished or interrupted write"):
        open_bundle(left)
    assert main(["info", str(left)]) == 1
    assert "not a bundle" in capsys.readouterr().err
    write_bundle(target, **parts)                        # the next write into the folder sweeps it
    assert _partials(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def written_n_features(path: Path) -> int:
    with open_bundle(path) as b:
        return b.n_features


@pytest.mark.parametrize("stage", ["sae"])      # ("bundle" works too; the write itself is tested above)
def test_sigkill_during_a_run_then_resume_completes(stage, tmp_path, written):
    out, work = tmp_path / "out" / "b.h5", tmp_path / "work"
    out.parent.mkdir()
    copy_bundle(written, out.parent, "b.h5")
    before = out.read_bytes()
    if stage == "sae":      # the model's checkpoint is written as its stage ends: the SAE is training
        ready = lambda: (work / "model_checkpoint.pt").exists()      # noqa: E731
    else:
        ready = lambda: bool(_partials(out.parent))                  # noqa: E731 - mid-write of the bundle
    _kill_when(RUN, [str(out), str(work)], ready)
    assert out.read_bytes() == before
    # what a kill during the bundle write leaves (that moment is tested above): swept as the run starts
    planted = out.parent / f".b.h5.{fileio._HOST}-{_dead_pid()}.abcd1234.partial"
    planted.write_bytes(b"\x89HDF\r\n\x1a\n")
    cfg = preset("tiny").with_overrides(**CFG)
    result, events = collect(run_pipeline(cfg, out, workdir=work, resume=True))
    assert any(planted.name in getattr(e, "text", "") for e in events[:4]) and not planted.exists()
    with open_bundle(result) as b:
        assert b.n_features == cfg.sae.d_sae
    assert _partials(out.parent) == [] and _partials(work) == []
