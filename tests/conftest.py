"""Test-wide setup: headless Qt, a private SUPERPOS_HOME, deterministic torch threads."""

from __future__ import annotations

import os
import tempfile

# Set before anything imports Qt or engine.paths: tests never touch the user's real folders or screen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["SUPERPOS_HOME"] = tempfile.mkdtemp(prefix="superpos-test-home-")
os.environ.setdefault("SUPERPOS_SYNC_JOBS", "0")
# Tests use tiny models, where thread start-up costs more than it saves, and a second OpenMP thread
# fighting other processes for two cores can make a step 20x slower (measured). One thread each.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def real_tiny_bundle(tmp_path_factory):
    """A bundle made once per test session by the real pipeline on the built-in corpus (tiny preset)."""
    from engine.config import preset
    from engine.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("real-tiny")
    job = run_pipeline(preset("tiny"), root / "tiny.h5", workdir=root / "work")
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value
