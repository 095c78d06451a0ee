"""Writing files users keep: atomic bundle and SAE-file writes through engine.fileio, the bundle
write job's progress events and its cancel point."""

from __future__ import annotations

import os
import stat
from importlib import metadata

import numpy as np
import pytest
import torch

import engine.bundle.write as bundle_write
import engine.fileio as fileio
from bundle_parts import copy_bundle as _copy, leftovers as _leftovers
from engine.bundle import BundleError, open_bundle, write_bundle, write_bundle_job, write_sae_file
from engine.bundle.schema import UNIT_COLUMNS
from engine.errors import WriteError
from engine.events import Cancelled, CancelToken, Progress, StageFinished, StageStarted
from engine.jobs import collect
from engine.stats import HarvestResult


# ---------------------------------------------------------------------------------- atomic writes
def test_failed_write_leaves_no_file(tmp_path, parts):
    bad = dict(parts)
    h = parts["harvest"]
    bad_neurons = type(h.neurons)(**{**h.neurons.__dict__, "labels": ["too", "few"]})
    bad["harvest"] = HarvestResult(**{**h.__dict__, "neurons": bad_neurons})
    with pytest.raises(ValueError, match="labels"):
        write_bundle(tmp_path / "new.h5", **bad)
    assert not (tmp_path / "new.h5").exists()
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_the_old_bundle(tmp_path, parts, written, monkeypatch):
    target = _copy(written, tmp_path, "keep.h5")
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_write.BundleWriter, "write_sample", boom)
    with pytest.raises(WriteError, match="could not write the bundle .*No space left"):
        write_bundle(target, **parts)
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    monkeypatch.setattr(fileio.os, "replace", boom)     # the very last step fails
    with pytest.raises(WriteError):
        write_bundle(target, **parts)
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failed_sae_file_write_leaves_nothing(tmp_path, parts):
    state = {k: v for k, v in parts["sae_state"].items() if k != "b_dec"}
    with pytest.raises(ValueError, match="b_dec"):
        write_sae_file(tmp_path / "sae.h5", state, {"d_in": 16, "d_sae": 40})
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_ordinary_permissions(tmp_path, parts, written):
    """A kept file gets what ``open(path, "w")`` would give, not mkstemp's owner-only 0600."""
    with open(tmp_path / "plain", "w"):
        pass
    ordinary = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert stat.S_IMODE(written.stat().st_mode) == ordinary
    sae = write_sae_file(tmp_path / "sae.h5", parts["sae_state"], {"d_in": 16, "d_sae": 40})
    assert stat.S_IMODE(sae.stat().st_mode) == ordinary
    with fileio.atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("{}")
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == ordinary


# ---------------------------------------------------------------------------------- engine.fileio
def test_atomic_path_keeps_the_old_file_when_the_body_or_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "kept.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []

    def no_rename(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", no_rename)
    with pytest.raises(OSError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("new")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []
    monkeypatch.undo()
    with fileio.atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and _leftovers(tmp_path) == []


def test_atomic_write_syncs_the_file_and_then_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", recording_fsync)
    write = fileio.AtomicWrite(tmp_path / "a.bin")
    write.tmp.write_bytes(b"x")
    assert write.commit() == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"x" and _leftovers(tmp_path) == []
    if os.name == "posix":
        assert synced == ["file", "folder"]       # the data, then the rename (the folder entry)


# ---------------------------------------------------------------------------------- the write job
def test_write_job_reports_progress_in_bytes_and_writes_the_same_bundle(tmp_path, parts, written):
    path, events = collect(write_bundle_job(tmp_path / "job.h5", **parts))
    assert path == tmp_path / "job.h5"
    assert isinstance(events[0], StageStarted) and events[0].stage == "bundle" and events[0].unit == "B"
    assert isinstance(events[-1], StageFinished) and events[-1].stage == "bundle"
    progress = [e for e in events if isinstance(e, Progress)]
    assert len(progress) >= 2 * len(UNIT_COLUMNS)              # at least one per per-unit dataset
    assert all(p.stage == "bundle" and p.unit == "B" and p.total == events[0].total for p in progress)
    done = [p.done for p in progress]
    assert done == sorted(done) and done[0] > 0 and done[-1] == progress[-1].total
    with open_bundle(path) as a, open_bundle(written) as b:
        for kind in ("feature", "neuron"):
            for name in UNIT_COLUMNS:
                np.testing.assert_array_equal(a.column(kind, name), b.column(kind, name), err_msg=name)


@pytest.mark.parametrize("after", [1, 5, 30])
def test_cancel_mid_write_keeps_the_previous_bundle(tmp_path, parts, written, after):
    target = _copy(written, tmp_path, "keep.h5")
    before = target.read_bytes()
    cancel = CancelToken()
    job = write_bundle_job(target, **parts, cancel=cancel)
    seen = 0
    with pytest.raises(Cancelled, match="cancelled"):
        for event in job:
            if isinstance(event, Progress):
                seen += 1
                if seen == after:
                    cancel.cancel()
    assert seen == after                        # it stopped at the next dataset
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_closing_the_job_mid_write_keeps_the_previous_bundle(tmp_path, parts, written):
    target = _copy(written, tmp_path, "keep.h5")
    before = target.read_bytes()
    job = write_bundle_job(target, **parts)
    for event in job:
        if isinstance(event, Progress):
            break
    job.close()                                 # e.g. a driver dropped the job
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_versions_come_from_package_metadata(written):
    with open_bundle(written) as b:
        versions = b.info["versions"]
    assert versions["torch"] == torch.__version__
    assert versions["tokenizers"] == metadata.version("tokenizers")
