"""The fuzz suite's longer mode: many more damaged and hostile bundles through the CLI and the app.

    python benchmarks/fuzz_open.py                       # 1,000 variants, seed 1
    python benchmarks/fuzz_open.py --variants 5000 --seed 7 --keep /tmp/fuzz

Makes a small synthetic bundle, derives ``--variants`` variants from it (engine/testing/fuzz.py:
truncations, bit flips, wrong shapes and dtypes, absurd attributes, huge shapes, hostile strings,
non-regular files), opens each through ``superpos info`` and ``create_window(bundle=...)`` in child
processes (tests/fuzz_runner.py) and prints, per kind of damage, how many opened, were refused with
a message, crashed, hung or were mishandled, and the time per variant. Exits 1 if any variant was
mishandled (the same checks as tests/test_fuzz_open.py).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]            # the package first: tests/engine/ must not shadow engine/
sys.path.append(str(ROOT / "tests"))

from figures import add_json_flag, write_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="folder to keep the variants and the children's stderr in")
    add_json_flag(parser)
    args = parser.parse_args()

    from test_fuzz_open import HC, fuzz, problems

    from engine.testing.synthetic import write_synthetic_bundle

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="superpos-fuzz-"))
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "base.h5"
    write_synthetic_bundle(base, n_features=96, n_neurons=32, vocab_size=300, n_tokens=5000, chunk=40, harvest=HC)
    t0 = time.perf_counter()
    variants, cli, app = fuzz(base, folder / "variants", args.variants, args.seed)
    seconds = time.perf_counter() - t0

    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    bad_lines = []
    for v in variants:
        c, a = cli[v.index], app[v.index]
        row = table[v.kind]
        row["variants"] += 1
        row["crash"] += (c.status == "crash") + (a.status == "crash")
        row["hang"] += (c.status == "hang") + (a.status == "hang")
        if a.status == "ok":
            row["app opened" if a.detail["opened"] else "app refused"] += 1
        if c.status == "ok":
            row["cli refused" if c.detail["rc"] else "cli ok"] += 1
        bad = problems(v, c, a)
        if bad:
            row["mishandled"] += 1
            bad_lines.append(f"#{v.index} {v.kind} ({v.description}): " + "; ".join(bad))
    cols = ("variants", "cli ok", "cli refused", "app opened", "app refused", "crash", "hang", "mishandled")
    print(f"{len(variants)} variants (seed {args.seed}) through the CLI and the app in {seconds:.0f} s "
          f"({1000 * seconds / max(1, len(variants)):.0f} ms per variant, 3 children in parallel)")
    print(f"{'kind':<11}" + "".join(f"{c:>13}" for c in cols))
    for kind in sorted(table):
        print(f"{kind:<11}" + "".join(f"{table[kind][c]:>13}" for c in cols))
    total = sum(table.values(), collections.Counter())
    print(f"{'all':<11}" + "".join(f"{total[c]:>13}" for c in cols))
    for line in bad_lines[:30]:
        print(line)
    write_json(args.json, {"variants": len(variants), "seed": args.seed, "crashes": total["crash"],
                           "hangs": total["hang"], "mishandled": total["mishandled"],
                           "ms_per_variant": 1000 * seconds / max(1, len(variants))})
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if bad_lines else 0


if __name__ == "__main__":
    sys.exit(main())
