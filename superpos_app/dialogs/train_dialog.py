"""The Train dialog: pick a corpus and sizes, start the whole pipeline, watch its curves live.

The form on the left (``RunForm``) describes a ``RunConfig``; it is validated before anything
starts, and problems show inline. The job itself is ``engine.pipeline.run_pipeline`` run by the
window's ``JobController``; its Progress metrics feed the curve plots (model loss and validation
loss, then SAE MSE, L0 and dead fraction). When the job returns, ``bundleReady(path)`` is emitted
(the main window opens the bundle and, once it is open, closes this dialog). The upper bar is the
whole run (its fraction and ETA from ``engine.run_clock``), the thin one the current stage.

Checkpoints live in ``engine.paths.run_workdir(cfg)``, keyed by the settings as the CLI's default
``--workdir`` is: whenever that folder exists for the settings in the form — a cancelled run from
this dialog or from ``superpos run`` — "Resume from the last checkpoint" is offered.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QDialog, QHBoxLayout, QLabel, QMessageBox, QPlainTextEdit, QProgressBar,
                               QPushButton, QScrollArea, QVBoxLayout, QWidget)

from engine import paths
from engine.config import ConfigError, RunConfig, preset_names
from engine.numbers import readable
from engine.run_clock import expected_run_text

from superpos_app.widgets.curves import CurvePanel
from superpos_app.workers.jobs import JobController, JobStatus
from superpos_app.dialogs.live_view import LiveView
from superpos_app.dialogs.run_form import RunForm, default_output

__all__ = ["TrainDialog", "pipeline_job"]


def pipeline_job(cfg: RunConfig, out_path: str, workdir: str, resume: bool, cancel, **family):
    """The generator the dialog runs (tests replace this module attribute with a fake job); ``family``:
    ``family_sizes`` / ``model_seeds`` of ``run_pipeline`` when the form asks for a family."""
    from engine.pipeline import run_pipeline

    return run_pipeline(cfg, out_path, workdir=workdir, resume=resume, cancel=cancel, **family)


PLOT_MIN_PX = 170               # each training plot's height, whatever the live view shows


class TrainDialog(QDialog):
    bundleReady = Signal(str)            # the finished bundle's path

    def __init__(self, jobs: JobController, settings=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainDialog")
        self.setWindowTitle("Train a model and a sparse autoencoder")
        self.setModal(False)
        self.resize(1180, 760)
        self.jobs = jobs
        self.settings = settings
        self.running = False
        self._started_at = 0.0
        self._resume_work: Path | None = None       # the work folder the resume check is about
        self.form = RunForm()
        self._build()
        self._connect_jobs()
        self.form.changed.connect(self._update_resume_enabled)
        self.form.changed.connect(self._update_expected)
        last = settings.last_training() if settings is not None else None
        if not (last and self._load_saved(last)):
            self.form.load_preset("demo" if "demo" in preset_names() else preset_names()[0])
            self.form.set_output(default_output("demo"))
        self._update_expected()

    # ============================================================================================
    # layout
    # ============================================================================================
    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(14, 14, 14, 14)
        root.setSpacing(14)
        form_scroll = QScrollArea()
        form_scroll.setWidgetResizable(True)
        form_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        form_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        form_scroll.setWidget(self.form)

        # right side: validation, progress, curves, log, buttons
        right = QVBoxLayout()
        right.setSpacing(8)
        self.message = QLabel("")
        self.message.setObjectName("validationMessage")
        self.message.setProperty("role", "inlineError")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        self.state_label = QLabel("Set up a run and press Start.")
        self.state_label.setObjectName("trainState")
        self.state_label.setProperty("role", "pageTitle")
        self.state_label.setStyleSheet("font-size: 13pt;")
        self.expected_label = QLabel("")
        self.expected_label.setObjectName("expectedTime")
        self.expected_label.setWordWrap(True)
        self.progress = QProgressBar()               # the whole run
        self.progress.setObjectName("trainProgress")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.stage_progress = QProgressBar()         # the current stage (busy when it has no total)
        self.stage_progress.setObjectName("stageProgress")
        self.stage_progress.setRange(0, 1000)
        self.stage_progress.setValue(0)
        self.stage_progress.setFormat("")
        self.stage_progress.setMaximumHeight(16)
        self.curves = CurvePanel(x_label="")
        self.curves.setObjectName("trainCurves")
        self.live = LiveView(self.curves)        # baselines, the model's guesses, the SAE in words
        self.log = QPlainTextEdit()
        self.log.setObjectName("trainLog")
        self.log.setReadOnly(True)
        self.log.setMaximumHeight(110)
        self.log.setPlaceholderText("Stages and messages from the run appear here.")
        self.resume_check = QCheckBox("Resume from the last checkpoint")
        self.resume_check.setObjectName("resumeCheck")
        self.resume_check.toggled.connect(self._update_start_text)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("startTrainingButton")
        self.start_button.setProperty("role", "primary")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel run")
        self.cancel_button.setObjectName("cancelTrainingButton")
        self.cancel_button.clicked.connect(self.jobs.cancel)
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.hide)
        buttons.addWidget(self.resume_check)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        buttons.addWidget(self.start_button)
        right.addWidget(self.state_label)
        right.addWidget(self.expected_label)
        right.addWidget(self.progress)
        right.addWidget(self.stage_progress)
        right.addWidget(self.message)
        # the four plots keep their height for the whole run (PLOT_MIN_PX each); the live view's text
        # blocks, which appear during the run, scroll in the room left instead of squeezing them
        self.curves.setMinimumHeight(2 * PLOT_MIN_PX + 30)
        right.addWidget(self.curves, 3)
        live_scroll = QScrollArea()
        live_scroll.setObjectName("liveScroll")
        live_scroll.setWidgetResizable(True)
        live_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        live_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        live_scroll.setWidget(self.live)
        live_scroll.setMinimumHeight(60)
        right.addWidget(live_scroll, 2)
        right.addWidget(self.log)
        right.addLayout(buttons)

        root.addWidget(form_scroll)
        root.addLayout(right, 1)
        for button in self.findChildren(QPushButton):   # Enter starts the run, nothing else
            button.setAutoDefault(False)
        self.start_button.setDefault(True)
        form_scroll.setFixedWidth(self.form.sizeHint().width() + 14)   # room for the scroll bar

    def _connect_jobs(self) -> None:
        self.jobs.statusChanged.connect(self._on_status)
        self.jobs.metricsReceived.connect(self._on_metrics)
        self.jobs.glimpseReceived.connect(self._on_glimpse)
        self.jobs.stageStarted.connect(self._on_stage_started)
        self.jobs.stageFinished.connect(self._on_stage_finished)
        self.jobs.messageReceived.connect(self._on_message)
        self.jobs.busyChanged.connect(self._on_busy)
        self.jobs.jobFinished.connect(self._on_finished)
        self.jobs.jobCancelled.connect(self._on_cancelled)
        self.jobs.jobFailed.connect(self._on_failed)

    # ============================================================================================
    # the saved setup, resume
    # ============================================================================================
    def _load_saved(self, saved: dict) -> bool:
        try:
            cfg = RunConfig.from_dict(saved["config"])
        except Exception:  # noqa: BLE001 - an unreadable saved setup: start from a preset instead
            return False
        name = saved.get("preset")
        self.form.set_config(cfg, name if name in preset_names() else None)
        output = saved.get("output")
        if not output or Path(output).exists():      # never offer to overwrite the last run's bundle
            output = default_output(cfg.name)
        self.form.set_output(output)
        return True

    def resume_workdir(self) -> Path | None:
        """The work folder a run with the form's settings would resume from, if there is one."""
        try:
            work = paths.run_workdir(self.form.build_config())
        except ConfigError:
            return None
        return work if work.is_dir() else None

    def _update_start_text(self) -> None:
        resume = self.resume_check.isChecked() and self.resume_check.isEnabled()
        self.start_button.setText("Resume training" if resume else "Start training")

    def _update_resume_enabled(self) -> None:
        work = self.resume_workdir()
        self.resume_check.setEnabled(work is not None)
        self.resume_check.setVisible(work is not None)      # only offered when there is something to resume
        if work != self._resume_work:                       # other settings: another run to resume, if any
            self.resume_check.setChecked(False)
        self._resume_work = work
        if work is not None:
            self.resume_check.setToolTip(f"Continue the cancelled run with these settings (started here or "
                                         f"with `superpos run`) from its checkpoints in {work}")
        self._update_start_text()

    def _update_expected(self) -> None:
        """How long the form's run should take, from the presets' measured stage seconds."""
        try:
            family = self.form.family()
            text = expected_run_text(self.form.build_config(), family.get("family_sizes", ()),
                                     family.get("model_seeds", ()))
        except ConfigError:
            text = ""
        self.expected_label.setText(f"Expected time: {text}." if text else "")
        self.expected_label.setVisible(bool(text))

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    # ============================================================================================
    # running
    # ============================================================================================
    def start(self) -> bool:
        """Validate the form and start the run; False (with an inline message) if it cannot start."""
        if self.jobs.is_busy:
            self.show_message("Another job is running; wait for it to finish or cancel it.")
            return False
        try:
            cfg = self.form.build_config()
            family = self.form.family()
            out = self.form.output_path()
        except ConfigError as exc:
            self.show_message(str(exc))
            self.form.focus_field(getattr(exc, "field", None))
            return False
        self.show_message("")
        resume = self.resume_check.isChecked() and self.resume_check.isEnabled()
        if out.exists() and not resume and not self._confirm_overwrite(out):
            return False
        workdir = paths.run_workdir(cfg)
        if self.settings is not None:
            self.settings.set_last_training({"preset": self.form.preset_name(), "config": cfg.to_dict(),
                                             "output": str(out)})
        if not resume:
            self.curves.clear_data()
            self.live.clear()
            self.log.clear()
        self.live.set_tokenizer_source(Path(cfg.tokenizer.path) if cfg.tokenizer.path else workdir / "tokenizer.json")
        self._log(f"{'Resuming' if resume else 'Starting'} “{cfg.name}” run → {out}")
        self.running = True
        self._started_at = time.monotonic()
        title = f"Training {out.name}"
        started = self.jobs.start(
            title, lambda cancel: pipeline_job(cfg, str(out), str(workdir), resume, cancel, **family))
        if not started:
            self.running = False
            self.show_message("Another job is running.")
        return started

    def _confirm_overwrite(self, out: Path) -> bool:
        answer = QMessageBox.question(self, "Replace the bundle?",
                                      f"{out} already exists. Replace it with the new run's bundle?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def _log(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _on_busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and self.running)
        self.form.setEnabled(not busy)
        if not busy:
            self._update_resume_enabled()

    def _on_status(self, status: JobStatus) -> None:
        if not self.running:
            return
        run = status.run_fraction
        self.progress.setValue(int(1000 * run) if run is not None else 0)
        self.progress.setFormat(status.text)
        if status.total and status.stage:
            self.stage_progress.setRange(0, 1000)
            self.stage_progress.setValue(int(1000 * status.fraction))
        else:
            self.stage_progress.setRange(0, 0 if status.stage else 1000)   # busy: the stage has no total
        self.stage_progress.setFormat(status.stage)
        elapsed = time.monotonic() - self._started_at
        self.state_label.setText("Cancelling…" if status.cancelling else
                                 f"Running: {status.stage or 'starting'} · {int(elapsed // 60)}:{int(elapsed % 60):02d} elapsed")

    def _on_metrics(self, stage: str, points) -> None:
        if self.running:
            self.curves.add_event_metrics(stage, points)
            self.live.on_metrics(stage, points)

    def _on_glimpse(self, glimpse) -> None:
        if self.running:
            self.live.on_glimpse(glimpse)

    def _on_stage_started(self, stage: str, index: int, n_stages: int) -> None:
        if self.running:
            self._log(f"[{index + 1}/{n_stages}] {stage}…")

    def _on_stage_finished(self, stage: str, seconds: float, summary: dict) -> None:
        if not self.running:
            return
        bits = ", ".join(f"{k} {readable(v)}" for k, v in list(summary.items())[:4]
                         if isinstance(v, (int, float)))
        self._log(f"    {stage} done in {seconds:.1f} s" + (f" ({bits})" if bits else ""))

    def _on_message(self, text: str, level: str) -> None:
        if self.running:
            self._log(("warning: " if level == "warning" else "") + text)

    def _on_finished(self, result) -> None:
        if not self.running:
            return                                   # another job of the window's controller
        self.running = False
        path = str(result) if result is not None else self.form.output_edit.text().strip()
        self.progress.setValue(1000)
        self.progress.setFormat("Done")
        self.stage_progress.setRange(0, 1000)
        self.stage_progress.setValue(1000)
        self.state_label.setText(f"Finished: wrote {path}")     # the log has the pipeline's own "wrote …" line
        self.bundleReady.emit(path)

    def _on_cancelled(self, message: str) -> None:
        if not self.running:
            return
        self.running = False
        self.state_label.setText("Cancelled")
        self.progress.setFormat("Cancelled")
        self._log(message)
        self._update_resume_enabled()
        if self.resume_check.isEnabled():
            self.resume_check.setChecked(True)
            self._update_start_text()
            self._log("Press “Resume training” to continue from what the run's work folder holds "
                      "(its last checkpoints, tokenizer and token cache).")

    def _on_failed(self, message: str, details: str) -> None:
        if not self.running:
            return
        self.running = False
        self.state_label.setText("Stopped with an error")
        self.progress.setFormat("Error")
        self.show_message(message)
        self._log(f"error: {message}")
