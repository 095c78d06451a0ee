"""The job controller: runs one engine job at a time off the GUI thread and reports it as Qt signals.

An engine job is a generator that yields events (engine.events) and returns a result; it takes a
``CancelToken``. The controller runs it on a ``superpos_app.workers.worker.Worker`` (the app's one worker
mechanism: its docstring explains the coalesced drain at ``DRAIN_MS`` that keeps a job yielding
thousands of events per second from flooding the GUI thread, the garbage collector, the cancel
grace and ``SUPERPOS_SYNC_JOBS=1``) and turns each drained batch of events into a few signals:

    Worker.yielded([events])  ->  stageStarted / stageFinished / metricsReceived (thinned to
                                  MAX_POINTS_PER_DRAIN per stage) / messageReceived / statusChanged
    Worker.returned | cancelled | failed  ->  busyChanged(False), then jobFinished | jobCancelled | jobFailed

Completion is reported only by these signals; a caller that cares about its own job connects to
them (and checks that the job is its own, e.g. by a flag set when it started one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np
from PySide6.QtCore import QObject, Signal

from engine.events import CancelToken, Glimpse, Message, Progress, StageFinished, StageStarted
from engine.run_clock import format_eta

from superpos_app.workers.worker import DRAIN_MS, Worker

__all__ = ["JobController", "JobStatus", "format_eta", "DRAIN_MS"]

MAX_POINTS_PER_DRAIN = 400

JobFactory = Callable[[CancelToken], Generator[Any, None, Any]]


@dataclass
class JobStatus:
    """A plain snapshot of where the running job is (what the progress bar shows)."""

    title: str = ""
    stage: str = ""
    stage_index: int = 0
    n_stages: int = 1
    done: int = 0
    total: int = 0
    unit: str = ""
    fraction: float = 0.0          # within the current stage, 0..1
    eta_s: float | None = None     # seconds left in the current stage
    run_fraction: float | None = None  # of the whole pipeline run, where the job knows it
    run_eta_s: float | None = None     # seconds left in the whole run
    metrics: dict = field(default_factory=dict)
    cancelling: bool = False

    @property
    def percent(self) -> int:
        return int(round(100 * self.fraction))

    @property
    def text(self) -> str:
        if self.cancelling:
            return "Cancelling…"
        if not self.stage:
            return "Starting…"
        parts = [f"{self.stage} ({self.stage_index + 1}/{max(self.n_stages, 1)})"]
        if self.total:
            parts.append(f"{self.percent}%")
        eta = format_eta(self.eta_s)
        run_eta = format_eta(self.run_eta_s)
        if eta:
            parts.append(f"stage ETA {eta}" if run_eta else f"ETA {eta}")
        if run_eta:
            parts.append(f"whole run {100 * (self.run_fraction or 0):.0f}%, ETA {run_eta}")
        return " · ".join(parts)


class JobController(QObject):
    """Owns the one running engine job; everything it emits arrives on the GUI thread."""

    jobStarted = Signal(str)                 # title
    stageStarted = Signal(str, int, int)     # stage, index, n_stages
    stageFinished = Signal(str, float, object)  # stage, seconds, summary dict
    statusChanged = Signal(object)           # JobStatus (at most every DRAIN_MS)
    metricsReceived = Signal(str, object)    # stage, list[(x, {name: value})] batch
    glimpseReceived = Signal(object)         # engine.events.Glimpse (baselines, the model's predictions)
    messageReceived = Signal(str, str)       # text, level
    jobFinished = Signal(object)             # the job's return value
    jobCancelled = Signal(str)               # a sentence for the user
    jobFailed = Signal(str, str)             # message, details (traceback)
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker: Worker | None = None
        self._status = JobStatus()
        self.events_seen = 0
        self.last_outcome: str | None = None

    # --- public API ------------------------------------------------------------------------------
    @property
    def is_busy(self) -> bool:
        return self._worker is not None

    @property
    def status(self) -> JobStatus:
        return self._status

    def start(self, title: str, factory: JobFactory) -> bool:
        """Start ``factory(cancel_token)`` as the job; False (and nothing started) if one is running."""
        if self.is_busy:
            return False
        self._status = JobStatus(title=title)
        self.events_seen = 0
        self.last_outcome = None
        worker = Worker(factory, freeze_gc=True)
        worker.yielded.connect(self._on_events)
        worker.returned.connect(self._on_returned)
        worker.cancelled.connect(self._on_cancelled)
        worker.failed.connect(self._on_failed)
        self._worker = worker
        self.busyChanged.emit(True)
        self.jobStarted.emit(title)
        self.statusChanged.emit(self._status)
        worker.start()
        return True

    def cancel(self) -> None:
        """Ask the running job to stop (it saves a checkpoint first); returns at once."""
        if self._worker is None or self._worker.token.cancelled:
            return
        self._worker.cancel()
        self._status.cancelling = True
        self.statusChanged.emit(self._status)

    def wait(self, timeout_ms: int = 5000) -> bool:
        """Block until the job ends and report it now (for shutdown and tests); True if it did."""
        return True if self._worker is None else self._worker.wait(timeout_ms)

    # --- GUI-thread internals --------------------------------------------------------------------
    def _on_events(self, events: list) -> None:
        self.events_seen += len(events)
        status = self._status
        points: dict[str, list] = {}

        def flush_points():
            for stage, pts in points.items():
                if len(pts) > MAX_POINTS_PER_DRAIN:   # thin a burst; keep the last point
                    keep = np.linspace(0, len(pts) - 1, MAX_POINTS_PER_DRAIN).astype(int)
                    pts = [pts[i] for i in keep]
                self.metricsReceived.emit(stage, pts)
            points.clear()

        for ev in events:
            if isinstance(ev, Progress):
                status.stage, status.done, status.total, status.unit = ev.stage, ev.done, ev.total, ev.unit
                status.fraction = ev.fraction
                status.eta_s = ev.eta_s
                if ev.run_eta_s is not None:
                    status.run_fraction, status.run_eta_s = ev.run_fraction, ev.run_eta_s
                if ev.metrics:
                    status.metrics = dict(ev.metrics)
                    points.setdefault(ev.stage, []).append((ev.done, dict(ev.metrics)))
            elif isinstance(ev, StageStarted):
                flush_points()
                status.stage, status.stage_index, status.n_stages = ev.stage, ev.index, max(1, ev.n_stages)
                status.done, status.total, status.unit, status.fraction, status.eta_s = 0, ev.total, ev.unit, 0.0, None
                status.metrics = {}
                self.stageStarted.emit(ev.stage, ev.index, ev.n_stages)
            elif isinstance(ev, StageFinished):
                flush_points()
                if ev.stage == status.stage:
                    status.fraction, status.eta_s = 1.0, 0.0
                self.stageFinished.emit(ev.stage, float(ev.seconds), dict(ev.summary))
            elif isinstance(ev, Message):
                self.messageReceived.emit(ev.text, ev.level)
            elif isinstance(ev, Glimpse):
                self.glimpseReceived.emit(ev)
        flush_points()
        self.statusChanged.emit(status)

    def _ended(self, outcome: str) -> None:
        self._worker = None
        self.last_outcome = outcome
        self.busyChanged.emit(False)

    def _on_returned(self, result: Any) -> None:
        self._ended("finished")
        self.jobFinished.emit(result)

    def _on_cancelled(self, message: str) -> None:
        self._ended("cancelled")
        self.jobCancelled.emit(message)

    def _on_failed(self, message: str, details: str) -> None:
        self._ended("failed")
        self.jobFailed.emit(message, details)
