"""The Train dialog: presets fill the form, bad input is refused inline, a run streams curves and
opens its bundle, and a cancelled run stops promptly and resumes from its checkpoint."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog, QLabel

from engine.config import preset, preset_names


@pytest.fixture(autouse=True)
def _private_home(monkeypatch, tmp_path):
    """Work folders are keyed by the settings: a test's runs must not offer another test's to resume."""
    monkeypatch.setenv("SUPERPOS_HOME", str(tmp_path / "home"))


@pytest.fixture
def dialog(window):
    window.train_action.trigger()
    dlg = window.findChild(QDialog, "trainDialog")
    assert dlg is not None and dlg.isVisible()
    return dlg


def test_presets_fill_the_form(dialog):
    assert [dialog.form.preset_combo.itemData(i) for i in range(dialog.form.preset_combo.count())] == preset_names()
    dialog.form.load_preset("tiny")
    tiny = preset("tiny")
    assert dialog.form.d_mlp.value() == tiny.model.d_mlp
    assert dialog.form.vocab_size.value() == tiny.tokenizer.vocab_size
    assert dialog.form.d_sae.value() == tiny.sae.d_sae and dialog.form.k.value() == tiny.sae.k
    assert dialog.form.tokens.value() == tiny.train.tokens
    assert dialog.form.harvest_tokens.value() == tiny.harvest.n_tokens
    assert dialog.form.preset_note.text()


def test_every_registered_recipe_is_offered_with_its_knob(dialog):
    from engine.config import SAE_RECIPE_INFO, SAE_RECIPES

    form = dialog.form
    form.load_preset("tiny")
    assert [form.recipe.itemData(i) for i in range(form.recipe.count())] == list(SAE_RECIPES)
    for recipe in SAE_RECIPES:
        form.recipe.setCurrentIndex(form.recipe.findData(recipe))
        knob = SAE_RECIPE_INFO[recipe].knob
        assert form.k.isVisibleTo(dialog) == (knob == "k"), recipe
        assert form.l1.isVisibleTo(dialog) == (knob in ("l1_coeff", "l0_coeff")), recipe
        assert form.recipe.currentText() == SAE_RECIPE_INFO[recipe].label
    form.recipe.setCurrentIndex(form.recipe.findData("jumprelu"))
    assert form.l1_label.text() == "Penalty λ (L0)" and form.l1.value() == preset("tiny").sae.l0_coeff
    form.l1.setValue(2.5)
    cfg = form.build_config()
    assert cfg.sae.recipe == "jumprelu" and cfg.sae.l0_coeff == 2.5 and cfg.sae.l1_coeff == preset("tiny").sae.l1_coeff
    form.recipe.setCurrentIndex(form.recipe.findData("matryoshka"))
    form.k.setValue(6)
    cfg = form.build_config()
    assert cfg.sae.recipe == "matryoshka" and cfg.sae.k == 6


def test_form_builds_the_run_config(dialog, tmp_path):
    dialog.form.load_preset("tiny")
    dialog.form.d_sae.setValue(512)
    dialog.form.k.setValue(12)
    dialog.form.tokens.setValue(50_000)
    cfg = dialog.form.build_config()
    assert cfg.name == "tiny" and cfg.sae.d_sae == 512 and cfg.sae.k == 12 and cfg.train.tokens == 50_000
    assert cfg.model.n_heads == preset("tiny").model.n_heads           # untouched settings keep the preset's
    dialog.form.recipe.setCurrentIndex(dialog.form.recipe.findData("2023"))
    assert dialog.form.l1.isVisibleTo(dialog) and not dialog.form.k.isVisibleTo(dialog)
    dialog.form.l1.setValue(3.5)
    cfg = dialog.form.build_config()
    assert cfg.sae.recipe == "2023" and cfg.sae.l1_coeff == 3.5
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"text": "hello"}\n')
    dialog.form.set_corpus(str(corpus))
    assert dialog.form.corpus.kind.currentData() == "jsonl"
    assert dialog.form.build_config().corpus.spec == str(corpus)
    dialog.form.corpus.kind.setCurrentIndex(dialog.form.corpus.kind.findData("hf"))
    dialog.form.corpus.edit.setText("roneneldan/TinyStories")
    assert dialog.form.build_config().corpus.spec == "hf:roneneldan/TinyStories"


@pytest.mark.parametrize("kind, text, expected", [
    ("file", "/no/such/corpus.txt", "does not exist"),
    ("folder", "/no/such/folder", "does not exist"),
    ("file", "", "Choose"),
    ("hf", "two words", "not a Hugging Face dataset name"),
])
def test_bad_corpus_is_refused_inline(dialog, fake_pipeline, kind, text, expected):
    dialog.form.corpus.kind.setCurrentIndex(dialog.form.corpus.kind.findData(kind))
    dialog.form.corpus.edit.setText(text)
    assert dialog.start() is False
    message = dialog.findChild(QLabel, "validationMessage")
    assert message.isVisible() and expected in message.text()
    assert not dialog.jobs.is_busy and fake_pipeline.calls == []


def test_the_family_fields_reach_the_run_and_bad_ones_are_refused(dialog, fake_pipeline, tmp_path, qtbot):
    form = dialog.form
    form.load_preset("demo-family")
    assert form.family_sizes.text() == "512, 2048, 4096" and form.model_seeds.text() == "0, 1"
    assert form.family() == {"family_sizes": (512, 2048, 4096), "model_seeds": (0, 1)}
    form.load_preset("tiny")
    assert form.family_sizes.text() == "" and form.model_seeds.text() == "" and form.family() == {}
    form.set_output(str(tmp_path / "fam.h5"))
    for field, text, expected in ((form.family_sizes, "64, x", "expected sizes"),
                                  (form.family_sizes, "64, 64", "distinct sizes"),
                                  (form.family_sizes, "32, 100000000", "sae.d_sae"),
                                  (form.model_seeds, "3", "two different non-negative seeds")):
        field.setText(text)
        assert dialog.start() is False and expected in dialog.message.text(), text
        field.setText("")
    assert fake_pipeline.calls == []
    form.family_sizes.setText("32,64")
    form.model_seeds.setText("0,1")
    assert form.build_config().sae.d_sae == 32           # the first size is the bundle's dictionary 0
    assert dialog.start() is True
    qtbot.waitUntil(lambda: not dialog.running, timeout=10_000)
    assert fake_pipeline.calls[0]["family"] == {"family_sizes": (32, 64), "model_seeds": (0, 1)}


def test_bad_sizes_are_refused_inline(dialog, fake_pipeline, tmp_path):
    dialog.form.load_preset("tiny")
    dialog.form.set_output(str(tmp_path / "out.h5"))
    dialog.form.d_sae.setValue(16)
    dialog.form.k.setValue(64)                          # k > dictionary size
    assert dialog.start() is False
    assert "sae.k must be an integer from 1 to sae.d_sae (16)" in dialog.message.text()
    dialog.form.k.setValue(8)
    dialog.form.vocab_size.setValue(100)                # below the byte-level BPE's 256 bytes + <eos>
    assert dialog.start() is False
    assert "tokenizer.vocab_size (BPE vocabulary size) must be an integer from 258" in dialog.message.text()
    assert dialog.form.focus_field("tokenizer.vocab_size") and not dialog.form.focus_field("train.seed")
    dialog.form.vocab_size.setValue(512)
    dialog.form.d_model.setValue(33)                    # not divisible by the heads
    assert dialog.start() is False and "d_model" in dialog.message.text()
    dialog.form.output_edit.setText("")
    dialog.form.d_model.setValue(32)
    assert dialog.start() is False and "where to write" in dialog.message.text()
    assert fake_pipeline.calls == []


def test_training_run_streams_curves_and_opens_the_bundle(window, dialog, fake_pipeline, tmp_path, qtbot):
    from superpos_app.settings import AppSettings
    from superpos_app.dialogs.train_dialog import TrainDialog

    dialog.form.load_preset("tiny")
    dialog.form.d_sae.setValue(384)
    out = tmp_path / "runs" / "mine.h5"
    dialog.form.set_output(str(out))
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
    assert not dialog.isVisible()
    call = fake_pipeline.calls[-1]
    assert call["cfg"].sae.d_sae == 384 and call["resume"] is False
    assert "[1/3] model" in dialog.log.toPlainText()
    # the setup is remembered for next time
    saved = AppSettings(window.settings.path).last_training()
    assert saved["config"]["sae"]["d_sae"] == 384 and saved["output"] == str(out)
    again = TrainDialog(window.jobs, window.settings)
    qtbot.addWidget(again)
    assert again.form.d_sae.value() == 384
    assert again.form.output_edit.text() != str(out)             # a fresh name: never overwrite by default


def test_existing_output_is_replaced_only_when_confirmed(dialog, fake_pipeline, tmp_path, monkeypatch, qtbot):
    from PySide6.QtWidgets import QMessageBox

    out = tmp_path / "kept.h5"
    out.write_bytes(b"a bundle the user keeps")
    dialog.form.load_preset("tiny")
    dialog.form.set_output(str(out))
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
    dialog.form.load_preset("tiny")
    dialog.form.set_output(str(tmp_path / "resumable.h5"))
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
    dialog.form.load_preset("tiny")
    dialog.form.tokens.setValue(16_384)
    dialog.form.sae_acts.setValue(16_384)
    dialog.form.harvest_tokens.setValue(4_096)
    out = tmp_path / "real-tiny.h5"
    dialog.form.set_output(str(out))
    with qtbot.waitSignal(window.bundleOpened, timeout=240_000):
        assert dialog.start()
    assert window.bundle is not None and Path(str(window.bundle.path)).resolve() == out.resolve()
    assert dialog.curves.point_count("model/train_loss") > 0
    assert dialog.curves.point_count("sae/mse") > 0
    live = dialog.live                                  # the wait was informative: baselines, guesses, SAE
    assert live.baselines["bigram"] < live.baselines["unigram"] and len(live._lines) == 2
    assert live.predictions and "The model's next-token guesses now" in live.predictions_label.text()
    shown = [t for k in range(live.predictions_view.n_lines()) for t in live.predictions_view.line_tokens(k)]
    assert shown and not [t for t in shown if re.fullmatch(r"#\d+", t)]      # token strings, not ids
    assert "L0" in live.sae_label.text() and "dead" in live.sae_label.text()
    assert window.overview.findChild(QLabel, "metric_loss_recovered").text().endswith("%")
    assert not dialog.isVisible()                       # finished well: the dialog gave way to the bundle
    status = window.jobs.status                         # the real pipeline reports the whole run's ETA
    assert status.run_fraction is not None and status.run_fraction > 0.9 and status.run_eta_s is not None
    assert dialog.progress.value() == 1000


def test_finished_run_closes_the_dialog_and_says_where_the_bundle_lives(window, dialog, fake_pipeline,
                                                                       tmp_path, qtbot, monkeypatch):
    import superpos_app.main_window as mw

    opened = []
    monkeypatch.setattr(mw, "open_url", lambda url: opened.append(url.toLocalFile()) or True)
    dialog.form.load_preset("tiny")
    out = tmp_path / "runs" / "closing.h5"
    dialog.form.set_output(str(out))
    assert dialog.expected_label.isVisible() and "about" in dialog.expected_label.text()
    with qtbot.waitSignal(window.bundleOpened, timeout=15000):
        assert dialog.start()
        assert dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    assert str(out.parent.resolve()) in window.windowTitle() and out.name in window.windowTitle()
    assert str(out.resolve()) in window.statusBar().currentMessage()
    assert window.show_in_folder_action.isEnabled()
    window.show_in_folder_action.trigger()
    assert opened == [str(out.parent.resolve())]


def test_a_failed_open_keeps_the_dialog(window, dialog, fake_pipeline, tmp_path, qtbot, monkeypatch):
    import superpos_app.main_window as mw

    monkeypatch.setattr(mw, "show_error", lambda *a, **k: None)
    monkeypatch.setattr(mw, "read_bundle", lambda path: (_ for _ in ()).throw(OSError("disk gone")))
    dialog.form.load_preset("tiny")
    dialog.form.set_output(str(tmp_path / "unreadable.h5"))
    with qtbot.waitSignal(dialog.bundleReady, timeout=15000):
        assert dialog.start()
    assert dialog.isVisible() and window.bundle is None     # the user still sees where the run went


# --- one work folder rule for the CLI and the app: each resumes the other's cancelled run ---------
BUDGETS = {"tokens": 30_000, "sae_activations": 40_000, "harvest_tokens": 4_000}


def _cli_args(out, *extra):
    from engine.cli.main import build_parser

    return build_parser().parse_args(["run", "--preset", "tiny", "--tokens", str(BUDGETS["tokens"]),
                                      "--sae-activations", str(BUDGETS["sae_activations"]),
                                      "--harvest-tokens", str(BUDGETS["harvest_tokens"]),
                                      "--out", str(out), "--quiet", *extra])


def _form_budgets(dialog):
    dialog.form.load_preset("tiny")
    dialog.form.tokens.setValue(BUDGETS["tokens"])
    dialog.form.sae_acts.setValue(BUDGETS["sae_activations"])
    dialog.form.harvest_tokens.setValue(BUDGETS["harvest_tokens"])


def _first_model_fraction(events) -> float:
    from engine.events import Progress

    return next(e.fraction for e in events if isinstance(e, Progress) and e.stage == "model")


def test_the_form_and_the_cli_agree_on_the_work_folder(dialog, tmp_path):
    from engine import paths
    from engine.cli.run_cmds import config_from_args

    _form_budgets(dialog)
    cli = config_from_args(_cli_args(tmp_path / "x.h5"))
    assert dialog.form.build_config() == cli
    assert paths.run_workdir(dialog.form.build_config()) == paths.run_workdir(cli)
    dialog.form.d_sae.setValue(384)                          # other settings, another folder
    assert paths.run_workdir(dialog.form.build_config()) != paths.run_workdir(cli)


def test_a_run_cancelled_in_the_app_resumes_from_the_cli(window, dialog, tmp_path, qtbot, monkeypatch):
    import superpos_app.dialogs.train_dialog as td
    from engine.cli.run_cmds import config_from_args
    from engine.events import Progress
    from engine.jobs import collect
    from engine.pipeline import run_pipeline

    real = td.pipeline_job

    def cancelled_in_the_sae(cfg, out, workdir, resume, cancel):
        for event in real(cfg, out, workdir, resume, cancel):
            yield event
            if isinstance(event, Progress) and event.stage == "sae" and event.fraction > 0.3:
                cancel.cancel()                              # as the Cancel button does

    monkeypatch.setattr(td, "pipeline_job", cancelled_in_the_sae)
    _form_budgets(dialog)
    dialog.form.set_output(str(tmp_path / "from-app.h5"))
    with qtbot.waitSignal(window.jobs.jobCancelled, timeout=240_000):
        assert dialog.start()
    assert not (tmp_path / "from-app.h5").exists()

    args = _cli_args(tmp_path / "from-cli.h5", "--resume")   # what `superpos run ... --resume` runs
    out, events = collect(run_pipeline(config_from_args(args), args.out, workdir=args.workdir, resume=args.resume))
    assert _first_model_fraction(events) == 1.0             # the model was not trained again
    assert Path(out).exists()


def test_a_run_cancelled_from_the_cli_resumes_in_the_app(window, dialog, tmp_path, qtbot, monkeypatch):
    import superpos_app.dialogs.train_dialog as td
    from engine.cli.run_cmds import config_from_args
    from engine.events import Cancelled, CancelToken, Progress
    from engine.pipeline import run_pipeline

    args = _cli_args(tmp_path / "from-cli.h5")               # `superpos run` without --workdir
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        for event in run_pipeline(config_from_args(args), args.out, workdir=args.workdir, cancel=cancel):
            if isinstance(event, Progress) and event.stage == "sae" and event.fraction > 0.3:
                cancel.cancel()

    real, resumed, events = td.pipeline_job, [], []

    def recorded(cfg, out, workdir, resume, cancel):
        resumed.append(resume)
        job = real(cfg, out, workdir, resume, cancel)
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            events.append(event)
            yield event

    monkeypatch.setattr(td, "pipeline_job", recorded)
    _form_budgets(dialog)
    assert dialog.resume_check.isEnabled()                   # the CLI's run is offered
    dialog.resume_check.setChecked(True)
    dialog.form.set_output(str(tmp_path / "from-app.h5"))
    with qtbot.waitSignal(window.bundleOpened, timeout=240_000):
        assert dialog.start()
    assert resumed == [True] and _first_model_fraction(events) == 1.0
    assert Path(str(window.bundle.path)).resolve() == (tmp_path / "from-app.h5").resolve()


def test_the_plots_keep_their_height_for_the_whole_run(window, dialog, fake_pipeline, tmp_path, qtbot, monkeypatch):
    """The guesses and SAE text blocks appear mid-run; the four plots must not shrink for them."""
    from engine.events import Glimpse, Progress

    class TalkativePipeline(type(fake_pipeline)):      # the app tests' FakePipeline (its conftest is not importable by name)
        def _run(self, cfg, out_path, workdir, resume, cancel, family):
            rows = tuple(((1, 2, 3) * 8, 4, ((4, 0.6), (5, 0.2), (6, 0.1))) for _ in range(8))
            for event in super()._run(cfg, out_path, workdir, resume, cancel, family):
                yield event
                if isinstance(event, Progress) and event.stage == "model" and event.done == 2:
                    yield Glimpse("model", "baselines", values={"unigram": 5.5, "bigram": 3.9})
                    yield Glimpse("model", "predictions", step=2, done=2, rows=rows)
            return out_path

    import superpos_app.dialogs.train_dialog as td
    monkeypatch.setattr(td, "pipeline_job", TalkativePipeline(fake_pipeline.bundle, steps=30, step_s=0.01))
    heights: list[float] = []

    def measure(*_args):
        heights.append(min(p.height() for p in dialog.curves.plots.values()))

    window.jobs.statusChanged.connect(measure)
    window.jobs.metricsReceived.connect(measure)
    dialog.form.load_preset("tiny")
    dialog.form.set_output(str(tmp_path / "runs" / "talk.h5"))
    qtbot.waitUntil(lambda: dialog.curves.height() > 0)
    measure()                                                     # before the first second
    with qtbot.waitSignal(window.jobs.jobFinished, timeout=15000):
        assert dialog.start()
        qtbot.waitUntil(lambda: dialog.live.sae_label.isVisibleTo(dialog.live), timeout=10000)
        from PySide6.QtCore import QCoreApplication, QEvent
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)   # the layout with every block shown
        measure()
    assert dialog.live.predictions_label.text() and dialog.live.baseline_label.text()
    assert len(heights) > 5 and min(heights) >= 150, heights
