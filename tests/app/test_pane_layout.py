"""Panes that fit: every pane, at the default window size and in a narrow dock, shows all its
children without cutting any off or scrolling sideways; titles elide; plots keep their titles."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from layout_check import layout_problems

NARROW = 330                  # a side dock squeezed to about a quarter of a laptop screen
NARROW_LENS = 440             # the lens (a bottom dock) moved into a side dock


def _settle(seconds: float = 0.25) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


@pytest.fixture
def full_window(qtbot, app_settings, tiny_bundle):
    from superpos_app import create_window

    win = create_window(settings=app_settings)          # the panes, docked as on first start
    qtbot.addWidget(win)
    win.show()
    assert win.open_bundle(tiny_bundle)
    labels = win.bundle.columns("feature")["label"]
    longest = int(np.argmax([len(s) for s in labels]))  # the longest label: the hardest title
    win.selection.select("feature", longest)
    _settle(0.5)
    yield win
    win.close_bundle()


def _show(win, name):
    dock = win.docks[name]
    dock.show()
    dock.raise_()
    _settle()
    return dock


def test_every_pane_fits_at_the_default_window_size(full_window):
    win = full_window
    assert (win.width(), win.height()) == (1280, 820)
    for name in win.docks:
        dock = _show(win, name)
        assert dock.width() >= 300, (name, dock.width())       # no pane squeezed to a sliver
        assert layout_problems(dock.widget()) == [], name
    assert layout_problems(win.overview) == []


@pytest.mark.parametrize("name", ["featureSearch", "featureDetail", "neuronCompare", "textLens"])
def test_every_pane_fits_a_narrow_dock(full_window, name):
    win = full_window
    dock = _show(win, name)
    width = NARROW_LENS if name == "textLens" else NARROW
    dock.setFloating(True)
    dock.resize(width, 720)
    _settle(0.4)
    assert abs(dock.widget().width() - width) < 40
    assert layout_problems(dock.widget()) == []


def test_titles_elide_with_the_full_text_on_hover(full_window):
    from superpos_app.plain_text import tooltip

    win = full_window
    dock = _show(win, "featureDetail")
    dock.setFloating(True)
    dock.resize(NARROW, 720)
    _settle(0.4)
    title = win.pane("featureDetail").title
    assert title.height() < 2.2 * title.fontMetrics().height()   # one line, not one word per line
    full = title.text()
    if title.fontMetrics().horizontalAdvance(full) > title.width():
        assert title.toolTip() == tooltip(full)        # the full text, escaped: tooltips read markup


def test_the_checker_sees_a_clipped_pane(full_window):
    """The check can fail: a pane forced narrower than its layout allows, or scrolling sideways."""
    from PySide6.QtWidgets import QLabel, QScrollArea, QVBoxLayout, QWidget

    host = QWidget()
    lay = QVBoxLayout(host)
    scroll = QScrollArea()
    wide = QLabel("x" * 400)
    scroll.setWidget(wide)
    lay.addWidget(scroll)
    host.resize(200, 200)
    host.show()
    _settle(0.1)
    problems = layout_problems(host)
    assert any("horizontal scroll bar" in p for p in problems)
    host.close()
