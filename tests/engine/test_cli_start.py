"""A quick CLI: building the parser and the info/eval commands import no torch (nor tokenizers);
only the commands that train or compute load them. benchmarks/bench_cli_start.py prints the times."""

from __future__ import annotations

import subprocess
import sys


def _heavy_modules_after(code: str) -> list[str]:
    probe = (f"{code}\nimport sys\n"
             "print(','.join(m for m in ('torch', 'tokenizers', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_parser_imports_no_torch():
    assert _heavy_modules_after("from engine.cli.main import build_parser; build_parser().format_help()") == []


def test_info_and_stored_eval_run_without_torch(real_tiny_bundle):
    path = str(real_tiny_bundle)
    for command in ("info", "eval"):
        code = ("import contextlib, io\nfrom engine.cli.main import main\n"
                "with contextlib.redirect_stdout(io.StringIO()):\n"
                f"    assert main([{command!r}, {path!r}]) == 0")
        assert "torch" not in _heavy_modules_after(code), command
