"""The Explain dialog: explain and score units with a language model (engine.explain), as a job.

The user names the endpoint (base URL, model, the environment variable that holds the API key —
the key itself is never typed here or saved), picks the units (the current one, the units the
search pane lists, or every live unit with density ≥ a bound, at most N), asks for an estimate
(requests, prompt tokens, and the time at the rate one timed request shows; computed on a worker)
and starts the job on the window's ``JobController``: progress and ETA show in the dialog and the
status bar, Cancel stops it, and starting again resumes. When the job ends (finished or cancelled)
the window folds the results into the bundle (``MainWindow.fold_explanations``), so the detail,
search and compare panes show them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import (
    QButtonGroup, QDialog, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
    QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget,
)

from engine.bundle.explanations import fold_journal, journal_path
from engine.errors import USER_ERRORS
from engine.explain.client import DEFAULT_KEY_ENV, ChatClient, Endpoint
from engine.explain.examples import ExampleConfig
from engine.explain.job import UnitSource, estimate, explain_job, pending_units, select_units
from engine.explain.prompts import explain_messages
from superpos_app.workers.jobs import JobStatus
from superpos_app.workers.latest_runner import LatestRunner

__all__ = ["ExplainDialog", "estimate_job", "show_explain_dialog", "fold_explanations"]


def estimate_job(path: str, kind: str, units: list[int], endpoint: Endpoint, probe: bool):
    """A runner job: (units to do, Estimate) — opens its own handle, optionally times one request."""
    import time

    from engine.bundle import open_bundle

    def run(_cancel):
        with open_bundle(path) as b:
            todo = pending_units(path, kind, units, endpoint.model, existing=b.explanations(kind))
            source = UnitSource(b, kind, ExampleConfig())
            seconds = None
            if todo and probe:
                ex = source.examples(todo[0])
                with ChatClient(endpoint.replace(max_retries=1)) as client:
                    t0 = time.perf_counter()
                    client.chat(explain_messages(source.vocab, ex.sections(), ex.max_act, ex.promoted,
                                                 ex.suppressed), max_tokens=80)
                    seconds = time.perf_counter() - t0
            return todo, (estimate(source, todo, seconds, endpoint.concurrency) if todo else None)

    return run


def show_explain_dialog(window) -> "ExplainDialog | None":
    """Show the window's Explain dialog (made once); None if no bundle is open."""
    if window.bundle is None:
        window.statusBar().showMessage("Open a bundle first, then explain its units.", 6000)
        return None
    dialog = getattr(window, "explain_dialog", None)
    if dialog is None:
        dialog = window.explain_dialog = ExplainDialog(window)
    dialog._selection_changed()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def fold_explanations(window) -> str:
    """Move an explain job's journal into the open bundle: close the read handle, fold, reopen the
    bundle and the unit that was shown. Returns a sentence for the user ("" if there was nothing)."""
    bundle = window.bundle
    if bundle is None or not journal_path(bundle.path).exists():
        return ""
    path, current = Path(str(bundle.path)), window.selection.current
    window.close_bundle()
    try:
        n = fold_journal(path)
        text = f"{n:,} explanations written into the bundle."
    except USER_ERRORS as exc:            # a read-only bundle keeps its journal, which readers still see
        text = str(exc)
    window.open_bundle(path)
    if current is not None and window.bundle is not None:
        window.selection.select(*current)
    return text


