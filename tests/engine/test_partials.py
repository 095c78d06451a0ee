"""Leftovers of interrupted writes: which files ``engine.fileio`` removes (provably ours and stale) and
which it leaves alone (anything else, or a write still running)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import engine.fileio as fileio


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _touch(path, age_s: float = 0.0):
    path.write_bytes(b"\x89HDF\r\n\x1a\n half a bundle")
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


@pytest.mark.skipif(os.name != "posix", reason="the pid probe is POSIX")
def test_only_provably_stale_temporary_files_are_swept(tmp_path):
    host = fileio._HOST
    dead, alive = _dead_pid(), os.getppid()
    stale = [
        _touch(tmp_path / f".run.h5.{host}-{dead}.abcd1234.partial"),            # its writer is gone
        _touch(tmp_path / f".model_checkpoint.pt.{host}-{dead}.x_y9zzzz.tmp"),
        _touch(tmp_path / f".acts.npy.{host}-{dead}.qqqqqqqq.tmp.npy"),
        _touch(tmp_path / ".run.h5.ghkclwoo.partial", age_s=2 * 86_400),           # an older superpos's, days old
        _touch(tmp_path / f".run.h5.deadbeef-{alive}.abcd1234.partial", age_s=8 * 86_400),  # another machine's, a week old
    ]
    kept = [
        _touch(tmp_path / f".run.h5.{host}-{alive}.abcd1234.partial"),           # a write still running
        _touch(tmp_path / f".run.h5.{host}-{os.getpid()}.abcd1234.partial"),     # this process's own
        _touch(tmp_path / ".run.h5.ghkclwoo.partial.keep"),                       # not our pattern
        _touch(tmp_path / ".run.h5.abcd1234.partial", age_s=60),                  # an older superpos's, recent
        _touch(tmp_path / f".run.h5.deadbeef-{dead}.abcd1234.partial", age_s=60),  # another machine's, recent
        _touch(tmp_path / "run.h5"), _touch(tmp_path / f"run.h5.{host}-{dead}.abcd1234.partial"),  # not hidden
    ]
    (tmp_path / f".dir.{host}-{dead}.abcd1234.partial").mkdir()                  # folders are never ours
    os.symlink(tmp_path / "run.h5", tmp_path / f".link.{host}-{dead}.abcd1234.partial")
    removed = fileio.sweep_stale_partials(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
    assert (tmp_path / f".dir.{host}-{dead}.abcd1234.partial").is_dir()
    assert (tmp_path / f".link.{host}-{dead}.abcd1234.partial").is_symlink()


def test_temporary_names_are_recognisable_and_never_look_like_the_target(tmp_path):
    write = fileio.AtomicWrite(tmp_path / "run.h5", suffix=".partial")
    try:
        name = write.tmp.name
        assert name.startswith(f".run.h5.{fileio._HOST}-{os.getpid()}.") and name.endswith(".partial")
        assert fileio.is_partial(write.tmp) and not fileio.is_partial(tmp_path / "run.h5")
    finally:
        write.abort()
    assert list(tmp_path.iterdir()) == []
