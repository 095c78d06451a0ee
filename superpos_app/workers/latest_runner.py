"""Latest request wins: the app's one runner for short analyses off the GUI thread (a lens keystroke,
a dashboard's ablation underlines, the compare pane's max |cos|, the Explain dialog's estimate), on
the app's one worker mechanism (``superpos_app.workers.worker``):

    request = runner.submit(job)        job(token) -> result, a plain function; returns the request id
    resultReady(request, result, s)     the newest request's result, s = seconds it ran on the worker
    failed(request, message)            the newest request failed
    idle()                              nothing runs and nothing waits

At most one job runs and at most one waits: a request submitted while another runs replaces the
waiting one and asks the running one to stop (the engines check their token between batches), so a
burst of requests costs little more than the newest one. Each request is tagged with a counter and
only the newest one's result or failure is emitted: a stale result is dropped here, so no caller
compares ids. ``drop()`` makes every request so far stale (a new bundle, no examples shown).

``SUPERPOS_SYNC_JOBS=1`` in the environment runs each job inline (``worker.sync_default``): its
signals are emitted before ``submit`` returns. A test that must know nothing more will arrive waits
for ``idle`` (``wait_idle()``), never a fixed number of milliseconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from PySide6.QtCore import QEventLoop, QObject, QTimer, Signal

from superpos_app.workers.worker import Worker

__all__ = ["LatestRunner", "SHUTDOWN_WAIT_MS", "torch_on_one_thread"]

SHUTDOWN_WAIT_MS = 30_000

Job = Callable[[Any], Any]


def torch_on_one_thread() -> None:
    """For a job of small tensors (a lens keystroke, one unit's ablation): on a worker thread, torch runs
    its ops on one thread (a per-thread OpenMP setting: other threads, e.g. a training job, keep
    theirs). Such tensors are too small for intra-op parallelism to pay, and on a busy 2-core machine
    its spin-waiting made each small op ~10x slower (measured: 198 ms -> 22 ms per re-encoding
    keystroke). Inline (``SUPERPOS_SYNC_JOBS=1``, the GUI thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        import torch

        torch.set_num_threads(1)


class LatestRunner(QObject):
    """Runs requests one at a time on ``Worker`` jobs; the newest one's result arrives on the GUI thread."""

    resultReady = Signal(int, object, float)   # request id, the job's result, seconds it ran
    failed = Signal(int, str)                  # request id, message
    idle = Signal()                            # nothing runs, nothing waits

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._latest = 0                       # id of the newest request; results of others are stale
        self._waiting: tuple[int, Job] | None = None
        self._worker: Worker | None = None
        self._running_id = 0
        self.closed = False

    @property
    def latest(self) -> int:
        """The id of the newest request (0: none yet)."""
        return self._latest

    @property
    def busy(self) -> bool:
        """A job runs (a waiting one always has a running one ahead of it)."""
        return self._worker is not None

    def submit(self, job: Job) -> int:
        """Run ``job`` as soon as the running one (if any) ends; the running one is asked to stop (it
        is stale). Returns the new request's id."""
        self._latest += 1
        request_id = self._latest
        if self.closed:
            return request_id
        self._waiting = (request_id, job)
        if self._worker is None:
            self._start_waiting()
        else:
            self._worker.cancel()
        return request_id

    def drop(self) -> None:
        """Make every request so far stale: forget the waiting one, stop the running one."""
        self._latest += 1
        self._waiting = None
        if self._worker is not None:
            self._worker.cancel()

    def shutdown(self) -> None:
        """Run nothing more and wait for the running request (no new results are shown)."""
        self.closed = True
        self._waiting = None
        if self._worker is not None:
            self._worker.wait(SHUTDOWN_WAIT_MS)

    def wait_idle(self, timeout_ms: int = 30_000) -> bool:
        """Run the event loop until nothing runs or waits (tests, benchmarks); True if it got there."""
        if not self.busy:
            return True
        loop = QEventLoop()
        self.idle.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        loop.exec()
        self.idle.disconnect(loop.quit)
        return not self.busy

    # --- GUI-thread internals ------------------------------------------------------------------------
    def _start_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None or self.closed:
            self.idle.emit()
            return
        request_id, job = waiting
        worker = Worker(lambda token: _timed(job, token))
        worker.returned.connect(self._on_returned)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self._worker, self._running_id = worker, request_id
        worker.start()

    def _on_returned(self, out: tuple) -> None:
        request_id, self._worker = self._running_id, None
        fresh = request_id == self._latest and not self.closed
        if self._waiting is not None:
            self._start_waiting()             # the next request runs while this result is drawn
        if fresh:
            self.resultReady.emit(request_id, *out)
        if self._worker is None and self._waiting is None:
            self.idle.emit()

    def _on_cancelled(self, _message: str) -> None:
        self._worker = None                   # replaced by a newer request (or dropped): run that one
        self._start_waiting()

    def _on_failed(self, message: str, _details: str) -> None:
        request_id, self._worker = self._running_id, None
        fresh = request_id == self._latest and not self.closed
        if self._waiting is not None:
            self._start_waiting()
        if fresh:
            self.failed.emit(request_id, message)
        if self._worker is None and self._waiting is None:
            self.idle.emit()


def _timed(job: Job, token) -> tuple[Any, float]:
    """On the worker: (the job's result, seconds it took)."""
    t0 = time.perf_counter()
    result = job(token)
    return result, time.perf_counter() - t0
