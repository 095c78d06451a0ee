"""Hostile strings are shown as plain, elided text; faults stay in their pane (superpos_app.plain_text,
superpos_app.faults)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from superpos_app.faults import FAULT_NAME
from superpos_app.plain_text import html_text, plain, tooltip

IMG = "<img src='file:///etc/passwd' width=4000 height=4000>"
LABELS = [IMG.encode(), b"<a href='x'>click</a> \xff\xfe", b"ctrl \x01\x1b[31m \x7f", "\u202eevil".encode(),
          b"<b>huge</b> " + b"y" * (1 << 20)]


def test_plain_keeps_markup_as_text_and_shows_controls():
    assert plain(IMG) == IMG                                       # markup is kept, as text
    assert plain("a\x00b\x1bc\x7f") == "a\u2400b\u241bc\u2421"      # controls are seen, not obeyed
    assert plain("x\ud800y") == "xy"
    assert plain("\u202eevil") == "\ufffdevil"
    assert plain("line\nbreak") == "line\u21b5break" and plain("a\nb", newlines=True) == "a\nb"
    long = plain("z" * 10_000_000, 50)
    assert len(long) == 50 and long.endswith("\u2026")
    assert html_text("<b>&") == "&lt;b&gt;&amp;"
    assert tooltip(IMG).startswith("<qt>") and "<img" not in tooltip(IMG) and tooltip("") == ""


@pytest.fixture
def hostile_bundle(tiny_bundle, tmp_path):
    path = tmp_path / "hostile <b>name<i>.h5"
    shutil.copyfile(tiny_bundle, path)
    with h5py.File(path, "a") as f:
        n = f["features/labels"].shape[0]
        labels = [LABELS[i % len(LABELS)] for i in range(n)]
        del f["features/labels"]
        f.create_dataset("features/labels", shape=(n,), dtype=h5py.string_dtype("utf-8"))[:] = np.array(
            labels, dtype=object)
    return path


def test_hostile_labels_are_plain_text_in_every_pane(window_with_panes, hostile_bundle, qtbot):
    window = window_with_panes
    assert window.open_bundle(hostile_bundle)
    window.selection.select("feature", 0)                         # the <img> label
    qtbot.wait(50)
    search, detail = window.pane("featureSearch"), window.pane("featureDetail")
    compare = window.pane("neuronCompare")
    search.hide_dead.setChecked(False)                            # every unit listed
    m = search.model
    rows = {m.unit_at(r): r for r in range(m.rowCount())}
    cell = m.data(m.index(rows[0], 1))
    assert cell == IMG
    tip = m.data(m.index(rows[0], 1), Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("<qt>") and "&lt;img" in tip
    assert m.data(m.index(rows[4], 1)).endswith("\u2026")        # the 1 MB label is elided
    assert "\ufffd" in m.data(m.index(rows[1], 1))               # invalid UTF-8 replaced
    for label in (detail.title, compare.title):
        assert label.textFormat() == Qt.TextFormat.PlainText and IMG in label.text()
    assert window.minimumSizeHint().width() < 2500                 # an <img width=4000> was laid out
    window.docks["neuronCompare"].raise_()
    window.selection.select("feature", 4)
    qtbot.wait(50)
    assert len(detail.title.text()) < 400
    assert window.overview.title.textFormat() == Qt.TextFormat.PlainText
    assert "<b>name<i>" in window.overview.title.text()


def test_a_lazy_read_error_stays_in_its_pane(window_with_panes, tiny_bundle, tmp_path, qtbot, monkeypatch):
    """A read that fails long after open — here the population view's, from showEvent — shows a
    message in that pane; the rest of the window keeps working."""
    from engine.bundle import Bundle, BundleError

    window = window_with_panes
    compare = window.pane("neuronCompare")
    real = Bundle.columns

    def broken(self, kind):
        import traceback

        if any(frame.name == "_compute_population" for frame in traceback.extract_stack()):
            raise BundleError(f"{self.path}: could not read the unit table (test)")
        return real(self, kind)

    monkeypatch.setattr(Bundle, "columns", broken)
    assert window.open_bundle(tiny_bundle)
    window.docks["neuronCompare"].raise_()                          # shown -> the failing read
    qtbot.waitUntil(lambda: compare.findChild(QLabel, FAULT_NAME) is not None, timeout=3000)
    notice = compare.findChild(QLabel, FAULT_NAME)
    assert notice.isVisible() and "could not read the unit table (test)" in notice.text()
    window.selection.select("feature", 1)                          # the other panes still work
    qtbot.wait(50)
    assert window.pane("featureDetail").dashboard is not None and window.pane("featureDetail").dashboard.index == 1
    other = window.pane("featureSearch").findChild(QLabel, FAULT_NAME)
    assert other is None or not other.isVisible(), other.text()


def test_an_exception_in_a_qt_override_is_contained(tiny_bundle, qtbot, monkeypatch):
    monkeypatch.setenv("SUPERPOS_SYNC_JOBS", "1")
    """showEvent raising (a lazy read) used to leave PySide's error state set: the next resizeEvent
    segfaulted. Contained, it is a message in the pane."""
    from engine.bundle import BundleError, open_bundle
    from superpos_app.panes.compare import NeuronComparePane
    from superpos_app.selection import Selection

    pane = NeuronComparePane(Selection())
    qtbot.addWidget(pane)
    with open_bundle(tiny_bundle) as b:
        pane.set_bundle(b)                                          # not shown: the population waits

        def broken(*_a):
            raise BundleError("the decoder is damaged (test)")

        monkeypatch.setattr(pane, "_compute_population", broken)
        pane.show()                                                 # showEvent raises inside Qt
        pane.resize(500, 400)
        qtbot.wait(20)
        notice = pane.findChild(QLabel, FAULT_NAME)
        assert notice is not None and "the decoder is damaged (test)" in notice.text()
        pane.set_bundle(None)
