"""The panes inside the main window: docks, bundle wiring, shortcuts, back/forward across panes."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit, QPlainTextEdit, QTableView, QWidget

import pytest

from superpos_app.panes import PANE_NAMES


@pytest.fixture
def window(window_with_panes):
    """The full window, panes installed (the shared ``window`` fixture builds it without them)."""
    return window_with_panes


def test_panes_are_docked_and_follow_the_bundle(window, tiny_bundle, qtbot):
    for name in PANE_NAMES:
        assert window.pane(name) is not None, name
        assert window.findChild(QWidget, name) is window.pane(name)
    assert window.findChild(QLineEdit, "featureSearchInput") is not None
    assert window.findChild(QTableView, "featureTable") is not None
    assert window.findChild(QPlainTextEdit, "lensInput") is not None

    assert window.open_bundle(tiny_bundle)
    search, detail = window.pane("featureSearch"), window.pane("featureDetail")
    lens, compare = window.pane("textLens"), window.pane("neuronCompare")
    assert all(p.bundle is window.bundle for p in (search, detail, lens, compare))
    assert search.model.rowCount() > 0

    # select in the table: every pane shows it; back/forward through the window's actions
    search.table.selectRow(0)
    first = window.selection.current
    assert detail.dashboard.index == first[1] and compare.unit == first
    window.selection.select("neuron", 3)
    assert detail.dashboard.kind == "neuron" and compare.unit == ("neuron", 3)
    window.back_action.trigger()
    assert window.selection.current == first and detail.dashboard.index == first[1]
    window.forward_action.trigger()
    assert window.selection.current == ("neuron", 3)

    # Ctrl+F / Ctrl+L focus the search box and the lens input
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: lens.input.hasFocus(), timeout=2000)
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: search.input.hasFocus(), timeout=2000)

    window.close_bundle()
    assert all(p.bundle is None for p in (search, detail, lens, compare))
    assert detail.dashboard is None and search.model.rowCount() == 0


def test_a_pane_that_cannot_read_the_bundle_says_so(window, tiny_bundle, qtbot, monkeypatch):
    from PySide6.QtWidgets import QApplication, QLabel

    from engine.bundle import Bundle, BundleError
    from superpos_app.faults import FAULT_NAME

    def broken(self):
        raise BundleError("the stored tokenizer does not load (test)")

    monkeypatch.setattr(Bundle, "tokenizer", broken)
    assert window.open_bundle(tiny_bundle)
    search, detail = window.pane("featureSearch"), window.pane("featureDetail")
    assert search.bundle is window.bundle and search.model.rowCount() > 0    # labels still searchable
    assert detail.bundle is None
    # the message is in the pane that failed, not in a dialog over the whole window
    notice = detail.findChild(QLabel, FAULT_NAME)
    assert notice is not None and notice.isVisible() and "tokenizer does not load" in notice.text()
    assert search.findChild(QLabel, FAULT_NAME) is None
    assert not [w for w in QApplication.topLevelWidgets() if w.objectName() == "errorDialog" and w.isVisible()]
    window.close_bundle()
    monkeypatch.undo()
    assert window.open_bundle(tiny_bundle) and not notice.isVisible()       # a readable bundle clears it
