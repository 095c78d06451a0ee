"""The wheel scrolls the pane a plot sits in; Ctrl+wheel zooms the plot; "Reset view" undoes it.

Wheel events go through the window system (QTest.wheelEvent on the QWindow), so they are
spontaneous and Qt hands an ignored one on to the parents, as it does for a real mouse."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel, QScrollArea, QVBoxLayout, QWidget


def _wheel(widget, ctrl: bool = False, notches: int = -3) -> None:
    """Turn the wheel over the middle of ``widget`` (down by default)."""
    window = widget.window().windowHandle()
    at = widget.mapTo(widget.window(), QPoint(widget.width() // 2, widget.height() // 2))
    mods = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    for _ in range(abs(notches)):
        QTest.wheelEvent(window, at, QPoint(0, 120 * (1 if notches > 0 else -1)), QPoint(0, 0), mods)
        QApplication.processEvents()


def _ranges(plot_item):
    return np.array(plot_item.getViewBox().viewRange())


def _same_view(a, b) -> bool:
    """The same view up to auto-range padding (a layout pass may move it by a pixel); one notch of
    zoom changes the span by a quarter."""
    return bool(np.allclose(np.diff(a, axis=1), np.diff(b, axis=1), rtol=0.03)
                and np.allclose(a.mean(axis=1), b.mean(axis=1), atol=0.03 * np.abs(np.diff(b, axis=1)).max()))


@pytest.fixture
def scrolled_plot(qtbot):
    """A plot halfway down a page taller than its scroll area."""
    from superpos_app.widgets.plots import bar_item, make_plot, set_bars

    page = QWidget()
    lay = QVBoxLayout(page)
    lay.addWidget(QLabel("above\n" * 20))
    plot = make_plot("Histogram", "activation", "tokens", height=200)
    set_bars(bar_item(plot=plot), np.linspace(0, 1, 11), np.arange(10.0))
    lay.addWidget(plot)
    lay.addWidget(QLabel("below\n" * 40))
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(page)
    area.resize(400, 300)
    qtbot.addWidget(area)
    area.show()
    qtbot.waitExposed(area)
    area.verticalScrollBar().setValue(250)
    qtbot.waitUntil(lambda: _centre_shows(area, plot))
    return area, plot


def _centre_shows(area, widget) -> bool:
    """The middle of ``widget`` is inside the scroll area's viewport (where the wheel is turned)."""
    vp = area.viewport()
    centre = widget.mapTo(vp, QPoint(widget.width() // 2, widget.height() // 2))
    return vp.rect().contains(centre)


def test_the_wheel_over_a_plot_scrolls_the_pane_and_leaves_the_plot_alone(scrolled_plot):
    area, plot = scrolled_plot
    bar = area.verticalScrollBar()
    before_scroll, before_range = bar.value(), _ranges(plot.getPlotItem())
    _wheel(plot.viewport(), notches=-1)
    assert bar.value() > before_scroll                           # the page scrolled down
    assert _same_view(_ranges(plot.getPlotItem()), before_range)  # the plot did not zoom
    assert not plot.reset_button.isVisible()


def test_ctrl_wheel_zooms_and_reset_view_restores_the_range(scrolled_plot, qtbot):
    area, plot = scrolled_plot
    bar = area.verticalScrollBar()
    item = plot.getPlotItem()
    home = _ranges(item)
    scroll = bar.value()
    _wheel(plot.viewport(), ctrl=True, notches=2)
    zoomed = _ranges(item)
    assert not _same_view(zoomed, home)                         # zoomed in
    assert bar.value() == scroll                                 # and the page stayed put
    qtbot.waitUntil(plot.reset_button.isVisible)
    assert plot.reset_button.geometry().right() <= plot.width()  # in the plot's corner, not cut off
    qtbot.mouseClick(plot.reset_button, Qt.MouseButton.LeftButton)
    assert _same_view(_ranges(item), home)
    assert not plot.reset_button.isVisible()


def test_the_wheel_scrolls_the_overview_and_feature_detail(window_with_panes, tiny_bundle, qtbot):
    """The real panes: the Overview's density histogram and Feature Detail's activation histogram."""
    win = window_with_panes
    win.resize(1280, 600)                                    # short enough that both pages scroll
    assert win.open_bundle(tiny_bundle)
    win.selection.select("feature", int(np.argmax(win.bundle.columns("feature")["density"])))
    overview_scroll = win.overview.findChild(QScrollArea)
    detail = win.pane("featureDetail")
    for area, plot in ((overview_scroll, win.overview.density_plot), (detail.examples_scroll, detail.act_plot)):
        qtbot.waitUntil(lambda: area.verticalScrollBar().maximum() > 0)
        bar = area.verticalScrollBar()
        centre = plot.mapTo(area.widget(), QPoint(0, plot.height() // 2)).y()
        bar.setValue(centre - area.viewport().height() // 2)
        qtbot.waitUntil(lambda: _centre_shows(area, plot))
        item = plot.getPlotItem()
        qtbot.waitUntil(lambda: not np.allclose(_ranges(item), [[0, 1], [0, 1]]))   # auto-ranged to the data
        before, at = _ranges(item), bar.value()
        down = at < bar.maximum()
        _wheel(plot.viewport(), notches=-1 if down else 1)
        assert (bar.value() > at) if down else (bar.value() < at), plot.objectName()
        assert _same_view(_ranges(item), before), plot.objectName()


def test_training_curves_scroll_too_and_reset_all_plots(qtbot):
    from superpos_app.widgets.curves import CurvePanel

    panel = CurvePanel()
    panel.set_curve("model/train_loss", np.column_stack([np.arange(50.0), np.linspace(8, 3, 50)]))
    page = QWidget()
    lay = QVBoxLayout(page)
    panel.setMinimumHeight(300)
    lay.addWidget(panel)
    lay.addWidget(QLabel("below\n" * 40))
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(page)
    area.resize(500, 320)
    qtbot.addWidget(area)
    area.show()
    qtbot.waitExposed(area)
    plot = panel.plots["Model loss"]
    qtbot.waitUntil(lambda: not np.allclose(_ranges(plot), [[0, 1], [0, 1]]))   # auto-ranged to the data
    home = _ranges(plot)
    _wheel(panel.view.viewport(), notches=-1)
    assert area.verticalScrollBar().value() > 0 and _same_view(_ranges(plot), home)
    vp = panel.view.viewport()
    centre = panel.view.mapFromScene(plot.getViewBox().sceneBoundingRect().center())
    window = vp.window().windowHandle()
    QTest.wheelEvent(window, vp.mapTo(vp.window(), centre), QPoint(0, 240), QPoint(0, 0),
                     Qt.KeyboardModifier.ControlModifier)
    QApplication.processEvents()
    assert not _same_view(_ranges(plot), home)
    qtbot.waitUntil(panel.reset_button.isVisible)
    panel.reset_button.click()
    assert _same_view(_ranges(plot), home) and not panel.reset_button.isVisible()
