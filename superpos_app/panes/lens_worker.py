"""The text lens's runner: ``LensEngine.analyze`` off the GUI thread, on the app's one worker mechanism.

Each request is one ``superpos_app.worker.Worker`` job. At most one runs at a time (the engine keeps
a prefix cache and is not thread-safe) and at most one waits: a request submitted while another runs
replaces the waiting one and asks the running one to stop (a long text is read in context windows and
the engine checks between window batches), so a burst of keystrokes or a megabyte paste costs little
more than the newest analysis ("latest request wins"; the pane also drops a result that is stale on
arrival).
``SUPERPOS_SYNC_JOBS=1`` (or ``sync=True``) runs each request inline.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal

from engine.analysis.lens import LensEngine
from superpos_app.worker import Worker, sync_default

__all__ = ["LensRunner"]

SHUTDOWN_WAIT_MS = 30_000


def _analyze(engine: LensEngine, request_id: int, text: str, kwargs: dict, single_thread: bool, token=None):
    """The job: (LensResult, seconds). On a worker thread, torch runs its ops on one thread (a
    per-thread OpenMP setting: other threads, e.g. a training job, keep theirs). A keystroke's tensors
    have at most n_ctx rows, too small for intra-op parallelism to pay, and on a busy 2-core machine
    its spin-waiting made each small op ~10x slower (measured: 198 ms -> 22 ms per re-encoding keystroke)."""
    if single_thread:
        import torch

        torch.set_num_threads(1)
    t0 = time.perf_counter()
    stop = None if token is None else (lambda: token.cancelled)
    result = engine.analyze(text, request_id=request_id, should_stop=stop, **kwargs)
    return result, time.perf_counter() - t0


class LensRunner(QObject):
    """Runs lens requests one at a time on ``Worker`` jobs; results arrive as signals on the GUI thread."""

    resultReady = Signal(object, float)   # LensResult, seconds the engine took
    failed = Signal(int, str)             # request id, message

    def __init__(self, parent: QObject | None = None, sync: bool | None = None) -> None:
        super().__init__(parent)
        self.sync = sync_default() if sync is None else sync
        self.engine: LensEngine | None = None
        self._waiting: tuple[int, str, dict] | None = None
        self._worker: Worker | None = None
        self._running_id = 0
        self.closed = False

    def submit(self, request_id: int, text: str, kwargs: dict) -> None:
        """Analyse ``text`` as request ``request_id`` as soon as the running request (if any) ends."""
        if self.closed:
            return
        self._waiting = (request_id, text, kwargs)
        if self._worker is None:
            self._start_waiting()
        else:
            self._worker.cancel()             # the running request is stale: stop it at its next window

    def reset(self, engine: LensEngine | None) -> None:
        """Use ``engine`` from the next request on and forget the waiting one (a new bundle)."""
        self.engine = engine
        self._waiting = None

    def shutdown(self) -> None:
        """Run nothing more and wait for the running request (the pane shows no new results)."""
        self.closed = True
        self._waiting = None
        if self._worker is not None:
            self._worker.wait(SHUTDOWN_WAIT_MS)

    def _start_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None or self.engine is None or self.closed:
            return
        request_id, text, kwargs = waiting
        engine, single_thread = self.engine, not self.sync
        worker = Worker(lambda token: _analyze(engine, request_id, text, kwargs, single_thread, token), sync=self.sync)
        worker.returned.connect(self._on_returned)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self._worker, self._running_id = worker, request_id
        worker.start()

    def _on_returned(self, out: tuple) -> None:
        self._worker = None
        self._start_waiting()                 # the next analysis runs while this result is drawn
        if not self.closed:
            self.resultReady.emit(*out)

    def _on_cancelled(self, _message: str) -> None:
        self._worker = None                   # replaced by a newer request: run that one
        self._start_waiting()

    def _on_failed(self, message: str, _details: str) -> None:
        request_id, self._worker = self._running_id, None
        self._start_waiting()
        if not self.closed:
            self.failed.emit(request_id, message)
