"""All the matches of a family, from its models, dictionaries and held-out tokens.

``match_family_job(models, saes, tokens, ...)`` (a job: Progress per step, cancellable between
steps; ``engine.jobs.run_to_completion`` runs it without events) is the one computation behind
``superpos run --d-sae ... [--model-seeds a,b]``, ``superpos family BUNDLE --rematch`` (which
re-does it on a bundle without retraining) and the synthetic families of the tests
(``engine.testing.synthetic_family``, which give the neurons' activations instead of tokens). ``saes[m]`` are model m's dictionaries, smallest first;
members are numbered model 0's first, then model 1's (the bundle's order). It returns the matches in
the layout ``engine.bundle.family.write_family_group`` writes:

- each size against the next of the same model, both ways: decoder cosine and activation correlation;
- with two models, each dictionary against the other model's of the same size, both ways: activation
  correlation and the logit-weight correlation of those matches; and the neurons, by correlation;
- the metrics: the median best match of each comparison and how many units it counts.

Every correlation is on the same matching sample (``engine.analysis.universality``): random whole
contexts spread over ``tokens``, each model's MLP activations encoded by its own dictionaries.
Features are correlated sparsely (``universality.sparse_correlation_matches``), neurons densely
(``matching.correlation_matches``: a model has few of them).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from engine.events import CancelToken, Cancelled, Progress, RateMeter, StageFinished, StageStarted
from engine.analysis.matching import best_match_summary, correlation_matches, decoder_matches
from engine.analysis.universality import (DEFAULT_MATCH_TOKENS, DEFAULT_MIN_ACTIVE, feature_acts,
                                          logit_weight_correlations, sparse_correlation_matches,
                                          spread_windows)
from engine.analysis.universality import neuron_acts as model_neuron_acts

__all__ = ["match_family_job", "universality_line", "neuron_alignment"]


def match_family_job(models: Sequence, saes: Sequence[Sequence], tokens: np.ndarray | None = None, *,
                     neuron_acts: Sequence[np.ndarray] | None = None,
                     n_tokens: int = DEFAULT_MATCH_TOKENS, min_active: int = DEFAULT_MIN_ACTIVE,
                     seed: int = 0, k: int = 5, device: str = "cpu", cancel: CancelToken | None = None,
                     stage: str = "matching"):
    """A job (StageStarted, a Progress after each model's forwards, each dictionary's encoding and each
    comparison, StageFinished) returning (matches {(a, b): {kind: (ids, values)}}, neuron_matches
    {(ma, mb): (ids, values)}, metrics, decoders for the map: every member's W_dec in model 0's neuron
    basis, in member order). Cancelling stops it between steps (``Cancelled``).

    ``neuron_acts``: instead of ``tokens``, each model's MLP activations [N, M] on the same N tokens
    (a synthetic family, whose neurons are invented): they are the matching sample, and the
    models' forwards are skipped (the models still give the logit weights)."""
    if (tokens is None) == (neuron_acts is None):
        raise ValueError("give either tokens or neuron_acts")
    n_models = len(models)
    n_dicts = sum(len(s) for s in saes)
    size_pairs = sum(max(0, len(s) - 1) for s in saes)
    seed_pairs = min(len(saes[0]), len(saes[1])) if n_models > 1 else 0
    forwards = n_models if neuron_acts is None else 0
    total = forwards + n_dicts + size_pairs + seed_pairs + (1 if n_models > 1 else 0)
    yield StageStarted(stage, total=total, unit="steps")
    t0 = time.perf_counter()
    meter = RateMeter(total)
    done = 0

    def step():
        nonlocal done
        if cancel is not None and cancel.cancelled:
            raise Cancelled("matching cancelled")
        done += 1
        rate, eta = meter.update(done)
        return Progress(stage, done=done, total=total, rate=rate, eta_s=eta, unit="steps")

    if neuron_acts is None:
        windows = spread_windows(tokens, n_tokens, models[0].cfg.n_ctx, seed)
        x = []
        for m in models:
            x.append(model_neuron_acts(m, windows, device=device))
            yield step()
    else:
        x = [np.asarray(a, np.float32) for a in neuron_acts]
    acts = []
    for xm, model_saes in zip(x, saes):
        acts.append([])
        for s in model_saes:
            acts[-1].append(feature_acts(s, xm, device=device))
            yield step()
    decoders = [[s.W_dec.detach().cpu().numpy() for s in model_saes] for model_saes in saes]
    first = np.cumsum([0] + [len(s) for s in saes])
    matches, neuron_matches = {}, {}
    metrics = {"match_tokens": float(len(x[0])), "match_min_active": float(min_active)}
    for m in range(n_models):
        for d in range(len(saes[m]) - 1):
            for i, j in ((d, d + 1), (d + 1, d)):
                matches[(first[m] + i, first[m] + j)] = {
                    "decoder": decoder_matches(decoders[m][i], decoders[m][j], k=k, device=device),
                    "corr": sparse_correlation_matches(acts[m][i], acts[m][j], k=k, min_active=min_active)}
            if m == 0:
                metrics[f"family_corr_median_{d}_{d + 1}"] = best_match_summary(matches[(d, d + 1)]["corr"][1])["median"]
            yield step()
    if n_models > 1:
        for d in range(seed_pairs):
            a, b = int(first[0] + d), int(first[1] + d)
            F = int(saes[0][d].cfg.d_sae)
            for (p, q), (ma, mb) in (((a, b), (0, 1)), ((b, a), (1, 0))):
                ids, corr = sparse_correlation_matches(acts[ma][d], acts[mb][d], k=k, min_active=min_active)
                logit = logit_weight_correlations(models[ma], decoders[ma][d], models[mb], decoders[mb][d], ids)
                matches[(p, q)] = {"corr": (ids, corr), "logit": (ids, logit)}
            summary = best_match_summary(matches[(a, b)]["corr"][1])
            metrics[f"universality_feature_median_{F}"] = summary["median"]
            metrics[f"universality_feature_n_{F}"] = summary["n"]
            metrics[f"universality_logit_median_{F}"] = best_match_summary(matches[(a, b)]["logit"][1])["median"]
            yield step()
        for ma, mb in ((0, 1), (1, 0)):
            neuron_matches[(ma, mb)] = correlation_matches(x[ma], x[mb], k=k, device=device)
        summary = best_match_summary(neuron_matches[(0, 1)][1])
        metrics["universality_neuron_median"] = summary["median"]
        metrics["universality_neuron_n"] = summary["n"]
        yield step()
    map_decoders = list(decoders[0])
    for m in range(1, n_models):
        R = neuron_alignment(x[m], x[0])
        map_decoders += [W @ R for W in decoders[m]]
    yield StageFinished(stage, seconds=time.perf_counter() - t0)
    return matches, neuron_matches, metrics, map_decoders


