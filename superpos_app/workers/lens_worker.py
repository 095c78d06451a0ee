"""The text lens's runner: ``LensEngine.analyze`` off the GUI thread, latest request wins
(``superpos_app.workers.latest_runner``).

At most one analysis runs at a time (the engine keeps a prefix cache and is not thread-safe); a long
text is read in context windows and the engine checks between window batches, so a burst of
keystrokes or a megabyte paste costs little more than the newest analysis (the pane also drops a
result that is stale on arrival).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject

from engine.analysis.lens import LensEngine
from superpos_app.workers.latest_runner import LatestRunner

__all__ = ["LensRunner"]


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


class LensRunner(LatestRunner):
    """Runs lens requests one at a time (``LatestRunner``); ``resultReady`` carries (LensResult, seconds)."""

    def __init__(self, parent: QObject | None = None, sync: bool | None = None) -> None:
        super().__init__(parent, sync)
        self.engine: LensEngine | None = None

    def submit(self, request_id: int, text: str, kwargs: dict) -> None:
        """Analyse ``text`` as request ``request_id`` as soon as the running request (if any) ends."""
        self.submit_request(request_id, (text, kwargs))

    def reset(self, engine: LensEngine | None) -> None:
        """Use ``engine`` from the next request on and forget the waiting one (a new bundle)."""
        self.engine = engine
        self._waiting = None

    def _make_job(self, request_id: int, payload: tuple):
        if self.engine is None:
            return None
        text, kwargs = payload
        engine, single_thread = self.engine, not self.sync
        return lambda token: _analyze(engine, request_id, text, kwargs, single_thread, token)
