"""The whole demo, timed: `superpos run --preset demo` in a fresh folder, then its science.

    python benchmarks/bench_demo.py [--warm] [--keep DIR] [--json FILE] [--preset tiny] [-- extra superpos run flags]

Cold by default: a fresh ``SUPERPOS_HOME`` (no token cache, no earlier run) and a fresh work folder,
so tokenizer training and corpus tokenisation are counted. ``--warm`` keeps one home across
invocations (``--keep`` or a folder in the system temp dir), so its second run has a warm cache.
Prints the fp32 matmul rate at the start and the end (a busy machine shows itself as a low or
changing rate), the wall time of the command and each stage's seconds, and the bundle's figures:
loss recovered, KL recovered, L0, dead features and the DNA / base64 / hex features found
(``engine.analysis.class_features``, >= 80% of the top examples in the class) with their labels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import matmul_gflops  # noqa: E402
from figures import add_json_flag, write_json  # noqa: E402

TARGET_S = 300.0


def matmul_rate(when: str) -> float:
    rate = matmul_gflops(2048, 2048, 2048, seconds=1.0)
    print(f"matmul fp32 at the {when}: {rate:6.1f} GFLOP/s (2048^3)", flush=True)
    return rate


def run_demo(home: Path, out: Path, extra: list[str], preset: str = "demo") -> float:
    env = {**os.environ, "SUPERPOS_HOME": str(home)}
    cmd = [sys.executable, "-m", "engine.cli", "run", "--preset", preset, "--out", str(out),
           "--workdir", str(out.parent / "work"), "--quiet", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - t0


def report(bundle_path: Path, wall: float, preset: str = "demo") -> dict:
    from engine.analysis.class_features import class_features
    from engine.bundle import open_bundle

    with open_bundle(bundle_path) as b:
        stages = json.loads(b.info.get("extra_info", {}).get("stage_seconds", "{}"))
        m = b.metrics
        found = class_features(b)
        dead = b.dead_count("feature")
        n_features = b.n_features
    print(f"\nwall time {wall:6.1f} s  ({'within' if wall <= TARGET_S else 'OVER'} the {TARGET_S:.0f} s target)")
    for stage, seconds in stages.items():
        print(f"  {stage:10s} {seconds:6.1f} s")
    rest = wall - sum(stages.values())
    print(f"  {'bundle+cli':10s} {rest:6.1f} s  (the bundle write and the command's start-up)")
    print(f"loss recovered {m['loss_recovered']:.4f}   KL recovered {m.get('kl_recovered', float('nan')):.4f}   "
          f"L0 {m['l0']:.1f}   dead {dead.n_dead}/{n_features} ({dead.n_dead / n_features:.2%})   "
          f"model val loss {m['model_val_loss']:.3f}")
    for key, feats in found.items():
        shown = ", ".join(f"#{f.feature} {f.share:.0%} '{f.label}'" for f in feats[:3])
        print(f"{key:6s} features: {len(feats):3d}  {shown}")
    ok = (wall <= TARGET_S and m["loss_recovered"] >= 0.97 and m["l0"] <= 20
          and dead.n_dead <= 0.01 * n_features and all(found.values()))
    if preset == "demo":                       # the targets are the demo's
        print("demo acceptance:", "held" if ok else "NOT held")
    return {"wall_s": wall, "stage_s": stages, "loss_recovered": m["loss_recovered"],
            "kl_recovered": m.get("kl_recovered"), "l0": m["l0"], "dead": dead.n_dead, "n_features": n_features,
            "model_val_loss": m["model_val_loss"], "class_features": {k: len(v) for k, v in found.items()},
            "acceptance_held": ok if preset == "demo" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm", action="store_true", help="reuse one SUPERPOS_HOME (token cache) across runs")
    parser.add_argument("--keep", type=Path, help="folder for the home, work folder and bundle (kept)")
    parser.add_argument("--preset", default="demo", help="another preset (tiny: seconds, for run_all.py --quick)")
    parser.add_argument("extra", nargs="*", help="more `superpos run` flags, after --")
    add_json_flag(parser)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="superpos-bench-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    home = (root / "home") if (args.keep or not args.warm) else Path(tempfile.gettempdir()) / "superpos-bench-demo-home"
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    print(f"{'warm' if args.warm else 'cold'} run in {run_dir} (SUPERPOS_HOME {home})")
    start = matmul_rate("start")
    wall = run_demo(home, run_dir / "demo.h5", args.extra, args.preset)
    end = matmul_rate("end")
    ratio = end / start
    print(f"matmul end/start {ratio:.2f}" + ("  (far from 1: the machine was busy during the run)"
                                             if abs(ratio - 1) > 0.15 else "  (steady: a quiet machine)"))
    figures = report(run_dir / "demo.h5", wall, args.preset)
    write_json(args.json, {**figures, "preset": args.preset, "warm": args.warm, "matmul_gflops": [start, end]})


if __name__ == "__main__":
    main()
