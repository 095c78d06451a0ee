"""The family panes: the feature map and the splitting tree, alone and inside the window."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bundle import open_bundle
from engine.bundle.family import FamilyTree
from engine.testing.synthetic_family import write_synthetic_family
from superpos_app.panes.feature_map import FeatureMapPane
from superpos_app.panes.splitting import SplittingPane
from superpos_app.selection import Selection


@pytest.fixture(scope="module")
def family_path(tmp_path_factory):
    return write_synthetic_family(tmp_path_factory.mktemp("family") / "family.h5", sizes=(16, 48, 144),
                                  n_neurons=24, n_tokens=5000)


@pytest.fixture
def family(family_path):
    with open_bundle(family_path) as b:
        yield b


def _pane(qtbot, cls):
    pane = cls(Selection())
    qtbot.addWidget(pane)
    pane.resize(700, 500)
    pane.show()
    return pane


def test_map_shows_every_dictionary_and_clicks_open_the_nearest_feature(qtbot, family):
    pane = _pane(qtbot, FeatureMapPane)
    pane.set_bundle(family)
    assert len(pane.scatters) == 3
    assert [len(s) for s in pane.scatters] == [16, 48, 144]
    assert "PCA" in pane.note.text() and "umap-learn" in pane.note.text()     # the fallback is stated
    assert "A/2 (144)" in pane.legend.text()
    xy, member, unit, _ = family.feature_map()
    row = 100
    assert pane.nearest(float(xy[row, 0]), float(xy[row, 1]), radius=1e-9) == row
    with qtbot.waitSignal(pane.openFeature) as sig:
        pane.open_row(row)
    assert sig.args == [int(member[row]), int(unit[row])]
    assert pane.label_of(2, 5) == open_bundle(family.path, 2).column("feature", "labels", 5)
    # region selection lists exactly the points inside
    pane.region_box.setChecked(True)
    x0, y0 = np.percentile(xy, 30, axis=0)
    x1, y1 = np.percentile(xy, 70, axis=0)
    rows = pane.rows_in(x0, y0, x1, y1)
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    assert set(rows.tolist()) == set(np.flatnonzero(inside).tolist())
    pane.list_rows(rows)
    assert pane.listed.count() == len(rows) + 1
    with qtbot.waitSignal(pane.openFeature):
        pane._on_listed(pane.listed.item(1))
    pane.set_bundle(None)
    assert pane.scatters == [] and pane.note.text() == ""


def test_map_of_a_one_dictionary_bundle_says_how_to_make_a_family(qtbot, tiny_bundle):
    pane = _pane(qtbot, FeatureMapPane)
    with open_bundle(tiny_bundle) as b:
        pane.set_bundle(b)
        assert pane.scatters == [] and "--d-sae 512,4096,16384" in pane.note.text()


def test_splitting_tree_shows_ancestors_and_children_and_navigates(qtbot, family, family_path):
    tree = FamilyTree(family)
    parent = next(f for f in range(16) if len(tree.children(0, f)) >= 2)
    pane = _pane(qtbot, SplittingPane)
    pane.set_bundle(family)
    pane.selection.select("feature", parent)
    root = pane.tree.topLevelItem(0)
    assert root.data(0, 0x0100) == (0, parent)
    kids = [root.child(i).data(0, 0x0100) for i in range(root.childCount())]
    assert kids == [(1, g) for g, _ in tree.children(0, parent)]
    cos = [float(root.child(i).text(2)) for i in range(root.childCount())]
    assert cos == sorted(cos, reverse=True)
    assert root.child(0).text(5) == open_bundle(family_path, 1).column("feature", "labels", kids[0][1])
    with qtbot.waitSignal(pane.openFeature) as sig:
        pane._on_activated(root.child(0))
    assert sig.args == [1, kids[0][1]]

    # seen from dictionary 2: the chain up to dictionary 0 is the tree's spine
    with open_bundle(family_path, 2) as big:
        pane.set_bundle(big)
        g = 7
        p1 = tree.parent(2, g)[0]
        p0 = tree.parent(1, p1)[0]
        pane.selection.select("feature", g)
        top = pane.tree.topLevelItem(0)
        assert top.data(0, 0x0100) == (0, p0)
        mid = next(top.child(i) for i in range(top.childCount()) if top.child(i).data(0, 0x0100) == (1, p1))
        assert any(mid.child(i).data(0, 0x0100) == (2, g) for i in range(mid.childCount()))
        assert pane.tree.currentItem().data(0, 0x0100) == (2, g)
        pane.set_bundle(None)


def test_window_opens_a_feature_of_another_dictionary(qtbot, app_settings, family_path):
    from superpos_app import create_window

    win = create_window(settings=app_settings)
    qtbot.addWidget(win)
    win.show()
    try:
        assert win.open_bundle(family_path)
        fmap, detail = win.pane("featureMap"), win.pane("featureDetail")
        assert fmap.bundle is win.bundle and len(fmap.scatters) == 3
        fmap.openFeature.emit(2, 11)
        assert win.bundle.dictionary == 2 and win.bundle.n_features == 144
        assert win.selection.current == ("feature", 11) and detail.dashboard.index == 11
        assert detail.bundle is win.bundle
        fmap.openFeature.emit(0, 3)
        assert win.bundle.dictionary == 0 and detail.dashboard.index == 3
    finally:
        win.close_bundle()
        win.pane("textLens").shutdown()


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    return write_synthetic_family(tmp_path_factory.mktemp("seeds") / "seeds.h5", sizes=(16, 48), n_neurons=24,
                                  n_tokens=5000, second_seed=True)


def test_universality_shows_the_best_match_and_both_populations(qtbot, two_seeds, family):
    from superpos_app.panes.universality import BINS, UniversalityPane, best_match_histogram

    pane = _pane(qtbot, UniversalityPane)
    pane.set_bundle(family)                       # one model: says how to get two
    assert "--model-seeds 0,1" in pane.note.text() and pane.other is None
    with open_bundle(two_seeds) as b:
        pane.set_bundle(b)
        assert pane.other_index == 2 and pane.other.dictionary == 2
        ids, values = b.matches(0, 2, "corr")
        n_ids, n_values = b.neuron_matches(0, 1)
        hist, med = best_match_histogram(values)
        _, y = pane.feature_curve.getData()
        np.testing.assert_allclose(y, hist)
        assert hist.sum() == pytest.approx(1.0) and len(y) == len(BINS) - 1
        assert f"features {med:.2f}" in pane.note.text()
        assert f"neurons {np.median(n_values[:, 0]):.2f}" in pane.note.text()
        f = int(np.flatnonzero(ids[:, 0] >= 0)[0])
        pane.selection.select("feature", f)
        assert pane.match == ("feature", int(ids[f, 0]), pytest.approx(float(values[f, 0])))
        assert pane.detail.dashboard.index == ids[f, 0] and pane.detail.bundle is pane.other
        assert "B/0" in pane.match_label.text()
        _, logit = b.matches(0, 2, "logit")
        assert f"logit weights {logit[f, 0]:.2f}" in pane.match_label.text()
        l_hist, l_med = best_match_histogram(logit)
        np.testing.assert_allclose(pane.logit_curve.getData()[1], l_hist)
        assert f"the logit weights of those matches {l_med:.2f}" in pane.note.text()
        with qtbot.waitSignal(pane.openFeature) as sig:
            pane.open_button.click()
        assert sig.args == [2, int(ids[f, 0])]
        pane.selection.select("neuron", 4)
        assert pane.match[0] == "neuron" and pane.match[1] == n_ids[4, 0]
        pane.set_bundle(None)
        assert pane.other is None


def test_family_panes_appear_only_for_a_bundle_that_holds_a_family(qtbot, app_settings, family_path, tiny_bundle):
    from superpos_app import create_window

    family_docks = ("featureMap", "splitting", "universality")
    win = create_window(settings=app_settings)
    qtbot.addWidget(win)
    win.show()
    try:
        assert win.open_bundle(tiny_bundle)                  # one dictionary: no family tabs, no toggles
        for name in family_docks:
            assert win.docks[name].isHidden() and not win.docks[name].toggleViewAction().isVisible(), name
        assert win.docks["featureDetail"].isVisible()
        win.reset_layout()
        assert all(win.docks[name].isHidden() for name in family_docks)
        assert win.open_bundle(family_path)                  # a family: they come back
        for name in family_docks:
            assert not win.docks[name].isHidden() and win.docks[name].toggleViewAction().isVisible(), name
        assert win.open_bundle(tiny_bundle)
        assert all(win.docks[name].isHidden() for name in family_docks)
    finally:
        win.close_bundle()
        win.pane("textLens").shutdown()
