"""The Train dialog: pick a corpus and sizes, start the whole pipeline, watch its curves live.

The form builds a ``RunConfig`` as ``preset(name).with_overrides(...)``; it is validated (paths,
sizes, device) before anything starts, and problems show inline under the form. The job itself is
``engine.pipeline.run_pipeline`` run by the window's ``JobController``; its Progress metrics feed
the curve plots (model loss and validation loss, then SAE MSE, L0 and dead fraction). When the job
returns, ``bundleReady(path)`` is emitted (the main window opens the bundle). A cancelled run keeps
its checkpoints in a work folder derived from the output path; "Resume" continues from them.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPlainTextEdit, QProgressBar,
                               QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from engine import paths
from engine.config import SAE_RECIPES, ConfigError, RunConfig, preset, preset_description, preset_names

from superpos_app.curves import CurvePanel
from superpos_app.jobs import JobController, JobStatus

__all__ = ["TrainDialog", "pipeline_job", "workdir_for", "CORPUS_KINDS"]

# kind -> (label, placeholder)
CORPUS_KINDS = {
    "builtin": ("Built-in demo corpus", ""),
    "file": ("Text file", "a .txt file"),
    "folder": ("Folder of text files", "a folder (read recursively)"),
    "jsonl": ("JSON Lines file", "a .jsonl file with a \"text\" field per line"),
    "hf": ("Hugging Face dataset", "dataset name, e.g. roneneldan/TinyStories[:split]"),
}
DEVICES = ("auto", "cpu", "cuda", "mps")


def pipeline_job(cfg: RunConfig, out_path: str, workdir: str, resume: bool, cancel):
    """The generator the dialog runs (tests replace this module attribute with a fake job)."""
    from engine.pipeline import run_pipeline

    return run_pipeline(cfg, out_path, workdir=workdir, resume=resume, cancel=cancel)


def workdir_for(out_path: str | Path) -> Path:
    """The checkpoint folder for a run writing ``out_path`` (stable, so a cancelled run can resume)."""
    out = Path(out_path).expanduser().resolve()
    digest = hashlib.sha1(str(out).encode()).hexdigest()[:10]
    return paths.cache_dir() / "runs" / f"{out.stem}-{digest}"


def corpus_spec_kind(spec: str) -> tuple[str, str]:
    """(kind, text for the line edit) for a CorpusConfig.spec."""
    if spec == "builtin":
        return "builtin", ""
    if spec.startswith("hf:"):
        return "hf", spec[3:]
    p = Path(spec)
    if p.suffix.lower() == ".jsonl":
        return "jsonl", spec
    if p.is_dir():
        return "folder", spec
    return "file", spec


def _spin(lo: int, hi: int, step: int = 1, tip: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setGroupSeparatorShown(True)
    box.setToolTip(tip)
    box.setMinimumWidth(130)
    box.setAlignment(Qt.AlignmentFlag.AlignRight)
    return box


def _form(group: QGroupBox) -> QFormLayout:
    form = QFormLayout(group)
    form.setContentsMargins(10, 8, 10, 8)
    form.setVerticalSpacing(6)
    form.setHorizontalSpacing(12)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    return form


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
        self.last_result: str | None = None
        self.last_config: RunConfig | None = None
        self._started_at = 0.0
        self._build()
        self._connect_jobs()
        last = settings.last_training() if settings is not None else None
        if last and self._load_saved(last):
            pass
        else:
            self.load_preset("demo" if "demo" in preset_names() else preset_names()[0])
            self.set_output(self.default_output("demo"))

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
        form_host = QWidget()
        form_scroll.setWidget(form_host)
        self.form_host = form_host
        col = QVBoxLayout(form_host)
        col.setContentsMargins(0, 0, 6, 0)
        col.setSpacing(4)

        # corpus
        group = QGroupBox("Corpus")
        form = _form(group)
        self.corpus_kind = QComboBox()
        self.corpus_kind.setObjectName("corpusKind")
        for kind, (label, _ph) in CORPUS_KINDS.items():
            self.corpus_kind.addItem(label, kind)
        self.corpus_edit = QLineEdit()
        self.corpus_edit.setObjectName("corpusEdit")
        self.corpus_browse = QPushButton("Browse…")
        self.corpus_browse.setObjectName("corpusBrowse")
        self.corpus_browse.clicked.connect(self._browse_corpus)
        row = QHBoxLayout()
        row.addWidget(self.corpus_edit, 1)
        row.addWidget(self.corpus_browse)
        form.addRow("Source", self.corpus_kind)
        self.corpus_row_label = QLabel("Location")
        form.addRow(self.corpus_row_label, row)
        self.corpus_kind.currentIndexChanged.connect(self._corpus_kind_changed)
        col.addWidget(group)

        # preset
        group = QGroupBox("Preset")
        form = _form(group)
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("presetCombo")
        for name in preset_names():
            self.preset_combo.addItem(name, name)
        self.preset_combo.activated.connect(lambda _i: self.load_preset(self.preset_combo.currentData()))
        self.preset_note = QLabel("")
        self.preset_note.setProperty("role", "muted")
        self.preset_note.setWordWrap(True)
        form.addRow("Start from", self.preset_combo)
        form.addRow(self.preset_note)
        col.addWidget(group)

        # model
        group = QGroupBox("Transformer")
        form = _form(group)
        self.vocab_size = _spin(64, 1 << 17, 256, "BPE vocabulary size")
        self.n_ctx = _spin(8, 4096, 8, "context length in tokens")
        self.d_model = _spin(8, 4096, 8, "residual stream width")
        self.d_mlp = _spin(8, 1 << 16, 64, "MLP neurons (the SAE's input)")
        self.tokens = _spin(1000, 2_000_000_000, 100_000, "training budget in tokens")
        for name, box in (("vocabSize", self.vocab_size), ("nCtx", self.n_ctx), ("dModel", self.d_model),
                          ("dMlp", self.d_mlp), ("trainTokens", self.tokens)):
            box.setObjectName(name)
        form.addRow("Vocabulary size", self.vocab_size)
        form.addRow("Context length", self.n_ctx)
        form.addRow("d_model", self.d_model)
        form.addRow("MLP neurons", self.d_mlp)
        form.addRow("Training tokens", self.tokens)
        col.addWidget(group)

        # SAE
        group = QGroupBox("Sparse autoencoder")
        form = _form(group)
        self.d_sae = _spin(16, 1 << 20, 256, "dictionary size (number of features)")
        self.d_sae.setObjectName("dSae")
        self.recipe = QComboBox()
        self.recipe.setObjectName("saeRecipe")
        recipe_labels = {"topk": "TopK (Gao et al. 2024)", "2024-04": "L1 with decoder norms (April 2024 update)",
                         "2023": "L1, as in the paper (2023)"}
        for r in SAE_RECIPES:
            self.recipe.addItem(recipe_labels.get(r, r), r)
        self.k = _spin(1, 4096, 1, "active features per token")
        self.k.setObjectName("saeK")
        self.l1 = QDoubleSpinBox()
        self.l1.setObjectName("saeL1")
        self.l1.setDecimals(4)
        self.l1.setRange(0.0, 1000.0)
        self.l1.setSingleStep(0.5)
        self.l1.setToolTip("sparsity penalty λ")
        self.l1.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.sae_acts = _spin(1000, 2_000_000_000, 100_000, "training budget in activation vectors")
        self.sae_acts.setObjectName("saeActivations")
        form.addRow("Features", self.d_sae)
        form.addRow("Recipe", self.recipe)
        self.k_label, self.l1_label = QLabel("k (active / token)"), QLabel("Penalty λ")
        form.addRow(self.k_label, self.k)
        form.addRow(self.l1_label, self.l1)
        form.addRow("Activations", self.sae_acts)
        self.recipe.currentIndexChanged.connect(self._recipe_changed)
        col.addWidget(group)

        # harvest + run
        group = QGroupBox("Statistics and output")
        form = _form(group)
        self.harvest_tokens = _spin(1000, 2_000_000_000, 10_000, "held-out tokens scanned for feature statistics")
        self.harvest_tokens.setObjectName("harvestTokens")
        self.device = QComboBox()
        self.device.setObjectName("deviceCombo")
        for d in DEVICES:
            self.device.addItem(d, d)
        self.output_edit = QLineEdit()
        self.output_edit.setObjectName("outputEdit")
        self.output_browse = QPushButton("Browse…")
        self.output_browse.clicked.connect(self._browse_output)
        self.output_edit.editingFinished.connect(self._update_resume_enabled)
        row = QHBoxLayout()
        row.addWidget(self.output_edit, 1)
        row.addWidget(self.output_browse)
        self.resume_check = QCheckBox("Resume from the last checkpoint")
        self.resume_check.setObjectName("resumeCheck")
        self.resume_check.setToolTip("Continue the cancelled run that writes this output file from its checkpoints")
        self.resume_check.toggled.connect(self._update_start_text)
        form.addRow("Harvest tokens", self.harvest_tokens)
        form.addRow("Device", self.device)
        form.addRow("Output bundle", row)
        col.addWidget(group)
        col.addStretch(1)

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
        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.curves = CurvePanel(x_label="")
        self.curves.setObjectName("trainCurves")
        self.log = QPlainTextEdit()
        self.log.setObjectName("trainLog")
        self.log.setReadOnly(True)
        self.log.setMaximumHeight(110)
        self.log.setPlaceholderText("Stages and messages from the run appear here.")
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
        right.addWidget(self.progress)
        right.addWidget(self.message)
        right.addWidget(self.curves, 1)
        right.addWidget(self.log)
        right.addLayout(buttons)

        root.addWidget(form_scroll)
        root.addLayout(right, 1)
        for form in form_host.findChildren(QFormLayout):   # one label column width for all groups
            for row in range(form.rowCount()):
                item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
                if item is not None and item.widget() is not None:
                    item.widget().setMinimumWidth(120)
        for button in self.findChildren(QPushButton):   # Enter starts the run, nothing else
            button.setAutoDefault(False)
        self.start_button.setDefault(True)
        form_scroll.setFixedWidth(form_host.sizeHint().width() + 14)   # room for the scroll bar

    def _connect_jobs(self) -> None:
        self.jobs.statusChanged.connect(self._on_status)
        self.jobs.metricsReceived.connect(self._on_metrics)
        self.jobs.stageStarted.connect(self._on_stage_started)
        self.jobs.stageFinished.connect(self._on_stage_finished)
        self.jobs.messageReceived.connect(self._on_message)
        self.jobs.busyChanged.connect(self._on_busy)

    # ============================================================================================
    # form <-> config
    # ============================================================================================
    def load_preset(self, name: str) -> None:
        self.set_config(preset(name), name)

    def set_config(self, cfg: RunConfig, preset_name: str | None = None) -> None:
        if preset_name is not None:
            i = self.preset_combo.findData(preset_name)
            if i >= 0:
                self.preset_combo.setCurrentIndex(i)
            self.preset_note.setText(preset_description(preset_name))
        self.set_corpus(cfg.corpus.spec)
        self.vocab_size.setValue(cfg.tokenizer.vocab_size)
        self.n_ctx.setValue(cfg.model.n_ctx)
        self.d_model.setValue(cfg.model.d_model)
        self.d_mlp.setValue(cfg.model.d_mlp)
        self.tokens.setValue(cfg.train.tokens)
        self.d_sae.setValue(cfg.sae.d_sae)
        self.recipe.setCurrentIndex(max(0, self.recipe.findData(cfg.sae.recipe)))
        self.k.setValue(cfg.sae.k)
        self.l1.setValue(cfg.sae.l1_coeff)
        self.sae_acts.setValue(cfg.sae.n_activations)
        self.harvest_tokens.setValue(cfg.harvest.n_tokens)
        self.device.setCurrentIndex(max(0, self.device.findData(cfg.device)))
        self._recipe_changed()
        self._base_config = cfg

    def set_corpus(self, spec: str) -> None:
        kind, text = corpus_spec_kind(spec)
        self.corpus_kind.setCurrentIndex(self.corpus_kind.findData(kind))
        self.corpus_edit.setText(text)
        self._corpus_kind_changed()

    def set_output(self, path: str | Path) -> None:
        self.output_edit.setText(str(path))
        self.resume_check.setChecked(False)
        self._update_resume_enabled()

    @staticmethod
    def default_output(preset_name: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M")
        return str(paths.data_dir() / "runs" / f"{preset_name}-{stamp}.h5")

    def _load_saved(self, saved: dict) -> bool:
        try:
            cfg = RunConfig.from_dict(saved["config"])
        except Exception:  # noqa: BLE001 - an unreadable saved setup: start from a preset instead
            return False
        name = saved.get("preset")
        self.set_config(cfg, name if name in preset_names() else None)
        output = saved.get("output")
        if not output or Path(output).exists():      # never offer to overwrite the last run's bundle
            output = self.default_output(cfg.name)
        self.set_output(output)
        return True

    def _corpus_kind_changed(self) -> None:
        kind = self.corpus_kind.currentData()
        label, placeholder = CORPUS_KINDS[kind]
        builtin = kind == "builtin"
        self.corpus_edit.setEnabled(not builtin)
        self.corpus_edit.setPlaceholderText(placeholder)
        self.corpus_browse.setEnabled(kind in ("file", "folder", "jsonl"))
        self.corpus_row_label.setText("Dataset" if kind == "hf" else "Location")
        if builtin:
            self.corpus_edit.clear()

    def _recipe_changed(self) -> None:
        topk = self.recipe.currentData() == "topk"
        self.k.setVisible(topk)
        self.k_label.setVisible(topk)
        self.l1.setVisible(not topk)
        self.l1_label.setVisible(not topk)

    def _browse_corpus(self) -> None:
        kind = self.corpus_kind.currentData()
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(self, "Choose a folder of text files")
        else:
            filt = "JSON Lines (*.jsonl)" if kind == "jsonl" else "Text files (*.txt *.md *.text);;All files (*)"
            path, _ = QFileDialog.getOpenFileName(self, "Choose a corpus file", "", filt)
        if path:
            self.corpus_edit.setText(path)

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Output bundle", self.output_edit.text(),
                                              "superpos bundles (*.h5)")
        if path:
            self.set_output(path)

    def _update_start_text(self) -> None:
        resume = self.resume_check.isChecked() and self.resume_check.isEnabled()
        self.start_button.setText("Resume training" if resume else "Start training")

    def _update_resume_enabled(self) -> None:
        text = self.output_edit.text().strip()
        has_work = bool(text) and workdir_for(text).is_dir()
        self.resume_check.setEnabled(has_work)
        self.resume_check.setVisible(has_work)       # only offered when there is something to resume
        if not has_work:
            self.resume_check.setChecked(False)
        self._update_start_text()

    # --- validation ------------------------------------------------------------------------------
    def corpus_spec(self) -> str:
        kind = self.corpus_kind.currentData()
        text = self.corpus_edit.text().strip()
        if kind == "builtin":
            return "builtin"
        if not text:
            raise ConfigError(f"Choose {CORPUS_KINDS[kind][1]} for the corpus, or pick the built-in corpus.")
        if kind == "hf":
            if any(c.isspace() for c in text):
                raise ConfigError(f"{text!r} is not a Hugging Face dataset name (no spaces allowed).")
            return f"hf:{text}"
        path = Path(text).expanduser()
        if kind == "folder":
            if not path.is_dir():
                raise ConfigError(f"The corpus folder {path} does not exist.")
        else:
            if not path.exists():
                raise ConfigError(f"The corpus file {path} does not exist.")
            if not path.is_file():
                raise ConfigError(f"{path} is not a file.")
            if kind == "jsonl" and path.suffix.lower() != ".jsonl":
                raise ConfigError(f"{path.name} is not a .jsonl file; choose “Text file” for plain text.")
        return str(path)

    def output_path(self) -> Path:
        text = self.output_edit.text().strip()
        if not text:
            raise ConfigError("Choose where to write the bundle.")
        path = Path(text).expanduser()
        if path.suffix.lower() not in (".h5", ".hdf5"):
            path = path.with_suffix(".h5")
        if path.is_dir():
            raise ConfigError(f"The output {path} is a folder; give a file name ending in .h5.")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise ConfigError(f"Cannot write to {path.parent}.")
        return path

    def build_config(self) -> RunConfig:
        """The RunConfig the form describes; raises ConfigError with a readable message."""
        name = self.preset_combo.currentData()
        sae = {"d_sae": self.d_sae.value(), "recipe": self.recipe.currentData(),
               "n_activations": self.sae_acts.value()}
        if sae["recipe"] == "topk":
            sae["k"] = self.k.value()
        else:
            sae["l1_coeff"] = float(self.l1.value())
        cfg = preset(name).with_overrides(
            corpus={"spec": self.corpus_spec()},
            tokenizer={"vocab_size": self.vocab_size.value()},
            model={"n_ctx": self.n_ctx.value(), "d_model": self.d_model.value(), "d_mlp": self.d_mlp.value(),
                   "vocab_size": self.vocab_size.value()},
            train={"tokens": self.tokens.value()},
            sae=sae,
            harvest={"n_tokens": self.harvest_tokens.value()},
            device=self.device.currentData(),
        )
        if cfg.model.d_model % cfg.model.n_heads:
            raise ConfigError(f"d_model ({cfg.model.d_model}) must be a multiple of the {cfg.model.n_heads} heads.")
        if cfg.device != "auto":
            try:
                from engine.device import resolve_device
                resolve_device(cfg.device)
            except ImportError:
                pass
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return cfg

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
            cfg = self.build_config()
            out = self.output_path()
        except ConfigError as exc:
            self.show_message(str(exc))
            return False
        self.show_message("")
        resume = self.resume_check.isChecked() and self.resume_check.isEnabled()
        if out.exists() and not resume and not self._confirm_overwrite(out):
            return False
        workdir = workdir_for(out)
        self.last_config = cfg
        if self.settings is not None:
            self.settings.set_last_training({"preset": self.preset_combo.currentData(), "config": cfg.to_dict(),
                                             "output": str(out)})
        if not resume:
            self.curves.clear_data()
            self.log.clear()
        self._log(f"{'Resuming' if resume else 'Starting'} “{cfg.name}” run → {out}")
        self.running = True
        self._started_at = time.monotonic()
        title = f"Training {out.name}"
        started = self.jobs.start(
            title, lambda cancel: pipeline_job(cfg, str(out), str(workdir), resume, cancel),
            on_finished=self._on_finished, on_cancelled=self._on_cancelled, on_failed=self._on_failed)
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
        self.form_host.setEnabled(not busy)
        if not busy:
            self._update_resume_enabled()

    def _on_status(self, status: JobStatus) -> None:
        if not self.running:
            return
        self.progress.setValue(int(1000 * status.fraction) if status.total else 0)
        self.progress.setFormat(status.text)
        elapsed = time.monotonic() - self._started_at
        self.state_label.setText("Cancelling…" if status.cancelling else
                                 f"Running: {status.stage or 'starting'} · {int(elapsed // 60)}:{int(elapsed % 60):02d} elapsed")

    def _on_metrics(self, stage: str, points) -> None:
        if self.running:
            self.curves.add_event_metrics(stage, points)

    def _on_stage_started(self, stage: str, index: int, n_stages: int) -> None:
        if self.running:
            self._log(f"[{index + 1}/{n_stages}] {stage}…")

    def _on_stage_finished(self, stage: str, seconds: float, summary: dict) -> None:
        if not self.running:
            return
        bits = ", ".join(f"{k} {v:.4g}" for k, v in list(summary.items())[:4]
                         if isinstance(v, (int, float)))
        self._log(f"    {stage} done in {seconds:.1f} s" + (f" ({bits})" if bits else ""))

    def _on_message(self, text: str, level: str) -> None:
        if self.running:
            self._log(("warning: " if level == "warning" else "") + text)

    def _on_finished(self, result) -> None:
        self.running = False
        path = str(result) if result is not None else self.output_edit.text().strip()
        self.last_result = path
        self.progress.setValue(1000)
        self.progress.setFormat("Done")
        self.state_label.setText("Finished: the bundle is open in the main window.")
        self._log(f"Wrote {path}")
        self.bundleReady.emit(path)

    def _on_cancelled(self, message: str) -> None:
        self.running = False
        self.state_label.setText("Cancelled")
        self.progress.setFormat("Cancelled")
        self._log(message)
        self._update_resume_enabled()
        if self.resume_check.isEnabled():
            self.resume_check.setChecked(True)
            self._update_start_text()
            self._log("Press “Resume training” to continue from the checkpoint.")

    def _on_failed(self, message: str, details: str) -> None:
        self.running = False
        self.state_label.setText("Stopped with an error")
        self.progress.setFormat("Error")
        self.show_message(message)
        self._log(f"error: {message}")
