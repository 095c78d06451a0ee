"""The explain job: explain and score many units, in parallel, resumable, one record per unit.

``explain_job(bundle_path, kind, units, endpoint)`` is a generator job (engine.events): it opens its
own read handle, skips units that already hold an "ok" record from the same model and prompt
version (resume; ``force=True`` redoes them), then runs up to ``endpoint.concurrency`` units at a
time on threads, each unit's requests one after another (so at most that many requests are in
flight). Each finished unit's record goes to the journal at once (``append_journal``); the caller
folds the journal into the bundle afterwards (``engine.bundle.explanations.fold_journal``).

Each question asks for structured output first and re-asks once after a malformed answer
(``engine.explain.ask``). A refusal or a malformed explanation fails that unit only (its record
says so); a scorer whose answers stay malformed leaves its score None and its error in the record,
and the other scores stand (such a unit is redone on resume, as a failed one is); an ``EndpointError``
(unreachable server, bad key, retries exhausted) stops the job. Cancel stops at the next finished
unit; units in flight finish their current request and are dropped (they are redone on resume).

``select_units`` turns a ``--select`` text into unit indices; ``estimate`` says what a run will
cost before it starts.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import numpy as np

from engine.bundle import open_bundle
from engine.bundle.explanations import SCORE_NAMES, append_journal, now_iso
from engine.errors import UserError
from engine.events import Cancelled, CancelToken, Message, Progress, RateMeter, StageFinished, StageStarted
from engine.explain.ask import REASK_FACTOR, Asker, Question, explanation_schema
from engine.explain.client import ChatClient, Endpoint, EndpointError, LLMError, dumps_messages
from engine.explain.examples import ExampleConfig, UnitExamples, unit_examples
from engine.explain.prompts import PROMPT_VERSION, explain_messages, parse_explanation, parse_explanation_json
from engine.explain.scoring import score_all

__all__ = ["SelectionError", "select_units", "Estimate", "estimate", "explain_unit", "explain_job",
           "UnitSource", "CHARS_PER_TOKEN"]

CHARS_PER_TOKEN = 4.0       # prompt tokens are estimated from characters (the usual ~4 for English BPE)


class SelectionError(UserError, ValueError):
    """A --select text that names no units or cannot be read."""


_DENSITY = re.compile(r"^density\s*(>=|>|<=|<)\s*([0-9.eE+-]+)$")


def select_units(spec: str, density: np.ndarray) -> list[int]:
    """Units named by ``spec``: comma-separated ``all``, ``N``, ``A-B`` (inclusive), ``density>=X`` /
    ``>`` / ``<=`` / ``<`` (intersected with the rest), ``first:N`` (the first N of the result).
    Dead units (density 0) are never selected: they have no examples to explain."""
    N = len(density)
    picked: set[int] | None = None
    limits: list[tuple[str, float]] = []
    first = None
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        m = _DENSITY.match(part)
        try:
            if part == "all":
                picked = set(range(N)) if picked is None else picked | set(range(N))
            elif m:
                limits.append((m.group(1), float(m.group(2))))
            elif part.startswith("first:"):
                first = int(part[6:])
            elif "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                picked = (picked or set()) | set(range(max(a, 0), min(b, N - 1) + 1))
            else:
                i = int(part)
                if not 0 <= i < N:
                    raise SelectionError(f"unit {i} does not exist (there are {N})")
                picked = (picked or set()) | {i}
        except ValueError as exc:
            if isinstance(exc, SelectionError):
                raise
            raise SelectionError(f"cannot read {part!r} in --select (use e.g. 0-99,120 or density>=1e-4)") from exc
    ids = np.array(sorted(picked if picked is not None else range(N)), dtype=np.int64)
    keep = density[ids] > 0 if ids.size else np.zeros(0, bool)
    ops = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}
    for op, x in limits:
        keep &= ops[op](density[ids], x)
    out = [int(i) for i in ids[keep]]
    if first is not None:
        out = out[:max(first, 0)]
    if not out:
        raise SelectionError(f"--select {spec!r} names no live units")
    return out


class UnitSource:
    """Everything the job reads from the bundle, through one read handle (one thread at a time)."""

    def __init__(self, bundle, kind: str, config: ExampleConfig):
        self.bundle, self.kind, self.config = bundle, kind, config
        self.vocab = bundle.tokenizer().vocab_strings()
        tokens, neuron_acts = bundle.sample_neurons()
        self.sample_tokens = tokens
        starts = bundle.sample_context_starts()          # whole contexts (schema 5): windows stay in one
        self.sample_context = len(tokens) // starts.size if starts is not None and starts.size else 0
        self._neuron_acts = neuron_acts if kind == "neuron" else None

    def examples(self, unit: int) -> UnitExamples:
        if self.kind == "neuron":
            acts = self._neuron_acts[:, unit]
        else:
            idx, values = self.bundle.sample_feature(unit)
            acts = np.zeros(len(self.sample_tokens), np.float32)
            acts[idx] = values
        return unit_examples(self.bundle.dashboard(self.kind, unit), self.sample_tokens, acts, self.config,
                             self.sample_context)


@dataclass
class Estimate:
    """``requests``: one per question (explain, each detection and fuzzing batch, each simulation
    example); ``max_requests``: with every question asked twice (a re-ask after a malformed answer).
    Prompt tokens and time are for ``requests``."""

    units: int
    requests: int
    prompt_tokens: int
    seconds: float | None          # at the measured rate (None: not measured)
    max_requests: int = 0

    def text(self) -> str:
        t = "" if self.seconds is None else f", about {_duration(self.seconds)} at the measured rate"
        reask = (f" ({self.max_requests:,} if every answer had to be asked again)"
                 if self.max_requests > self.requests else "")
        return (f"{self.units:,} units: up to {self.requests:,} requests{reask}, about {self.prompt_tokens:,} "
                f"prompt tokens{t}")


def _duration(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def estimate(source: UnitSource, units: Sequence[int], seconds_per_request: float | None = None,
             concurrency: int = 1, probe_units: int = 16) -> Estimate:
    """Requests and prompt tokens for ``units`` (prompts built for up to ``probe_units`` of them and
    scaled), and the time at ``seconds_per_request`` with ``concurrency`` requests in flight."""
    cfg = source.config
    probe = list(units[:: max(1, len(units) // probe_units)])[:probe_units]
    chars = 0.0
    for u in probe:
        ex = source.examples(u)
        chars += len(dumps_messages(explain_messages(source.vocab, ex.sections(), ex.max_act, ex.promoted,
                                                     ex.suppressed)))
        scoring = len(dumps_messages([{"content": "x" * 60}])) + 120       # explanation + instructions
        n_ex = len(ex.held_active) + len(ex.held_silent)
        chars += 2 * (n_ex * ex_chars(source.vocab, ex) + scoring * -(-n_ex // cfg.batch))
        chars += sum(int((t >= 0).sum()) * 12 + scoring for t, _ in ex.simulation)
    per_unit = chars / max(len(probe), 1) / CHARS_PER_TOKEN
    requests = cfg.requests_per_unit() * len(units)
    seconds = None if seconds_per_request is None else requests * seconds_per_request / max(concurrency, 1)
    return Estimate(len(units), requests, int(per_unit * len(units)), seconds, REASK_FACTOR * requests)


def ex_chars(vocab: Sequence[str], ex: UnitExamples) -> float:
    """Mean characters of one example's text line."""
    every = ex.held_active + ex.held_silent
    if not every:
        return 0.0
    return float(np.mean([sum(len(vocab[int(t)]) for t in tokens if t >= 0) + 14 for tokens, _ in every]))


