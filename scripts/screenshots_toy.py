"""Screenshots of the Toy Models window (offscreen), each plot of it after its job has run.

    python scripts/screenshots_toy.py [--out docs/screenshots] [--phase-size 20]

Writes ``toy-window.png`` (the whole window: the pentagon at n = 5, m = 2, S = 0.9, the sparsity
sweep, the phase diagram and the SAE's recovery), and one PNG per panel: ``toy-geometry.png``,
``toy-gram.png``, ``toy-bars.png``, ``toy-dimensionality.png``, ``toy-phase.png``, ``toy-sae.png``.
``toy-dimensionality.png`` uses n = 20, m = 5 (enough features for the paper's fractional levels);
the window's own sweep is of the pentagon's n = 5, m = 2.
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


def _wait(app, condition, timeout_s: float = 900.0) -> None:
    end = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("the window's job did not finish")
        app.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from superpos_app.style import apply_style
    from superpos_app.toy.window import ToyWindow

    app = QApplication.instance() or QApplication([])
    apply_style(app)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    win = ToyWindow()
    win.resize(1400, 1700)
    win.show()
    idle = lambda: win.toy is not None and not win.runner.busy and not win._debounce.isActive()  # noqa: E731
    job_done = lambda: not win.job_running  # noqa: E731

    # the dimensionality sweep at n = 20, m = 5 (the levels need more than a pentagon's features)
    win.n_slider.slider.setValue(20)
    win.m_slider.slider.setValue(5)
    _wait(app, lambda: idle() and win.toy.cfg == win.config())
    win.run_dimensionality()
    _wait(app, job_done)
    win.dims_plot.grab().save(str(out / "toy-dimensionality.png"))

    # back to the pentagon: n = 5, m = 2, S = 0.9, uniform importance
    win.n_slider.slider.setValue(5)
    win.m_slider.slider.setValue(2)
    _wait(app, lambda: idle() and win.toy.cfg == win.config())
    win.run_dimensionality()
    _wait(app, job_done)
    win.run_phase()
    _wait(app, job_done)
    win.run_sae()
    _wait(app, job_done)
    win.run_recovery()
    _wait(app, job_done)
    app.processEvents()
    for name, widget in (("geometry", win.geometry_plot), ("gram", win.gram_plot), ("bars", win.bars_plot),
                         ("phase", win.phase_plot), ("sae", win.recovery_plot)):
        widget.grab().save(str(out / f"toy-{name}.png"))
    win.scroll.verticalScrollBar().setValue(0)
    win.grab().save(str(out / "toy-window.png"))
    print(f"wrote {out}/toy-*.png")
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
