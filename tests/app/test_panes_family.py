"""The family panes: the feature map and the splitting tree, alone and inside the window."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bundle import open_bundle
from engine.analysis.family_report import SplitChildren, splits
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
    assert "8 minutes" in pane.note.toolTip() and "superpos[map]" in pane.note.toolTip()     # and why
    assert pane.legend_boxes[2].text() == "A/2 (144)"
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
    parent = next(f for f in range(16) if len(SplitChildren(family).children(0, f)) >= 2)
    pane = _pane(qtbot, SplittingPane)
    pane.set_bundle(family)
    pane.selection.select("feature", parent)
    root = pane.tree.topLevelItem(0)
    assert root.data(0, 0x0100) == (0, parent)
    kids = [root.child(i).data(0, 0x0100) for i in range(root.childCount())]
    assert kids == [(1, c.feature) for c in pane.rule.children(0, parent)]
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
        assert pane.own.dashboard.index == f and pane.own.bundle is b          # the pair side by side
        assert "A/0 feature" in pane.own_label.text()
        assert "activation correlation" in pane.match_label.text()
        with qtbot.waitSignal(pane.openFeature) as sig:
            pane.open_button.click()
        assert sig.args == [2, int(ids[f, 0])]
        pane.selection.select("neuron", 4)
        assert pane.match[0] == "neuron" and pane.match[1] == n_ids[4, 0]
        pane.set_bundle(None)
        assert pane.other is None


def _geometry(win):
    return (win.size().toTuple(), {name: dock.geometry().getRect() for name, dock in win.docks.items()
                                   if dock.isVisible()})


def test_switching_dictionaries_keeps_the_layout_names_the_dictionary_and_raises_the_detail(
        qtbot, app_settings, family_path):
    """The toolbar's combo switches dictionary in place: the window's size and every dock's geometry
    are what they were; the title, status bar and every pane header name the active dictionary; a
    feature chosen on the map opens in a raised Feature Detail and is ringed with its split parent
    and children; View › Splitting brings its tab to the front."""
    from superpos_app import create_window

    win = create_window(settings=app_settings)
    qtbot.addWidget(win)
    win.resize(1280, 820)
    win.show()
    try:
        assert win.open_bundle(family_path)
        qtbot.wait_until(lambda: win.docks["featureMap"].isVisible())
        assert win.width() <= 1280           # no pane (e.g. the map's legend) widens the window
        bar = win.dictionary_bar
        assert bar.isVisible() and bar.combo.count() == 3
        assert bar.combo.itemText(1) == "A/1 · 48 features · seed 0"
        assert "[A/0]" in win.windowTitle() and "A/0: 16 features" in win.bundle_label.text()
        assert win.docks["featureDetail"].windowTitle() == "Feature Detail · A/0"
        before = _geometry(win)
        bar.combo.activated.emit(1)                     # what choosing an entry does
        assert win.bundle.dictionary == 1 and win.pane("featureDetail").bundle is win.bundle
        assert _geometry(win) == before
        assert "[A/1]" in win.windowTitle() and "A/1: 48 features" in win.bundle_label.text()
        assert all(dock.windowTitle().endswith("· A/1") for dock in win.docks.values())
        assert win.docks["splitting"].toggleViewAction().text() == "Splitting"

        splitting_dock = win.docks["splitting"]
        splitting_dock.toggleViewAction().trigger()      # hide, then show again from the View menu: raised
        splitting_dock.toggleViewAction().trigger()
        qtbot.wait_until(lambda: not win.pane("splitting").visibleRegion().isEmpty())
        assert win.pane("featureDetail").visibleRegion().isEmpty()

        fmap, detail = win.pane("featureMap"), win.pane("featureDetail")
        rule = SplitChildren(win.bundle)
        g = next(f for f in range(48) if rule.children(1, f) and rule.tree.parent(1, f) is not None)
        fmap.openFeature.emit(1, g)
        assert _geometry(win)[0] == before[0]
        qtbot.wait_until(lambda: not detail.visibleRegion().isEmpty())      # Feature Detail raised
        assert detail.dashboard.index == g
        assert fmap.highlighted[0] == (1, g) and fmap.highlighted[1] == (0, rule.tree.parent(1, g)[0])
        assert fmap.highlighted[2:] == [(2, c.feature) for c in rule.children(1, g)]
        assert len(fmap.rings.data) == len(fmap.highlighted)
        fmap.openFeature.emit(2, 5)                     # a feature of another size: switched, same layout
        assert win.bundle.dictionary == 2 and bar.combo.currentIndex() == 2 and detail.dashboard.index == 5
        assert _geometry(win)[0] == before[0]
        win.reset_layout()
        win.docks["featureMap"].raise_()
        qtbot.wait_until(lambda: fmap.plot.isVisible())
        assert fmap.plot.height() >= 200                  # after Reset Layout the map is usable
    finally:
        win.close_bundle()
        win.pane("textLens").shutdown()


def test_map_legend_hides_a_dictionary_and_clicks_work_with_the_region_on(qtbot, family):
    from PySide6.QtCore import QPoint, Qt

    pane = _pane(qtbot, FeatureMapPane)
    pane.set_bundle(family)
    xy, member, unit, _ = family.feature_map()
    pane.region_box.setChecked(True)
    listed = pane.listed.count()
    assert listed > 1
    # a click on a point opens it although the region is on
    vb = pane.plot.getPlotItem().getViewBox()
    row = int(np.flatnonzero(member == 0)[0])
    scene = vb.mapViewToScene(pg_point(xy[row]))
    at = pane.plot.mapFromScene(scene)
    with qtbot.waitSignal(pane.openFeature, timeout=2000) as sig:
        qtbot.mouseClick(pane.plot.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(at.x(), at.y()))
    d, f = sig.args
    assert (d, f) in {(int(member[i]), int(unit[i])) for i in range(len(xy))
                      if np.hypot(*(xy[i] - xy[row])) <= 8 * max(vb.viewPixelSize())}
    # the legend hides a dictionary: its points are neither drawn, picked nor listed
    pane.legend_boxes[2].setChecked(False)
    assert not pane.scatter_of[2].isVisible()
    assert not (member[pane.rows_in(-1e9, -1e9, 1e9, 1e9)] == 2).any()
    assert pane.nearest(*map(float, xy[np.flatnonzero(member == 2)[0]]), radius=1e-9) in (None,) or \
        member[pane.nearest(*map(float, xy[np.flatnonzero(member == 2)[0]]), radius=1e-9)] != 2
    pane.legend_boxes[2].setChecked(True)
    # a new dictionary of the family (a switch): the region's list is filled again, its features first
    with open_bundle(family.path, 1) as b:
        pane.set_bundle(b)
        assert pane.region_box.isChecked() and pane.listed.count() > 1
        rows = [pane.listed.item(i).data(0x0100) for i in range(1, pane.listed.count())]
        kinds = [int(member[r]) == 1 for r in rows]
        assert kinds == sorted(kinds, reverse=True)       # the active dictionary's first
        pane.set_bundle(None)


def pg_point(p):
    from PySide6.QtCore import QPointF
    return QPointF(float(p[0]), float(p[1]))


def test_the_splitting_pane_lists_the_children_superpos_family_prints(qtbot, family):
    """One rule: the tree's children of a split's parent are the report's children of it."""
    found = splits(family, limit=5, min_cosine=0.0)
    pane = _pane(qtbot, SplittingPane)
    pane.set_bundle(family)
    pane.rule = SplitChildren(family, min_cosine=0.0)      # the same bar as the report asked for
    for split in found:
        if split.member != 0:
            continue
        pane.selection.select("feature", split.feature)
        root = pane.tree.topLevelItem(0)
        assert [root.child(i).data(0, 0x0100)[1] for i in range(root.childCount())] == \
            [g for g, _, _, _ in split.children]
    header = pane.tree.headerItem()
    assert "decoder cosine" in header.toolTip(2) and "activation correlation" in header.toolTip(3)
    assert "dec. cos = decoder cosine" in pane.legend.text()
    pane.set_bundle(None)


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
