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

Every scorer asks through an ``engine.explain.ask.Asker`` (structured output where the server takes it,
the free-text parser otherwise, one re-ask after a malformed answer); requests go out one after
another (the job runs units in parallel). ``score_all`` runs the three independently: a scorer whose
answers stay malformed (or that the model refuses) scores None and says why in ``errors``, and the
others keep their scores.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.analysis.labels import spearman
from engine.explain.ask import Asker, Question, digits_schema
from engine.explain.client import ChatClient, EndpointError, LLMError
from engine.explain.examples import UnitExamples
from engine.explain.prompts import (Example, detection_messages, fuzzing_messages, parse_digits, parse_digits_json,
                                    quantise, simulation_messages)

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


def digits_question(messages: list, n: int, top: int, name: str, logprobs: bool = False) -> Question:
    """Ask for n digits 0..top: {"answers": [...]} under a schema, or one per line in text."""
    return Question(messages, digits_schema(n, top), name,
                    parse_text=lambda reply: parse_digits(reply, n, top=top),
                    parse_json=lambda data, reply: parse_digits_json(data, reply, n, top=top),
                    max_tokens=4 * n + 24, logprobs=logprobs,
                    json_hint=f' (JSON: {{"answers": [{n} digits from 0 to {top}]}})')


def _ask_batches(asker: Asker, build, examples: list, batch: int, name: str) -> np.ndarray:
    out = []
    for a in range(0, len(examples), batch):
        part = examples[a:a + batch]
        out.append(asker.ask(digits_question(build(part), len(part), 1, name)))
    return np.concatenate(out) if out else np.zeros(0)


def detection(asker: Asker, explanation: str, vocab: Sequence[str], ex: UnitExamples, batch: int,
              rng: np.random.Generator) -> float:
    examples, truth = _shuffled(ex.held_active, ex.held_silent, rng)
    if not truth.any() or truth.all():
        return float("nan")
    said = _ask_batches(asker, lambda part: detection_messages(explanation, vocab, part), examples, batch,
                        "detection")
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


def fuzzing(asker: Asker, explanation: str, vocab: Sequence[str], ex: UnitExamples, batch: int,
            rng: np.random.Generator) -> float:
    examples, truth = _shuffled(ex.held_active, ex.held_silent, rng)
    if not truth.any() or truth.all():
        return float("nan")
    marks = fuzz_marks(ex, examples, truth, rng)
    pairs = list(zip(examples, marks))
    said = _ask_batches(asker, lambda part: fuzzing_messages(explanation, vocab, [e for e, _ in part],
                                                             [m for _, m in part]), pairs, batch, "fuzzing")
    return balanced_accuracy(said >= 0.5, truth)


def simulation(asker: Asker, explanation: str, vocab: Sequence[str], ex: UnitExamples) -> float:
    preds, trues = [], []
    for tokens, acts in ex.simulation:
        valid = tokens >= 0
        preds.append(asker.ask(digits_question(simulation_messages(explanation, vocab, tokens), int(valid.sum()), 9,
                                               "simulation", logprobs=True)))
        trues.append(np.asarray(acts, np.float64)[valid])
    if not preds:
        return float("nan")
    return spearman(np.concatenate(preds), np.concatenate(trues))


def score_all(asker: Asker | ChatClient, explanation: str, vocab: Sequence[str], ex: UnitExamples, batch: int,
              seed: int = 0, errors: dict[str, str] | None = None) -> dict[str, float | None]:
    """{"detection", "fuzzing", "simulation"} of one explanation (deterministic shuffles for ``seed``).
    Each scorer on its own: one whose answers cannot be read (or are refused) is None, and its error
    goes into ``errors``; an ``EndpointError`` (the server is unusable) stops them all."""
    asker = asker if isinstance(asker, Asker) else Asker(asker)
    rng = np.random.default_rng([seed, ex.index, 7])
    marks_rng = np.random.default_rng([seed, ex.index, 8])
    scorers = {"detection": lambda: detection(asker, explanation, vocab, ex, batch, rng),
               "fuzzing": lambda: fuzzing(asker, explanation, vocab, ex, batch, marks_rng),
               "simulation": lambda: simulation(asker, explanation, vocab, ex)}
    out: dict[str, float | None] = {}
    for name, run in scorers.items():
        try:
            out[name] = run()
        except EndpointError:
            raise
        except LLMError as exc:
            out[name] = None
            if errors is not None:
                errors[name] = str(exc)
    return out
