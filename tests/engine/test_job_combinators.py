"""engine.jobs: the combinators every bigger job (pipeline, analyze, rematch, train-model) wraps its
stage jobs with; each re-yields every event and returns the wrapped job's value."""

from __future__ import annotations

from engine.events import Progress, StageFinished, StageStarted
from engine.jobs import StageNumbers, blocking_stage, collect, numbered, record_seconds, run_to_completion, staged


def _stage(name: str, value):
    yield StageStarted(name, total=2)
    yield Progress(name, done=1, total=2)
    yield StageFinished(name, seconds=0.5)
    return value


def test_numbered_follows_the_run_even_when_stages_repeat():
    numbers = StageNumbers(["model", "sae", "evaluate", "model", "sae", "evaluate", "bundle"])

    def run():
        out = []
        for name in ("model", "sae", "evaluate", "model", "sae", "evaluate", "bundle"):
            out.append((yield from numbered(_stage(name, name), numbers)))
        return out

    value, events = collect(run())
    assert value == ["model", "sae", "evaluate", "model", "sae", "evaluate", "bundle"]
    started = [e for e in events if isinstance(e, StageStarted)]
    assert [e.index for e in started] == list(range(7)) and {e.n_stages for e in started} == {7}


def test_staged_blocking_stage_and_record_seconds():
    value, events = collect(staged(_stage("harvest", 3), 4, 8))
    assert value == 3 and (events[0].index, events[0].n_stages) == (4, 8) and len(events) == 3
    assert run_to_completion(blocking_stage("map", 1, 2, lambda a, b=0: a + b, 2, b=5)) == 7
    seconds: dict[str, float] = {}
    assert run_to_completion(record_seconds(_stage("sae", "x"), seconds)) == "x"
    assert seconds == {"sae": 0.5}
