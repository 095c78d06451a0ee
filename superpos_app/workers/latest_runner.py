"""Latest request wins: short analyses (a lens keystroke, a dashboard's ablation underlines) off the GUI
thread, on the app's one worker mechanism (``superpos_app.workers.worker``).

Each request is one ``Worker`` job. At most one runs at a time and at most one waits: a request
submitted while another runs replaces the waiting one and asks the running one to stop (the engines
check their token between batches), so a burst of requests costs little more than the newest one.
A subclass turns a request's payload into the job (``_make_job``); the job returns ``(result,
seconds)``, which arrives on the GUI thread as ``resultReady``. ``SUPERPOS_SYNC_JOBS=1`` (or
``sync=True``) runs each request inline.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from superpos_app.workers.worker import Worker, sync_default

__all__ = ["LatestRunner", "SHUTDOWN_WAIT_MS"]

SHUTDOWN_WAIT_MS = 30_000


class LatestRunner(QObject):
    """Runs requests one at a time on ``Worker`` jobs; results arrive as signals on the GUI thread."""

    resultReady = Signal(object, float)   # the job's result, seconds the engine took
    failed = Signal(int, str)             # request id, message

    def __init__(self, parent: QObject | None = None, sync: bool | None = None) -> None:
        super().__init__(parent)
        self.sync = sync_default() if sync is None else sync
        self._waiting: tuple[int, Any] | None = None
        self._worker: Worker | None = None
        self._running_id = 0
        self.closed = False

    def _make_job(self, request_id: int, payload: Any) -> Callable | None:
        """The job (a callable taking a CancelToken) for a request; None: nothing to run."""
        raise NotImplementedError

    def submit_request(self, request_id: int, payload: Any) -> None:
        """Run request ``request_id`` as soon as the running one (if any) ends; the running one is
        asked to stop (it is stale)."""
        if self.closed:
            return
        self._waiting = (request_id, payload)
        if self._worker is None:
            self._start_waiting()
        else:
            self._worker.cancel()

    def drop(self) -> None:
        """Forget the waiting request and stop the running one (its result is no longer wanted)."""
        self._waiting = None
        if self._worker is not None:
            self._worker.cancel()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def shutdown(self) -> None:
        """Run nothing more and wait for the running request (no new results are shown)."""
        self.closed = True
        self._waiting = None
        if self._worker is not None:
            self._worker.wait(SHUTDOWN_WAIT_MS)

    def _start_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None or self.closed:
            return
        request_id, payload = waiting
        job = self._make_job(request_id, payload)
        if job is None:
            return
        worker = Worker(job, sync=self.sync)
        worker.returned.connect(self._on_returned)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self._worker, self._running_id = worker, request_id
        worker.start()

    def _on_returned(self, out: tuple) -> None:
        self._worker = None
        self._start_waiting()                 # the next request runs while this result is drawn
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
