"""The cost of writing HDF5 through ``engine.bundle.h5target`` (a Python file object that survives a
full disk) against HDF5's own sec2 driver (a path), on the same ~100 MB of datasets, interleaved.

    python benchmarks/bench_write_guard.py            # 3 rounds, in a temp folder

Prints wall and CPU seconds of each round for both, and the ratio of the medians (guarded / sec2).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from figures import add_json_flag, write_json  # noqa: E402

import h5py
import numpy as np

from engine.bundle.h5target import create_h5, finish_h5
from engine.bundle.schema import H5_LIBVER, create_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mb", type=int, default=100, help="megabytes of float32 data per file")
    add_json_flag(ap)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = max(1, args.mb * (1 << 20) // (32768 * 64 * 4))
    arrays = [rng.standard_normal((32768, 64)).astype(np.float32) for _ in range(n)]

    def body(f):
        for i, a in enumerate(arrays):       # half gzip-compressed, half raw: as a bundle's columns
            create_dataset(f, f"d{i}", a.shape, np.float32, compress=(i % 2 == 0))[...] = a

    def sec2(path):
        with h5py.File(path, "w", libver=H5_LIBVER) as f:
            body(f)

    def guarded(path):
        f, guard = create_h5(path)
        body(f)
        finish_h5(f, guard)

    times: dict[str, list[tuple[float, float]]] = {"sec2 (path)": [], "guarded (file object)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for (name, write) in zip(times, (sec2, guarded)):
                t0, c0 = time.perf_counter(), time.process_time()
                write(Path(tmp) / "x.h5")
                times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    print(f"HDF5 write of {sum(a.nbytes for a in arrays) / 1e6:.0f} MB, {args.rounds} interleaved rounds")
    for name, rows in times.items():
        print(f"  {name:<22} wall {' '.join(f'{w:5.2f}' for w, _ in rows)} s   cpu "
              f"{' '.join(f'{c:5.2f}' for _, c in rows)} s")
    (a, b) = (statistics.median(c for _, c in rows) for rows in times.values())
    print(f"  CPU ratio guarded / sec2 (medians): {b / a:.2f}")
    write_json(args.json, {"mb": sum(a.nbytes for a in arrays) / 1e6, "rounds": args.rounds, "cpu_ratio": b / a})


if __name__ == "__main__":
    main()
