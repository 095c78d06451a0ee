"""File > "Analyse a Model and SAE…": pick a model folder (TransformerLens one-layer layout or a
bundle), an SAE folder or file (SAELens, dictionary_learning, sparsify, Neel Nanda's files), a corpus
and a token budget; the analysis (``engine.analyze.analyze_job``: evaluate, harvest, labels, bundle)
runs as a job on the window's controller, and ``bundleReady(path)`` asks the window to open the result.
Bad inputs come back as the job's one-line error, shown in the dialog."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from engine.config import ConfigError
from superpos_app.dialogs.corpus_picker import CorpusPicker
from superpos_app.workers.jobs import JobController, JobStatus

__all__ = ["AnalyzeDialog", "analyze_job"]


def analyze_job(model: str, sae: str, out: str, corpus: str, n_tokens: int, tokenizer: str | None, cancel):
    """The engine job (a module-level function so tests can replace it)."""
    from engine.analyze import analyze_job as job

    return job(model, sae, out, corpus=corpus, n_tokens=n_tokens, tokenizer_path=tokenizer, cancel=cancel)


class _PathRow(QWidget):
    def __init__(self, name: str, placeholder: str, pick, parent=None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit(objectName=name, placeholderText=placeholder)
        button = QPushButton("Browse…")
        button.clicked.connect(lambda: self._browse(pick))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(button)

    def _browse(self, pick) -> None:
        path = pick(self)
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()


class AnalyzeDialog(QDialog):
    bundleReady = Signal(str)

    def __init__(self, jobs: JobController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("analyzeDialog")
        self.setWindowTitle("Analyse a Model and SAE")
        self.jobs, self.running = jobs, False
        folder = lambda w: QFileDialog.getExistingDirectory(w, "Choose a folder")            # noqa: E731
        self.model = _PathRow("analyzeModel", "TransformerLens 1L folder (config.json, *final.pth, tokenizer.json)",
                              folder)
        self.sae = _PathRow("analyzeSae", "SAELens / dictionary_learning / sparsify folder", folder)
        self.tokenizer = _PathRow("analyzeTokenizer", "optional: tokenizer.json (default: next to the model)",
                                  lambda w: QFileDialog.getOpenFileName(w, "Tokenizer", "", "tokenizer (*.json)")[0])
        self.corpus = CorpusPicker()
        self.tokens = QSpinBox(objectName="analyzeTokens", minimum=1_000, maximum=100_000_000, singleStep=10_000,
                               value=200_000, suffix=" tokens")
        self.output = _PathRow("analyzeOutput", "where to write the bundle (.h5)",
                               lambda w: QFileDialog.getSaveFileName(w, "Bundle", "", "bundle (*.h5)")[0])
        form = QFormLayout()
        for label, widget in (("Model", self.model), ("SAE", self.sae), ("Tokenizer", self.tokenizer),
                              ("Corpus", self.corpus), ("Harvest", self.tokens), ("Output", self.output)):
            form.addRow(label, widget)
        self.error = QLabel(objectName="analyzeError", wordWrap=True)
        self.error.setStyleSheet("color: #c62828")
        self.progress = QProgressBar(objectName="analyzeProgress", maximum=1000)
        self.start_button = QPushButton("Analyse", objectName="analyzeStart", default=True)
        self.cancel_button = QPushButton("Cancel", objectName="analyzeCancel", enabled=False)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.jobs.cancel)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.start_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)
        jobs.busyChanged.connect(self._on_busy)
        jobs.statusChanged.connect(self._on_status)
        jobs.jobFinished.connect(self._on_finished)
        jobs.jobFailed.connect(self._on_failed)
        jobs.jobCancelled.connect(self._on_cancelled)

    def start(self) -> bool:
        """Check the form (inline message), then start the job; True if it started."""
        self.error.clear()
        model, sae, out = self.model.text(), self.sae.text(), self.output.text()
        missing = [name for name, value in (("a model", model), ("an SAE", sae), ("an output file", out)) if not value]
        if missing:
            self.error.setText(f"Choose {', '.join(missing)}.")
            return False
        try:
            corpus = self.corpus.spec()
        except ConfigError as exc:
            self.error.setText(str(exc))
            return False
        n_tokens, tokenizer = self.tokens.value(), self.tokenizer.text() or None
        self.running = self.jobs.start(f"Analysing {Path(model).name}", lambda cancel: analyze_job(
            model, sae, out, corpus, n_tokens, tokenizer, cancel))
        if not self.running:
            self.error.setText("Another job is running.")
        return self.running

    def _on_busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and self.running)

    def _on_status(self, status: JobStatus) -> None:
        if self.running:
            done = (status.stage_index + (status.fraction if status.total else 0)) / max(status.n_stages, 1)
            self.progress.setValue(int(1000 * done))
            self.progress.setFormat(status.text)

    def _on_finished(self, result) -> None:
        if self.running:
            self.running = False
            self.progress.setValue(1000)
            self.progress.setFormat("Done")
            self.bundleReady.emit(str(result))

    def _on_failed(self, message: str, _details: str) -> None:
        if self.running:
            self.running = False
            self.progress.setFormat("Failed")
            self.error.setText(message)

    def _on_cancelled(self, message: str) -> None:
        if self.running:
            self.running = False
            self.progress.setFormat("Cancelled")
            self.error.setText(message)
