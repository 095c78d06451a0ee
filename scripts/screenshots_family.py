"""Screenshots of the family panes on a real family bundle (offscreen).

    python scripts/screenshots_family.py FAMILY.h5 [--out docs/screenshots] [--about Greek]

Writes ``family-map.png`` (every dictionary's decoder directions), ``family-splitting.png`` (the
clearest split whose parent's label contains ``--about``, from ``superpos family``'s report) and
``family-universality.png`` (a feature of model A beside its best match in model B, and the
populations of best-match correlation for features and neurons) and ``family-window.png`` (the
whole window at 1280×820: the dictionary switcher, the split's parent selected in Feature Detail and
ringed on the map with its children).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SUPERPOS_HOME", tempfile.mkdtemp(prefix="superpos-shots-"))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _settle(app, seconds: float = 0.5) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--about", default="Greek", help="the split to show: its parent's label contains this")
    args = ap.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from engine.analysis.family_report import splits
    from engine.bundle import open_bundle
    from superpos_app.panes.feature_map import FeatureMapPane
    from superpos_app.panes.splitting import SplittingPane
    from superpos_app.panes.universality import UniversalityPane
    from superpos_app.selection import Selection

    app = QApplication.instance() or QApplication([])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open_bundle(args.bundle) as b:
        found = splits(b, limit=1, about=args.about) or splits(b, limit=1)
        universal = b.matches(0, b.family.counterpart(0), "corr") if b.family.counterpart(0) is not None else None
    shots = []
    pane = FeatureMapPane(Selection())
    pane.resize(900, 640)
    pane.show()
    with open_bundle(args.bundle) as b:
        pane.set_bundle(b)
        _settle(app)
        shots.append(("family-map", pane.grab()))
    if found:
        split = found[0]
        pane = SplittingPane(Selection())
        pane.resize(900, 420)
        pane.show()
        with open_bundle(args.bundle, split.member) as b:
            pane.set_bundle(b)
            pane.selection.select("feature", split.feature)
            _settle(app)
            shots.append(("family-splitting", pane.grab()))
    if universal is not None:
        ids, corr = universal
        with open_bundle(args.bundle) as b:
            labels = b.columns("feature")["label"]
            about = [i for i, label in enumerate(labels) if args.about.lower() in str(label).lower()
                     and ids[i, 0] >= 0]
            pick = max(about or range(len(ids)), key=lambda i: corr[i, 0] if ids[i, 0] >= 0 else -1)
            pane = UniversalityPane(Selection())
            pane.resize(1100, 760)
            pane.show()
            pane.set_bundle(b)
            pane.selection.select("feature", int(pick))
            _settle(app, 1.0)
            shots.append(("family-universality", pane.grab()))
    if found:
        from superpos_app import create_window
        from superpos_app.settings import AppSettings

        win = create_window(settings=AppSettings(Path(tempfile.mkdtemp()) / "settings.ini"))
        win.resize(1280, 820)
        win.show()
        win.open_bundle(args.bundle, found[0].member)
        win.docks["featureMap"].raise_()
        win.pane("featureMap").openFeature.emit(found[0].member, found[0].feature)
        _settle(app, 1.0)
        shots.append(("family-window", win.grab()))
        win.close_bundle()
        win.pane("textLens").shutdown()
    for name, pixmap in shots:
        target = out / f"{name}.png"
        pixmap.save(str(target))
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
