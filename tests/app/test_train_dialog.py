"""The Train dialog: presets fill the form, bad input is refused inline, a run streams curves and
opens its bundle, and a cancelled run stops promptly and resumes from its checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog, QLabel

from engine.config import preset, preset_names


@pytest.fixture
def dialog(window):
    window.train_action.trigger()
    dlg = window.findChild(QDialog, "trainDialog")
    assert dlg is not None and dlg.isVisible()
    return dlg


def test_presets_fill_the_form(dialog):
    assert [dialog.preset_combo.itemData(i) for i in range(dialog.preset_combo.count())] == preset_names()
    dialog.load_preset("tiny")
    tiny = preset("tiny")
    assert dialog.d_mlp.value() == tiny.model.d_mlp
    assert dialog.vocab_size.value() == tiny.tokenizer.vocab_size
    assert dialog.d_sae.value() == tiny.sae.d_sae and dialog.k.value() == tiny.sae.k
    assert dialog.tokens.value() == tiny.train.tokens
    assert dialog.harvest_tokens.value() == tiny.harvest.n_tokens
    assert dialog.preset_note.text()


def test_form_builds_the_run_config(dialog, tmp_path):
    dialog.load_preset("tiny")
    dialog.d_sae.setValue(512)
    dialog.k.setValue(12)
    dialog.tokens.setValue(50_000)
    cfg = dialog.build_config()
    assert cfg.name == "tiny" and cfg.sae.d_sae == 512 and cfg.sae.k == 12 and cfg.train.tokens == 50_000
    assert cfg.model.n_heads == preset("tiny").model.n_heads           # untouched settings keep the preset's
    dialog.recipe.setCurrentIndex(dialog.recipe.findData("2023"))
    assert dialog.l1.isVisibleTo(dialog) and not dialog.k.isVisibleTo(dialog)
    dialog.l1.setValue(3.5)
    cfg = dialog.build_config()
    assert cfg.sae.recipe == "2023" and cfg.sae.l1_coeff == 3.5
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"text": "hello"}\n')
    dialog.set_corpus(str(corpus))
    assert dialog.corpus_kind.currentData() == "jsonl"
    assert dialog.build_config().corpus.spec == str(corpus)
    dialog.corpus_kind.setCurrentIndex(dialog.corpus_kind.findData("hf"))
    dialog.corpus_edit.setText("roneneldan/TinyStories")
    assert dialog.build_config().corpus.spec == "hf:roneneldan/TinyStories"


@pytest.mark.parametrize("kind, text, expected", [
    ("file", "/no/such/corpus.txt", "does not exist"),
    ("folder", "/no/such/folder", "does not exist"),
    ("file", "", "Choose"),
    ("hf", "two words", "not a Hugging Face dataset name"),
])
def test_bad_corpus_is_refused_inline(dialog, fake_pipeline, kind, text, expected):
    dialog.corpus_kind.setCurrentIndex(dialog.corpus_kind.findData(kind))
    dialog.corpus_edit.setText(text)
    assert dialog.start() is False
    message = dialog.findChild(QLabel, "validationMessage")
    assert message.isVisible() and expected in message.text()
    assert not dialog.jobs.is_busy and fake_pipeline.calls == []


def test_bad_sizes_are_refused_inline(dialog, fake_pipeline, tmp_path):
    dialog.load_preset("tiny")
    dialog.set_output(str(tmp_path / "out.h5"))
    dialog.d_sae.setValue(16)
    dialog.k.setValue(64)                          # k > dictionary size
    assert dialog.start() is False
    assert "k must be between" in dialog.message.text()
    dialog.k.setValue(8)
    dialog.d_model.setValue(33)                    # not divisible by the heads
    assert dialog.start() is False and "d_model" in dialog.message.text()
    dialog.output_edit.setText("")
    dialog.d_model.setValue(32)
    assert dialog.start() is False and "where to write" in dialog.message.text()
    assert fake_pipeline.calls == []


def test_training_run_streams_curves_and_opens_the_bundle(window, dialog, fake_pipeline, tmp_path, qtbot):
    from superpos_app.settings import AppSettings
    from superpos_app.train_dialog import TrainDialog

    dialog.load_preset("tiny")
    dialog.d_sae.setValue(384)
    out = tmp_path / "runs" / "mine.h5"
    dialog.set_output(str(out))
    with qtbot.waitSignal(window.bundleOpened, timeout=15000):
        assert dialog.start()
        assert not dialog.start_button.isEnabled()
        assert window.job_box.isVisible()
    assert out.exists()
    assert Path(str(window.bundle.path)).resolve() == out.resolve()
    assert window.settings.recent_files()[0] == str(out.resolve())
    curves = dialog.curves
    for name in ("model/train_loss", "model/val_loss", "sae/mse", "sae/l0", "sae/dead_fraction"):
        assert curves.point_count(name) > 0, name
    assert curves.point_count("model/train_loss") <= fake_pipeline.steps
    assert "Finished" in dialog.state_label.text() and dialog.start_button.isEnabled()
    call = fake_pipeline.calls[-1]
    assert call["cfg"].sae.d_sae == 384 and call["resume"] is False
    assert "[1/3] model" in dialog.log.toPlainText()
    # the setup is remembered for next time
    saved = AppSettings(window.settings.path).last_training()
    assert saved["config"]["sae"]["d_sae"] == 384 and saved["output"] == str(out)
    again = TrainDialog(window.jobs, window.settings)
    qtbot.addWidget(again)
    assert again.d_sae.value() == 384
    assert again.output_edit.text() != str(out)             # a fresh name: never overwrite by default


def test_existing_output_is_replaced_only_when_confirmed(dialog, fake_pipeline, tmp_path, monkeypatch, qtbot):
    from PySide6.QtWidgets import QMessageBox

    out = tmp_path / "kept.h5"
    out.write_bytes(b"a bundle the user keeps")
    dialog.load_preset("tiny")
    dialog.set_output(str(out))
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Cancel)
    assert dialog.start() is False
    assert asked and fake_pipeline.calls == [] and out.read_bytes() == b"a bundle the user keeps"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(dialog.bundleReady, timeout=15000):
        assert dialog.start()
    assert out.read_bytes() != b"a bundle the user keeps"


def test_cancelled_run_stops_promptly_and_resumes(window, dialog, fake_pipeline, tmp_path, qtbot):
    fake_pipeline.steps, fake_pipeline.step_s = 100, 0.02
    dialog.load_preset("tiny")
    dialog.set_output(str(tmp_path / "resumable.h5"))
    assert not dialog.resume_check.isEnabled()          # nothing to resume yet
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.curves.point_count("model/train_loss") > 10, timeout=10000)
    t0 = time.perf_counter()
    with qtbot.waitSignal(window.jobs.jobCancelled, timeout=3000):
        window.cancel_button.click()
    assert time.perf_counter() - t0 < 1.0
    assert window.bundle is None and "Cancelled" in dialog.state_label.text()
    assert dialog.resume_check.isEnabled() and dialog.resume_check.isChecked()
    stopped_at = len(fake_pipeline.calls)

    fake_pipeline.step_s = 0.0005
    with qtbot.waitSignal(window.bundleOpened, timeout=20000):
        assert dialog.start()
    call = fake_pipeline.calls[stopped_at]
    assert call["resume"] is True and call["start"] > 10   # continued from the checkpoint
    assert window.bundle is not None


def test_real_tiny_pipeline_from_the_dialog(window, dialog, tmp_path, qtbot):
    """The real engine pipeline (tiny preset, budgets cut further) runs from the dialog to an open bundle."""
    pytest.importorskip("engine.pipeline")
    dialog.load_preset("tiny")
    dialog.tokens.setValue(16_384)
    dialog.sae_acts.setValue(16_384)
    dialog.harvest_tokens.setValue(4_096)
    out = tmp_path / "real-tiny.h5"
    dialog.set_output(str(out))
    with qtbot.waitSignal(window.bundleOpened, timeout=240_000):
        assert dialog.start()
    assert window.bundle is not None and Path(str(window.bundle.path)).resolve() == out.resolve()
    assert dialog.curves.point_count("model/train_loss") > 0
    assert dialog.curves.point_count("sae/mse") > 0
    assert window.overview.findChild(QLabel, "metric_loss_recovered").text().endswith("%")
