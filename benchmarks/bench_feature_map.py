"""The feature map's first paint at ~150k points (acceptance: <= 1 s), and a hover's nearest-point pick.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_feature_map.py [--sizes 2048,16384,131072]

Writes a synthetic family bundle (engine.testing.synthetic_family; not timed), then times, in a
fresh pane: ``set_bundle`` (reads the stored map: xy, dictionary, feature) plus the first complete
paint (``grab()`` renders the whole widget), then a repaint after a pan, then one hover pick (the
nearest of all points, as the pane does on mouse move) with its label read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from figures import add_json_flag, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2048,16384,131072")
    add_json_flag(ap)
    args = ap.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))

    from PySide6.QtWidgets import QApplication

    from engine.bundle import open_bundle
    from engine.config import HarvestConfig
    from engine.testing.synthetic_family import write_synthetic_family
    from superpos_app.panes.feature_map import FeatureMapPane
    from superpos_app.selection import Selection

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_synthetic_family(Path(tmp) / "family.h5", sizes=sizes, n_neurons=64, n_tokens=50_000,
                                      harvest=HarvestConfig(sample_tokens=256), chunk=16384)
        print(f"synthetic family {sizes} written in {time.perf_counter() - t0:.0f} s (not timed below)")
        with open_bundle(path) as bundle:
            pane = FeatureMapPane(Selection())
            pane.resize(1000, 700)
            pane.show()
            app.processEvents()
            t0 = time.perf_counter()
            pane.set_bundle(bundle)
            pane.grab()
            first = time.perf_counter() - t0
            vb = pane.plot.getPlotItem().getViewBox()
            t0 = time.perf_counter()
            vb.translateBy(x=0.1 * (vb.viewRange()[0][1] - vb.viewRange()[0][0]))
            pane.grab()
            pan = time.perf_counter() - t0
            x, y = (float(v) for v in pane.xy[1234])
            t0 = time.perf_counter()
            i = pane.nearest(x, y, radius=1e-6)
            d, f = int(pane.member[i]), int(pane.unit[i])
            label = pane.label_of(d, f)
            hover = time.perf_counter() - t0
            print(f"{len(pane.xy):,} points: first paint {first * 1000:.0f} ms (target <= 1000 ms), "
                  f"repaint after a pan {pan * 1000:.0f} ms, hover pick + label {hover * 1000:.1f} ms ({label!r})")
            write_json(args.json, {"points": len(pane.xy), "first_paint_ms": first * 1000, "pan_ms": pan * 1000,
                                   "hover_ms": hover * 1000})
            pane.set_bundle(None)


if __name__ == "__main__":
    main()
