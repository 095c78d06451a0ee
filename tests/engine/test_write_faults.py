"""Writes into a full file system: a bundle and a checkpoint give one clear line, exit non-zero, leave no
partial file and keep the previous file.

Where the test may mount (root, Linux) the disk is a real tmpfs of a few hundred KB, so HDF5 and
torch meet a real ENOSPC; elsewhere (CI without privileges) the same tests run with ENOSPC injected at
the write call. The bundle write runs in a subprocess: a crash inside h5py (SIGSEGV, as seen before
this was fixed) fails the test instead of killing the run.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import engine.fileio as fileio
from bundle_parts import copy_bundle
from engine.cli.main import main

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int):
    """A tmpfs of ``size_kb`` at ``folder``; yields True if mounted, False if this machine won't let us."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = False
    if sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


class LimitedFile(io.FileIO):
    """A file whose writes fail with ENOSPC once ``left`` bytes are spent (the injected full disk)."""
    left = 0

    def write(self, data):
        n = memoryview(data).nbytes
        if n > LimitedFile.left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        LimitedFile.left -= n
        return super().write(data)


CHILD = r"""
import sys
sys.path.insert(0, sys.argv[4])
mode, target, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "inject":
    import engine.bundle.h5target as h5target
    from test_write_faults import LimitedFile
    LimitedFile.left = limit
    h5target.open = lambda path, mode="r", buffering=-1: LimitedFile(path, mode)
from engine.errors import USER_ERRORS
from engine.testing.synthetic import write_synthetic_bundle
try:
    write_synthetic_bundle(target, n_features=256, n_neurons=32, vocab_size=300, n_tokens=5000, sample_tokens=256)
except USER_ERRORS as exc:
    print(f"superpos: error: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def _write_bundle_in_child(mode: str, target: Path, limit: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CHILD, mode, str(target), str(limit), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


@pytest.mark.parametrize("mode", ["tmpfs", "inject"])
def test_a_bundle_write_into_a_full_disk_is_one_line_and_keeps_the_old_bundle(mode, tmp_path, written):
    disk = tmp_path / "disk"
    # the synthetic bundle is ~1.5 MB, its weights (checked up front) ~0.5 MB: 1 MB of space passes the
    # up-front check and runs out in the middle of the write
    with small_disk(disk, 1024 + written.stat().st_size // 1024) if mode == "tmpfs" else contextlib.nullcontext(False) as mounted:
        if mode == "tmpfs" and not mounted:
            pytest.skip("cannot mount a tmpfs here; the injected run covers the same path")
        disk.mkdir(exist_ok=True)
        target = copy_bundle(written, disk, "run.h5")
        before = target.read_bytes()
        result = _write_bundle_in_child(mode, target, limit=1_000_000)
        assert result.returncode == 1, (result.returncode, result.stderr[-2000:])   # not -11 (SIGSEGV)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr[-2000:]
        assert lines[0].startswith(f"superpos: error: could not write the bundle {target}: No space left on device; "
                                   "free some space or choose another folder")
        assert target.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == ["run.h5"]          # no .partial left behind


def test_the_free_space_is_checked_before_a_bundle_is_started(tmp_path, parts, monkeypatch):
    from engine.bundle import write_bundle
    from engine.errors import WriteError

    monkeypatch.setattr(fileio, "free_bytes", lambda folder: 10_000)
    with pytest.raises(WriteError, match=r"not enough free space to write the bundle .*x\.h5: it needs at "
                                         r"least .* and 10\.0 KB are free; free some space"):
        write_bundle(tmp_path / "x.h5", **parts)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- checkpoints
@pytest.fixture
def activations(tmp_path) -> Path:
    path = tmp_path / "acts.npy"
    np.save(path, np.random.default_rng(0).standard_normal((1024, 16)).astype(np.float32))
    return path


def _train_sae(activations: Path, out: Path, ckpt: Path) -> int:
    return main(["train-sae", "--activations", str(activations), "--out", str(out), "--checkpoint-dir", str(ckpt),
                 "--d-sae", "32", "--k", "4", "--aux-k", "8", "--n-activations", "1024", "--batch-size", "256",
                 "--device", "cpu", "--quiet"])


@pytest.mark.parametrize("mode", ["tmpfs", "inject-up-front", "inject-mid-write"])
def test_a_checkpoint_write_into_a_full_disk_is_one_line_and_keeps_the_old_checkpoint(
        mode, tmp_path, activations, capsys, monkeypatch):
    disk = tmp_path / "disk"
    with small_disk(disk, 64) if mode == "tmpfs" else contextlib.nullcontext(False) as mounted:
        if mode == "tmpfs":
            if not mounted:
                pytest.skip("cannot mount a tmpfs here; the injected runs cover the same paths")
            (disk / "filler").write_bytes(b"\0" * 48 * 1024)
        disk.mkdir(exist_ok=True)
        old = disk / "sae_checkpoint.pt"
        old.write_bytes(b"an older checkpoint")
        if mode == "inject-up-front":
            monkeypatch.setattr(fileio, "free_bytes", lambda folder: 4096)
        elif mode == "inject-mid-write":
            monkeypatch.setattr(fileio, "free_bytes", lambda folder: None)    # the system cannot say
            LimitedFile.left = 1000
            monkeypatch.setattr(fileio, "open", lambda path, mode="r": LimitedFile(path, mode), raising=False)
        code = _train_sae(activations, disk / "sae.h5", disk)
        err = capsys.readouterr().err
        assert code == 1
        assert err.count("\n") == 1 and err.startswith("superpos: error: ")
        assert "inline_container" not in err and "Errno" not in err
        if mode == "inject-mid-write":
            assert f"could not write the SAE checkpoint {old}: No space left on device; free some space" in err
        else:
            assert f"not enough free space to write the SAE checkpoint {old}: it needs at least" in err
        assert old.read_bytes() == b"an older checkpoint"
        assert sorted(p.name for p in disk.iterdir()) == sorted(["sae_checkpoint.pt"] + (["filler"] if mounted else []))


def test_other_write_errors_say_what_to_do(tmp_path):
    err = fileio.write_error(OSError(errno.EIO, "Input/output error"), tmp_path / "b.h5", "the bundle")
    assert "could not write the bundle" in str(err) and "the disk or its connection may be failing" in str(err)
    err = fileio.write_error(OSError(errno.EDQUOT, "quota"), tmp_path / "b.h5", "the bundle")
    assert "Disk quota exceeded" in str(err) and "within your quota" in str(err)
    err = fileio.write_error(OSError(errno.EROFS, "ro"), tmp_path / "b.h5", "the bundle")
    assert "choose a folder you can write to" in str(err) and isinstance(err, OSError)


# ---------------------------------------------------------------------------------- caches and exports
def test_a_full_disk_while_tokenizing_names_the_token_cache_and_leaves_no_folder(tmp_path, monkeypatch):
    import engine.data.token_cache as token_cache
    from engine.config import CorpusConfig
    from engine.data.tokenizer import Tokenizer
    from engine.errors import WriteError
    from engine.jobs import run_to_completion
    from engine.testing.synthetic import synthetic_text

    text = synthetic_text(0, 6000)
    corpus = tmp_path / "notes.txt"
    corpus.write_text(text, encoding="utf-8")
    tokenizer = Tokenizer.train([text], vocab_size=300)
    LimitedFile.left = 100
    monkeypatch.setattr(token_cache, "open", lambda path, mode="r": LimitedFile(path, mode), raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(WriteError, match=r"could not write the token cache .*: No space left on device; free some"):
        run_to_completion(token_cache.tokenize_corpus(CorpusConfig(spec=str(corpus)), tokenizer, cache_dir=cache))
    assert list(cache.iterdir()) == []


def test_exports_check_the_free_space_first(written, tmp_path, monkeypatch):
    from engine.bundle import open_bundle
    from engine.errors import WriteError
    from engine.interop.saelens import export_saelens

    monkeypatch.setattr(fileio, "free_bytes", lambda folder: 100)
    with open_bundle(written) as b, pytest.raises(WriteError, match="not enough free space to write the SAELens "
                                                                   "export file .*sae_weights.safetensors"):
        export_saelens(b, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_an_sae_file_write_that_runs_out_of_space_midway_leaves_nothing(tmp_path, parts, monkeypatch):
    import engine.bundle.h5target as h5target
    from engine.bundle import write_sae_file
    from engine.errors import WriteError

    old = tmp_path / "sae.h5"
    old.write_bytes(b"the previous SAE file")
    LimitedFile.left = 3000                                # the header fits, the weights do not
    monkeypatch.setattr(h5target, "open", lambda path, mode="r", buffering=-1: LimitedFile(path, mode),
                        raising=False)
    with pytest.raises(WriteError, match=r"could not write the SAE file .*sae.h5: No space left on device"):
        write_sae_file(old, parts["sae_state"], {"d_in": 16, "d_sae": 40})
    assert old.read_bytes() == b"the previous SAE file" and sorted(p.name for p in tmp_path.iterdir()) == ["sae.h5"]
