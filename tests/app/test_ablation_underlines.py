"""Ablation underlines in the dashboards: computed on a worker for the shown examples, equal to the
engine's numbers, latest unit wins, cached per unit, a remembered toggle, a legend and a tooltip."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.analysis.ablation import AblationEngine
from engine.bundle import open_bundle
from superpos_app.panes.compare import NeuronComparePane
from superpos_app.panes.detail import FeatureDetailPane
from superpos_app.selection import Selection
from superpos_app.settings import AppSettings


@pytest.fixture
def bundle(tiny_bundle):
    with open_bundle(tiny_bundle) as b:
        yield b


def _pane_with_underlines(qtbot, bundle, pane_class):
    """(selection, pane): a shown pane of ``pane_class`` on ``bundle`` with the underlines switched on."""
    sel = Selection()
    pane = pane_class(sel)
    qtbot.addWidget(pane)
    pane.resize(800, 900)
    pane.show()
    pane.set_bundle(bundle)
    pane.ablation.toggle.setChecked(True)
    return sel, pane


@pytest.fixture
def detail(qtbot, bundle):
    sel, pane = _pane_with_underlines(qtbot, bundle, FeatureDetailPane)
    yield sel, pane
    pane.ablation.shutdown()


def _live(bundle, n=3):
    return [int(i) for i in np.flatnonzero(bundle.columns("feature")["density"] > 0)[:n]]


def _drawn(pane):
    """Underline arrays of the example lines (headings have none)."""
    v = pane.examples
    return [v.line_underline(i) for i in range(v.n_lines())]


def test_underlines_are_the_engines_effects_computed_off_the_gui_thread(qtbot, detail, bundle, monkeypatch):
    sel, pane = detail
    threads = []
    original = AblationEngine.effects

    def spy(self, *args, **kwargs):
        threads.append(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AblationEngine, "effects", spy)
    f = _live(bundle)[0]
    sel.select("feature", f)
    assert pane.ablation.legend.text().startswith("<span style='color:#777'>computing")
    qtbot.waitUntil(lambda: pane.ablation.effects_shown() is not None, timeout=30_000)
    assert threads and all(t != threading.get_ident() for t in threads)

    dash = bundle.dashboard("feature", f)
    windows = [w for w, _ in dash.top_examples()]
    for _, _, _, found in dash.interval_examples():
        windows += [w for w, _ in found]
    want = AblationEngine(bundle.load_model(), bundle.load_sae()).effects("feature", f, np.stack(windows))
    drawn = [u for u in _drawn(pane) if u is not None]
    assert len(drawn) == len(windows)
    for u, w, d in zip(drawn, windows, want):
        np.testing.assert_allclose(u, d[w >= 0], atol=1e-5, equal_nan=True)
    assert any(np.nanmax(np.abs(u)) > 0 for u in drawn)       # the feature does something here
    assert "nats" in pane.ablation.legend.text() and "helped predict" in pane.ablation.legend.toolTip()
    # the tooltip of an underlined token gives the value
    line = next(i for i, u in enumerate(_drawn(pane)) if u is not None and np.nanmax(np.abs(u)) > 0)
    tok = int(np.nanargmax(np.abs(pane.examples.line_underline(line))))
    tip = pane.examples.tooltip(line, tok)
    assert "Δ log p(token)" in tip and "activation" in tip


def test_the_latest_unit_wins_and_a_unit_seen_before_is_drawn_at_once(qtbot, detail, bundle):
    sel, pane = detail
    a, b, c = _live(bundle)
    for f in (a, b, c):                                   # a burst of selections: only c is drawn
        sel.select("feature", f)
    qtbot.waitUntil(lambda: pane.ablation.effects_shown() is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not pane.ablation.runner.busy, timeout=30_000)
    assert pane.ablation._shown[0][3] == c
    shown_c = pane.ablation.effects_shown()
    sel.select("feature", a)
    qtbot.waitUntil(lambda: pane.ablation.effects_shown() is not None, timeout=30_000)
    sel.select("feature", c)                              # cached: drawn before any event loop turn
    assert pane.ablation.effects_shown() is shown_c and not pane.ablation.runner.busy
    assert any(u is not None for u in _drawn(pane))


def test_the_toggle_turns_underlines_off_and_is_remembered(qtbot, detail, bundle):
    sel, pane = detail
    sel.select("feature", _live(bundle)[0])
    qtbot.waitUntil(lambda: pane.ablation.effects_shown() is not None, timeout=30_000)
    pane.ablation.toggle.setChecked(False)
    assert all(u is None for u in _drawn(pane)) and not pane.ablation.legend.isVisibleTo(pane)
    assert AppSettings().ablation_underlines() is False
    sel.select("feature", _live(bundle)[1])               # off: nothing is computed
    assert not pane.ablation.runner.busy and all(u is None for u in _drawn(pane))
    again = FeatureDetailPane(Selection())
    qtbot.addWidget(again)
    assert not again.ablation.toggle.isChecked()
    pane.ablation.toggle.setChecked(True)                 # back on: the shown unit's underlines come
    qtbot.waitUntil(lambda: any(u is not None for u in _drawn(pane)), timeout=30_000)
    assert AppSettings().ablation_underlines() is True


def test_neuron_dashboards_and_the_compare_pane_underline_too(qtbot, bundle):
    sel, pane = _pane_with_underlines(qtbot, bundle, NeuronComparePane)
    live = np.flatnonzero(bundle.columns("neuron")["density"] > 1e-3)      # a neuron with examples to show
    sel.select("neuron", int(live[0]))
    qtbot.waitUntil(lambda: pane.ablation.effects_shown() is not None, timeout=30_000)
    drawn = [pane.examples.line_underline(i) for i in range(pane.examples.n_lines())]
    assert drawn and all(u is not None for u in drawn)
    assert any(np.nanmax(np.abs(u)) > 0 for u in drawn)
    sel.clear()
    assert pane.ablation.effects_shown() is None
    pane.ablation.shutdown()
