"""A unit's dashboard as a Neuronpedia / SAE-Dashboard style feature dict (their field names), and
every feature of a bundle as the batch files SAE-Dashboard's Neuronpedia runner writes
(``export_neuronpedia_job``; ``superpos export-neuronpedia``; docs/interop.md).

``dashboard_to_neuronpedia(dash, token_str, model_id)`` is what the detail pane's "Copy as JSON"
puts on the clipboard. Top examples go in the ``activations`` list with ``bin_min = bin_max = -1``
(Neuronpedia's "top activations" bin); interval examples carry their interval's (lo, hi].
Histograms are given as bar centres and heights. Padding (token id -1) never appears.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Generator

import numpy as np

from engine.errors import UserError
from engine.events import CancelToken, Cancelled, Progress, RateMeter, StageFinished, StageStarted
from engine.fileio import write_bytes
from engine.stats import Dashboard

__all__ = ["dashboard_to_neuronpedia", "neuronpedia_batch", "export_neuronpedia_job", "NeuronpediaError"]


class NeuronpediaError(UserError, ValueError):
    """The Neuronpedia export cannot be written as asked."""


def _bar_centers(edges: np.ndarray) -> list[float]:
    edges = np.asarray(edges, np.float64)
    return ((edges[:-1] + edges[1:]) / 2).tolist() if np.isfinite(edges).all() else []


def dashboard_to_neuronpedia(dash: Dashboard, token_str: Callable[[int], str], model_id: str = "superpos") -> dict:
    """The dashboard as a JSON-ready dict; ``token_str(id)`` gives a token's text."""
    def strs(ids) -> list[str]:
        return [token_str(int(i)) for i in ids if int(i) >= 0]

    activations = []

    def add(tokens: np.ndarray, acts: np.ndarray, lo: float, hi: float) -> None:
        toks, vals, center = dash.trim(tokens, acts)
        activations.append({"tokens": strs(toks), "values": [float(v) for v in vals],
                            "bin_min": float(lo), "bin_max": float(hi), "qualifying_token_index": center})

    for tokens, acts in dash.top_examples():
        add(tokens, acts, -1, -1)
    for _i, lo, hi, examples in dash.interval_examples():
        for tokens, acts in examples:
            add(tokens, acts, lo, hi)
    other = "neuron" if dash.kind == "feature" else "feature"
    return {
        "modelId": model_id,
        "unit_kind": dash.kind,
        "feature_index" if dash.kind == "feature" else "neuron_index": int(dash.index),
        "explanation": dash.label,
        "explanation_score": None if not np.isfinite(dash.score) else float(dash.score),
        "frac_nonzero": float(dash.density),
        "max_act": float(dash.max_act),
        "mean_act": float(dash.mean_act),
        f"{other}_alignment_indices": [int(i) for i in dash.align_ids if i >= 0],
        f"{other}_alignment_values": [float(v) for i, v in zip(dash.align_ids, dash.align_values) if i >= 0],
        f"{other}_alignment_l1": float(dash.align_l1),
        f"correlated_{other}s_indices": [int(i) for i in dash.corr_ids if i >= 0],
        f"correlated_{other}s_pearson": [float(v) for i, v in zip(dash.corr_ids, dash.corr_values) if i >= 0],
        "pos_str": strs(dash.logit_top_ids), "pos_values": [float(v) for v in dash.logit_top_values],
        "neg_str": strs(dash.logit_bottom_ids), "neg_values": [float(v) for v in dash.logit_bottom_values],
        "freq_hist_data_bar_values": _bar_centers(dash.act_hist_edges),
        "freq_hist_data_bar_heights": [int(v) for v in dash.act_hist],
        "logits_hist_data_bar_values": _bar_centers(dash.logit_hist_edges),
        "logits_hist_data_bar_heights": [int(v) for v in dash.logit_hist],
        "activations": activations,
    }


# ====================================================================== batch files
def neuronpedia_batch(b, indices, model_id: str, token_str: Callable[[int], str]) -> dict:
    """One batch file's object, as SAE-Dashboard's NeuronpediaRunner writes it (``batch-N.json``):
    ``{"model_id", "layer", "sae_set", "features": [...]}``. Each feature adds the runner's
    ``n_prompts_total``, ``n_tokens_in_prompt``, ``dataset`` and each activation ``bin_contains``
    (-1 for the top activations, whose ``bin_max`` is the feature's largest activation, as there)."""
    n_ctx = int(b.model_config.n_ctx)
    n_tokens = int(b.metrics.get("harvest_tokens", 0) or 0)
    features = []
    for i in indices:
        feat = dashboard_to_neuronpedia(b.dashboard("feature", int(i)), token_str, model_id)
        for act in feat["activations"]:
            top = act["bin_min"] == -1
            act["bin_contains"] = -1 if top else None
            if top:
                act["bin_max"] = feat["max_act"]
        feat.update(n_prompts_total=n_tokens // max(n_ctx, 1), n_tokens_in_prompt=n_ctx, dataset=b.config.corpus.spec)
        features.append(feat)
    return {"model_id": model_id, "layer": 0, "sae_set": f"{b.config.name}-mlp", "features": features}


def export_neuronpedia_job(b, folder, batch_size: int = 128, model_id: str | None = None,
                           cancel: CancelToken | None = None) -> Generator[object, None, list[Path]]:
    """Write every feature of bundle ``b`` to ``folder/batch-N.json`` (``batch_size`` features each,
    atomically); yields StageStarted / Progress (units: features) / StageFinished; returns the paths."""
    if batch_size < 1:
        raise NeuronpediaError(f"--batch-size must be at least 1; got {batch_size}")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuronpediaError(f"cannot create {folder}: {exc.strerror or exc}") from None
    model_id = model_id or f"superpos-1l-{b.config.name}"
    tok = b.tokenizer()
    F = int(b.n_features)
    t0 = time.perf_counter()
    meter = RateMeter(F)
    yield StageStarted("neuronpedia", total=F, unit="features")
    paths = []
    for n, start in enumerate(range(0, F, batch_size)):
        if cancel is not None and cancel.cancelled:
            raise Cancelled("the Neuronpedia export was cancelled")
        batch = neuronpedia_batch(b, range(start, min(F, start + batch_size)), model_id, tok.token_str)
        paths.append(write_bytes(folder / f"batch-{n}.json", json.dumps(batch).encode("utf-8"),
                                 what="the Neuronpedia batch file"))
        done = min(F, start + batch_size)
        rate, eta = meter.update(done)
        yield Progress(stage="neuronpedia", done=done, total=F, rate=rate, eta_s=eta, unit="features")
    yield StageFinished("neuronpedia", seconds=time.perf_counter() - t0, summary={"files": float(len(paths))})
    return paths
