"""Ablation underlines: milliseconds per dashboard of examples (engine.analysis.ablation).

    python benchmarks/bench_ablation.py                    # the demo bundle (or --bundle run.h5)
    python benchmarks/bench_ablation.py --units 20

A "dashboard" is what the detail pane underlines for one unit: its top examples plus its interval
examples (the demo: up to 20 + 10x5 windows of 64 tokens). Three figures per unit, in one process,
one torch thread (as the app's worker runs it):

    new examples   the examples' clean pass (one batched forward) + the ablated unembedding
    cached clean   the same examples again for another unit (the compare pane, back/forward):
                   only the ablated unembedding of the positions where the unit fires
    per position   the baseline by definition: one forward per predicted token and per example,
                   with and without the edit (what the engine's batching replaces; a few units only)

The engine's one-time load (model + SAE from the bundle) is printed separately.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.analysis.ablation import AblationEngine  # noqa: E402
from engine.bundle import open_bundle  # noqa: E402
from figures import add_json_flag, default_bundle, write_json  # noqa: E402


def dashboard_windows(bundle, kind: str, index: int) -> np.ndarray:
    dash = bundle.dashboard(kind, index)
    windows = [w for w, _ in dash.top_examples()]
    for _, _, _, found in dash.interval_examples():
        windows += [w for w, _ in found]
    return np.stack(windows) if windows else np.zeros((0, dash.top_tokens.shape[1]), np.int64)


def per_position(model, sae, index: int, windows: np.ndarray) -> None:
    def edit(h):
        return h - sae.encode(h)[..., index:index + 1] * sae.W_dec[index]

    with torch.inference_mode():
        for w in windows:
            seq = torch.as_tensor(w[w >= 0])[None]
            for j in range(1, seq.shape[1]):
                model(seq[:, :j])
                model(seq[:, :j], mlp_edit=edit)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="default: the demo bundle (engine.paths.demo_bundle_path())")
    ap.add_argument("--units", type=int, default=12)
    ap.add_argument("--baseline-units", type=int, default=2)
    add_json_flag(ap)
    args = ap.parse_args()
    args.bundle = default_bundle(args.bundle)
    torch.set_num_threads(1)
    with open_bundle(args.bundle) as bundle:
        t0 = time.perf_counter()
        model, sae = bundle.load_model(), bundle.load_sae()
        engine = AblationEngine(model, sae)
        load_s = time.perf_counter() - t0
        live = np.flatnonzero(bundle.columns("feature")["density"] > 0)
        units = [int(u) for u in np.random.default_rng(0).choice(live, size=min(args.units, live.size), replace=False)]
        dashboards = {u: dashboard_windows(bundle, "feature", u) for u in units}
        print(f"bundle {args.bundle}: d_model {model.cfg.d_model}, d_mlp {model.cfg.d_mlp}, "
              f"features {sae.cfg.d_sae}, vocab {model.cfg.vocab_size}; engine load {load_s * 1e3:.0f} ms")
        n_win = statistics.median(len(w) for w in dashboards.values())
        W = next(iter(dashboards.values())).shape[1]
        new, again, base = [], [], []
        other = units[1:] + units[:1]
        for u, v in zip(units, other):
            engine.clear_cache()
            t = time.perf_counter()
            engine.effects("feature", u, dashboards[u])
            new.append(time.perf_counter() - t)
            t = time.perf_counter()
            engine.effects("feature", v, dashboards[u])          # another unit on the cached examples
            again.append(time.perf_counter() - t)
        for u in units[:args.baseline_units]:
            t = time.perf_counter()
            per_position(model, sae, u, dashboards[u])
            base.append(time.perf_counter() - t)
    med = lambda xs: statistics.median(xs) * 1e3  # noqa: E731
    print(f"{len(units)} feature dashboards, median {n_win:.0f} examples of {W} tokens each")
    print(f"  new examples   {med(new):8.1f} ms per dashboard (median; max {max(new) * 1e3:.1f})")
    print(f"  cached clean   {med(again):8.1f} ms per dashboard (median; max {max(again) * 1e3:.1f})")
    if base:
        print(f"  per position   {med(base):8.1f} ms per dashboard (median of {len(base)}; baseline) "
              f"-> batched engine {med(base) / med(new):.0f}x faster")
    write_json(args.json, {"units": len(units), "examples": n_win, "tokens": W, "new_ms": med(new),
                           "cached_ms": med(again), "per_position_ms": med(base) if base else None})


if __name__ == "__main__":
    main()
