"""Feature search pane: the numpy-backed table model (qtmodeltester), filtering, sorting, selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine.bundle import open_bundle
from superpos_app.panes.search import FeatureSearchPane
from superpos_app.models.unit_table_model import (
    COL_DENSITY, COL_ID, COL_LABEL, COL_MAX, COL_SCORE, UnitFilter, UnitTable, UnitTableModel,
)
from superpos_app.selection import Selection


@pytest.fixture
def bundle(tiny_bundle):
    with open_bundle(tiny_bundle) as b:
        yield b


@pytest.fixture
def pane(qtbot, bundle):
    sel = Selection()
    p = FeatureSearchPane(sel)
    qtbot.addWidget(p)
    p.resize(700, 500)
    p.show()
    p.set_bundle(bundle)
    return p


def _shown(model):
    return [model.unit_at(r) for r in range(model.rowCount())]


def test_table_model_passes_qtmodeltester(qtmodeltester, bundle):
    tok = bundle.tokenizer()
    vocab = list(tok.vocab_strings())
    model = UnitTableModel()
    model.set_table(UnitTable.from_columns("feature", bundle.columns("feature"), vocab))
    qtmodeltester.check(model)
    model.sort(COL_SCORE, Qt.SortOrder.DescendingOrder)
    model.set_filter(UnitFilter(text="script", hide_dead=True))
    qtmodeltester.check(model)


def test_search_filters_rows_by_label_id_and_tokens(pane, bundle, qtbot):
    cols = bundle.columns("feature")
    labels = cols["label"]
    pane.hide_dead.setChecked(False)
    qtbot.keyClicks(pane.input, "ScRiPt")
    qtbot.waitUntil(lambda: pane.model.rowCount() < len(labels), timeout=2000)   # debounced filter ran
    want = {i for i, lab in enumerate(labels) if "script" in lab.lower()}
    assert want and set(_shown(pane.model)) >= want
    # every extra row matched through its top tokens
    tok = bundle.tokenizer()
    for i in set(_shown(pane.model)) - want:
        toks = [tok.token_str(int(t)).strip().lower() for t in cols["top_token_ids"][i] if t >= 0]
        assert any("script" in t for t in toks)
    # a query that only a top token can match finds exactly the rows holding that token
    # (the first unit with a top token of two or more characters: which one depends on the corpus)
    u0, t0 = next((u, int(t)) for u in range(len(labels)) for t in cols["top_token_ids"][u]
                  if t >= 0 and len(tok.token_str(int(t)).strip()) >= 2)
    q = tok.token_str(t0).strip().lower()
    pane.input.setText(q)
    pane.apply_filter()
    by_token = {u for u in range(len(labels)) if any(
        q in tok.token_str(int(t)).strip().lower() for t in cols["top_token_ids"][u] if t >= 0)}
    by_label = {u for u in range(len(labels)) if q in labels[u].lower()}
    digits = {int(q.lstrip("#"))} if q.lstrip("#").isdigit() and int(q.lstrip("#")) < len(labels) else set()
    assert u0 in _shown(pane.model)
    assert set(_shown(pane.model)) == by_token | by_label | digits
    assert pane.count_label.text().startswith(f"{pane.model.rowCount():,} of {len(labels):,}")

    # an id matches exactly
    pane.input.setText("17")
    pane.apply_filter()
    assert 17 in _shown(pane.model)
    tok = bundle.tokenizer()

    def matches(u, q):
        toks = [tok.token_str(int(t)).strip().lower() for t in cols["top_token_ids"][u] if t >= 0]
        return q in labels[u].lower() or any(q in t for t in toks)

    assert all(u == 17 or matches(u, "17") for u in _shown(pane.model))
    want = {u for u in range(len(labels)) if matches(u, "17")} | {17}
    assert set(_shown(pane.model)) == want

    # nothing matches
    pane.input.setText("zzzz-no-such-feature")
    pane.apply_filter()
    assert pane.model.rowCount() == 0


def test_filters_density_dead_and_score(pane, bundle):
    cols = bundle.columns("feature")
    dens, score = cols["density"], cols["score"]
    pane.hide_dead.setChecked(True)
    assert set(_shown(pane.model)) == set(np.flatnonzero(dens > 0).tolist())
    pane.hide_ultralow.setChecked(True)
    assert set(_shown(pane.model)) == set(np.flatnonzero(dens >= 1e-6).tolist())
    pane.min_score.setValue(0.5)
    want = np.flatnonzero((dens >= 1e-6) & (score >= 0.5))
    assert set(_shown(pane.model)) == set(want.tolist())
    pane.min_score.setValue(pane.min_score.minimum())
    pane.density_min.setValue(-4.0)
    pane.density_max.setValue(-3.0)
    with np.errstate(divide="ignore"):
        ld = np.log10(dens).astype(np.float32)
    want = np.flatnonzero((dens >= 1e-6) & (ld >= -4.0) & (ld <= -3.0))
    assert set(_shown(pane.model)) == set(want.tolist())


def test_sorting_in_the_model_keeps_selection(pane, bundle, qtbot):
    cols = bundle.columns("feature")
    pane.hide_dead.setChecked(False)
    pane.table.sortByColumn(COL_MAX, Qt.SortOrder.DescendingOrder)
    shown = _shown(pane.model)
    assert shown == list(np.argsort(-cols["max_act"].astype(np.float64), kind="stable"))
    pane.table.selectRow(5)
    unit = pane.model.unit_at(5)
    assert pane.selection.current == ("feature", unit)
    pane.table.sortByColumn(COL_ID, Qt.SortOrder.AscendingOrder)
    assert _shown(pane.model) == list(range(len(shown)))
    rows = pane.table.selectionModel().selectedRows()
    assert [pane.model.unit_at(r.row()) for r in rows] == [unit]
    pane.table.sortByColumn(COL_LABEL, Qt.SortOrder.AscendingOrder)
    labels = [cols["label"][u] for u in _shown(pane.model)]
    assert labels == sorted(labels)
    pane.table.sortByColumn(COL_DENSITY, Qt.SortOrder.DescendingOrder)
    d = [cols["density"][u] for u in _shown(pane.model)]
    assert d == sorted(d, reverse=True)


def test_selection_from_elsewhere_and_neuron_toggle(pane, bundle):
    pane.hide_dead.setChecked(False)
    pane.selection.select("feature", 42)
    rows = pane.table.selectionModel().selectedRows()
    assert [pane.model.unit_at(r.row()) for r in rows] == [42]
    pane.neuron_button.click()
    assert pane.kind == "neuron" and pane.model.rowCount() == bundle.n_neurons
    assert pane.count_label.text().endswith(f"{bundle.n_neurons:,} neurons")
    pane.table.selectRow(0)
    assert pane.selection.current == ("neuron", pane.model.unit_at(0))
    pane.feature_button.click()
    assert pane.kind == "feature" and pane.model.table.kind == "feature"


def test_empty_pane_without_bundle(qtbot):
    p = FeatureSearchPane(Selection())
    qtbot.addWidget(p)
    assert not p.isEnabled() and p.model.rowCount() == 0
    p.apply_filter()
    assert math.isinf(p.current_filter().log_density_min)


def test_the_table_opens_interesting_first(pane, bundle):
    """By label score among units that fire at least as often as the examples they show; the rare
    ones (a perfect score on a handful of firings) after them."""
    from superpos_app.panes.search import density_floor

    cols = bundle.columns("feature")
    floor = density_floor(bundle)
    assert floor == pytest.approx(bundle.dims["K"] / bundle.n_tokens)
    shown = _shown(pane.model)
    rare = [bool(cols["density"][u] < floor) for u in shown]
    assert not all(rare) and rare == sorted(rare)                       # every common unit first
    common = [float(cols["score"][u]) for u, r in zip(shown, rare) if not r and np.isfinite(cols["score"][u])]
    assert common == sorted(common, reverse=True)
    tip = pane.model.headerData(COL_SCORE, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "come last" in tip


def test_byte_tokens_read_as_hex_not_escapes(bundle):
    tok = bundle.tokenizer()
    raw, shown = tok.vocab_strings(), tok.readable_strings()
    partial = [i for i, s in enumerate(raw) if "\\x" in s and s != shown[i]]
    assert partial                                                       # byte-level BPE has them
    for i in partial:
        assert "⟨0x" in shown[i] and "\\x" not in shown[i]
        assert shown[i].replace("⟨0x", "").replace("⟩", "").strip()
    assert all(a == b for a, b in zip(raw, shown) if "\\x" not in a)


def test_language_labels_are_found_by_the_language_name(bundle):
    """The labeller names languages ("French text", "… in Chinese text"); typing the name finds them."""
    cols = dict(bundle.columns("feature"))
    names = ["French text", "the token ' se' in Spanish text", "Arabic script (top: ' >=')", "words"]
    cols["label"] = np.array([names[i % len(names)] for i in range(len(cols["label"]))], dtype=object)
    model = UnitTableModel()
    model.set_table(UnitTable.from_columns("feature", cols, list(bundle.tokenizer().vocab_strings())))
    for query, want in (("french", 0), ("Spanish", 1), ("arabic", 2)):
        model.set_filter(UnitFilter(text=query, hide_dead=False))
        shown = set(_shown(model))
        assert {i for i in range(len(cols["label"])) if i % len(names) == want} <= shown, query