class ExplainDialog(QDialog):
    def __init__(self, window, parent: QWidget | None = None) -> None:
        super().__init__(parent or window)
        self.setObjectName("explainDialog")
        self.setWindowTitle("Explain units with a language model")
        self.setModal(False)
        self.window_ = window
        self.jobs = window.jobs
        self.running = False
        self.estimate_runner = LatestRunner(self)       # a newer estimate replaces one still running
        self.estimate_runner.resultReady.connect(self._on_estimate)
        self.estimate_runner.failed.connect(self._on_estimate_failed)
        saved = window.settings.explain_setup() if window.settings is not None else {}

        self.endpoint = QLineEdit(saved.get("endpoint") or os.environ.get("SUPERPOS_LLM_URL", "http://localhost:11434/v1"))
        self.endpoint.setObjectName("explainEndpoint")
        self.endpoint.setToolTip("Base URL of an OpenAI-compatible API: Ollama http://localhost:11434/v1, "
                                 "llama.cpp server http://localhost:8080/v1, vLLM, LM Studio or a hosted API")
        self.model = QLineEdit(saved.get("model") or os.environ.get("SUPERPOS_LLM_MODEL", ""))
        self.model.setObjectName("explainModel")
        self.model.setPlaceholderText("e.g. llama3.1")
        self.key_env = QLineEdit(saved.get("key_env") or DEFAULT_KEY_ENV)
        self.key_env.setObjectName("explainKeyEnv")
        self.key_env.setToolTip("The environment variable holding the API key (local servers need none). "
                                "The key is never saved or shown.")
        self.concurrency = QSpinBox()
        self.concurrency.setRange(1, 64)
        self.concurrency.setValue(int(saved.get("concurrency") or 4))
        self.concurrency.setToolTip("Units explained at once (each sends its requests one after another)")

        self.kind_features = QRadioButton("Features")
        self.kind_neurons = QRadioButton("Neurons")
        self.kind_features.setChecked(True)
        kinds = QButtonGroup(self)
        kinds.addButton(self.kind_features)
        kinds.addButton(self.kind_neurons)
        self.which_current = QRadioButton("The current unit")
        self.which_search = QRadioButton("The units the search lists")
        self.which_density = QRadioButton("All live units with density ≥")
        self.which_density.setChecked(True)
        for b in (self.which_current, self.which_search, self.which_density):
            b.setObjectName(f"explainWhich{b.text().split()[1].title()}")
        self.min_log_density = QDoubleSpinBox()
        self.min_log_density.setObjectName("explainMinLogDensity")
        self.min_log_density.setRange(-9.0, 0.0)
        self.min_log_density.setDecimals(1)
        self.min_log_density.setSingleStep(0.5)
        self.min_log_density.setValue(-4.0)
        self.min_log_density.setPrefix("10^")
        self.at_most = QSpinBox()
        self.at_most.setObjectName("explainAtMost")
        self.at_most.setRange(1, 10_000_000)
        self.at_most.setValue(100)
        self.at_most.setPrefix("at most ")
        for w in (self.kind_features, self.kind_neurons, self.which_current, self.which_search, self.which_density):
            w.toggled.connect(self._selection_changed)
        self.min_log_density.valueChanged.connect(self._selection_changed)
        self.at_most.valueChanged.connect(self._selection_changed)

        self.selection_label = QLabel("")
        self.selection_label.setObjectName("explainSelectionLabel")
        self.estimate_label = QLabel("Estimate: press Estimate (it times one request)")
        self.estimate_label.setObjectName("explainEstimate")
        self.estimate_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("explainProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.status = QLabel("")
        self.status.setObjectName("explainStatus")
        self.status.setWordWrap(True)
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setObjectName("explainEstimateButton")
        self.start_button = QPushButton("Explain")
        self.start_button.setObjectName("explainStartButton")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("explainCancelButton")
        self.cancel_button.setEnabled(False)
        self.estimate_button.clicked.connect(self.run_estimate)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.jobs.cancel)

        form = QFormLayout()
        form.addRow("Endpoint", self.endpoint)
        form.addRow("Model", self.model)
        form.addRow("API key variable", self.key_env)
        form.addRow("Concurrency", self.concurrency)
        row = QHBoxLayout()
        row.addWidget(self.kind_features)
        row.addWidget(self.kind_neurons)
        row.addStretch(1)
        form.addRow("Units", row)
        dens = QHBoxLayout()
        dens.addWidget(self.which_density)
        dens.addWidget(self.min_log_density)
        dens.addWidget(self.at_most)
        dens.addStretch(1)
        which = QVBoxLayout()
        which.addLayout(dens)
        which.addWidget(self.which_search)
        which.addWidget(self.which_current)
        which.addWidget(self.selection_label)
        form.addRow("Which", which)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.estimate_button, self.start_button, self.cancel_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(640, 420)

        self.jobs.statusChanged.connect(self._on_status)
        self.jobs.busyChanged.connect(self._on_busy)
        self.jobs.jobFinished.connect(self._on_finished)
        self.jobs.jobCancelled.connect(self._on_cancelled)
        self.jobs.jobFailed.connect(self._on_failed)
        self._selection_changed()

    # ----------------------------------------------------------------------------------- what to do
    @property
    def kind(self) -> str:
        return "feature" if self.kind_features.isChecked() else "neuron"

    def endpoint_config(self) -> Endpoint:
        return Endpoint(base_url=self.endpoint.text().strip(), model=self.model.text().strip(),
                        api_key_env=self.key_env.text().strip() or DEFAULT_KEY_ENV,
                        concurrency=self.concurrency.value())

    def units(self) -> list[int]:
        """The chosen units (raises SelectionError if none)."""
        bundle = self.window_.bundle
        if bundle is None:
            return []
        density = np.asarray(bundle.columns(self.kind)["density"])
        if self.which_current.isChecked():
            cur = self.window_.selection.current
            spec = str(cur[1]) if cur is not None and cur[0] == self.kind else "none"
        elif self.which_search.isChecked():
            search = self.window_.pane("featureSearch")
            model = getattr(search, "model", None)
            ids = [model.unit_at(r) for r in range(model.rowCount())] if model is not None and model.kind == self.kind else []
            spec = ",".join(str(i) for i in ids) or "none"
        else:
            spec = f"density>={10 ** self.min_log_density.value():.3g},first:{self.at_most.value()}"
        return select_units(spec, density)

    def _selection_changed(self, *_args) -> None:
        try:
            n = len(self.units())
            self.selection_label.setText(f"{n:,} {self.kind}s selected")
        except Exception as exc:  # noqa: BLE001 - a selection that names nothing is shown, not raised
            self.selection_label.setText(str(exc))

    # ----------------------------------------------------------------------------------- estimate
    def run_estimate(self, probe: bool = True) -> bool:
        if self.window_.bundle is None:
            self.estimate_label.setText("Estimate: open a bundle first")
            return False
        try:
            units, endpoint = self.units(), self.endpoint_config()
        except Exception as exc:  # noqa: BLE001
            self.estimate_label.setText(f"Estimate: {exc}")
            return False
        self.estimate_label.setText("Estimate: timing one request…" if probe else "Estimate: counting…")
        self.estimate_runner.submit(estimate_job(str(self.window_.bundle.path), self.kind, units, endpoint, probe))
        return True

    def _on_estimate(self, _request_id: int, result: tuple, _seconds: float) -> None:
        todo, est = result
        if est is None:
            self.estimate_label.setText("Estimate: every selected unit is already explained by this model")
        else:
            self.estimate_label.setText(f"Estimate: {len(todo):,} to do — {est.text()}")

    def _on_estimate_failed(self, _request_id: int, message: str) -> None:
        self.estimate_label.setText(f"Estimate failed: {message}")

    # ----------------------------------------------------------------------------------- the job
    def start(self) -> bool:
        bundle = self.window_.bundle
        if bundle is None or self.jobs.is_busy:
            self.status.setText("Another job is running." if bundle is not None else "Open a bundle first.")
            return False
        try:
            units, endpoint = self.units(), self.endpoint_config()
        except Exception as exc:  # noqa: BLE001 - bad URL, no model, empty selection: say so here
            self.status.setText(str(exc))
            return False
        if self.window_.settings is not None:
            self.window_.settings.set_explain_setup({"endpoint": endpoint.base_url, "model": endpoint.model,
                                                     "key_env": endpoint.api_key_env,
                                                     "concurrency": endpoint.concurrency})
        path, kind = str(bundle.path), self.kind
        self.running = True
        self.status.setText(f"Explaining {len(units):,} {kind}s with {endpoint.model}…")
        return self.jobs.start(f"Explain {kind}s",
                               lambda cancel: explain_job(path, kind, units, endpoint, cancel=cancel))

    def _on_busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and self.running)

    def _on_status(self, status: JobStatus) -> None:
        if not self.running:
            return
        self.progress.setValue(int(1000 * status.fraction))
        self.progress.setFormat(f"{status.done:,} / {status.total:,} units  ·  {status.text}")
        med = "  ·  ".join(f"{k.replace('_median', '')} {v:.2f}" for k, v in status.metrics.items())
        if med:
            self.status.setText(f"median so far: {med}")

    def _ended(self, text: str) -> None:
        self.running = False
        self.cancel_button.setEnabled(False)
        folded = fold_explanations(self.window_)
        self.status.setText(text + (f" {folded}" if folded else ""))

    def _on_finished(self, summary) -> None:
        if self.running:
            self.progress.setValue(1000)
            self._ended(f"Done: {int(summary['explained']):,} explained, {int(summary['failed'])} failed, "
                        f"{int(summary['requests']):,} requests.")

    def _on_cancelled(self, message: str) -> None:
        if self.running:
            self._ended(message.rstrip(".") + ". Explain again to resume.")

    def _on_failed(self, message: str, _details: str) -> None:
        if self.running:
            self._ended(f"Stopped: {message}")
