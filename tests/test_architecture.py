"""The folders are the architecture: import-linter's contracts (pyproject.toml) hold, and they bite.

See docs/architecture.md for the rooms and the arrows between them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                              "sys.exit(lint_imports_command())"]


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([*LINT, "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter")
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("where, line, contract", [
    ("engine/data/_violation.py", "import engine.pipeline", "Engine rooms by stage"),
    ("engine/model_violation.py", "import PySide6.QtCore", "never imports the app"),
    ("superpos_app/_violation.py", "import engine.testing.synthetic", "Test fixtures"),
])
def test_a_violation_fails_the_lint(tmp_path, where, line, contract):
    """A copy of the tree with one forbidden import added: lint-imports fails and names the contract."""
    pytest.importorskip("importlinter")
    for package in ("engine", "superpos_app"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / where).write_text(line + "\n", encoding="utf-8")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_every_package_ships():
    """A new room (a folder with __init__.py) must be listed in pyproject's packages, or wheels miss it;
    the test fixtures (engine.testing) alone stay out of the wheel (tests/test_wheel.py)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ("engine", "superpos_app") for init in (ROOT / top).rglob("__init__.py")}
    assert found - listed == {"engine.testing"}, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
