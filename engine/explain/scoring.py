"""Scoring an explanation with a language model: detection, fuzzing (delphi) and simulation (the paper).

- ``detection``: the held-out active and silent examples, shuffled, in batches; the model says which
  fire. Score: balanced accuracy = (true-positive rate + true-negative rate) / 2 (0.5 = chance).
- ``fuzzing``: the active examples with their truly active tokens (level >= 1) marked, the silent
  ones with as many random tokens marked; the model says which are marked correctly. Balanced
  accuracy again.
- ``simulation``: the model predicts every token's activation (0–9; the expected digit when the
  endpoint gives logprobs) of the simulation examples; the score is Spearman's ρ between prediction
  and truth over all their tokens (``engine.analysis.labels.spearman``: 0 for a constant prediction,
  the same score the offline labels get).

Every function takes the ``ChatClient``; requests go out one after another (the job runs units in
parallel).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.analysis.labels import spearman
from engine.explain.client import ChatClient
from engine.explain.examples import UnitExamples
from engine.explain.prompts import (Example, detection_messages, fuzzing_messages, parse_digits, quantise,
                                    simulation_messages)

__all__ = ["balanced_accuracy", "detection", "fuzzing", "simulation", "score_all", "fuzz_marks"]


def balanced_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean of the true-positive and true-negative rates; NaN unless both classes are present."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    if not truth.any() or truth.all():
        return float("nan")
    tpr = (predicted & truth).sum() / truth.sum()
    tnr = (~predicted & ~truth).sum() / (~truth).sum()
    return float(0.5 * (tpr + tnr))


def _shuffled(active: Sequence[Example], silent: Sequence[Example], rng: np.random.Generator):
    items = [(e, True) for e in active] + [(e, False) for e in silent]
    order = rng.permutation(len(items))
    return [items[i][0] for i in order], np.array([items[i][1] for i in order], bool)


def _ask_batches(client: ChatClient, build, examples: list, batch: int) -> np.ndarray:
    out = []
    for a in range(0, len(examples), batch):
        part = examples[a:a + batch]
        reply = client.chat(build(part), max_tokens=4 * len(part) + 8)
        out.append(parse_digits(reply, len(part), top=1))
    return np.concatenate(out) if out else np.zeros(0)


def detection(client: ChatClient, explanation: str, vocab: Sequence[str], ex: UnitExamples, batch: int,
              rng: np.random.Generator) -> float:
    examples, truth = _shuffled(ex.held_active, ex.held_silent, rng)
    if not truth.any() or truth.all():
        return float("nan")
    said = _ask_batches(client, lambda part: detection_messages(explanation, vocab, part), examples, batch)
    return balanced_accuracy(said >= 0.5, truth)


def fuzz_marks(ex: UnitExamples, examples: list[Example], truth: np.ndarray, rng: np.random.Generator) -> list:
    """True activations marked on active examples; as many random tokens (the active mean) on silent ones."""
    marks, counts = [], []
    for (tokens, acts), active in zip(examples, truth):
        if active:
            m = quantise(acts, ex.max_act) > 0
            counts.append(int(m.sum()))
            marks.append(m)
        else:
            marks.append(None)
    k = max(1, int(round(np.mean(counts)))) if counts else 1
    for j, ((tokens, _), m) in enumerate(zip(examples, marks)):
        if m is None:
            valid = np.flatnonzero(tokens >= 0)
            m = np.zeros(len(tokens), bool)
            m[rng.choice(valid, size=min(k, len(valid)), replace=False)] = True
            marks[j] = m
    return marks


def fuzzing(client: ChatClient, explanation: str, vocab: Sequence[str], ex: UnitExamples, batch: int,
            rng: np.random.Generator) -> float:
    examples, truth = _shuffled(ex.held_active, ex.held_silent, rng)
    if not truth.any() or truth.all():
        return float("nan")
    marks = fuzz_marks(ex, examples, truth, rng)
    pairs = list(zip(examples, marks))
    said = _ask_batches(client, lambda part: fuzzing_messages(explanation, vocab, [e for e, _ in part],
                                                              [m for _, m in part]), pairs, batch)
    return balanced_accuracy(said >= 0.5, truth)


def simulation(client: ChatClient, explanation: str, vocab: Sequence[str], ex: UnitExamples) -> float:
    preds, trues = [], []
    for tokens, acts in ex.simulation:
        valid = tokens >= 0
        reply = client.chat(simulation_messages(explanation, vocab, tokens), max_tokens=4 * int(valid.sum()) + 8,
                            logprobs=True)
        preds.append(parse_digits(reply, int(valid.sum()), top=9))
        trues.append(np.asarray(acts, np.float64)[valid])
    if not preds:
        return float("nan")
    return spearman(np.concatenate(preds), np.concatenate(trues))


def score_all(client: ChatClient, explanation: str, vocab: Sequence[str], ex: UnitExamples, batch: int,
              seed: int = 0) -> dict[str, float]:
    """{"detection", "fuzzing", "simulation"} of one explanation (deterministic shuffles for ``seed``)."""
    rng = np.random.default_rng([seed, ex.index, 7])
    return {"detection": detection(client, explanation, vocab, ex, batch, rng),
            "fuzzing": fuzzing(client, explanation, vocab, ex, batch, rng),
            "simulation": simulation(client, explanation, vocab, ex)}
