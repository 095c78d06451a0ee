"""The small frozen objects that cross from engine jobs to whoever drives them (CLI or GUI).

Engine jobs are generators: they ``yield`` these events often (so a driver can show progress and
cancel promptly) and ``return`` their result. Only plain data goes in an event: numbers, strings,
tuples — never a tensor, an open file or a widget — so they can cross threads safely.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["Progress", "Message", "StageStarted", "StageFinished", "Glimpse", "Cancelled",
           "CancelToken", "RateMeter"]


@dataclass(frozen=True)
class StageStarted:
    stage: str                      # e.g. "tokenizer", "model", "sae", "evaluate", "harvest", "labels", "bundle"
    total: int = 0                  # units of work expected (0: unknown)
    unit: str = ""                  # "tokens", "activations", ...
    index: int = 0                  # position of the stage in the pipeline (0-based)
    n_stages: int = 1


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int                       # units done so far (tokens, activations, ...)
    total: int                      # units expected in this stage
    step: int = 0                   # optimiser step, where there is one
    metrics: Mapping[str, float] = field(default_factory=dict)  # e.g. loss, val_loss, lr, mse, l0
    rate: float = 0.0               # units per second
    eta_s: float | None = None      # seconds left in this stage
    unit: str = "tokens"
    run_fraction: float | None = None  # of the whole pipeline run (engine.run_clock), where known
    run_eta_s: float | None = None     # seconds left in the whole run

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass(frozen=True)
class StageFinished:
    stage: str
    seconds: float
    summary: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    text: str
    level: str = "info"             # info | warning


@dataclass(frozen=True)
class Glimpse:
    """A look at the model being trained (engine/train/glimpse.py), for a live view while a run goes on.

    kind "baselines": ``values`` {"unigram": nats, "bigram": nats}, the validation loss of count
    tables (what the transformer has to beat). kind "predictions": ``rows`` of (context token ids,
    actual next id, ((predicted id, probability), ...)) for fixed validation positions at ``step``."""

    stage: str
    kind: str
    step: int = 0
    done: int = 0
    rows: tuple = ()
    values: Mapping[str, float] = field(default_factory=dict)


class Cancelled(Exception):
    """Raised by a job that stopped because its CancelToken was set (checkpoint already saved)."""

    def __init__(self, message: str = "cancelled", checkpoint: str | None = None):
        super().__init__(message)
        self.checkpoint = checkpoint


class CancelToken:
    """Thread-safe flag a driver sets to ask a running job to stop at its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def reset(self) -> None:
        self._event.clear()


class RateMeter:
    """Units/second and ETA over a sliding window (robust to the slow first steps)."""

    def __init__(self, total: int, window_s: float = 20.0) -> None:
        self.total = total
        self.window_s = window_s
        self._points: list[tuple[float, int]] = []

    def update(self, done: int) -> tuple[float, float | None]:
        now = time.perf_counter()
        self._points.append((now, done))
        while len(self._points) > 2 and now - self._points[0][0] > self.window_s:
            self._points.pop(0)
        (t0, d0), (t1, d1) = self._points[0], self._points[-1]
        rate = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
        eta = (self.total - done) / rate if rate > 0 and self.total else None
        if eta is not None and not math.isfinite(eta):
            eta = None
        return rate, eta
