"""``superpos-app [BUNDLE.h5] [--demo]`` and ``python -m superpos_app``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="superpos-app", description="The superpos desktop app.")
    parser.add_argument("bundle", nargs="?", help="a .h5 bundle to open")
    parser.add_argument("--demo", action="store_true",
                        help="open the demo bundle (trained on the built-in corpus on first use)")
    args = parser.parse_args(argv)

    from superpos_app.platform_check import check_xcb

    problem = check_xcb()       # before Qt loads its platform plugin: a message, never an abort
    if problem:
        print(problem, file=sys.stderr)
        return 1

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from superpos_app import create_window

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("superpos")
    app.setOrganizationName("superpos")
    window = create_window()
    from superpos_app.workers.worker import freeze_long_lived

    freeze_long_lived()    # torch, Qt and pyqtgraph are loaded: keeps full collections short (worker.py)
    window.show()
    if args.bundle:
        QTimer.singleShot(0, lambda: window.open_bundle(args.bundle))
    elif args.demo:
        QTimer.singleShot(0, window.open_demo)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
