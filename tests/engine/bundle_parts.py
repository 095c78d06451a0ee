"""Constants and helpers of the test_bundle_*.py files; the fixtures built from them (``parts``,
``written``, ``tokenizer_json``) are in tests/engine/conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.config import HarvestConfig

HC = HarvestConfig(top_k=4, n_intervals=3, per_interval=2, ctx_left=3, ctx_right=2, hist_bins=8,
                   n_logits=3, n_align=2, sample_tokens=50)
N_F, N_M = 40, 16


def copy_bundle(src: Path, tmp_path: Path, name: str = "copy.h5") -> Path:
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files a write left behind (there should be none)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]
