"""Which examples of a unit the explainer sees and which the scorers hold out.

From a unit's ``Dashboard`` and the bundle's paired sample (random text with every unit's
activation):

- explain: the top examples of even rank (up to ``n_top``), the first example of each activation
  interval (up to ``n_intervals``) and ``n_random`` random windows of the sample;
- held-out *active* examples: top examples of odd rank and the other interval examples, never shown
  to the explainer;
- held-out *silent* examples: random windows of the sample where the unit stays at level 0 on every
  token (below a tenth of its largest activation: the quantisation's zero);
- simulation: ``n_sim_top`` held-out top, ``n_sim_interval`` held-out interval and ``n_sim_random``
  random windows, each with its true activations.

Features and neurons go through the same selection, so their scores compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.explain.prompts import Example, quantise
from engine.stats import Dashboard

__all__ = ["ExampleConfig", "UnitExamples", "unit_examples", "sample_windows"]


@dataclass(frozen=True)
class ExampleConfig:
    n_top: int = 10
    n_intervals: int = 5
    n_random: int = 3
    n_detect: int = 10             # held-out active examples for detection and fuzzing (as many silent)
    batch: int = 10                # examples per detection / fuzzing request
    n_sim_top: int = 2
    n_sim_interval: int = 2
    n_sim_random: int = 2
    seed: int = 0

    def requests_per_unit(self) -> int:
        """At most this many requests: explain, detection and fuzzing batches, one per simulation example."""
        scoring = -(-2 * self.n_detect // self.batch)
        return 1 + 2 * scoring + self.n_sim_top + self.n_sim_interval + self.n_sim_random


@dataclass
class UnitExamples:
    kind: str
    index: int
    max_act: float
    explain_top: list[Example] = field(default_factory=list)
    explain_intervals: list[Example] = field(default_factory=list)
    explain_random: list[Example] = field(default_factory=list)
    held_active: list[Example] = field(default_factory=list)
    held_silent: list[Example] = field(default_factory=list)
    simulation: list[Example] = field(default_factory=list)
    promoted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    suppressed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def sections(self) -> list[tuple[str, list[Example]]]:
        return [("Top examples", self.explain_top),
                ("Examples from lower activation ranges", self.explain_intervals),
                ("Random text", self.explain_random)]


def sample_windows(tokens: np.ndarray, acts: np.ndarray, positions: np.ndarray, left: int,
                   right: int, context: int = 0) -> list[Example]:
    """Windows of the sample around ``positions`` (padding -1 / 0 outside it, and outside the
    centre's context when the sample is whole contexts of ``context`` tokens; 0: one stretch)."""
    S = len(tokens)
    off = np.arange(-left, right + 1)
    idx = positions[:, None] + off[None, :]
    inside = (idx >= 0) & (idx < S)
    if context:
        inside &= idx // context == positions[:, None] // context
    safe = np.clip(idx, 0, max(S - 1, 0))
    tok = np.where(inside, tokens[safe], -1)
    act = np.where(inside, acts[safe], 0.0).astype(np.float32)
    return list(zip(tok, act))


def unit_examples(dash: Dashboard, sample_tokens: np.ndarray, sample_acts: np.ndarray,
                  config: ExampleConfig = ExampleConfig(), context: int = 0) -> UnitExamples:
    """The examples of one unit (deterministic for a given config.seed, kind and index); ``context``:
    the sample's context length when it is whole contexts (``sample_windows``)."""
    rng = np.random.default_rng([config.seed, 0 if dash.kind == "feature" else 1, dash.index])
    top = dash.top_examples()
    max_act = float(max([float(a[dash.top_center]) for _, a in top], default=dash.max_act) or dash.max_act)
    ex = UnitExamples(kind=dash.kind, index=dash.index, max_act=max_act,
                      promoted=np.asarray(dash.logit_top_ids[:10]), suppressed=np.asarray(dash.logit_bottom_ids[:10]))
    ex.explain_top = top[0::2][: config.n_top]
    held_top = top[1::2]
    held_int: list[Example] = []
    for _, _, _, found in reversed(dash.interval_examples()):      # strongest interval first
        if len(ex.explain_intervals) < config.n_intervals:
            ex.explain_intervals.append(found[0])
            held_int.extend(found[1:])
        else:
            held_int.extend(found)
    # the same window can be a top and an interval example: nothing shown is held out
    shown = {_key(e, dash.top_center) for e in ex.explain_top + ex.explain_intervals}
    held_top = [e for e in held_top if _key(e, dash.top_center) not in shown]
    shown |= {_key(e, dash.top_center) for e in held_top}
    held_int = [e for e in held_int if _key(e, dash.top_center) not in shown]
    # random windows of the sample: some to show, the silent ones to score against
    c = dash.top_center
    W = dash.top_tokens.shape[-1]
    S = len(sample_tokens)
    want = config.n_random + config.n_sim_random + 4 * config.n_detect
    positions = rng.choice(S, size=min(want, S), replace=False) if S else np.zeros(0, np.int64)
    windows = sample_windows(sample_tokens, sample_acts, positions, c, W - 1 - c, context)
    ex.explain_random = windows[: config.n_random]
    sim_random = windows[config.n_random: config.n_random + config.n_sim_random]
    rest = windows[config.n_random + config.n_sim_random:]
    ex.held_silent = [w for w in rest if not (quantise(w[1], max_act) > 0).any()][: config.n_detect]
    # held-out active examples: top and interval examples taken in turn, strongest first within each
    ex.held_active = _interleave(held_top, held_int)[: config.n_detect]
    ex.simulation = held_top[: config.n_sim_top] + held_int[: config.n_sim_interval] + sim_random
    return ex


def _key(example: Example, center: int) -> tuple[bytes, float]:
    tokens, acts = example
    return np.asarray(tokens).tobytes(), round(float(acts[center]), 3)


def _interleave(a: list, b: list) -> list:
    out = []
    for i in range(max(len(a), len(b))):
        out.extend(x[i] for x in (a, b) if i < len(x))
    return out
