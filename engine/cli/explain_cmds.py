"""``superpos explain BUNDLE`` (explain and score units with a language model) and
``superpos explanations BUNDLE`` (list what is stored).

    superpos explain demo.h5 --endpoint http://localhost:11434/v1 --model llama3.1 --select "density>=1e-3,first:50"

The endpoint and model default to $SUPERPOS_LLM_URL and $SUPERPOS_LLM_MODEL; the API key is read
from $SUPERPOS_LLM_API_KEY (or the variable --api-key-env names, or the OS keyring), never from a
flag, so it stays out of shell history. First an estimate (requests, prompt tokens, and the time at
the rate one timed request shows), then the job with a progress bar; Ctrl+C stops it, and the same
command resumes (units already explained by the same model and prompt version are skipped).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from engine.cli.progress import ProgressPrinter, drive
from engine.cli.terminal import json_line_safe, terminal_safe
from engine.events import Cancelled, CancelToken

# engine.explain (httpx) and the bundle reader (h5py) load when an explain command runs, not with
# every `superpos` command

__all__ = ["register", "cmd_explain", "cmd_explanations"]

KINDS = {"features": "feature", "neurons": "neuron"}


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="explain and score units with a language model",
                              description="Explain features or neurons with any OpenAI-compatible chat "
                                          "endpoint (Ollama, llama.cpp server, vLLM, LM Studio, a hosted API) "
                                          "and score each explanation (detection, fuzzing, simulation). "
                                          "Results go into the bundle.")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--units", choices=sorted(KINDS), default="features")
    p.add_argument("--select", default="all", metavar="SPEC",
                   help="units: all, 12, 0-99, density>=1e-4, first:50, comma-separated (default all live)")
    p.add_argument("--endpoint", default=os.environ.get("SUPERPOS_LLM_URL", "http://localhost:11434/v1"),
                   metavar="URL", help="base URL of the chat-completions API ($SUPERPOS_LLM_URL; default Ollama's)")
    p.add_argument("--model", default=os.environ.get("SUPERPOS_LLM_MODEL", ""), metavar="NAME",
                   help="model name ($SUPERPOS_LLM_MODEL)")
    p.add_argument("--api-key-env", default="SUPERPOS_LLM_API_KEY", metavar="VAR",
                   help="environment variable holding the API key (default SUPERPOS_LLM_API_KEY)")
    p.add_argument("--concurrency", type=int, default=4, help="units (so requests) in flight at once")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds one try of a request may take, from connecting to the last byte of the answer "
                        "(0 < T <= 3600; default 120)")
    p.add_argument("--retries", type=int, default=4,
                   help="retries on 429 / 5xx / timeouts / broken answers (0-10; default 4); a request gives up "
                        "after timeout × (retries + 1) seconds in all")
    p.add_argument("--force", action="store_true", help="redo units that are already explained")
    p.add_argument("--resume", action="store_true", help="(the default) skip units already explained")
    p.add_argument("--estimate-only", action="store_true", help="print the estimate and stop")
    p.add_argument("--no-probe", action="store_true", help="do not time a request for the estimate")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser("explanations", help="list a bundle's language-model explanations",
                              description="Print the stored explanations and their scores.")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--units", choices=sorted(KINDS), default="features")
    p.add_argument("--json", action="store_true", help="one JSON record per line")
    p.set_defaults(func=cmd_explanations)


def _endpoint(args):
    from engine.explain.client import Endpoint

    return Endpoint(base_url=args.endpoint, model=args.model, api_key_env=args.api_key_env,
                    concurrency=args.concurrency, timeout_s=args.timeout, max_retries=args.retries)


def cmd_explain(args: argparse.Namespace) -> int:
    from engine.bundle import open_bundle
    from engine.bundle.explanations import SCORE_NAMES
    from engine.explain.examples import ExampleConfig
    from engine.explain.job import UnitSource, estimate, explain_job, pending_units, select_units

    kind = KINDS[args.units]
    endpoint = _endpoint(args)
    config = ExampleConfig()
    err = sys.stderr
    with open_bundle(args.bundle) as b:
        units = select_units(args.select, b.columns(kind)["density"])
        todo = pending_units(args.bundle, kind, units, endpoint.model, args.force, b.explanations(kind))
        source = UnitSource(b, kind, config)
        seconds = None
        if todo and not args.no_probe:
            seconds = _probe(endpoint, source, todo[0])
        est = estimate(source, todo, seconds, endpoint.concurrency) if todo else None
    print(f"{endpoint.model} at {endpoint.host}: {len(units):,} {args.units} selected, {len(todo):,} to do",
          file=err)
    if est is not None:
        print("estimate: " + est.text(), file=err)
    if not todo:
        _fold(args.bundle)          # a crashed run's journal is folded even when nothing is left to do
    if args.estimate_only or not todo:
        return 0
    cancel = CancelToken()
    job = explain_job(args.bundle, kind, units, endpoint, config=config, force=args.force, cancel=cancel)
    try:
        summary = drive(job, cancel, ProgressPrinter(quiet=args.quiet))
    except Cancelled:
        _fold(args.bundle)
        raise
    _fold(args.bundle)
    meds = ", ".join(f"{n} {summary[n + '_median']:.3f}" for n in SCORE_NAMES if math.isfinite(summary[n + "_median"]))
    partly = int(summary["explained"] - summary["fully_scored"])
    print(f"explained {int(summary['explained']):,} {args.units} ({int(summary['failed'])} failed"
          + (f", {partly} not fully scored" if partly else "")
          + f"; {int(summary['requests']):,} requests); median scores: {meds or 'none'}")
    return 0


def _probe(endpoint, source, unit: int) -> float | None:
    """Seconds one explain request takes (the first unit's prompt), for the estimate; None when the
    model's answer to it is unusable (a refusal, an empty or malformed answer: the job records those per
    unit, so they do not stop the run). An endpoint that cannot be used stops the command here."""
    from engine.explain.client import ChatClient, EndpointError, LLMError
    from engine.explain.prompts import explain_messages

    ex = source.examples(unit)
    with ChatClient(endpoint) as client:
        t0 = time.perf_counter()
        try:
            client.chat(explain_messages(source.vocab, ex.sections(), ex.max_act, ex.promoted, ex.suppressed),
                        max_tokens=80)
        except EndpointError:
            raise
        except LLMError as exc:
            print(f"superpos: note: the timed request gave no usable answer ({terminal_safe(exc)}); "
                  "the estimate has no time", file=sys.stderr)
            return None
        return time.perf_counter() - t0


def _fold(path: str) -> None:
    from engine.bundle.explanations import fold_journal

    try:
        n = fold_journal(path)
    except Exception as exc:   # a read-only bundle keeps its journal; say so, do not lose the run
        print(f"superpos: note: {terminal_safe(exc)}", file=sys.stderr)
        return
    if n:
        print(f"wrote {n:,} explanations into {path}", file=sys.stderr)


def cmd_explanations(args: argparse.Namespace) -> int:
    from engine.bundle import open_bundle
    from engine.bundle.explanations import SCORE_NAMES, journal_path

    kind = KINDS[args.units]
    with open_bundle(args.bundle) as b:
        records = b.explanations(kind)
    for unit in sorted(records):
        r = records[unit]
        if args.json:
            print(json_line_safe(r))
            continue
        scores = " ".join(f"{n[:3]} {r[n]:.2f}" if isinstance(r.get(n), (int, float)) else f"{n[:3]} -"
                          for n in SCORE_NAMES)
        text = r.get("explanation") or f"({r.get('status')}: {r.get('error', '')})"
        print(f"{kind} {unit:>6}  {scores}  {terminal_safe(text)}")     # a model's text: ESC and bidi shown, not obeyed
    if not records and not args.json:
        pending = " (a journal is pending)" if journal_path(args.bundle).exists() else ""
        print(f"no explanations of {args.units} in {terminal_safe(args.bundle)}{pending}")
    return 0
