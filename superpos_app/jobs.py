"""The job controller: runs one engine job at a time off the GUI thread and reports it as Qt signals.

An engine job is a generator that yields events (engine.events) and returns a result; it takes a
``CancelToken``. The controller runs it on a QThread whose only work is ``next(generator)`` and
appending each event to a deque — it never touches a widget and never emits per event. A timer on
the GUI thread drains that deque every ``DRAIN_MS`` and emits a few coalesced signals, so a job
yielding thousands of events per second cannot flood the GUI thread:

    worker thread:  gen -> deque.append(event)                (no Qt calls)
    GUI thread:     QTimer(DRAIN_MS) -> drain -> statusChanged / metricsReceived / stage signals

Cancel sets the token; a well-behaved job saves a checkpoint and raises ``Cancelled`` at its next
step. A job that keeps yielding for more than ``CANCEL_GRACE_S`` after the request is closed
(``generator.close()``) so the app never waits on it. ``SUPERPOS_SYNC_JOBS=1`` runs jobs inline on
the calling thread (deterministic tests, debugging).

Garbage collection: a full (generation 2) collection holds the GIL while it scans every tracked
object — with torch and Qt loaded that is ~300k objects, and measured pauses reached 300-500 ms on a
busy 2-core machine, freezing the GUI whichever thread triggered it. While a job runs the drain
timer therefore calls ``gc.freeze()`` each tick: objects that have survived so far move to the
permanent generation and are not rescanned, so a full collection only looks at the last ~100 ms
of survivors (benchmarks/bench_responsiveness.py --workload model, busy 2-core machine: max GUI
gap 468 ms without the freeze, 33 ms with it).
``gc.unfreeze()`` at the end of the job hands everything back to the collector, so nothing leaks.
"""

from __future__ import annotations

import collections
import gc
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal

from engine.events import Cancelled, CancelToken, Message, Progress, StageFinished, StageStarted

from superpos_app.errors import describe_exception

__all__ = ["JobController", "JobStatus", "format_eta", "DRAIN_MS"]

DRAIN_MS = 100            # GUI refresh period for job progress (10 Hz)
CANCEL_GRACE_S = 0.8      # after this long, a job that ignores its CancelToken is closed
MAX_POINTS_PER_DRAIN = 400

JobFactory = Callable[[CancelToken], Generator[Any, None, Any]]


