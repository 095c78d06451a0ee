"""File > Analyse a Model and SAE…: the dialog refuses an incomplete form inline, runs the analysis of a
tiny TransformerLens-layout model and SAELens SAE as a job, and the window opens the bundle with its
panes (the lens included) working; a misfit SAE shows its one-line error in the dialog."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QDockWidget

from engine.testing.foreign import write_corpus, write_saelens_sae, write_tl_model


@pytest.fixture
def pair(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", n_chars=30_000)
    return corpus, write_tl_model(tmp_path / "gelu-1l", corpus), write_saelens_sae(tmp_path / "sae")


@pytest.fixture
def home(monkeypatch, tmp_path):
    """The analysis's caches in the test's folder (requested before the window is made)."""
    monkeypatch.setenv("SUPERPOS_HOME", str(tmp_path / "home"))


@pytest.fixture
def full_window(home, window_with_panes):
    window_with_panes.resize(1400, 900)
    return window_with_panes


def _fill(dlg, model, sae, corpus, out):
    dlg.model.edit.setText(str(model))
    dlg.sae.edit.setText(str(sae))
    dlg.corpus.set_spec(str(corpus))
    dlg.tokens.setValue(3000)
    dlg.output.edit.setText(str(out))


def test_analyse_flow_opens_a_working_bundle(qtbot, full_window, pair, tmp_path):
    corpus, model, sae = pair
    full_window.analyze_action.trigger()
    dlg = full_window.analyze_dialog
    assert dlg.isVisible()
    assert dlg.start() is False and "Choose a model" in dlg.error.text()
    out = tmp_path / "analysed.h5"
    _fill(dlg, model, sae, corpus, out)
    with qtbot.waitSignal(full_window.bundleOpened, timeout=60000):
        assert dlg.start()
    assert Path(str(full_window.bundle.path)).resolve() == out.resolve()
    assert not dlg.isVisible()
    assert full_window.bundle.model_config.act_fn == "gelu"
    docks = [d for d in full_window.findChildren(QDockWidget)]
    assert len(docks) >= 4
    qtbot.wait(300)                                           # panes fill themselves from the bundle
    full_window.selection.select("feature", 3)
    qtbot.wait(300)
    full_window.grab().save(str(tmp_path / "analysed.png"))


def test_a_misfit_sae_is_reported_in_the_dialog(qtbot, full_window, pair, tmp_path):
    corpus, model, _sae = pair
    wrong = write_saelens_sae(tmp_path / "wide", d_in=48)
    dlg = full_window.show_analyze_dialog()
    _fill(dlg, model, wrong, corpus, tmp_path / "x.h5")
    with qtbot.waitSignal(full_window.jobs.jobFailed, timeout=30000):
        assert dlg.start()
    assert "d_in is 48" in dlg.error.text() and full_window.bundle is None
    assert not (tmp_path / "x.h5").exists()
