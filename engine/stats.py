"""In-memory form of the statistics the harvest computes and the bundle stores.

Shape legend: N units (features or neurons), K top examples, I intervals, P examples per interval,
W window tokens (ctx_left + 1 + ctx_right), B histogram bins, L logits, A alignment entries,
S sample tokens. Token ids of -1 mark window positions outside the text (padding).
Every array is numpy; nothing here imports torch, so the app can use it freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["UnitStats", "HarvestResult", "Dashboard", "UNIT_KINDS", "ULTRALOW_DENSITY", "DeadCount", "dead_count"]

UNIT_KINDS = ("feature", "neuron")

# The paper's "ultralow density": a unit that fires, but on fewer than this fraction of tokens. Counted
# apart from dead units (never fired) by the evaluation, the bundle summary, the tables and the overview.
ULTRALOW_DENSITY = 1e-6


@dataclass(frozen=True)
class DeadCount:
    """The one meaning of "dead": a unit that never fired on any of the harvested tokens (the
    bundle's per-unit density is 0). The overview, the search filter, ``superpos info`` and
    ``superpos eval`` all show this count and say on how many tokens; the evaluation's own count over
    its (fewer) evaluation tokens is reported apart, as "never active on the evaluation tokens"."""

    kind: str            # "feature" | "neuron"
    n_dead: int
    n_units: int
    n_tokens: int        # the tokens the densities were measured on

    @property
    def fraction(self) -> float:
        return self.n_dead / self.n_units if self.n_units else 0.0

    @property
    def meaning(self) -> str:
        return f"never fired on any of the {self.n_tokens:,} harvested tokens"

    def sentence(self) -> str:
        """E.g. "3 of 4,096 features (0.07%) are dead: never fired on any of the 199,936 harvested tokens"."""
        return (f"{self.n_dead:,} of {self.n_units:,} {self.kind}s ({self.fraction:.2%}) "
                f"{'is' if self.n_dead == 1 else 'are'} dead: {self.meaning}")


def dead_count(kind: str, density: np.ndarray, n_tokens: int) -> DeadCount:
    """``DeadCount`` from the per-unit densities measured on ``n_tokens`` harvested tokens."""
    density = np.asarray(density)
    return DeadCount(kind, int((density == 0).sum()), int(density.size), int(n_tokens))


@dataclass
class UnitStats:
    """Per-unit statistics for one kind ("feature" or "neuron"), as columns."""

    kind: str
    density: np.ndarray            # float64 [N] fraction of harvested tokens with activation > 0
    max_act: np.ndarray            # float32 [N]
    mean_act: np.ndarray           # float32 [N] mean activation over the tokens where active
    act_hist: np.ndarray           # int64 [N, B] counts of active tokens in B equal bins over (0, max_act]
    top_tokens: np.ndarray         # int32 [N, K, W] token ids of the top-K windows (-1 padding)
    top_acts: np.ndarray           # float16 [N, K, W] activation of every window token
    top_center: int                # index in W of the example's own token (== ctx_left)
    interval_tokens: np.ndarray    # int32 [N, I, P, W]
    interval_acts: np.ndarray      # float16 [N, I, P, W]
    interval_bounds: np.ndarray    # float32 [N, I, 2] activation range (lo, hi] of each interval
    top_token_ids: np.ndarray      # int32 [N, 5] most frequent center tokens among the top examples (-1 pad)
    logit_top_ids: np.ndarray      # int32 [N, L] tokens most promoted by the unit's direct effect
    logit_top_values: np.ndarray   # float32 [N, L]
    logit_bottom_ids: np.ndarray   # int32 [N, L] tokens most suppressed
    logit_bottom_values: np.ndarray  # float32 [N, L]
    logit_hist: np.ndarray         # int64 [N, B] histogram of all V logit weights
    logit_range: np.ndarray        # float32 [N, 2] (min, max) logit weight: the histogram's range
    align_ids: np.ndarray          # int32 [N, A] features: neurons with largest |decoder weight|;
                                   #              neurons: features whose decoder loads most on it
    align_values: np.ndarray       # float32 [N, A] signed weights
    align_l1: np.ndarray           # float32 [N] share of the L1 norm held by those A entries
    corr_ids: np.ndarray           # int32 [N, A] features: most correlated neurons; neurons: features
    corr_values: np.ndarray        # float32 [N, A] Pearson r over the harvested tokens
    labels: list[str] = field(default_factory=list)   # [N] short human label ("" if none)
    scores: np.ndarray | None = None                  # float32 [N] label score (Spearman), NaN if none

    def __len__(self) -> int:
        return int(self.density.shape[0])


@dataclass
class HarvestResult:
    features: UnitStats
    neurons: UnitStats
    n_tokens: int                        # harvested tokens
    density_hist_edges: np.ndarray       # float64 [B+1] log10(density) bin edges (features)
    density_hist_counts: np.ndarray      # int64 [B] count of live features per bin
    sample_token_ids: np.ndarray         # int32 [S] the paired sample's tokens
    sample_neuron_acts: np.ndarray       # float16 [S, M] neuron activations on the sample
    sample_feature_indptr: np.ndarray    # int64 [F+1] CSR by feature over the sample
    sample_feature_token: np.ndarray     # int32 [nnz] sample index
    sample_feature_value: np.ndarray     # float16 [nnz]
    # int64 [W]: harvest position of each sample context's first token (sample rows w·T … w·T+T-1);
    # empty: not known (a sample made elsewhere)
    sample_context_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class Dashboard:
    """Everything the detail pane shows for one unit (read by ``Bundle.dashboard``)."""

    kind: str
    index: int
    label: str
    score: float
    density: float
    max_act: float
    mean_act: float
    act_hist: np.ndarray           # [B]
    act_hist_edges: np.ndarray     # [B+1] = linspace(0, max_act, B+1)
    top_tokens: np.ndarray         # [K, W]
    top_acts: np.ndarray           # [K, W] float32
    top_center: int
    interval_tokens: np.ndarray    # [I, P, W]
    interval_acts: np.ndarray      # [I, P, W] float32
    interval_bounds: np.ndarray    # [I, 2]
    logit_top_ids: np.ndarray
    logit_top_values: np.ndarray
    logit_bottom_ids: np.ndarray
    logit_bottom_values: np.ndarray
    logit_hist: np.ndarray         # [B]
    logit_hist_edges: np.ndarray   # [B+1] = linspace(min, max, B+1)
    align_ids: np.ndarray
    align_values: np.ndarray
    align_l1: float
    corr_ids: np.ndarray
    corr_values: np.ndarray

    # --- which stored examples to show ----------------------------------------------------------
    # An example is one window (tokens [W], acts [W]) whose own token sits at ``top_center``; a
    # window whose own token is padding (-1: fewer stored examples than slots) is no example.
    def top_examples(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The top-activation examples, strongest first (as stored)."""
        c = self.top_center
        return [(self.top_tokens[k], self.top_acts[k]) for k in range(self.top_tokens.shape[0])
                if self.top_tokens[k, c] >= 0]

    def interval_examples(self) -> list[tuple[int, float, float, list[tuple[np.ndarray, np.ndarray]]]]:
        """(interval index, lo, hi, examples) for each subsample interval (lo, hi] that holds at least
        one example."""
        c = self.top_center
        out = []
        for i in range(self.interval_tokens.shape[0]):
            found = [(self.interval_tokens[i, k], self.interval_acts[i, k])
                     for k in range(self.interval_tokens.shape[1]) if self.interval_tokens[i, k, c] >= 0]
            if found:
                lo, hi = (float(v) for v in self.interval_bounds[i])
                out.append((i, lo, hi, found))
        return out

    def examples_in_range(self, lo: float, hi: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stored examples (top + interval) whose own token's activation lies in (lo, hi], strongest
        first, without duplicates (the same window can be a top and an interval example)."""
        c = self.top_center
        W = self.top_tokens.shape[-1]
        toks = np.concatenate([self.top_tokens.reshape(-1, W), self.interval_tokens.reshape(-1, W)])  # (K + I*P, W)
        acts = np.concatenate([self.top_acts.reshape(-1, W),
                               self.interval_acts.reshape(-1, W)]).astype(np.float32)              # (K + I*P, W)
        center = acts[:, c]
        ok = (toks[:, c] >= 0) & (center > lo) & (center <= hi)
        out, seen = [], set()
        for k in np.flatnonzero(ok)[np.argsort(-center[ok], kind="stable")]:
            key = (toks[k].tobytes(), float(center[k]))
            if key not in seen:
                seen.add(key)
                out.append((toks[k], acts[k]))
        return out

    def trim(self, tokens: np.ndarray, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """An example without its padding: (tokens [W'], acts [W'], index of the example's own token
        in them, -1 if that token is padding)."""
        keep = tokens >= 0
        c = self.top_center
        return tokens[keep], acts[keep], int(np.sum(keep[:c])) if keep[c] else -1
