"""The whole run's clock: how long each pipeline stage is expected to take, and the run's ETA.

Each preset in ``resources/presets.json`` may carry ``"measured"``: the seconds each stage took on
a named machine (``superpos info`` prints a bundle's own ``stage_seconds`` to refresh them). For a
config that differs from its preset the measured seconds are scaled by the stage's work (tokens x
cost per token, activations x dictionary size, ...), so the *shares* stay sensible when a user
changes a budget. ``RunClock`` turns those shares and the time spent so far into a whole-run ETA:

    done     = expected seconds of the finished stages + fraction x expected seconds of this stage
    speed    = elapsed / done            (this machine against the measured one)
    run ETA  = stage ETA (the stage's own rate, when it has one) + speed x expected seconds of the
               stages still to come

Before anything is measured here ``speed`` is 1, i.e. the reference machine's time.

A family run (``--d-sae 512,2048,4096 [--model-seeds 0,1]``) repeats stages: one SAE stage trains
every size from one pass of the stream, each further dictionary is evaluated, harvested and labelled
on its own, a second seed trains its model and dictionaries again, and the matching stage compares
them all. ``run_plan`` lists those stage *occurrences* in the order the pipeline runs them, each with
its expected seconds, and ``RunClock`` walks the plan, so the ETA of a family run is the whole
family's, not its first dictionary's.
"""

from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

from engine.config import RunConfig, preset, preset_measurement, preset_names

__all__ = ["expected_stage_seconds", "expected_run_text", "run_plan", "RunClock", "STAGES", "format_eta"]

STAGES = ("tokenizer", "tokenize", "model", "sae", "evaluate", "harvest", "labels", "bundle")


def _model_cost(cfg: RunConfig) -> float:
    """Multiply-adds per token of the one-layer model (attention, MLP, unembedding)."""
    m = cfg.model
    return 4 * m.d_model ** 2 + 2 * m.d_model * m.d_mlp + m.d_model * m.vocab_size + 2 * m.n_ctx * m.d_model


def _work(cfg: RunConfig) -> dict[str, float]:
    """Each stage's amount of work in arbitrary units: only ratios between two configs are used."""
    sae = cfg.sae.d_sae * cfg.sae.d_in
    return {
        "tokenizer": float(cfg.tokenizer.train_chars),
        "tokenize": float(cfg.corpus.max_chars or 50_000_000),
        "model": float(cfg.train.tokens) * _model_cost(cfg),
        "sae": float(cfg.sae.n_activations) * (sae + _model_cost(cfg) / 3),  # model forward for activations
        "evaluate": float(cfg.harvest.eval_tokens) * (sae + 3 * _model_cost(cfg)),
        "harvest": float(cfg.harvest.n_tokens) * (sae + _model_cost(cfg)),
        "labels": float(cfg.sae.d_sae + cfg.model.d_mlp),
        "bundle": float(cfg.sae.d_sae + cfg.model.d_mlp),
    }


def _reference(cfg: RunConfig) -> tuple[RunConfig, dict[str, float], str]:
    name = cfg.name if cfg.name in preset_names() and preset_measurement(cfg.name) else "demo"
    measured = preset_measurement(name) or {}
    return preset(name), dict(measured.get("stage_seconds", {})), str(measured.get("machine", ""))


def expected_stage_seconds(cfg: RunConfig) -> dict[str, float]:
    """Seconds each stage should take for ``cfg`` on the preset's measured machine."""
    ref_cfg, seconds, _ = _reference(cfg)
    if not seconds:
        return {stage: 1.0 for stage in STAGES}
    work, ref_work = _work(cfg), _work(ref_cfg)
    return {stage: float(seconds.get(stage, 1.0)) * (work[stage] / ref_work[stage] if ref_work[stage] else 1.0)
            for stage in STAGES}


def run_plan(cfg: RunConfig, sizes: Sequence[int] = (), seeds: Sequence[int] = (),
             match_tokens: int = 65_536) -> list[tuple[str, float]]:
    """[(stage, expected seconds)] in the order ``engine.pipeline.run_pipeline`` runs them: the data
    stages, then per model its training, one SAE stage for all sizes, and evaluate / harvest / labels
    per dictionary; a family ends with the matching and map stages, then the bundle. ``cfg`` is the run's
    config (``sae.d_sae`` is ignored when ``sizes`` are given)."""
    sizes = [int(d) for d in sizes] or [int(cfg.sae.d_sae)]
    n_models = max(1, len(seeds))
    per_size = [expected_stage_seconds(cfg.with_overrides(sae={"d_sae": d})) for d in sizes]
    first = per_size[0]
    stream = _stream_seconds(cfg)              # the model forwards of the SAE stage: paid once per pass
    sae_pass = sum(e["sae"] for e in per_size) - (len(sizes) - 1) * stream
    plan = [("tokenizer", first["tokenizer"]), ("tokenize", first["tokenize"])]
    for _ in range(n_models):
        plan += [("model", first["model"]), ("sae", sae_pass)]
        for e in per_size:
            plan += [("evaluate", e["evaluate"]), ("harvest", e["harvest"]), ("labels", e["labels"])]
    if len(sizes) > 1 or n_models > 1:
        plan.append(("matching", _matching_seconds(cfg, sizes, n_models, match_tokens)))
        plan.append(("map", _map_seconds(n_models * sum(sizes))))
    plan.append(("bundle", sum(e["bundle"] for e in per_size) * n_models))
    return plan


