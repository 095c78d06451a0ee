"""Screenshots of the explain flow against a local fake chat-completions server (nothing leaves the machine).

    python scripts/screenshots_explain.py --bundle demo.h5 --out shots/

Copies the bundle, opens it, fills the Explain dialog (density >= 1e-3, at most 12 features), takes
the estimate, starts the job and saves: explain_dialog_running.png (mid-job), explain_dialog_done.png,
explain_detail.png (the detail pane with the explanation beside the label), explain_compare.png
(population view on LLM detection scores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtWidgets import QApplication

    from engine.testing.fake_llm import FakeLLM
    from superpos_app import create_window
    from superpos_app.settings import AppSettings

    app = QApplication.instance() or QApplication([])
    tmp = Path(tempfile.mkdtemp())
    path = tmp / Path(args.bundle).name
    shutil.copy(args.bundle, path)
    os.chmod(path, 0o644)

    def wait(cond, ms=60000):
        import time
        t0 = time.time()
        while not cond() and time.time() - t0 < ms / 1000:
            app.processEvents()
            time.sleep(0.01)

    with FakeLLM(script=["sleep"] * 40, sleep_s=0.15) as srv:
        win = create_window(settings=AppSettings(tmp / "s.ini"), install_panes=True)
        win.resize(1500, 950)
        win.show()
        win.open_bundle(path)
        dlg = win.show_explain_dialog()
        dlg.endpoint.setText(srv.url)
        dlg.model.setText("llama3.1:8b")
        dlg.min_log_density.setValue(-3.0)
        dlg.at_most.setValue(12)
        dlg.concurrency.setValue(2)
        dlg.run_estimate()
        wait(lambda: "requests" in dlg.estimate_label.text())
        dlg.start()
        wait(lambda: win.jobs.status.done >= 4)
        dlg.grab().save(str(out / "explain_dialog_running.png"))
        wait(lambda: not win.jobs.is_busy and "Done" in dlg.status.text())
        dlg.grab().save(str(out / "explain_dialog_done.png"))
        unit = sorted(win.bundle.explanations("feature"))[0]
        win.selection.select("feature", unit)
        win.docks["featureDetail"].raise_()
        wait(lambda: False, 500)
        win.pane("featureDetail").grab().save(str(out / "explain_detail.png"))
        win.docks["neuronCompare"].raise_()
        compare = win.pane("neuronCompare")
        wait(lambda: compare.max_cos is not None, 20000)
        compare.score_source.setCurrentIndex(2)
        wait(lambda: False, 300)
        body = compare.score_plot.parentWidget()          # the pane's scrolled body, population view included
        body.grab().save(str(out / "explain_compare.png"))
        win.close_bundle()
    print("wrote", ", ".join(sorted(p.name for p in out.glob("explain_*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
