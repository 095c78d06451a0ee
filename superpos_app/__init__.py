"""superpos desktop app: ``create_window()`` builds the main window without starting an event loop."""

from __future__ import annotations

import os

__all__ = ["create_window"]


def create_window(bundle: str | os.PathLike | None = None, *, settings=None, install_panes: bool = True):
    """Build (and return, not show) the main window; open ``bundle`` if given.

    A QApplication must exist (the entry point, a test's ``qapp`` or an embedding app makes one).
    ``settings`` (an AppSettings) replaces the default settings file; ``install_panes=False`` builds
    the frame without the exploration panes (fast tests of the shell alone).
    """
    from superpos_app.main_window import MainWindow
    from superpos_app.style import apply_style

    apply_style()
    window = MainWindow(settings=settings, install_panes=install_panes)
    if bundle is not None:
        window.open_bundle(bundle)
    return window
