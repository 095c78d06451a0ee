"""How fast the command line starts: `superpos --help`, `superpos run --help`, `superpos info` and
`superpos eval` (stored evaluation) on a bundle, each a fresh process, wall time from spawn to exit.

    python benchmarks/bench_cli_start.py                   # a synthetic 4,096-feature bundle
    python benchmarks/bench_cli_start.py --bundle demo.h5  # any bundle

Target: every command under 1 s. The baseline printed beside it is what `--help` cost while the
parser's modules imported torch (a process that only does `import torch`), so the saving shows in
one run. Median of --repeat runs (default 5), after one warm-up run that fills the OS file cache.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import add_json_flag, write_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 1.0


def wall(argv: list[str], repeat: int) -> float:
    subprocess.run(argv, capture_output=True, check=True)          # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="bundle for info/eval (default: a synthetic one)")
    parser.add_argument("--repeat", type=int, default=5)
    add_json_flag(parser)
    args = parser.parse_args(argv)
    bundle = args.bundle
    if bundle is None:
        from engine.testing.synthetic import write_synthetic_bundle

        bundle = str(write_synthetic_bundle(Path(tempfile.mkdtemp()) / "synthetic.h5", seed=0))
    cli = [sys.executable, "-m", "engine.cli"]
    rows = [("superpos --help", cli + ["--help"]), ("superpos run --help", cli + ["run", "--help"]),
            ("superpos info BUNDLE", cli + ["info", bundle]), ("superpos eval BUNDLE", cli + ["eval", bundle])]
    baseline = wall([sys.executable, "-c", "import torch"], args.repeat)
    print(f"{'command':<24}{'wall s':>8}   target < {TARGET_S:.0f} s   (baseline: `import torch` alone "
          f"{baseline:.2f} s, what --help paid before)")
    worst = 0.0
    figures = {"import_torch_s": baseline, "synthetic_bundle": args.bundle is None, "seconds": {}}
    for name, command in rows:
        seconds = wall(command, args.repeat)
        worst = max(worst, seconds)
        figures["seconds"][name] = seconds
        print(f"{name:<24}{seconds:>8.2f}   {'ok' if seconds < TARGET_S else 'SLOW'}")
    write_json(args.json, figures)
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
