"""The Toy Models window: sliders for n, m, S and the importance decay retrain the toy model live
(debounced, latest request wins: the app's one ``LatestRunner`` running ``jobs.retrain_job``), and buttons run the longer jobs — the
dimensionality sweep over sparsity, the phase diagram, an SAE on the hidden layer and its recovery
against sparsity — with progress and Cancel. The GUI thread only sets data on plot items."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QMainWindow, QProgressBar, QPushButton,
                               QScrollArea, QSlider, QVBoxLayout, QWidget)

from engine.events import Progress, StageStarted
from engine.toy.dictionary import SWEEP_SPARSITIES, DictionaryConfig, recovery_sweep, train_dictionary
from engine.toy.model import ToyConfig, importances
from engine.toy.phase import phase_diagram
from superpos_app.toy.jobs import TrainedToy, dimensionality_sweep, retrain_job, single_threaded
from superpos_app.toy.plots import (BarsPlot, DimensionalityPlot, GeometryPlot, GramPlot, PhasePlot,
                                    RecoveryPlot)
from superpos_app.workers.latest_runner import LatestRunner
from superpos_app.workers.worker import Worker

__all__ = ["ToyWindow", "DEBOUNCE_MS", "sparsity_of", "MAX_N", "MAX_M"]

DEBOUNCE_MS = 120          # a slider drag retrains once it pauses this long
MAX_N, MAX_M = 40, 10
PHASE_SIZE = 16            # cells a side of the window's phase diagram (superpos toy --phase-diagram: 20)


def sparsity_of(position: int) -> float:
    """The S slider (0 … 300) is log-spaced in density: S = 1 − 10^(−position/100), 0 … 0.999."""
    return round(1.0 - 10.0 ** (-position / 100.0), 4)


class _Slider(QWidget):
    """A labelled horizontal slider whose label shows the value it stands for."""

    def __init__(self, name: str, low: int, high: int, value: int, text, object_name: str) -> None:
        super().__init__()
        self._text = text
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName(object_name)
        self.slider.setRange(low, high)
        self.slider.setValue(value)
        self.label = QLabel()
        self.label.setMinimumWidth(150)
        self._name = name
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        box.addWidget(self.label)
        box.addWidget(self.slider)
        self.slider.valueChanged.connect(self._show)
        self._show(value)

    def _show(self, value: int) -> None:
        self.label.setText(f"{self._name}: {self._text(value)}")


class ToyWindow(QMainWindow):
    def __init__(self, parent: QWidget | None = None, steps: int | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toyWindow")
        self.setWindowTitle("Toy Models of Superposition")
        self.resize(1280, 860)
        self.base = ToyConfig() if steps is None else ToyConfig(steps=steps)
        self.toy: TrainedToy | None = None
        self.runner = LatestRunner(self)
        self.runner.resultReady.connect(self._on_trained)
        self.runner.failed.connect(self._on_retrain_failed)
        self._job: Worker | None = None
        self._on_done = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.retrain)

        controls = self._build_controls()
        self.geometry_plot = GeometryPlot()
        self.gram_plot = GramPlot()
        self.bars_plot = BarsPlot()
        self.dims_plot = DimensionalityPlot()
        self.phase_plot = PhasePlot()
        self.recovery_plot = RecoveryPlot()
        self.recovery_plot.setMinimumHeight(520)
        self.phase_plot.setMinimumHeight(520)
        grid_host = QWidget()
        grid = QGridLayout(grid_host)
        grid.setContentsMargins(6, 6, 6, 6)
        grid.addWidget(self.geometry_plot, 0, 0)
        grid.addWidget(self.gram_plot, 0, 1)
        grid.addWidget(self.bars_plot, 1, 0)
        grid.addWidget(self.dims_plot, 1, 1)
        grid.addWidget(self.phase_plot, 2, 0)
        grid.addWidget(self.recovery_plot, 2, 1)
        self.scroll = QScrollArea()
        self.scroll.setObjectName("toyPlots")
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(grid_host)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(controls)
        row.addWidget(self.scroll, 1)
        self.setCentralWidget(central)
        QTimer.singleShot(0, self.retrain)

    # ------------------------------------------------------------------ building
    def _build_controls(self) -> QWidget:
        panel = QWidget()
        panel.setObjectName("toyControls")
        panel.setFixedWidth(270)
        box = QVBoxLayout(panel)
        box.setContentsMargins(12, 12, 12, 12)
        box.setSpacing(10)
        title = QLabel("Toy model")
        title.setProperty("role", "sectionTitle")
        formula = QLabel("x′ = ReLU(WᵀW x + b), n features in m dimensions; each feature is 0 with "
                         "probability S, else uniform on [0, 1]; importance Iᵢ = rⁱ")
        formula.setWordWrap(True)
        formula.setProperty("role", "muted")
        box.addWidget(title)
        box.addWidget(formula)
        self.n_slider = _Slider("features n", 2, MAX_N, self.base.n_features, str, "toyFeatures")
        self.m_slider = _Slider("hidden m", 1, MAX_M, self.base.n_hidden, str, "toyHidden")
        self.s_slider = _Slider("sparsity S", 0, 300, 100, lambda v: f"{sparsity_of(v):g}", "toySparsity")
        self.r_slider = _Slider("importance decay r (Iᵢ = rⁱ)", 50, 100, 100, lambda v: f"{v / 100:.2f}",
                                "toyImportance")
        for slider in (self.n_slider, self.m_slider, self.s_slider, self.r_slider):
            box.addWidget(slider)
            slider.slider.valueChanged.connect(self._settings_changed)
        self.status = QLabel("Training…")
        self.status.setObjectName("toyStatus")
        self.status.setWordWrap(True)
        self.status.setProperty("role", "muted")
        box.addWidget(self.status)
        box.addSpacing(8)
        jobs_title = QLabel("Longer jobs")
        jobs_title.setProperty("role", "sectionTitle")
        box.addWidget(jobs_title)
        self.sweep_button = self._button("Dimensionality vs sparsity", "toySweepButton", self.run_dimensionality,
                                         "Train this n, m and importance at 16 sparsities at once")
        self.phase_button = self._button("Phase diagram", "toyPhaseButton", self.run_phase,
                                         f"One extra feature (n = 2, m = 1), {PHASE_SIZE} × {PHASE_SIZE} cells")
        self.sae_button = self._button("Train SAE on h", "toySaeButton", self.run_sae,
                                       "A TopK SAE with 2n latents on the hidden activations h = W x")
        self.recovery_button = self._button("SAE recovery vs sparsity", "toyRecoveryButton", self.run_recovery,
                                            "Model and SAE at S = " + ", ".join(f"{s:g}" for s in SWEEP_SPARSITIES))
        for button in (self.sweep_button, self.phase_button, self.sae_button, self.recovery_button):
            box.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setObjectName("toyProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("toyCancelButton")
        self.cancel_button.clicked.connect(self.cancel_job)
        box.addWidget(self.progress)
        box.addWidget(self.cancel_button)
        self.job_status = QLabel("")
        self.job_status.setObjectName("toyJobStatus")
        self.job_status.setWordWrap(True)
        self.job_status.setProperty("role", "muted")
        box.addWidget(self.job_status)
        box.addStretch(1)
        self._set_job_busy(False)
        return panel

    def _button(self, text: str, name: str, slot, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # ------------------------------------------------------------------ the live model
    def config(self) -> ToyConfig:
        return replace(self.base, n_features=self.n_slider.slider.value(), n_hidden=self.m_slider.slider.value(),
                       sparsity=sparsity_of(self.s_slider.slider.value()),
                       importance_decay=self.r_slider.slider.value() / 100.0)

    def _settings_changed(self, _value: int) -> None:
        self.status.setText("Retraining…")
        self._debounce.start()

    def retrain(self) -> None:
        self.runner.submit(retrain_job(self.config()))

    def _on_trained(self, _request_id: int, toy: TrainedToy, seconds: float) -> None:
        if toy.cfg != self.config():
            return                            # a slider moved since: a newer request is on its way
        self.toy = toy
        m, cfg = toy.measures, toy.cfg
        importance_N = importances(cfg.n_features, cfg.importance_decay)
        self.geometry_plot.set_model(toy.W_MN, importance_N)
        self.gram_plot.set_gram(m.gram_NN)
        self.bars_plot.set_measures(m.norms_N, m.superposition_N)
        self.dims_plot.set_current(cfg.sparsity, m.dimensionality_N)
        self.status.setText(f"loss {toy.loss:.5f} · {int(m.represented_N.sum())} of {cfg.n_features} features "
                            f"represented · mean Dᵢ {float(m.dimensionality_N.mean()):.2f} · trained in {seconds:.1f} s")

    def _on_retrain_failed(self, _request_id: int, message: str) -> None:
        self.status.setText(f"Training failed: {message}")

    # ------------------------------------------------------------------ longer jobs
    @property
    def job_running(self) -> bool:
        return self._job is not None

    def _start_job(self, title: str, job, on_done) -> None:
        if self._job is not None:
            self.job_status.setText("A job is running; cancel it or wait for it to end.")
            return
        self._on_done = on_done
        self._title = title
        worker = Worker(single_threaded(job))
        worker.yielded.connect(self._on_events)
        worker.returned.connect(self._on_job_returned)
        worker.cancelled.connect(self._on_job_cancelled)
        worker.failed.connect(self._on_job_failed)
        self._job = worker
        self.job_status.setText(f"{title}…")
        self._set_job_busy(True)
        worker.start()

    def _set_job_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.progress.setValue(0)
        for button in (self.sweep_button, self.phase_button, self.sae_button, self.recovery_button):
            button.setEnabled(not busy)

    def cancel_job(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def _on_events(self, events: list) -> None:
        for event in events:
            if isinstance(event, StageStarted):
                self.progress.setFormat(f"{self._title}: {event.stage} %p%")
            elif isinstance(event, Progress):
                self.progress.setValue(int(1000 * event.fraction))

    def _end_job(self, text: str) -> None:
        self._job = None
        self._set_job_busy(False)
        self.job_status.setText(text)

    def _on_job_returned(self, result) -> None:
        on_done, self._on_done = self._on_done, None
        self._end_job(f"{self._title}: done.")
        on_done(result)

    def _on_job_cancelled(self, _message: str) -> None:
        self._end_job(f"{self._title}: cancelled.")

    def _on_job_failed(self, message: str, _details: str) -> None:
        self._end_job(f"{self._title} failed: {message}")

    def run_dimensionality(self) -> None:
        cfg = self.config()
        self._start_job("Dimensionality sweep", lambda token: dimensionality_sweep(cfg, token), self._show_sweep)

    def _show_sweep(self, sweep) -> None:
        self.dims_plot.set_sweep(sweep.sparsity_I, sweep.dimensionality_IN)

    def run_phase(self) -> None:
        steps = min(self.base.steps, 1000)
        self._start_job("Phase diagram", lambda token: phase_diagram(size=PHASE_SIZE, steps=steps, cancel=token),
                        self.phase_plot.set_diagram)

    def run_sae(self) -> None:
        if self.toy is None:
            self.job_status.setText("Wait for the model to train first.")
            return
        toy = self.toy
        self._start_job("SAE on the hidden layer",
                        lambda token: train_dictionary(toy.W_MN, toy.cfg.sparsity, DictionaryConfig(), token),
                        lambda rec: self.recovery_plot.set_recovery(toy.W_MN, rec))

    def run_recovery(self) -> None:
        cfg = self.config()
        self._start_job("SAE recovery sweep",
                        lambda token: recovery_sweep(cfg, SWEEP_SPARSITIES, DictionaryConfig(), token),
                        self.recovery_plot.set_sweep)

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self._debounce.stop()
        self.runner.drop()
        if self._job is not None:
            self._job.cancel()
        super().closeEvent(event)
