"""Combinators of generator jobs (``engine.events``): what drives a job, and what wraps one job's
events for a bigger job (the pipeline, ``analyze``, ``rematch``).

- ``run_to_completion(job)`` / ``collect(job)``: drive a job to its return value (scripts, tests);
- ``staged(job, index, n)``: stamp a job's ``StageStarted`` with its place in a bigger job;
- ``blocking_stage(stage, index, n, fn, ...)``: a call with no progress of its own as one stage;
- ``numbered(job, stages)``: stamp each ``StageStarted`` with its place in a list of stage names in
  run order (a family run repeats stages: the numbers follow the run, never jump back);
- ``clocked(job, clock)``: stamp every ``Progress`` with the whole run's fraction and ETA
  (``engine.run_clock.RunClock``);
- ``record_seconds(job, seconds)``: add each stage's duration to ``seconds[stage]``.

Each wrapper re-yields every event and returns the wrapped job's return value.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Generator, Sequence

from engine.events import Progress, StageFinished, StageStarted

__all__ = ["run_to_completion", "collect", "staged", "blocking_stage", "StageNumbers", "numbered", "clocked", "record_seconds"]


def collect(job) -> tuple[object, list]:
    """Drive a generator job to the end: its return value and every event it yielded (scripts, tests)."""
    events = []
    while True:
        try:
            events.append(next(job))
        except StopIteration as stop:
            return stop.value, events


def run_to_completion(job):
    """Drive a generator job to its return value, dropping the events."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def _mapped(events, change) -> Generator[Any, None, Any]:
    """Re-yield ``events``, each passed through ``change``; return the job's return value."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        yield change(event)


def staged(events, index: int, n_stages: int):
    """Re-yield a job's events as stage ``index`` of ``n_stages``: every job announces its own stage
    (StageStarted ... Progress ... StageFinished); this only stamps the position on its StageStarted
    so a driver can show "stage 4/8"."""
    return (yield from _mapped(events, lambda e: dataclasses.replace(e, index=index, n_stages=n_stages)
                               if isinstance(e, StageStarted) else e))


def blocking_stage(stage: str, index: int, n_stages: int, fn, *args, **kwargs):
    """Run a call that has no progress of its own as one stage (start, finish, timing)."""
    yield StageStarted(stage, total=0, index=index, n_stages=n_stages)
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    yield StageFinished(stage, seconds=time.perf_counter() - t0)
    return result


class StageNumbers:
    """The place of each stage in a run's stage names, in run order: each ``place(stage)`` (one per
    StageStarted) moves to the next occurrence of ``stage``; a stage missing from the list keeps the
    current place."""

    def __init__(self, stages: Sequence[str]) -> None:
        self.stages = list(stages)
        self.current = -1

    def place(self, stage: str) -> int:
        later = [i for i in range(self.current + 1, len(self.stages)) if self.stages[i] == stage]
        self.current = later[0] if later else max(0, self.current)
        return self.current


def numbered(events, numbers: StageNumbers):
    """Stamp every StageStarted with its place in ``numbers`` (one ``StageNumbers`` per run, shared by
    all its stage jobs) and the run's number of stages."""
    def stamp(event):
        if isinstance(event, StageStarted):
            return dataclasses.replace(event, index=numbers.place(event.stage), n_stages=len(numbers.stages))
        return event
    return (yield from _mapped(events, stamp))


def clocked(events, clock):
    """Stamp every Progress with the whole run's fraction and ETA (``clock``: an ``engine.run_clock.RunClock``)."""
    def stamp(event):
        if isinstance(event, StageStarted):
            clock.stage_started(event.stage)
        elif isinstance(event, Progress):
            run_fraction, run_eta = clock.update(event.stage, event.fraction, event.eta_s)
            return dataclasses.replace(event, run_fraction=run_fraction, run_eta_s=run_eta)
        return event
    return (yield from _mapped(events, stamp))


def record_seconds(events, stage_seconds: dict[str, float]):
    """Record each stage's seconds (its StageFinished, or the wall time until the job moves on), summed
    over a stage's occurrences: a family run's ``stage_seconds`` are the time spent in each kind of stage."""
    current: tuple[str, float] | None = None

    def close_current():
        if current is not None:
            stage_seconds[current[0]] = stage_seconds.get(current[0], 0.0) + time.perf_counter() - current[1]

    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            close_current()
            return stop.value
        if isinstance(event, StageStarted):
            close_current()
            current = (event.stage, time.perf_counter())
        elif isinstance(event, StageFinished):
            if current is not None and current[0] == event.stage:
                current = None
            stage_seconds[event.stage] = stage_seconds.get(event.stage, 0.0) + event.seconds
        yield event
