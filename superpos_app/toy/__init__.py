"""The Toy Models window: superposition in models small enough to retrain while a slider moves
(``engine.toy``), and an SAE that undoes it. ``window`` holds the window, ``plots`` its pyqtgraph
views, ``jobs`` the work it runs off the GUI thread."""

from __future__ import annotations

__all__ = ["show_toy_window"]


def show_toy_window(parent=None):
    """Open (or raise) the one Toy Models window of ``parent``; returns it."""
    from superpos_app.toy.window import ToyWindow

    window = getattr(parent, "toy_window", None) if parent is not None else None
    if window is None:
        window = ToyWindow()
        if parent is not None:
            parent.toy_window = window
    window.show()
    window.raise_()
    window.activateWindow()
    return window