def explain_unit(asker: Asker | ChatClient, vocab: Sequence[str], ex: UnitExamples,
                 config: ExampleConfig) -> dict[str, Any]:
    """Explain and score one unit: its record (status "ok", or "refused" / "failed" with the error; an
    "ok" record whose ``error`` is not empty lacks the scores it names)."""
    asker = asker if isinstance(asker, Asker) else Asker(asker)
    client = asker.client
    rec: dict[str, Any] = {"kind": ex.kind, "unit": ex.index, "model": client.endpoint.model,
                           "endpoint": client.endpoint.host, "prompt_version": PROMPT_VERSION,
                           "explanation": "", **{k: None for k in SCORE_NAMES}, "error": ""}
    before = (client.usage.requests, client.usage.prompt_tokens, client.usage.completion_tokens)
    try:
        question = Question(explain_messages(vocab, ex.sections(), ex.max_act, ex.promoted, ex.suppressed),
                            explanation_schema(), "explanation", parse_text=parse_explanation,
                            parse_json=parse_explanation_json, max_tokens=120,
                            json_hint=' (JSON: {"explanation": "<at most 15 words>"})')
        rec["explanation"] = asker.ask(question)
        errors: dict[str, str] = {}
        rec.update(score_all(asker, rec["explanation"], vocab, ex, config.batch, config.seed, errors=errors))
        rec["error"] = "; ".join(f"{name}: {err}" for name, err in errors.items())
        rec["status"] = "ok"
    except EndpointError:
        raise
    except LLMError as exc:
        rec["status"] = "refused" if type(exc).__name__ == "RefusalError" else "failed"
        rec["error"] = str(exc)
    rec["date"] = now_iso()
    # per-unit usage is approximate while units run in parallel (totals are exact)
    after = (client.usage.requests, client.usage.prompt_tokens, client.usage.completion_tokens)
    rec["requests"], rec["prompt_tokens"], rec["completion_tokens"] = (a - b for a, b in zip(after, before))
    return rec


