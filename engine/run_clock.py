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
"""

from __future__ import annotations

import time
from typing import Mapping

from engine.config import RunConfig, preset, preset_measurement, preset_names

__all__ = ["expected_stage_seconds", "expected_run_text", "RunClock", "STAGES"]

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


def expected_run_text(cfg: RunConfig) -> str:
    """One honest line about how long ``cfg`` takes, e.g. "about 6 min on a fast 2-core CPU (...)"."""
    _, seconds, machine = _reference(cfg)
    if not seconds:
        return ""
    total = sum(expected_stage_seconds(cfg).values())
    where = f" on {machine}" if machine else ""
    return f"about {_duration(total)}{where}; a slow laptop can take 2.5 times as long"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class RunClock:
    """Whole-run fraction and ETA from the expected stage seconds and the time spent so far."""

    def __init__(self, expected: Mapping[str, float], now=time.perf_counter) -> None:
        self.expected = {k: max(1e-6, float(v)) for k, v in expected.items()}
        self.order = [s for s in STAGES if s in self.expected] + [s for s in self.expected if s not in STAGES]
        self.total = sum(self.expected.values())
        self._now = now
        self._t0 = now()
        self._stage: str | None = None

    def stage_started(self, stage: str) -> None:
        self._stage = stage

    def _done_and_later(self, stage: str, fraction: float) -> tuple[float, float]:
        if stage not in self.expected:
            return 0.0, self.total
        i = self.order.index(stage)
        before = sum(self.expected[s] for s in self.order[:i])
        later = sum(self.expected[s] for s in self.order[i + 1:])
        return before + min(1.0, max(0.0, fraction)) * self.expected[stage], later

    def update(self, stage: str, fraction: float, stage_eta_s: float | None) -> tuple[float, float | None]:
        """(fraction of the whole run done, seconds left in the whole run) at ``stage`` ``fraction``."""
        done, later = self._done_and_later(stage, fraction)
        elapsed = self._now() - self._t0
        speed = elapsed / done if done > 0.01 * self.total and elapsed > 1.0 else 1.0
        if stage_eta_s is not None and fraction > 0.02:
            eta = stage_eta_s + speed * later
        else:
            eta = speed * (self.total - done)
        return done / self.total, max(0.0, eta)
