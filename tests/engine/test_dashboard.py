"""Dashboard: which stored examples a pane shows, and the Neuronpedia-style JSON (no Qt)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.interop.neuronpedia import dashboard_to_neuronpedia
from engine.stats import Dashboard

W, C = 5, 2          # window of 5 tokens, the example's own token in the middle


def _window(center_act: float, pad_left: int = 0, token: int = 7) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.arange(10, 10 + W, dtype=np.int32)
    tokens[C] = token
    tokens[:pad_left] = -1
    acts = np.zeros(W, np.float32)
    acts[C] = center_act
    acts[C - 1] = center_act / 2
    return tokens, acts


def _dashboard(kind: str = "feature") -> Dashboard:
    pad = (np.full(W, -1, np.int32), np.zeros(W, np.float32))
    top = [_window(4.0), _window(3.0, pad_left=1), pad]                      # K = 3, one slot empty
    intervals = [[_window(2.5), _window(2.0, token=8)],                      # I = 3, P = 2
                 [pad, pad],                                                # an empty interval
                 [_window(0.5), _window(4.0)]]                              # (4.0) repeats a top example
    return Dashboard(
        kind=kind, index=3, label="digits", score=0.5, density=0.01, max_act=4.0, mean_act=1.5,
        act_hist=np.array([5, 3, 1, 1]), act_hist_edges=np.linspace(0, 4, 5),
        top_tokens=np.stack([t for t, _ in top]), top_acts=np.stack([a for _, a in top]), top_center=C,
        interval_tokens=np.array([[t for t, _ in row] for row in intervals]),
        interval_acts=np.array([[a for _, a in row] for row in intervals]),
        interval_bounds=np.array([[1.5, 3.0], [1.0, 1.5], [0.0, 1.0]], np.float32),
        logit_top_ids=np.array([1, 2]), logit_top_values=np.array([0.5, 0.25], np.float32),
        logit_bottom_ids=np.array([3, -1]), logit_bottom_values=np.array([-0.5, 0.0], np.float32),
        logit_hist=np.array([1, 2]), logit_hist_edges=np.array([-1.0, 0.0, 1.0]),
        align_ids=np.array([4, -1]), align_values=np.array([0.9, 0.0], np.float32), align_l1=0.4,
        corr_ids=np.array([5, 6]), corr_values=np.array([0.8, 0.7], np.float32),
    )


def test_top_and_interval_examples_skip_padding_slots():
    dash = _dashboard()
    assert [float(a[C]) for _, a in dash.top_examples()] == [4.0, 3.0]
    sections = dash.interval_examples()
    assert [(i, lo, hi) for i, lo, hi, _ in sections] == [(0, 1.5, 3.0), (2, 0.0, 1.0)]   # interval 1 is empty
    assert [float(a[C]) for _, a in sections[1][3]] == [0.5, 4.0]


def test_examples_in_range_are_strongest_first_without_duplicates():
    dash = _dashboard()
    found = dash.examples_in_range(1.0, 4.0)
    assert [float(a[C]) for _, a in found] == [4.0, 3.0, 2.5, 2.0]       # the repeated 4.0 window once
    assert dash.examples_in_range(4.0, 10.0) == []                        # (lo, hi]: lo itself excluded
    assert [float(a[C]) for _, a in dash.examples_in_range(0.0, 0.5)] == [0.5]


def test_trim_drops_padding_and_finds_the_example_token():
    dash = _dashboard()
    tokens, acts = dash.top_examples()[1]                # one padding token on the left
    toks, vals, center = dash.trim(tokens, acts)
    assert len(toks) == W - 1 and center == C - 1 and vals[center] == 3.0
    pad = np.full(W, -1, np.int32)
    assert dash.trim(pad, np.zeros(W, np.float32))[2] == -1


def test_neuronpedia_json_fields():
    dash = _dashboard()
    data = dashboard_to_neuronpedia(dash, lambda i: f"t{i}", model_id="superpos:demo")
    json.dumps(data)                                      # JSON-ready
    assert data["modelId"] == "superpos:demo" and data["feature_index"] == 3
    assert data["neuron_alignment_indices"] == [4] and data["neuron_alignment_values"] == [pytest.approx(0.9)]
    assert data["correlated_neurons_indices"] == [5, 6]
    assert data["pos_str"] == ["t1", "t2"] and data["neg_str"] == ["t3"]
    assert data["freq_hist_data_bar_values"] == [0.5, 1.5, 2.5, 3.5]
    assert data["freq_hist_data_bar_heights"] == [5, 3, 1, 1]
    acts = data["activations"]
    assert len(acts) == 2 + 2 + 2                         # top, then the two non-empty intervals
    assert (acts[0]["bin_min"], acts[0]["bin_max"]) == (-1.0, -1.0)
    assert (acts[2]["bin_min"], acts[2]["bin_max"]) == (1.5, 3.0)
    for a in acts:
        assert len(a["tokens"]) == len(a["values"]) and "t-1" not in a["tokens"]
        assert a["tokens"][a["qualifying_token_index"]] in ("t7", "t8")
    assert acts[1]["values"][acts[1]["qualifying_token_index"]] == 3.0
    neuron = dashboard_to_neuronpedia(_dashboard("neuron"), str)
    assert neuron["neuron_index"] == 3 and "feature_alignment_indices" in neuron
    assert neuron["explanation_score"] == 0.5
