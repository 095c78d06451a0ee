"""The app's one worker mechanism: a job runs on its own thread and reports on the GUI thread as Qt signals.

A *job* is a callable taking a ``CancelToken``. It returns either a generator — which yields events
(engine.events) and returns a result, the shape of every long engine job — or, for short work such as
one text-lens analysis, the result itself. ``Worker`` runs it on a QThread whose only work is
``next(generator)`` and appending each event to a deque: it never touches a widget and never emits
per event. A timer on the GUI thread drains the deque every ``DRAIN_MS`` into one ``yielded`` signal,
so a job yielding thousands of events per second cannot flood the GUI thread:

    worker thread:  job(token) -> deque.append(event)           (no Qt calls)
    GUI thread:     QTimer(DRAIN_MS) -> yielded([events...])    then returned | cancelled | failed

Completion is one of three signals (nothing else: no callbacks), emitted on the GUI thread after the
last ``yielded``. Only plain data crosses back: the job's events and result, and for a failure the
message and traceback already turned into strings on the worker thread. Connect bound methods of
QObjects (Qt drops such a connection when its receiver is deleted), not lambdas.

A worker is a child of the application, not of whoever started it: closing the pane or window that
started a job never destroys a running thread. It deletes itself once it has reported, and the
application's ``aboutToQuit`` cancels and waits for any still running.

Cancel sets the token; a well-behaved job saves a checkpoint and raises ``Cancelled`` at its next
step. A job that keeps yielding for more than ``CANCEL_GRACE_S`` after the request is closed
(``generator.close()``) so the app never waits on it.

One switch, no constructor argument: ``SUPERPOS_SYNC_JOBS=1`` in the environment (read when a worker
is made, so a test's ``monkeypatch.setenv`` applies) runs every worker inline on the calling thread
(deterministic tests, debugging): the signals are then emitted before ``start()`` returns.

Garbage collection (this module is the one place that touches the collector): a full (generation 2)
collection holds the GIL while it scans every tracked object — with torch, Qt and pyqtgraph loaded
that is ~300k objects, and measured pauses reached 300-500 ms on a busy 2-core machine, freezing the
GUI whichever thread triggered it. So:

- objects that live as long as the process or the open bundle are frozen (moved to the permanent
  generation) right after they are made, by ``freeze_long_lived()``: the imported modules' (the entry
  point, once the window is built) and the model, SAE and tokenizer the text lens loads for a bundle
  (a long text's result holds thousands of small lists, whose allocations trigger full collections:
  measured 460 ms GUI stalls without it; tests/app/test_panes_lens.py's stall test: 556-648 ms
  without, 75 ms with, load 11 on 2 cores);
- a long job (``freeze_gc=True``, the job controller's) also freezes at every drain tick, so a full
  collection only looks at the last ~100 ms of survivors (benchmarks/bench_responsiveness.py
  --workload model, load 9 on 2 cores: max GUI gap 116-199 ms with the start-up freeze alone, 30-53 ms
  with the ticks as well);
- at the end of such a job ``gc.unfreeze()`` hands its objects back to the collector (frozen, its
  cyclic garbage would never be freed), and the next full collection, having reclaimed them, freezes
  the survivors again — so an earlier ``freeze_long_lived()`` is restored, never silently undone.

Nothing else calls ``gc.freeze`` or ``gc.unfreeze``.
"""

from __future__ import annotations

import collections
import gc
import inspect
import os
import time
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal

from engine.events import Cancelled, CancelToken

from superpos_app.errors import describe_exception

__all__ = ["Worker", "Job", "sync_default", "freeze_long_lived", "DRAIN_MS", "CANCEL_GRACE_S"]

DRAIN_MS = 100            # GUI refresh period for job events (10 Hz)
CANCEL_GRACE_S = 0.8      # after this long, a job that ignores its CancelToken is closed

Job = Callable[[CancelToken], Any]


def sync_default() -> bool:
    """True when ``SUPERPOS_SYNC_JOBS=1``: every worker runs inline."""
    return os.environ.get("SUPERPOS_SYNC_JOBS", "0") == "1"


def freeze_long_lived() -> None:
    """Move every object alive now out of the collector's sight: call it right after making objects
    that live as long as the process or the open bundle (see the module docstring); full collections
    then scan only what came later."""
    gc.freeze()


_refreeze = {"pending": False}


def _refreeze_after_full_collection(phase: str, info: dict) -> None:
    """A gc callback: the first full collection after a long job's ``unfreeze`` freezes what survived."""
    if _refreeze["pending"] and phase == "stop" and info.get("generation") == 2:
        _refreeze["pending"] = False
        gc.freeze()


