"""Feature detail and neuron-vs-feature panes: every plot shows the selected unit's bundle data;
links select units; the histogram band filters examples; JSON export; plot export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtGui import QGuiApplication

from engine.bundle import open_bundle
from engine.analysis.weights import max_abs_cosine
from superpos_app.panes.compare import NeuronComparePane
from superpos_app.panes.detail import FeatureDetailPane
from superpos_app.widgets.plots import export_plot
from superpos_app.selection import Selection


@pytest.fixture
def bundle(tiny_bundle):
    with open_bundle(tiny_bundle) as b:
        yield b


@pytest.fixture
def panes(qtbot, bundle):
    sel = Selection()
    detail, compare = FeatureDetailPane(sel), NeuronComparePane(sel)
    for p in (detail, compare):
        qtbot.addWidget(p)
        p.resize(900, 800)
        p.show()
        p.set_bundle(bundle)
    qtbot.waitUntil(lambda: compare.max_cos is not None, timeout=5000)     # computed off the GUI thread
    return sel, detail, compare


def _bars(item):
    return np.asarray(item.opts["x0"]), np.asarray(item.opts["x1"]), np.asarray(item.opts["height"])


def _live_feature(bundle):
    cols = bundle.columns("feature")
    return int(np.flatnonzero(cols["density"] > 0)[3])


def test_selecting_a_feature_fills_every_plot(panes, bundle):
    sel, detail, compare = panes
    i = _live_feature(bundle)
    sel.select("feature", i)
    dash = bundle.dashboard("feature", i)
    tok = bundle.tokenizer()

    x0, x1, h = _bars(detail.act_hist_item)
    np.testing.assert_array_equal(h, dash.act_hist)
    np.testing.assert_allclose(x0, dash.act_hist_edges[:-1])
    np.testing.assert_allclose(x1, dash.act_hist_edges[1:])
    x0, _, h = _bars(detail.logit_hist_item)
    np.testing.assert_array_equal(h, dash.logit_hist)
    np.testing.assert_allclose(x0, dash.logit_hist_edges[:-1])
    assert f"Feature {i}" in detail.title.text() and dash.label in detail.title.text()
    assert f"{dash.max_act:.3g}" in detail.stats.text()
    import html

    from superpos_app.plain_text import display_token
    shown = tok.readable_strings()                        # as the pane shows tokens: bytes as ⟨0xCD⟩
    for tid in dash.logit_top_ids[:3]:
        assert html.escape(display_token(shown[int(tid)])) in detail.pos_label.text()
    for nid in dash.align_ids:
        assert f'href="neuron:{int(nid)}"' in detail.align_label.text()
    for nid in dash.corr_ids:
        assert f'href="neuron:{int(nid)}"' in detail.corr_label.text()
    # examples: the first example line is the top example, shaded by its stored activations
    c = dash.top_center
    lines = [k for k in range(detail.examples.n_lines()) if detail.examples.line_tokens(k)]
    first = lines[0]
    keep = dash.top_tokens[0] >= 0
    assert detail.examples.line_tokens(first) == [shown[int(t)] for t in dash.top_tokens[0][keep]]
    np.testing.assert_allclose(detail.examples.line_values(first), dash.top_acts[0][keep])
    n_examples = int((dash.top_tokens[:, c] >= 0).sum() + (dash.interval_tokens[:, :, c] >= 0).sum())
    assert len(lines) == n_examples
    assert detail.examples.token_color(first, int(keep[:c].sum())).alpha() > 0

    # compare pane: sorted decoder row, scatter on the stored sample, population markers
    w = bundle.decoder_rows(i)
    _, _, h = _bars(compare.weights_item)
    np.testing.assert_allclose(h, np.sort(w)[::-1], rtol=1e-6)
    best = int(dash.corr_ids[0])
    S_acts = bundle.sample_neurons()[1]
    idx, vals = bundle.sample_feature(i)
    dense = np.zeros(S_acts.shape[0], np.float32)
    dense[idx] = vals
    x, y = compare.scatter_item.getData()
    np.testing.assert_allclose(x, S_acts[:, best])
    np.testing.assert_allclose(y, dense)
    mc = max_abs_cosine(bundle.decoder_rows(slice(None)))
    assert compare.cos_marker.isVisible() and compare.cos_marker.value() == pytest.approx(float(mc[i]), rel=1e-5)
    assert compare.score_marker.value() == pytest.approx(dash.score)
    fx, fy = compare.cos_feature_curve.getData()
    assert fy.sum() == pytest.approx(1.0, abs=1e-6)
    sx, sy = compare.score_neuron_curve.getData()
    assert sy.sum() == pytest.approx(1.0, abs=1e-6)
    assert f'href="neuron:{best}"' in compare.links.text()


def test_clicking_a_neuron_link_opens_the_neuron(panes, bundle, qtbot):
    sel, detail, compare = panes
    i = _live_feature(bundle)
    sel.select("feature", i)
    nid = int(bundle.dashboard("feature", i).corr_ids[0])
    detail.corr_label.linkActivated.emit(f"neuron:{nid}")
    assert sel.current == ("neuron", nid)
    ndash = bundle.dashboard("neuron", nid)
    assert detail.dashboard.kind == "neuron" and detail.dashboard.index == nid
    assert detail.title.text().startswith(f"Neuron {nid}")
    np.testing.assert_array_equal(_bars(detail.act_hist_item)[2], ndash.act_hist)
    for fid in ndash.align_ids:                     # a neuron's links point to features
        assert f'href="feature:{int(fid)}"' in detail.align_label.text()
    assert compare.unit == ("neuron", nid)
    _, _, h = _bars(compare.weights_item)
    np.testing.assert_allclose(h, np.sort(ndash.align_values)[::-1])
    # the compare pane's links work too, and back returns to the feature
    fid = int(ndash.align_ids[0])
    compare.links.linkActivated.emit(f"feature:{fid}")
    assert sel.current == ("feature", fid) and detail.dashboard.index == fid
    sel.back()
    sel.back()
    assert sel.current == ("feature", i) and detail.dashboard.index == i


def test_histogram_band_filters_examples(panes, bundle):
    sel, detail, _ = panes
    i = _live_feature(bundle)
    sel.select("feature", i)
    dash = detail.dashboard
    lo, hi = 0.3 * dash.max_act, 0.6 * dash.max_act
    detail.set_region(lo, hi)
    found = dash.examples_in_range(lo, hi)
    c = dash.top_center
    assert detail.examples.n_lines() == min(len(found), 40)
    for k in range(detail.examples.n_lines()):
        vals = detail.examples.line_values(k)
        assert lo < found[k][1][c] <= hi
        np.testing.assert_allclose(vals, found[k][1][found[k][0] >= 0])
    assert f"({lo:.2f}, {hi:.2f}]" in detail.examples_title.text()
    detail.set_region(0, dash.max_act)                 # full range: all sections again
    assert detail.examples.n_lines() > len(found) or detail.examples.line_tokens(0) == []


def test_copy_json_has_neuronpedia_fields(panes, bundle):
    sel, detail, _ = panes
    i = _live_feature(bundle)
    sel.select("feature", i)
    text = detail.copy_json()
    assert QGuiApplication.clipboard().text() == text
    data = json.loads(text)
    dash = bundle.dashboard("feature", i)
    assert data["feature_index"] == i
    assert data["neuron_alignment_indices"] == [int(v) for v in dash.align_ids]
    assert data["correlated_neurons_indices"] == [int(v) for v in dash.corr_ids]
    assert data["frac_nonzero"] == pytest.approx(dash.density)
    assert data["freq_hist_data_bar_heights"] == [int(v) for v in dash.act_hist]
    assert len(data["pos_str"]) == len(dash.logit_top_ids)
    act = data["activations"][0]
    assert {"tokens", "values", "bin_min", "bin_max", "qualifying_token_index"} <= set(act)
    assert act["values"][act["qualifying_token_index"]] == pytest.approx(float(dash.top_acts[0, dash.top_center]))


def test_plots_export_as_png_and_svg(panes, bundle, tmp_path):
    sel, detail, compare = panes
    sel.select("feature", _live_feature(bundle))
    png = export_plot(detail.act_plot, tmp_path / "hist.png")
    svg = export_plot(compare.cos_plot, tmp_path / "cos.svg")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(ValueError, match="png or .svg"):
        export_plot(detail.act_plot, tmp_path / "x.pdf")
    assert set(detail.export_button.plots) == {"Activation histogram", "Logit histogram"}


def test_population_view_waits_until_the_pane_is_shown(qtbot, bundle):
    sel = Selection()
    compare = NeuronComparePane(sel)
    qtbot.addWidget(compare)
    compare.set_bundle(bundle)                  # hidden (a background tab): nothing read yet
    assert compare.max_cos is None
    sel.select("feature", 1)
    compare.show()
    qtbot.waitUntil(lambda: compare.max_cos is not None, timeout=5000)
    assert compare.max_cos.shape == (bundle.n_features,)
    assert compare.cos_marker.value() == pytest.approx(float(compare.max_cos[1]))


def test_clicking_the_cosine_histogram_opens_a_feature_from_that_bin(panes, bundle):
    sel, _, compare = panes
    sel.select("feature", _live_feature(bundle))
    mc = compare.max_cos
    target = int(np.argmax(mc))                        # the most neuron-like feature's bin
    edges = compare.cos_edges
    b = int(np.searchsorted(edges, mc[target], side="right")) - 1
    b = min(b, edges.size - 2)
    unit = compare.feature_near_cosine(float((edges[b] + edges[b + 1]) / 2))
    assert unit is not None and edges[b] <= mc[unit] <= edges[b + 1]
    assert compare.feature_near_cosine(-5.0) is None
    # a real click in the plot's view box goes through the same path
    from PySide6.QtCore import QPoint, QPointF, Qt

    sel.select("feature", (unit + 1) % bundle.n_features)
    assert sel.current != ("feature", unit)
    vb = compare.cos_plot.getPlotItem().vb
    scene_pt = vb.mapViewToScene(QPointF(float((edges[b] + edges[b + 1]) / 2), 0.0))
    widget_pt = compare.cos_plot.mapFromScene(scene_pt)
    from PySide6.QtTest import QTest
    QTest.mouseClick(compare.cos_plot.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(int(widget_pt.x()), int(widget_pt.y()) - 2))
    assert sel.current == ("feature", unit)
