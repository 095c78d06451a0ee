"""A unit's dashboard as a Neuronpedia / SAE-Dashboard style feature dict (their field names).

``dashboard_to_neuronpedia(dash, token_str, model_id)`` is what the detail pane's "Copy as JSON"
puts on the clipboard. Top examples go in the ``activations`` list with ``bin_min = bin_max = -1``
(Neuronpedia's "top activations" bin); interval examples carry their interval's (lo, hi].
Histograms are given as bar centres and heights. Padding (token id -1) never appears.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from engine.stats import Dashboard

__all__ = ["dashboard_to_neuronpedia"]


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