def _medians(records: list[dict]) -> dict[str, float]:
    out = {}
    for name in SCORE_NAMES:
        v = np.array([r[name] for r in records if r.get(name) is not None], np.float64)
        v = v[np.isfinite(v)]
        out[f"{name}_median"] = float(np.median(v)) if v.size else float("nan")
    out["explained"] = float(sum(r["status"] == "ok" for r in records))
    out["fully_scored"] = float(sum(r["status"] == "ok" and not r.get("error") for r in records))
    out["failed"] = float(sum(r["status"] != "ok" for r in records))
    return out


def pending_units(bundle_path, kind: str, units: Sequence[int], model: str, force: bool = False,
                  existing: dict[int, dict] | None = None) -> list[int]:
    """``units`` less those already explained by ``model`` with this prompt version (``existing``:
    ``Bundle.explanations(kind)`` of the bundle, read here if not given)."""
    if force:
        return list(units)
    if existing is None:
        with open_bundle(bundle_path) as b:
            existing = b.explanations(kind)
    have = existing
    return [u for u in units if not (u in have and have[u].get("status") == "ok" and not have[u].get("error")
                                     and have[u].get("model") == model
                                     and have[u].get("prompt_version") == PROMPT_VERSION)]


def explain_job(bundle_path, kind: str, units: Sequence[int], endpoint: Endpoint, *,
                config: ExampleConfig = ExampleConfig(), force: bool = False, cancel: CancelToken | None = None,
                client_factory: Callable[[Endpoint], ChatClient] = ChatClient,
                ) -> Generator[object, None, dict[str, float]]:
    """Generator job (see the module docstring); returns the medians of this run's scores and counts."""
    bundle = open_bundle(bundle_path)
    try:
        todo = pending_units(bundle_path, kind, units, endpoint.model, force,
                             None if force else bundle.explanations(kind))
    except BaseException:
        bundle.close()
        raise
    skipped = len(units) - len(todo)
    client = client_factory(endpoint)
    client.cancel = cancel
    asker = Asker(client)
    records: list[dict] = []
    t0 = time.perf_counter()
    try:
        source = UnitSource(bundle, kind, config)
        yield StageStarted("explain", total=len(todo), unit="units")
        if skipped:
            yield Message(f"{skipped:,} of {len(units):,} units already explained by {endpoint.model} "
                          f"({PROMPT_VERSION}); resuming with the other {len(todo):,}")
        meter = RateMeter(len(todo))
        with cf.ThreadPoolExecutor(max_workers=endpoint.concurrency, thread_name_prefix="explain") as pool:
            queue = list(todo)
            running: dict[cf.Future, int] = {}

            def fill():
                while queue and len(running) < 2 * endpoint.concurrency:
                    u = queue.pop(0)
                    ex = source.examples(u)      # bundle reads stay on this thread
                    running[pool.submit(explain_unit, asker, source.vocab, ex, config)] = u

            try:
                fill()
                while running:
                    if cancel is not None and cancel.cancelled:
                        raise Cancelled(f"explaining cancelled after {len(records):,} of {len(todo):,} units; "
                                        "run it again to resume")
                    finished, _ = cf.wait(list(running), timeout=0.2, return_when=cf.FIRST_COMPLETED)
                    for fut in finished:
                        running.pop(fut)
                        rec = fut.result()           # EndpointError stops the job here
                        append_journal(bundle_path, [rec])
                        records.append(rec)
                    if finished:
                        rate, eta = meter.update(len(records))
                        yield Progress(stage="explain", done=len(records), total=len(todo), rate=rate, eta_s=eta,
                                       unit="units", metrics={k: v for k, v in _medians(records).items()
                                                              if k.endswith("_median") and np.isfinite(v)})
                    fill()
            finally:
                for fut in running:
                    fut.cancel()
        summary = {**_medians(records), "requests": float(client.usage.requests),
                   "prompt_tokens": float(client.usage.prompt_tokens), "retries": float(client.usage.retries),
                   "reasks": float(asker.reasks), "structured_output": float(asker.structured)}
        yield StageFinished("explain", seconds=time.perf_counter() - t0, summary=summary)
        return summary
    finally:
        client.close()
        bundle.close()
