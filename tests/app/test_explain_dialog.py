"""The explain flow in the app against a real local chat-completions server: choose units (density ≥ …,
at most N; the units the search lists), estimate, run as a job with progress and ETA, cancel, resume;
the results are folded into the bundle and shown by the detail, search and compare panes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.bundle.explanations import journal_path, read_journal
from engine.testing.fake_llm import FakeLLM


@pytest.fixture
def srv():
    with FakeLLM() as s:
        yield s


@pytest.fixture
def full_window(window_with_panes, tiny_bundle, tmp_path):
    path = tmp_path / "b.h5"
    shutil.copy(tiny_bundle, path)
    window_with_panes.resize(1400, 900)
    assert window_with_panes.open_bundle(path)
    return window_with_panes


def _dialog(win, srv, n=3, concurrency=2):
    dlg = win.show_explain_dialog()
    dlg.endpoint.setText(srv.url)
    dlg.model.setText("fake")
    dlg.concurrency.setValue(concurrency)
    dlg.min_log_density.setValue(-3.0)            # units with held-out active examples to score
    dlg.at_most.setValue(n)
    return dlg


def test_no_bundle_no_dialog(window):
    assert window.show_explain_dialog() is None
    assert not window.explain_action.isEnabled()


def test_estimate_then_explain_then_the_panes_show_it(qtbot, full_window, srv):
    win = full_window
    dlg = _dialog(win, srv)
    assert dlg.selection_label.text() == "3 features selected"
    assert dlg.run_estimate()
    qtbot.waitUntil(lambda: "requests" in dlg.estimate_label.text(), timeout=10000)
    assert "3 to do" in dlg.estimate_label.text() and "at the measured rate" in dlg.estimate_label.text()
    statuses = []
    win.jobs.statusChanged.connect(lambda st: statuses.append((st.done, st.total, st.eta_s)))
    assert dlg.start()
    assert not dlg.start_button.isEnabled() and dlg.cancel_button.isEnabled() and win.job_box.isVisible()
    qtbot.waitUntil(lambda: not win.jobs.is_busy and "Done" in dlg.status.text(), timeout=20000)
    assert "3 explained, 0 failed" in dlg.status.text() and "3 explanations written into the bundle" in dlg.status.text()
    assert statuses and statuses[-1][:2] == (3, 3)
    assert not journal_path(win.bundle.path).exists()
    units = sorted(win.bundle.explanations("feature"))
    assert len(units) == 3 and win.bundle.schema_version >= 2
    # the detail pane shows the explanation beside the label
    win.selection.select("feature", units[0])
    detail = win.pane("featureDetail")
    assert detail.explanation.isVisible()
    text = detail.explanation.text()
    assert text.startswith('LLM: the token "') and "detection" in text and "fake" in text
    # search matches explanation text; the compare pane can plot LLM scores
    search = win.pane("featureSearch")
    search.input.setText(win.bundle.explanations("feature")[units[0]]["explanation"][11:])
    search.apply_filter()
    assert units[0] in [search.model.unit_at(r) for r in range(search.model.rowCount())]
    compare = win.pane("neuronCompare")
    compare.score_source.setCurrentIndex(2)           # LLM detection
    assert "LLM detection" in compare.score_plot.getPlotItem().getAxis("bottom").labelText
    assert "n=3" in compare._score_note
    assert compare.score_marker.value() == pytest.approx(win.bundle.explanations("feature")[units[0]]["detection"])
    # a second run with the same model resumes: nothing left to do
    n = len(srv.requests)
    assert dlg.start()
    qtbot.waitUntil(lambda: not win.jobs.is_busy, timeout=10000)
    assert len(srv.requests) == n


def test_the_units_the_search_lists(qtbot, full_window, srv):
    win = full_window
    search = win.pane("featureSearch")
    live_ids = np.flatnonzero(win.bundle.columns("feature")["density"] > 0)
    search.input.setText(f"#{live_ids[0]}")         # a unit that fired: "#5" depended on the training
    search.apply_filter()
    listed = [search.model.unit_at(r) for r in range(search.model.rowCount())]
    assert listed
    dlg = _dialog(win, srv)
    dlg.which_search.setChecked(True)
    live = [u for u in listed if win.bundle.columns("feature")["density"][u] > 0]
    assert dlg.units() == sorted(live)


def test_cancel_keeps_finished_units_and_folds_them(qtbot, full_window, srv):
    win = full_window
    srv.script = ["sleep"] * 200
    srv.sleep_s = 0.05
    dlg = _dialog(win, srv, n=30, concurrency=1)
    assert dlg.start()
    qtbot.waitUntil(lambda: win.jobs.status.done >= 1, timeout=20000)
    dlg.cancel_button.click()
    qtbot.waitUntil(lambda: not win.jobs.is_busy, timeout=20000)
    assert "cancelled" in dlg.status.text().lower() and "resume" in dlg.status.text() and "written into the bundle" in dlg.status.text()
    done = win.bundle.explanations("feature")
    assert 1 <= len(done) < 30 and not read_journal(win.bundle.path)


def test_a_bad_endpoint_is_said_in_the_dialog(qtbot, full_window, srv):
    dlg = _dialog(full_window, srv)
    dlg.endpoint.setText("localhost:11434")
    assert not dlg.start()
    assert "http://" in dlg.status.text()
    assert not full_window.jobs.is_busy
