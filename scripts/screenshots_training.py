"""Screenshots of the Train dialog's live view at several moments of a real tiny run (offscreen).

    python scripts/screenshots_training.py [--out /tmp/live] [--preset tiny]

Runs the real pipeline from the dialog (the built-in corpus, a private SUPERPOS_HOME) and saves
``1-baselines.png`` (model training: the baselines are drawn), ``2-predictions.png`` (the first
predictions), ``3-sae.png`` (SAE training) and ``4-done.png``.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/live")
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtWidgets import QApplication

    from superpos_app import create_window
    from superpos_app.settings import AppSettings

    app = QApplication.instance() or QApplication([])
    win = create_window(settings=AppSettings(Path(os.environ["SUPERPOS_HOME"]) / "s.ini"), install_panes=False)
    dialog = win.show_train_dialog(args.preset, str(Path(os.environ["SUPERPOS_HOME"]) / "run.h5"))
    dialog.form.set_corpus("builtin")
    dialog.resize(1180, 860)
    taken: set[str] = set()

    def grab(name: str) -> None:
        if name not in taken:
            taken.add(name)
            app.processEvents()
            dialog.grab().save(str(out / f"{name}.png"))
            print(f"{name}: {time.monotonic() - t0:.1f} s")

    t0 = time.monotonic()
    dialog.start()
    while win.jobs.is_busy:
        app.processEvents()
        time.sleep(0.02)
        live = dialog.live
        if live.baselines:
            grab("1-baselines")
        if live.predictions:
            grab("2-predictions")
        if live.sae_label.text():
            grab("3-sae")
    app.processEvents()
    grab("4-done")


if __name__ == "__main__":
    main()
