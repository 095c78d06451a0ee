"""Panes that fit: every pane, at the default window size and in a narrow dock, shows all its
children without cutting any off or scrolling sideways; titles elide; plots keep their titles."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QPoint
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


def _rect(w):
    return w.geometry().getRect()


def _line_at_bottom(view, scroll) -> int:
    """The last example line (TokenView line index) drawn inside the scroll area's viewport."""
    vp = scroll.viewport()
    top = view.mapTo(vp, view.rect().topLeft()).y()
    seen = -1
    for y in range(max(0, -top), min(view.height(), vp.height() - top), 3):
        for x in range(0, view.width(), 6):
            line, token = view.token_at(QPoint(x, y))
            if line >= 0 and token >= 0:
                seen = max(seen, line)
    return seen


def test_feature_detail_shows_plots_logits_and_three_examples_without_scrolling(full_window):
    win = full_window
    detail = win.pane("featureDetail")
    dens = win.bundle.columns("feature")["density"]
    win.selection.select("feature", int(np.argmax(dens)))          # a live feature: every part is filled
    _settle(0.4)
    scroll = detail.examples_scroll
    assert scroll.verticalScrollBar().value() == 0
    vp = scroll.viewport()

    def bottom(w):
        return w.mapTo(vp, w.rect().bottomLeft()).y()

    assert bottom(detail.act_plot) <= vp.height() and bottom(detail.pos_label) <= vp.height()
    # line 0 is the "Top activations" heading; lines 1..3 are the first three examples
    assert _line_at_bottom(detail.examples, scroll) >= 3


def test_the_lens_shows_five_prediction_rows(full_window):
    lens = full_window.pane("textLens")
    table = lens.pred_table
    rows = (table.viewport().height()) / table.verticalHeader().defaultSectionSize()
    assert rows >= 5, rows
    assert table.mapTo(lens, table.rect().bottomLeft()).y() <= lens.height()        # not cut off by the dock


@pytest.mark.parametrize("size", [(1280, 820), (1600, 1000)])
def test_the_dock_separators_move_both_ways(full_window, size):
    from PySide6.QtCore import Qt

    win = full_window
    win.resize(*size)
    _settle(0.3)
    lens, detail = win.docks["textLens"], win.docks["featureDetail"]
    for dock, orientation, small, large in ((lens, Qt.Orientation.Vertical, 240, int(0.62 * size[1])),
                                            (detail, Qt.Orientation.Horizontal, 380, int(0.55 * size[0]))):
        get = dock.height if orientation == Qt.Orientation.Vertical else dock.width
        win.resizeDocks([dock], [small], orientation)
        _settle(0.2)
        assert get() <= small + 10, (dock.objectName(), get())
        win.resizeDocks([dock], [large], orientation)
        _settle(0.2)
        assert get() >= large - 10, (dock.objectName(), get())


def test_reset_layout_restores_the_default_sizes(full_window):
    from PySide6.QtCore import Qt

    win = full_window
    names = ("featureSearch", "featureDetail", "textLens")
    default = {n: _rect(win.docks[n]) for n in names}
    overview = _rect(win.centralWidget())
    win.resizeDocks([win.docks["textLens"]], [250], Qt.Orientation.Vertical)
    win.resizeDocks([win.docks["featureDetail"]], [700], Qt.Orientation.Horizontal)
    win.docks["featureSearch"].setFloating(True)
    _settle(0.3)
    assert _rect(win.docks["textLens"]) != default["textLens"]
    win.reset_layout_action.trigger()
    _settle(0.4)
    for n in names:
        assert not win.docks[n].isFloating()
        got, want = _rect(win.docks[n]), default[n]
        assert all(abs(a - b) <= 6 for a, b in zip(got, want)), (n, got, want)
    assert all(abs(a - b) <= 6 for a, b in zip(_rect(win.centralWidget()), overview))