def format_eta(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return ""
    seconds = int(round(max(0.0, seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


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
        if eta:
            parts.append(f"ETA {eta}")
        return " · ".join(parts)


class _JobThread(QThread):
    """Drives the generator; results land in attributes read on the GUI thread after ``finished``."""

    def __init__(self, factory: JobFactory, token: CancelToken, queue: collections.deque,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._factory = factory
        self._token = token
        self._queue = queue
        self.cancel_requested_at: float | None = None
        self.outcome = "running"   # finished | cancelled | failed
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancel_message = ""

    def run(self) -> None:  # worker thread: no Qt widgets, no signals besides QThread.finished
        gen = None
        try:
            gen = self._factory(self._token)
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    self.result = stop.value
                    self.outcome = "finished"
                    return
                self._queue.append(event)
                asked = self.cancel_requested_at
                if asked is not None and time.monotonic() - asked > CANCEL_GRACE_S:
                    gen.close()        # the job ignored its token for too long: stop it here
                    self.outcome = "cancelled"
                    self.cancel_message = "Stopped (the job did not reach a checkpoint in time)."
                    return
        except Cancelled as exc:
            self.outcome = "cancelled"
            checkpoint = getattr(exc, "checkpoint", None)
            self.cancel_message = (f"Cancelled; checkpoint saved in {checkpoint}." if checkpoint
                                   else "Cancelled; progress so far is kept for resuming.")
        except BaseException as exc:  # noqa: BLE001 - reported to the user on the GUI thread
            self.outcome = "failed"
            self.error = exc
        finally:
            self._factory = None   # drop references to big objects promptly


class JobController(QObject):
    """Owns the one running engine job; everything it emits arrives on the GUI thread."""

    jobStarted = Signal(str)                 # title
    stageStarted = Signal(str, int, int)     # stage, index, n_stages
    stageFinished = Signal(str, float, object)  # stage, seconds, summary dict
    statusChanged = Signal(object)           # JobStatus (at most every DRAIN_MS)
    metricsReceived = Signal(str, object)    # stage, list[(x, {name: value})] batch
    messageReceived = Signal(str, str)       # text, level
    jobFinished = Signal(object)             # the job's return value
    jobCancelled = Signal(str)               # a sentence for the user
    jobFailed = Signal(str, str)             # message, details (traceback)
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None, sync: bool | None = None) -> None:
        super().__init__(parent)
        self.sync = (os.environ.get("SUPERPOS_SYNC_JOBS", "0") == "1") if sync is None else sync
        self._queue: collections.deque = collections.deque()
        self._thread: _JobThread | None = None
        self._token: CancelToken | None = None
        self._status = JobStatus()
        self._callbacks: dict[str, Callable | None] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_MS)
        self._timer.timeout.connect(self._drain)
        self.events_seen = 0
        self.last_outcome: str | None = None
        self.freeze_gc = True

    # --- public API ------------------------------------------------------------------------------
    @property
    def is_busy(self) -> bool:
        return self._token is not None

    @property
    def status(self) -> JobStatus:
        return self._status

    def start(self, title: str, factory: JobFactory, *, on_finished: Callable[[Any], None] | None = None,
              on_cancelled: Callable[[str], None] | None = None,
              on_failed: Callable[[str, str], None] | None = None) -> bool:
        """Start ``factory(cancel_token)`` as the job; False (and nothing started) if one is running."""
        if self.is_busy:
            return False
        self._token = CancelToken()
        self._queue.clear()
        self._status = JobStatus(title=title)
        self._callbacks = {"finished": on_finished, "cancelled": on_cancelled, "failed": on_failed}
        self.events_seen = 0
        self.last_outcome = None
        self.busyChanged.emit(True)
        self.jobStarted.emit(title)
        self.statusChanged.emit(self._status)
        thread = _JobThread(factory, self._token, self._queue)
        self._thread = thread
        if self.sync:
            thread.run()
            self._on_thread_finished(thread)
        else:
            thread.finished.connect(self._thread_done)   # queued: a slot of this GUI-thread object
            if self.freeze_gc:
                gc.freeze()
            self._timer.start()
            thread.start()
        return True

    def cancel(self) -> None:
        """Ask the running job to stop (it saves a checkpoint first); returns at once."""
        if self._token is None or self._token.cancelled:
            return
        self._token.cancel()
        if self._thread is not None:
            self._thread.cancel_requested_at = time.monotonic()
        self._status.cancelling = True
        self.statusChanged.emit(self._status)

    def wait(self, timeout_ms: int = 5000) -> bool:
        """Block until the job's thread ends (for shutdown and tests); True if it did."""
        thread = self._thread
        if thread is None:
            return True
        ok = thread.wait(timeout_ms)
        if ok and self._thread is thread:
            self._on_thread_finished(thread)
        return ok

    # --- GUI-thread internals --------------------------------------------------------------------
    def _drain(self) -> None:
        if self.freeze_gc and self._token is not None and not self.sync:
            gc.freeze()                      # see the module docstring: keeps full collections short
        events = []
        queue = self._queue
        while queue:
            events.append(queue.popleft())
        if not events:
            return
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
        flush_points()
        self.statusChanged.emit(status)

    def _thread_done(self) -> None:
        thread = self._thread
        if thread is not None and thread.isFinished():
            self._on_thread_finished(thread)

    def _on_thread_finished(self, thread: _JobThread) -> None:
        if thread is not self._thread:
            return                       # already handled (wait() raced the finished signal)
        self._timer.stop()
        self._drain()
        if self.freeze_gc and not self.sync:
            gc.unfreeze()
        self._thread = None
        self._token = None
        outcome = thread.outcome
        self.last_outcome = outcome
        callbacks, self._callbacks = self._callbacks, {}
        self.busyChanged.emit(False)
        if outcome == "finished":
            if callbacks.get("finished"):
                callbacks["finished"](thread.result)
            self.jobFinished.emit(thread.result)
        elif outcome == "cancelled":
            if callbacks.get("cancelled"):
                callbacks["cancelled"](thread.cancel_message)
            self.jobCancelled.emit(thread.cancel_message)
        else:
            message, details = describe_exception(thread.error or RuntimeError("the job stopped"))
            if callbacks.get("failed"):
                callbacks["failed"](message, details)
            self.jobFailed.emit(message, details)
        thread.deleteLater()