def neuron_alignment(x_from_NM: np.ndarray, x_to_NM: np.ndarray) -> np.ndarray:
    """[M_from, M_to]: the least-squares linear map from one model's neuron activations to another's on
    the same tokens, so the other seed's decoder directions can be drawn in model A's neuron basis
    (each model's neurons are its own basis: without this the map would mix unrelated coordinates)."""
    # fitted on mean-centred activations: decoder rows are directions (differences), so the map must
    # not carry the ReLU neurons' large common mean, which would push every carried row the same way
    # (the PCA map then shows the other seed as two far lobes instead of among model A's features)
    # and ridge-regularised: a nearly constant neuron of one model (dead on the sample, or almost) gets
    # an unbounded coefficient by plain least squares, and every carried row with weight on it would
    # point along that one direction (the other seed's map then sits in two far lobes)
    x_from = np.asarray(x_from_NM, np.float64)
    x_to = np.asarray(x_to_NM, np.float64)
    x_from, x_to = x_from - x_from.mean(0), x_to - x_to.mean(0)
    gram = x_from.T @ x_from
    ridge = 1e-2 * max(float(np.trace(gram)) / max(1, len(gram)), 1e-12)
    R = np.linalg.solve(gram + ridge * np.eye(len(gram)), x_from.T @ x_to)
    return R.astype(np.float32)


def universality_line(metrics: dict, sizes: Sequence[int]) -> str:
    """One line for the log: the medians of features (per size) and neurons across seeds."""
    parts = [f"{F}: {metrics.get(f'universality_feature_median_{F}', float('nan')):.2f} "
             f"(n={int(metrics.get(f'universality_feature_n_{F}', 0))}, logit "
             f"{metrics.get(f'universality_logit_median_{F}', float('nan')):.2f})" for F in sizes]
    return (f"best-match correlation across seeds on {int(metrics.get('match_tokens', 0)):,} tokens (median): "
            f"features {', '.join(parts)}; neurons {metrics.get('universality_neuron_median', float('nan')):.2f}")