def _unfreeze_until_next_full_collection() -> None:
    gc.unfreeze()
    _refreeze["pending"] = True
    if _refreeze_after_full_collection not in gc.callbacks:
        gc.callbacks.append(_refreeze_after_full_collection)


class _Thread(QThread):
    def __init__(self, worker: "Worker") -> None:
        super().__init__(worker)
        self._worker = worker

    def run(self) -> None:  # the worker thread: no widgets, no signals besides QThread.finished
        self._worker._run()


class Worker(QObject):
    """Runs one job once, off the GUI thread (see the module docstring); create one per job."""

    yielded = Signal(list)           # events since the last drain, in order (at most one emit per DRAIN_MS)
    returned = Signal(object)        # the job's result
    cancelled = Signal(str)          # a sentence for the user
    failed = Signal(str, str)        # message, details (traceback)

    def __init__(self, job: Job, *, freeze_gc: bool = False) -> None:
        super().__init__(QCoreApplication.instance())
        self.sync = sync_default()
        self.freeze_gc = freeze_gc and not self.sync
        self.token = CancelToken()
        self._job: Job | None = job
        self._queue: collections.deque = collections.deque()
        self._cancel_requested_at: float | None = None
        self._thread: _Thread | None = None
        self._ended = False
        self.outcome = "pending"     # then running, then finished | cancelled | failed
        self._result: Any = None
        self._message = ("", "")
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_MS)
        self._timer.timeout.connect(self._drain)

    # --- GUI thread --------------------------------------------------------------------------------
    def start(self) -> None:
        self.outcome = "running"
        if self.sync:
            self._run()
            self._end()
            return
        self._thread = _Thread(self)
        self._thread.finished.connect(self._end)       # queued: this object lives on the GUI thread
        QCoreApplication.instance().aboutToQuit.connect(self._on_quit)
        if self.freeze_gc:
            gc.freeze()
        self._timer.start()
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop (it saves a checkpoint first); returns at once."""
        if not self.token.cancelled:
            self.token.cancel()
            self._cancel_requested_at = time.monotonic()

    def wait(self, timeout_ms: int = 5000) -> bool:
        """Block until the job's thread ends and report its outcome now (shutdown, tests); True if it did."""
        if self._thread is not None and not self._thread.wait(timeout_ms):
            return False
        self._end()
        return True

    def _on_quit(self) -> None:
        self.cancel()
        self.wait(int(1000 * (CANCEL_GRACE_S + 5)))

    def _drain(self) -> None:
        if self.freeze_gc and not self._ended:
            gc.freeze()                      # see the module docstring: keeps full collections short
        queue, events = self._queue, []
        while queue:
            events.append(queue.popleft())
        if events:
            self.yielded.emit(events)

    def _end(self) -> None:
        if self._ended or self.outcome in ("pending", "running"):
            return                           # not started, still running, or already reported
        self._ended = True
        if self._thread is not None:
            self._thread.wait()              # QThread.finished comes just before the thread exits
        self._timer.stop()
        self._drain()
        if self.freeze_gc:
            _unfreeze_until_next_full_collection()
        if self.outcome == "finished":
            self.returned.emit(self._result)
        elif self.outcome == "cancelled":
            self.cancelled.emit(self._message[0])
        else:
            self.failed.emit(*self._message)
        self._result = None
        self.deleteLater()                   # its thread (a child) goes with it

    # --- worker thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        job, self._job = self._job, None     # drop the job's references (models, data) once it ends
        try:
            gen = job(self.token)
            if not inspect.isgenerator(gen):
                self._finish("finished", result=gen)     # a plain function: its value is the result
                return
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    self._finish("finished", result=stop.value)
                    return
                self._queue.append(event)
                asked = self._cancel_requested_at
                if asked is not None and time.monotonic() - asked > CANCEL_GRACE_S:
                    gen.close()              # the job ignored its token for too long: stop it here
                    self._finish("cancelled", "Stopped without a new checkpoint (the job did not stop in time); "
                                              "a resume starts from the last one it saved, if any.")
                    return
        except Cancelled as exc:
            self._finish("cancelled", f"Cancelled; checkpoint saved in {exc.checkpoint}." if exc.checkpoint
                         else "Cancelled; progress so far is kept for resuming.")
        except BaseException as exc:  # noqa: BLE001 - reported to the user on the GUI thread
            self._finish("failed", *describe_exception(exc))

    def _finish(self, outcome: str, message: str = "", details: str = "", result: Any = None) -> None:
        self._result, self._message = result, (message, details)
        self.outcome = outcome               # last: _end() on the GUI thread reads the fields above
