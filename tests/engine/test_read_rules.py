"""The read-side rules (engine.inputs) on bundles, SAE files and checkpoints: non-regular
files are refused before opening, strings always decode, absurd sizes are refused at open, and every
read holds the one HDF5 lock."""

from __future__ import annotations

import json
import os
import signal
import threading

import h5py
import numpy as np
import pytest

from bundle_parts import copy_bundle
from engine.bundle import BundleError, open_bundle, read_sae
from engine.inputs import MAX_UNITS, regular_file, text
from engine.bundle.read import H5_LOCK
from engine.errors import CheckpointError


@pytest.fixture
def alarm():
    """Fail instead of hanging forever if a FIFO is opened for reading."""
    def boom(*_):
        raise TimeoutError("the open blocked")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_non_regular_files_are_refused_before_opening(tmp_path, alarm):
    fifo = tmp_path / "x.h5"
    os.mkfifo(fifo)
    with pytest.raises(BundleError, match="FIFO"):
        open_bundle(fifo)
    with pytest.raises(BundleError, match="FIFO"):
        read_sae(fifo)
    with pytest.raises(BundleError, match="folder"):
        open_bundle(tmp_path)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(BundleError, match="symbolic link that loops"):
        open_bundle(a)
    dev = tmp_path / "zero.h5"
    os.symlink("/dev/zero", dev)
    with pytest.raises(BundleError, match="device"):
        open_bundle(dev)
    with pytest.raises(BundleError, match="no such file"):
        open_bundle(tmp_path / "absent.h5")


def test_checkpoints_follow_the_same_rule(tmp_path, alarm):
    from engine.train.model_job import _load_checkpoint

    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="FIFO"):
        _load_checkpoint(fifo)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="damaged or not a PyTorch checkpoint"):
        _load_checkpoint(bad)


def test_text_always_gives_valid_unicode():
    assert text(b"ok \xff\xfe") == "ok \ufffd\ufffd"
    assert text(b"\xed\xa0\x80") == "\ufffd\ufffd\ufffd"          # an encoded surrogate is invalid UTF-8
    assert text("x\ud800y") == "xy"
    assert text(np.array(b"a\xc3")) == "a\ufffd"
    assert text(None) == ""
    for value in (b"\xff", "a\udfff", b"\xc3"):
        text(value).encode("utf-8")                                   # never raises


def test_invalid_utf8_labels_are_read_with_replacement(tmp_path, written):
    path = copy_bundle(written, tmp_path)
    with h5py.File(path, "a") as f:
        n = f["features/labels"].shape[0]
        del f["features/labels"]
        ds = f.create_dataset("features/labels", shape=(n,), dtype=h5py.string_dtype("utf-8"))
        ds[:] = np.array([b"bad \xff label <b>x</b>"] * n, dtype=object)
    with open_bundle(path) as b:
        assert b.columns("feature")["label"][0] == "bad \ufffd label <b>x</b>"
        assert b.dashboard("feature", 3).label == "bad \ufffd label <b>x</b>"
        assert b.column("feature", "labels", slice(0, 2)).tolist() == ["bad \ufffd label <b>x</b>"] * 2
        assert b.column("feature", "labels", 1).item() == "bad \ufffd label <b>x</b>"


def test_shapes_claiming_absurd_memory_are_refused_at_open(tmp_path, written):
    path = copy_bundle(written, tmp_path)
    with h5py.File(path, "a") as f:
        del f["curves/model/train_loss"]
        f.create_dataset("curves/model/train_loss", shape=(1 << 40, 2), dtype=np.float64, chunks=(1024, 2))
    with pytest.raises(BundleError, match="GiB of memory"):
        open_bundle(path)
    assert path.stat().st_size < 10 << 20                            # the file itself stays small


def test_a_unit_count_beyond_the_limit_is_refused(tmp_path, written, monkeypatch):
    import engine.bundle.validate as validate

    monkeypatch.setattr(validate, "MAX_UNITS", 8)                    # the tiny bundle has 40 features
    with pytest.raises(BundleError, match="at most 8 are supported"):
        open_bundle(written)
    assert MAX_UNITS >= 1 << 24


def test_an_sae_file_with_absurd_sizes_is_refused(tmp_path, written):
    path = copy_bundle(written, tmp_path)
    with h5py.File(path, "a") as f:
        cfg = json.loads(f["sae"].attrs["config"])
        cfg["d_sae"] = 1 << 40
        f["sae"].attrs["config"] = json.dumps(cfg)
    with pytest.raises(BundleError, match="units|GiB"):
        read_sae(path)


def test_regular_file_accepts_a_file_and_returns_its_path(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x")
    assert regular_file(str(p), BundleError) == p


def test_every_bundle_read_holds_the_one_lock(written, monkeypatch):
    """A worker thread's read waits while another thread holds H5_LOCK (h5py is not thread-safe)."""
    with open_bundle(written) as b:
        done = threading.Event()
        with H5_LOCK:
            worker = threading.Thread(target=lambda: (b.columns("neuron"), done.set()))
            worker.start()
            assert not done.wait(0.3), "a read ran while another thread held the HDF5 lock"
        worker.join(10)
        assert done.is_set()
