"""What every benchmark shares: the bundle it reads by default, and its figures as JSON for run_all.py.

A benchmark run as ``python benchmarks/NAME.py`` has this folder first on ``sys.path``, so it
imports these helpers as ``from figures import ...``.

- ``default_bundle(arg)``: the ``--bundle`` given, else the demo bundle at
  ``engine.paths.demo_bundle_path()`` (where ``superpos-app --demo`` keeps it), else a one-line
  exit that says how to make it. Never a path on one developer's machine.
- ``add_json_flag(parser)`` / ``write_json(path, figures)``: ``--json FILE`` writes the figures the
  benchmark printed as one JSON object (plain numbers and strings), atomically; ``run_all.py``
  reads it to build the README's figures table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOW_TO_MAKE_DEMO = ("make it with `superpos-app --demo` (trains it there, about 5 minutes on a 2-core CPU) or "
                    "`superpos run --preset demo --out {path}`, or pass --bundle BUNDLE.h5")


def default_bundle(arg: str | None) -> Path:
    """``arg`` if given, else the demo bundle; exits with how to make it when there is none."""
    if arg:
        return Path(arg)
    from engine.paths import demo_bundle_path

    demo = demo_bundle_path()
    if not demo.exists():
        raise SystemExit(f"no demo bundle at {demo}: " + HOW_TO_MAKE_DEMO.format(path=demo))
    return demo


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures as one JSON object to FILE (read by benchmarks/run_all.py)")


def write_json(path: Path | None, figures: dict) -> None:
    """Write ``figures`` to ``path`` (if given) atomically."""
    if path is None:
        return
    from engine.fileio import write_bytes

    write_bytes(path, (json.dumps(figures, indent=2) + "\n").encode(), what="the figures")   # in the order printed