def _stream_seconds(cfg: RunConfig) -> float:
    """The share of the SAE stage spent making activations (the model's forwards), in seconds."""
    seconds = expected_stage_seconds(cfg)["sae"]
    work = _work(cfg)["sae"]
    return seconds * (float(cfg.sae.n_activations) * _model_cost(cfg) / 3) / work if work else 0.0


def _matching_seconds(cfg: RunConfig, sizes: Sequence[int], n_models: int, match_tokens: int) -> float:
    """The matching stage: every model's forwards on the matching sample, every dictionary's encoder
    on it, and the sparse co-activation products (about k x k pairs per token and comparison), at
    the measured SAE stage's rate of multiply-adds (``engine.analysis.family_match``)."""
    seconds = expected_stage_seconds(cfg)["sae"]
    work = _work(cfg)["sae"]
    if not work:
        return 1.0
    per_ma = seconds / work                        # seconds per unit of ``_work`` on the reference machine
    k = max(1, int(getattr(cfg.sae, "k", 0) or 32))
    encode = n_models * sum(sizes) * cfg.sae.d_in + n_models * _model_cost(cfg)
    comparisons = 2 * (len(sizes) - 1) * n_models + (2 * len(sizes) + 2 if n_models > 1 else 0)
    sparse = comparisons * k * k * 200.0       # a scipy sparse product entry costs ~200 multiply-adds' time
    neurons = (2 * cfg.model.d_mlp ** 2) if n_models > 1 else 0
    return float(match_tokens) * (encode + sparse + neurons) * per_ma


def _map_seconds(points: int) -> float:
    """The feature map: UMAP (the ``map`` extra) ~1 ms a point on a 2-core CPU, PCA next to nothing."""
    import importlib.util

    return points * (1e-3 if importlib.util.find_spec("umap") is not None else 2e-6) + 0.1


def expected_run_text(cfg: RunConfig, sizes: Sequence[int] = (), seeds: Sequence[int] = ()) -> str:
    """One honest line about how long ``cfg`` takes, e.g. "about 6 min on a fast 2-core CPU (...)";
    with ``sizes`` / ``seeds`` the whole family's run (``run_plan``)."""
    _, seconds, machine = _reference(cfg)
    if not seconds:
        return ""
    total = sum(s for _, s in run_plan(cfg, sizes, seeds))
    where = f" on {machine}" if machine else ""
    return f"about {_duration(total)}{where}; a slow laptop can take 2.5 times as long"


def format_eta(seconds: float | None) -> str:
    """Seconds left as a clock, "1:02:05" or "4:07" ("" when unknown): the CLI's bars and the app's status."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = int(round(max(0.0, seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class RunClock:
    """Whole-run fraction and ETA from the expected stage seconds and the time spent so far.

    ``expected``: {stage: seconds} (each stage once, in ``STAGES`` order) or a plan, [(stage,
    seconds)] in run order with stages repeated (``run_plan``). ``stage_started`` moves to the next
    occurrence of that stage in the plan."""

    def __init__(self, expected: Mapping[str, float] | Sequence[tuple[str, float]], now=time.perf_counter) -> None:
        if isinstance(expected, Mapping):
            names = [s for s in STAGES if s in expected] + [s for s in expected if s not in STAGES]
            expected = [(s, expected[s]) for s in names]
        self.plan = [(str(stage), max(1e-6, float(seconds))) for stage, seconds in expected]
        self.total = sum(seconds for _, seconds in self.plan) or 1.0
        self._now = now
        self._t0 = now()
        self._pos = -1                     # the plan entry now running

    def _find(self, stage: str) -> int:
        """The plan entry of ``stage`` now: the current one, else its next occurrence (else the last)."""
        if 0 <= self._pos < len(self.plan) and self.plan[self._pos][0] == stage:
            return self._pos
        later = [i for i in range(max(0, self._pos + 1), len(self.plan)) if self.plan[i][0] == stage]
        if later:
            return later[0]
        earlier = [i for i in range(len(self.plan)) if self.plan[i][0] == stage]
        return earlier[-1] if earlier else -1

    def stage_started(self, stage: str) -> None:
        i = self._find(stage)
        if i >= 0:
            self._pos = i

    def _done_and_later(self, stage: str, fraction: float) -> tuple[float, float]:
        i = self._find(stage)
        if i < 0:
            before = sum(s for _, s in self.plan[:self._pos + 1])
            return before, self.total - before
        before = sum(s for _, s in self.plan[:i])
        later = sum(s for _, s in self.plan[i + 1:])
        return before + min(1.0, max(0.0, fraction)) * self.plan[i][1], later

    def update(self, stage: str, fraction: float, stage_eta_s: float | None) -> tuple[float, float | None]:
        """(fraction of the whole run done, seconds left in the whole run) at ``stage`` ``fraction``."""
        done, later = self._done_and_later(stage, fraction)
        elapsed = self._now() - self._t0
        speed = elapsed / done if done > 0.01 * self.total and elapsed > 1.0 else 1.0
        if stage_eta_s is not None and fraction > 0.02:
            eta = stage_eta_s + speed * later
        else:
            eta = speed * (self.total - done)
        return min(1.0, done / self.total), max(0.0, eta)
