"""What ships: the wheel holds the engine, its CLI and the app, never the test fixtures
(``engine.testing``: a fake LLM server, fuzzers, synthetic bundles), which tests and benchmarks
import from the source tree. Builds the wheel from a copy of the tree (so no build/ or egg-info is
left behind) and reads its file list."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_program_and_not_the_test_fixtures(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("engine", "superpos_app", "resources"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(src), "-w", str(tmp_path / "wheel")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("superpos-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("engine/testing/")]
    for module in ("engine/cli/main.py", "engine/jobs.py", "engine/inputs.py", "engine/bundle/read.py",
                   "engine/train/recipes/base.py", "superpos_app/__main__.py"):
        assert module in names, module
    assert any(n.startswith("superpos_resources/") for n in names)
    # every engine package of the source tree but engine.testing is listed, so none is dropped by mistake
    shipped = {str(Path(n).parent) for n in names if n.endswith("/__init__.py")}
    source = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "engine").rglob("__init__.py")}
    assert source - shipped == {"engine/testing"}
