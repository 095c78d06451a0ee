"""Re-do a family bundle's matching without retraining: ``superpos family BUNDLE --rematch``.

``rematch_job(path)`` reads the bundle's models (A, and B from /models/1 when it has a second
seed) and every dictionary, tokenizes the run's corpus again with the bundle's tokenizer (the token
cache makes this instant when the run was made here), and computes the matches as a run does
(``engine.analysis.family_match``): sizes against each other, A against B, the neurons, the
logit-weight correlations and the medians. The bundle is rewritten atomically (a copy with the new
/family/matches, /family/neuron_matches, /family/map and metrics is renamed over it), so a crash
leaves the old bundle intact. The statistics, labels and explanations are kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Generator

from engine.events import CancelToken, Cancelled, Message, StageFinished, StageStarted
from engine.jobs import blocking_stage, staged

__all__ = ["rematch_job", "REMATCH_STAGES"]

REMATCH_STAGES = ("load", "tokenize", "matching", "bundle")


def _load_family(path: Path):
    """(bundle config, tokenizer, [model per seed], [[SAE per dictionary] per model], sizes of model A)."""
    from engine.bundle import open_bundle
    from engine.errors import UserError

    with open_bundle(path) as b:
        family, config, tokenizer = b.family, b.config, b.tokenizer()
        models = [b.load_model()]
    if len(family) < 2:
        raise UserError(f"{path} holds one dictionary: there is nothing to match (make a family with "
                        "`superpos run --d-sae 512,4096 [--model-seeds 0,1]`)")
    saes: list[list] = [[] for _ in {m["model"] for m in family.members}]
    for i, member in enumerate(family.members):
        with open_bundle(path, i) as d:
            if member["model"] >= len(models):
                models.append(d.load_model())
            saes[member["model"]].append(d.load_sae())
    return config, tokenizer, models, saes


def rematch_job(path, *, n_tokens: int | None = None, min_active: int | None = None, device: str = "cpu",
                cancel: CancelToken | None = None) -> Generator[object, None, dict]:
    """Recompute the matches of the family bundle at ``path`` in place (atomically); returns the new metrics."""
    from engine.analysis.family_match import match_family_job, universality_line
    from engine.analysis.feature_map import embed_decoders
    from engine.analysis.universality import DEFAULT_MATCH_TOKENS, DEFAULT_MIN_ACTIVE
    from engine.bundle.family import replace_matches
    from engine.bundle.h5target import rewrite_h5
    from engine.data.token_cache import tokenize_corpus

    from engine.device import resolve_device

    path = Path(path)
    device = str(resolve_device(device))        # cuda:N and mps as given (and "auto" resolved)
    n = len(REMATCH_STAGES)
    t0 = time.perf_counter()
    config, tokenizer, models, saes = yield from blocking_stage("load", 0, n, _load_family, path)
    tokens = yield from staged(tokenize_corpus(config.corpus, tokenizer, cancel=cancel), 1, n)
    matches, neuron_matches, metrics, map_decoders = yield from staged(match_family_job(
        models, saes, tokens.val, n_tokens=int(n_tokens or DEFAULT_MATCH_TOKENS),
        min_active=int(min_active or DEFAULT_MIN_ACTIVE), seed=config.harvest.seed, device=device, cancel=cancel), 2, n)
    feature_map = yield from blocking_stage("map", 2, n, embed_decoders, map_decoders, seed=config.sae.seed)
    if cancel is not None and cancel.cancelled:
        raise Cancelled("rematch cancelled; the bundle is unchanged")
    yield StageStarted("bundle", total=0, index=3, n_stages=n)
    t1 = time.perf_counter()
    with rewrite_h5(path) as f:
        replace_matches(f, matches, neuron_matches, metrics, feature_map)
    yield StageFinished("bundle", seconds=time.perf_counter() - t1)
    if len(models) > 1:
        yield Message(universality_line(metrics, [int(s.cfg.d_sae) for s in saes[0]]))
    yield Message(f"rematched {path} in {time.perf_counter() - t0:.0f} s")
    return metrics
