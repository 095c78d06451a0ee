"""Honest time: expected stage seconds from the presets' measurements, the whole-run ETA stamped on
the pipeline's Progress events, and terminal bars only for stages that know their size."""

from __future__ import annotations

import io

import pytest

from engine.cli.progress import ProgressPrinter
from engine.config import preset, preset_description, preset_measurement
from engine.events import Progress, StageFinished, StageStarted
from engine.jobs import collect
from engine.run_clock import STAGES, RunClock, expected_run_text, expected_stage_seconds, run_plan


def test_demo_expectation_is_the_measurement_and_the_promise_matches_it():
    measured = preset_measurement("demo")["stage_seconds"]
    expected = expected_stage_seconds(preset("demo"))
    assert expected == pytest.approx({s: measured[s] for s in STAGES})
    minutes = sum(expected.values()) / 60
    assert 3 <= minutes <= 5                   # issue 13: the whole demo within 5 minutes here
    assert f"about {round(minutes)} min" in expected_run_text(preset("demo"))
    assert f"about {round(minutes)} minutes" in preset_description("demo")


def test_changed_budgets_scale_only_their_stage():
    base = expected_stage_seconds(preset("demo"))
    demo = preset("demo")
    longer = expected_stage_seconds(demo.with_overrides(train={"tokens": 2 * demo.train.tokens}))
    assert longer["model"] == pytest.approx(2 * base["model"])
    assert longer["sae"] == pytest.approx(base["sae"]) and longer["harvest"] == pytest.approx(base["harvest"])


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_run_eta_counts_the_stages_still_to_come_at_this_machine_speed():
    now = FakeTime()
    clock = RunClock({"model": 200.0, "sae": 100.0, "bundle": 100.0}, now=now)
    clock.stage_started("model")
    now.t = 200.0                              # half the model stage in 200 s: this machine is 2x slower
    fraction, eta = clock.update("model", 0.5, stage_eta_s=200.0)
    assert fraction == pytest.approx(0.25)
    assert eta == pytest.approx(200.0 + 2 * 200.0)     # the stage's own ETA + 2x the later stages
    fraction, eta = clock.update("model", 0.5, stage_eta_s=None)
    assert eta == pytest.approx(2 * 300.0)


def test_pipeline_progress_carries_a_rising_whole_run_fraction(tmp_path):
    from engine.pipeline import run_pipeline

    cfg = preset("tiny").with_overrides(train={"tokens": 20_000}, sae={"n_activations": 20_000},
                                        harvest={"n_tokens": 3_000, "eval_tokens": 2_000})
    _, events = collect(run_pipeline(cfg, tmp_path / "b.h5", workdir=tmp_path / "work"))
    progress = [e for e in events if isinstance(e, Progress)]
    fractions = [e.run_fraction for e in progress]
    assert all(f is not None for f in fractions) and all(e.run_eta_s is not None for e in progress)
    assert fractions == sorted(fractions) and fractions[-1] > 0.99
    assert {e.stage for e in progress} >= {"model", "sae", "evaluate", "harvest", "labels", "bundle"}


def test_a_stage_without_a_size_prints_one_line_not_an_empty_bar():
    out = io.StringIO()
    printer = ProgressPrinter(stream=out)
    printer(StageStarted("tokenizer", total=0, index=0, n_stages=8))
    printer(StageFinished("tokenizer", seconds=2.5))
    printer(StageStarted("model", total=100, unit="tokens", index=2, n_stages=8))
    printer(Progress("model", done=50, total=100, run_fraction=0.3, run_eta_s=125.0))
    printer(StageFinished("model", seconds=1.0))
    text = out.getvalue()
    assert "[1/8] tokenizer: done in 2.5 s" in text
    assert "it/s" not in text and "0.00it" not in text
    assert "[3/8] model" in text and "30%, 2:05 left" in text


def test_a_family_plan_repeats_the_stages_the_pipeline_repeats():
    demo = preset("demo")
    single = run_plan(demo)
    assert [s for s, _ in single] == list(STAGES)
    assert sum(t for _, t in single) == pytest.approx(sum(expected_stage_seconds(demo).values()))
    plan = run_plan(demo, (512, 2048, 4096), (0, 1))
    names = [s for s, _ in plan]
    assert names.count("model") == 2 and names.count("sae") == 2         # one SAE pass per model
    assert names.count("harvest") == 6 and names.count("labels") == 6    # each dictionary on its own
    assert names[-3:] == ["matching", "map", "bundle"] and names[:2] == ["tokenizer", "tokenize"]
    sae_pass = dict(plan)["sae"]
    three_runs = sum(expected_stage_seconds(demo.with_overrides(sae={"d_sae": d}))["sae"] for d in (512, 2048, 4096))
    assert expected_stage_seconds(demo)["sae"] < sae_pass < three_runs   # the stream is paid once
    total = sum(t for _, t in plan)
    assert total > 2 * sum(t for _, t in single)
    assert f"about {round(total / 60)} min" in expected_run_text(demo, (512, 2048, 4096), (0, 1))


def test_the_clock_walks_repeated_stages_in_order():
    now = FakeTime()
    clock = RunClock([("model", 100.0), ("sae", 100.0), ("model", 100.0), ("sae", 100.0)], now=now)
    clock.stage_started("model")
    assert clock.update("model", 1.0, None)[0] == pytest.approx(0.25)
    clock.stage_started("sae")
    clock.stage_started("model")                   # the second model: not back at the start
    now.t = 250.0
    fraction, eta = clock.update("model", 0.5, None)
    assert fraction == pytest.approx(0.625)
    assert eta == pytest.approx(150.0)             # 250 s for 250 expected: this machine's speed is 1
    clock.stage_started("sae")
    assert clock.update("sae", 0.0, None)[0] == pytest.approx(0.75)


def test_one_eta_clock_for_the_cli_and_the_app():
    from engine.run_clock import format_eta

    assert format_eta(3725) == "1:02:05" and format_eta(247.4) == "4:07" and format_eta(-3) == "0:00"
    assert format_eta(None) == "" and format_eta(float("inf")) == ""


def test_a_log_that_is_not_a_terminal_gets_plain_lines_at_a_bounded_rate():
    """No carriage-return bar updates in a log: start, a progress line per PLAIN_EVERY_S, the end."""
    from engine.cli.progress import PLAIN_EVERY_S

    now = [0.0]
    out = io.StringIO()                                   # not a TTY
    printer = ProgressPrinter(stream=out, clock=lambda: now[0])
    printer(StageStarted("tokenize", total=6_000_000, unit="chars", index=1, n_stages=8))
    for i in range(50):                                   # a 0.2 s stage's fifty updates
        now[0] += 0.004
        printer(Progress("tokenize", done=120_000 * (i + 1), total=6_000_000, unit="chars",
                         metrics={"train_tokens": 4_521_000.0}))
    now[0] += PLAIN_EVERY_S                               # a long stage: one more line per interval
    printer(Progress("tokenize", done=6_000_000, total=6_000_000, unit="chars"))
    printer(StageFinished("tokenize", seconds=0.2))
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 4, lines
    assert lines[0] == "[2/8] tokenize (6M chars)…"
    assert "train_tokens 4.52M" in lines[1] and "e+06" not in text
    assert lines[-1] == "[2/8] tokenize: done in 0.2 s"
