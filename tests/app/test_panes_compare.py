"""The compare pane's population view: max |cos| is computed on the app's worker, never on the GUI
thread; a result for a bundle no longer shown is dropped; SUPERPOS_SYNC_JOBS=1 computes it inline."""

from __future__ import annotations

import numpy as np
import pytest

from engine.bundle import open_bundle
from engine.analysis.weights import max_abs_cosine
from superpos_app.panes.compare import NeuronComparePane
from superpos_app.selection import Selection


@pytest.fixture
def bundle(tiny_bundle):
    with open_bundle(tiny_bundle) as b:
        yield b


def _shown_pane(qtbot, **kwargs):
    pane = NeuronComparePane(Selection(), **kwargs)
    qtbot.addWidget(pane)
    pane.show()
    return pane


def test_population_is_computed_off_the_gui_thread(qtbot, bundle):
    pane = _shown_pane(qtbot)
    pane.set_bundle(bundle)
    assert pane.max_cos is None and "computing" in pane.population_note.text()   # set_bundle did not wait
    qtbot.waitUntil(lambda: pane.max_cos is not None, timeout=5000)
    np.testing.assert_allclose(pane.max_cos, max_abs_cosine(bundle.decoder_rows(slice(None))), rtol=1e-6)
    assert pane.random_max_cos.shape == (4096,)
    assert "median max |cos| to a neuron" in pane.population_note.text()
    assert "computing" not in pane.population_note.text()
    _, fy = pane.cos_feature_curve.getData()
    assert fy.sum() == pytest.approx(1.0, abs=1e-6)


def test_a_result_for_a_bundle_no_longer_shown_is_dropped(qtbot, bundle):
    pane = _shown_pane(qtbot)
    pane.set_bundle(bundle)
    assert pane.population_runner.busy                  # computing on the worker
    pane.set_bundle(None)
    assert pane.population_runner.wait_idle()           # the job for the old bundle has ended
    assert pane.max_cos is None and pane.population_note.text() == ""


def test_the_environment_switch_computes_it_inline(qtbot, bundle, monkeypatch):
    monkeypatch.setenv("SUPERPOS_SYNC_JOBS", "1")
    pane = _shown_pane(qtbot)
    pane.set_bundle(bundle)
    assert pane.max_cos is not None and pane.max_cos.shape == (bundle.n_features,)


def _densest_feature(bundle) -> int:
    cols = bundle.columns("feature")
    return int(np.argmax(np.asarray(cols["density"])))             # the densest: active on the sample


def test_the_scatter_title_and_the_list_beside_it_agree(qtbot, bundle):
    """The title gives r on the sample next to the stored r, which is the number the list shows."""
    pane = _shown_pane(qtbot)
    pane.set_bundle(bundle)
    i = _densest_feature(bundle)
    pane.show_unit("feature", i)
    dash = bundle.dashboard("feature", i)
    best, stored = int(dash.corr_ids[0]), float(dash.corr_values[0])
    title = pane.scatter_plot.title()
    x, y = pane.scatter_xy
    assert title.startswith(f"r = {np.corrcoef(x, y)[0, 1]:+.2f} on the sample · {stored:+.2f} over the harvest")
    assert f"neuron {best}, {x.size:,} sample tokens" in title
    assert f"r={stored:+.2f}" in pane.links.text()
    assert not pane.sample_note.isVisibleTo(pane)                  # the sample is random contexts (schema 5)


def test_an_old_first_tokens_sample_is_named_in_one_line(qtbot, tiny_bundle, tmp_path):
    """A bundle without /sample/context_starts (schema <= 4) has the first tokens as its sample: said."""
    import shutil

    import h5py

    old = tmp_path / "old.h5"
    shutil.copy(tiny_bundle, old)
    with h5py.File(old, "r+") as f:
        del f["sample/context_starts"]
    pane = _shown_pane(qtbot)
    with open_bundle(old) as b:
        pane.set_bundle(b)
        pane.show_unit("feature", _densest_feature(b))
        S = b.sample_neurons()[0].size
        assert pane.sample_note.isVisibleTo(pane)
        assert pane.sample_note.text() == (f"sample: the first {S:,} harvest tokens (schema 4), correlations on "
                                           "it may differ from the stored r")
        pane.set_bundle(None)
    assert not pane.sample_note.isVisibleTo(pane)
