"""The explain job end to end against a local deterministic server: throughput and the score medians.

    python benchmarks/bench_explain.py --bundle demo.h5 [--units 40] [--concurrency 4]

The server is ``engine.testing.fake_llm.FakeLLM``: a "model" that explains a unit by the token
marked most often and scores by matching that token. It is no language model — the figures say what
superpos itself costs per unit (requests, prompt tokens, seconds without model time) and how the
three scores separate features from neurons for a pure single-token explainer, the floor any real
model should beat. Works on a copy of the bundle (the original is not touched).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.bundle import open_bundle  # noqa: E402
from engine.jobs import collect  # noqa: E402
from engine.explain.client import Endpoint  # noqa: E402
from engine.explain.job import explain_job, select_units  # noqa: E402
from engine.testing.fake_llm import FakeLLM  # noqa: E402
from figures import default_bundle  # noqa: E402



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=os.environ.get("SUPERPOS_BENCH_BUNDLE"),
                    help="default: $SUPERPOS_BENCH_BUNDLE, else the demo bundle (engine.paths.demo_bundle_path())")
    ap.add_argument("--units", type=int, default=40, help="units of each kind (every k-th live one)")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args(argv)
    args.bundle = default_bundle(args.bundle)
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "bench.h5"
    shutil.copy(args.bundle, path)
    os.chmod(path, 0o644)
    with open_bundle(path) as b:
        picks = {}
        for kind in ("feature", "neuron"):
            live = select_units("all", b.columns(kind)["density"])
            picks[kind] = live[:: max(1, len(live) // args.units)][: args.units]
    print(f"{args.bundle}: {args.units} features and {args.units} neurons, concurrency {args.concurrency}")
    print(f"  {'':8}{'detection':>10}{'fuzzing':>10}{'simulation':>11}{'req/unit':>10}{'tok/unit':>10}{'s/unit':>8}")
    with FakeLLM() as srv:
        ep = Endpoint(base_url=srv.url, model="token-matcher", concurrency=args.concurrency)
        for kind, units in picks.items():
            t0 = time.perf_counter()
            summary, _ = collect(explain_job(path, kind, units, ep))
            s = (time.perf_counter() - t0) / len(units)
            n = max(summary["explained"], 1)
            print(f"  {kind + 's':8}{summary['detection_median']:>10.3f}{summary['fuzzing_median']:>10.3f}"
                  f"{summary['simulation_median']:>11.3f}{summary['requests'] / n:>10.1f}"
                  f"{summary['prompt_tokens'] / n:>10.0f}{s:>8.3f}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
