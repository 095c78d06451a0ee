"""Bundle at the paper's largest size: write a synthetic 131,072-feature bundle, then read it back.

    python benchmarks/bench_bundle.py                 # 131,072 features x 512 neurons, in a temp folder
    python benchmarks/bench_bundle.py --features 4096 --keep /tmp/b.h5

Prints write time, file size, and — measured in a fresh Python process so that writing does not
pollute it — open time (target <= 1 s), one unit's full dashboard read (median over random features,
target <= 50 ms), the feature table's columns read, and that process's peak RSS (target <= 500 MB).
The file was just written, so reads come from the OS page cache (a warm disk); the first open after a
reboot is slower by the disk's latency.
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


from figures import add_json_flag, write_json  # noqa: E402
READER = r"""
import json, resource, sys, time
import numpy as np
t0 = time.perf_counter()
from engine.bundle import open_bundle
t_import = time.perf_counter() - t0
repeats, seed = int(sys.argv[1]), int(sys.argv[2])
path = sys.stdin.readline().strip()          # the parent sends the path once the bundle is written
t0 = time.perf_counter()
b = open_bundle(path)
t_open = time.perf_counter() - t0
rng = np.random.default_rng(seed)
times = []
for i in rng.integers(0, b.n_features, size=repeats):
    t0 = time.perf_counter()
    d = b.dashboard("feature", int(i))
    times.append(time.perf_counter() - t0)
neuron_times = []
for i in rng.integers(0, b.n_neurons, size=repeats):
    t0 = time.perf_counter()
    b.dashboard("neuron", int(i))
    neuron_times.append(time.perf_counter() - t0)
t0 = time.perf_counter()
cols = b.columns("feature")
t_cols = time.perf_counter() - t0
t0 = time.perf_counter()
b.sample_feature(int(rng.integers(0, b.n_features)))
t_sample = time.perf_counter() - t0
b.close()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024   # bytes on macOS, KiB on Linux
try:   # Linux: the high-water mark of this process's own memory map, for a cross-check
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    hwm_mb = int(hwm) / 1024
except (OSError, IndexError):
    hwm_mb = None
print(json.dumps({"import_s": t_import, "open_s": t_open, "dash_median_ms": 1e3 * float(np.median(times)),
                  "dash_max_ms": 1e3 * max(times), "neuron_dash_median_ms": 1e3 * float(np.median(neuron_times)),
                  "columns_s": t_cols, "sample_feature_ms": 1e3 * t_sample, "peak_rss_mb": rss_mb, "vm_hwm_mb": hwm_mb,
                  "n_features": len(cols["density"])}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=131_072)
    ap.add_argument("--neurons", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=4096, help="tokenizer target size (the tiny training text "
                                                            "may give fewer)")
    ap.add_argument("--repeats", type=int, default=25, help="random features whose dashboard is timed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", metavar="PATH", help="write the bundle here and keep it")
    add_json_flag(ap)
    args = ap.parse_args(argv)

    # Start the reader now, while this process is still small: ru_maxrss survives fork + exec, so a
    # reader forked after writing would report the writer's peak instead of its own.
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    reader = subprocess.Popen([sys.executable, "-c", READER, str(args.repeats), str(args.seed)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)

    try:
        return _run(args, reader)
    finally:
        if reader.poll() is None:   # the write failed: do not leave the reader waiting
            reader.kill()
            reader.wait()


def _run(args: argparse.Namespace, reader: subprocess.Popen) -> int:
    from engine.testing.synthetic import write_synthetic_bundle

    with tempfile.TemporaryDirectory(prefix="superpos-bench-") as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "synthetic.h5"
        t0 = time.perf_counter()
        write_synthetic_bundle(path, n_features=args.features, n_neurons=args.neurons, vocab_size=args.vocab,
                               seed=args.seed)
        t_write = time.perf_counter() - t0
        size = path.stat().st_size

        stdout, stderr = reader.communicate(str(path) + "\n")
        if reader.returncode != 0:
            print(stderr, file=sys.stderr)
            return 1
        r = json.loads(stdout.strip().splitlines()[-1])

    def verdict(value: float, limit: float) -> str:
        return "ok" if value <= limit else "OVER TARGET"

    print(f"synthetic bundle: {args.features:,} features x {args.neurons} neurons (python {sys.version.split()[0]})")
    print(f"  write (incl. tokenizer, model, SAE)  {t_write:8.1f} s")
    print(f"  file size                            {size / 1e6:8.1f} MB")
    print(f"  import engine.bundle (fresh process) {r['import_s']:8.3f} s")
    print(f"  open_bundle                          {r['open_s']:8.3f} s    target <= 1 s     {verdict(r['open_s'], 1.0)}")
    print(f"  feature dashboard, median of {args.repeats:<3d}    {r['dash_median_ms']:8.1f} ms   target <= 50 ms    "
          f"{verdict(r['dash_median_ms'], 50)}  (max {r['dash_max_ms']:.1f} ms)")
    print(f"  neuron dashboard, median             {r['neuron_dash_median_ms']:8.1f} ms")
    print(f"  columns('feature')                   {r['columns_s']:8.3f} s")
    print(f"  sample_feature                       {r['sample_feature_ms']:8.1f} ms")
    print(f"  peak RSS of the reading process      {r['peak_rss_mb']:8.0f} MB   target <= 500 MB   "
          f"{verdict(r['peak_rss_mb'], 500)}" + (f"  (VmHWM {r['vm_hwm_mb']:.0f} MB)" if r["vm_hwm_mb"] else ""))
    write_json(args.json, {**r, "features": args.features, "write_s": t_write, "size_mb": size / 1e6})
    return 0


if __name__ == "__main__":
    sys.exit(main())
