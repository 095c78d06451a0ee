"""Test-wide setup: headless Qt, a private SUPERPOS_HOME, deterministic torch threads."""

from __future__ import annotations

import os
import tempfile

# Set before anything imports Qt or engine.paths: tests never touch the user's real folders or screen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["SUPERPOS_HOME"] = tempfile.mkdtemp(prefix="superpos-test-home-")
os.environ.setdefault("SUPERPOS_SYNC_JOBS", "0")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch

    torch.manual_seed(0)
    yield
