"""The child process of the fuzz suite: opens each listed file through the CLI or the app.

    python tests/fuzz_child.py cli|app LIST.json

LIST.json holds [[index, path], ...]. For each file the child prints ``START <index>`` before it
touches the file and ``DONE <index> <json>`` after, flushing each line, so the parent
(tests/fuzz_runner.py) can tell which file a crash or a hang belongs to.

- cli: ``superpos info PATH`` through ``engine.cli.main.main`` (the real entry point, in-process):
  {"rc": exit status, "stderr": what it printed there}.
- app: ``superpos_app.create_window(bundle=PATH)``, shown (or, to save time, the same window's
  ``open_bundle(PATH)`` for seven files of eight: see ``run_app``); if the bundle opened, the lazy reads a
  user triggers are made too (a unit of each kind selected, the neuron-vs-feature pane shown, and
  for every fourth file a hostile text in the lens: loading the model is the slow part): {"opened": bool, "dialog": the error dialog's message or "",
  "faults": [messages shown in panes]}.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time


def _say(*parts) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def run_cli(items) -> None:
    from engine.cli.main import main

    for index, path in items:
        _say("START", index)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["info", path])
        _say("DONE", index, json.dumps({"rc": rc, "stderr": err.getvalue()}))


def run_selftest(items) -> None:
    """For the runner's own test: "crash" dies of SIGSEGV, "hang" never answers, else answers."""
    import signal

    for index, path in items:
        _say("START", index)
        if path == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if path == "hang":
            time.sleep(3600)
        _say("DONE", index, json.dumps({"rc": 0, "stderr": ""}))


def run_app(items, lens_every: int = 4, fresh_every: int = 8) -> None:
    """Every ``fresh_every``-th file opens in a new ``create_window(bundle=path)``; the others in the
    same window's ``open_bundle(path)`` (what create_window calls), after the previous file closed —
    building the window (its eleven pyqtgraph plots) costs more than opening a file."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

    from superpos_app import create_window
    from superpos_app.faults import FAULT_NAME
    from superpos_app.settings import AppSettings

    app = QApplication.instance() or QApplication([])
    home = tempfile.TemporaryDirectory(prefix="superpos-fuzz-")          # removed when the child ends
    settings = AppSettings(os.path.join(home.name, "settings.ini"))
    window = None

    def pump() -> None:
        for _ in range(3):
            app.processEvents()

    for n, (index, path) in enumerate(items):
        _say("START", index)
        t0 = time.perf_counter()
        if window is None or n % fresh_every == 0:
            if window is not None:
                window.close()
                window.deleteLater()
            window = create_window(bundle=path, settings=settings)
            window.show()
        else:
            window.close_bundle()
            window.open_bundle(path)
        pump()
        opened = window.bundle is not None
        if opened and lens_every and index % lens_every == 0:
            lens = window.pane("textLens")
            lens.set_text("<img src=x> \u202eRTL\u202c \x01 " + "long text " * 50)
            lens.request_now()
        if opened:
            b = window.bundle
            for kind in ("feature", "neuron"):
                for unit in (0, b.n_units(kind) - 1):
                    window.selection.select(kind, unit)
            window.docks["neuronCompare"].raise_()
            pump()
        dialogs = [w for w in window.findChildren(QMessageBox) if w.objectName() == "errorDialog" and w.isVisible()]
        faults = [lab.text() for lab in window.findChildren(QLabel, FAULT_NAME) if lab.isVisible()]
        result = {"opened": opened, "dialog": dialogs[0].message if dialogs else "", "faults": faults,
                  "seconds": round(time.perf_counter() - t0, 3)}
        for d in dialogs:
            d.close()
        _say("DONE", index, json.dumps(result))
    if window is not None:
        window.close()


if __name__ == "__main__":
    mode, listing = sys.argv[1], sys.argv[2]
    with open(listing) as fh:
        todo = json.load(fh)
    {"cli": run_cli, "app": run_app, "selftest": run_selftest}[mode](todo)
