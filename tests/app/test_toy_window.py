"""The Toy Models window: a slider retrains through the debounced runner and the plots follow; the
longer jobs report progress, can be cancelled, and fill their plots. Waits are on conditions."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent


@pytest.fixture
def toy_window(qtbot):
    from superpos_app.toy.window import ToyWindow

    win = ToyWindow(steps=200)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.toy is not None and not win.runner.busy, timeout=60_000)
    yield win
    win.close()
    win.runner.shutdown()


def _idle(win):
    return not win.runner.busy and not win._debounce.isActive() and win.toy is not None \
        and win.toy.cfg == win.config()


def test_slider_change_retrains_and_updates_the_plots(qtbot, toy_window):
    win = toy_window
    assert win.geometry_plot.n_shown == 5
    win.n_slider.slider.setValue(7)
    assert "7" in win.n_slider.label.text()                 # the label follows at once
    qtbot.waitUntil(lambda: _idle(win) and win.toy.cfg.n_features == 7, timeout=60_000)
    assert win.geometry_plot.n_shown == 7
    assert win.gram_plot.image.image.shape == (7, 7)
    assert len(win.bars_plot.bars.opts["width"]) == 7
    x, y = win.dims_plot.current.getData()
    assert len(y) == 7
    assert "7 features" in win.status.text()


def test_a_burst_of_changes_ends_on_the_last_setting(qtbot, toy_window):
    win = toy_window
    for value in (3, 4, 6, 8):
        win.n_slider.slider.setValue(value)
    win.m_slider.slider.setValue(3)
    qtbot.waitUntil(lambda: _idle(win), timeout=60_000)
    assert (win.toy.cfg.n_features, win.toy.cfg.n_hidden) == (8, 3)
    assert win.toy.W_MN.shape == (3, 8)


def test_sae_job_fills_the_recovery_panel(qtbot, toy_window):
    win = toy_window
    win.run_sae()
    assert win.job_running and win.cancel_button.isVisible()
    qtbot.waitUntil(lambda: not win.job_running, timeout=120_000)
    rec = win.recovery_plot.recovery
    assert rec is not None and rec.W_dec_FM.shape == (10, 2)
    assert "MMCS" in win.recovery_plot.summary.text()


def test_phase_job_can_be_cancelled(qtbot, toy_window):
    win = toy_window
    win.run_phase()
    qtbot.waitUntil(lambda: win.progress.value() > 0 or not win.job_running, timeout=60_000)
    win.cancel_job()
    qtbot.waitUntil(lambda: not win.job_running, timeout=60_000)
    assert "cancelled" in win.job_status.text() or "done" in win.job_status.text()
    assert win.phase_button.isEnabled()


def test_dimensionality_sweep_plots_points(qtbot, toy_window):
    win = toy_window
    win.run_dimensionality()
    qtbot.waitUntil(lambda: not win.job_running, timeout=120_000)
    x, y = win.dims_plot.sweep.getData()
    assert len(y) == 16 * 5 and np.all((y >= 0) & (y <= 1.0001))


def test_plain_wheel_is_left_to_the_scroll_area(toy_window):
    plot = toy_window.geometry_plot
    before = plot.getViewBox().viewRange()
    event = QWheelEvent(QPointF(50, 50), QPointF(plot.mapToGlobal(QPoint(50, 50))), QPoint(0, 0), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    plot.wheelEvent(event)
    assert not event.isAccepted()
    assert plot.getViewBox().viewRange() == before


def test_opened_from_the_welcome_page_and_the_menu(qtbot, window):
    window.welcome.toy_button.click()
    toy = window.toy_window
    qtbot.addWidget(toy)
    assert toy.isVisible()
    window.toy_action.trigger()
    assert window.toy_window is toy                  # one window, raised again
    qtbot.waitUntil(lambda: toy.toy is not None and not toy.runner.busy, timeout=60_000)
    toy.close()
