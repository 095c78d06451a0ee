"""The engine must stay usable without Qt: no module under engine/ may import Qt or the app."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import engine

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy", "pyqtgraph", "superqt", "superpos_app")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_engine_sources_never_import_qt():
    root = Path(engine.__file__).parent
    offenders = [f"{path.relative_to(root.parent)} imports {name}"
                 for path in sorted(root.rglob("*.py")) for name in _imports(path)
                 if name.split(".")[0] in FORBIDDEN]
    assert not offenders, "engine must not import Qt or the app:\n" + "\n".join(offenders)


def _engine_modules() -> list[str]:
    """Every module under engine/, sub-packages included (``__main__`` modules run a program: left out)."""
    root = Path(engine.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__main__" or parts == ("engine", "__init__"):
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_importing_every_engine_module_loads_no_qt():
    # Also catches indirect imports (a third-party module that pulls Qt in). A fresh interpreter
    # imports every engine module recursively (pkgutil.walk_packages), then looks at sys.modules.
    code = ("import sys, importlib, pkgutil, engine\n"
            "names = [m.name for m in pkgutil.walk_packages(engine.__path__, 'engine.')\n"
            "         if not m.name.endswith('__main__')]\n"
            "for n in names: importlib.import_module(n)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
            "print(' '.join(sorted(names))); print(','.join(bad)); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"Qt modules loaded by the engine: {result.stdout} {result.stderr[-2000:]}"
    imported = set(result.stdout.splitlines()[0].split())
    missing = set(_engine_modules()) - imported
    assert not missing, f"not imported (a folder without __init__.py?): {sorted(missing)}"
