"""A valid bundle with random-but-plausible statistics, written fast: for benchmarks and app tests.

The statistics are invented (lognormal densities with some dead and ultralow units, decreasing
activation histograms, token windows whose activation peaks at the centre, sorted logit effects,
labels such as "DNA: ACGT runs" with scores), but the tokenizer, model and SAE are real objects:
a byte-level BPE trained on a few KB of mixed text, a randomly initialised OneLayerTransformer and a
random SAE of the stated sizes, so the app's text lens runs on the bundle. Columns are generated and
written ``chunk`` units at a time, so 131,072 features fit in a few hundred MB of memory.

Shape legend as in engine/stats.py: N units, K top examples, I intervals, P per interval, W window,
B bins, L logits, A alignment entries, S sample tokens, M neurons, F features, V vocab.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.analysis.spread import spread_contexts
from engine.bundle import BundleWriter
from engine.bundle.schema import SAMPLE_CONTEXT_STARTS, create_dataset
from engine.config import HarvestConfig, ModelConfig, preset
from engine.stats import UnitStats

__all__ = ["write_synthetic_bundle", "synthetic_text", "SYNTHETIC_LABELS"]

SYNTHETIC_LABELS = (
    "DNA: ACGT runs", "base64 strings", "hex digits", "Arabic script", "Hebrew script", "Cyrillic script",
    "CJK characters", "Greek letters", "digits", "whitespace / indentation", "Python keywords",
    "punctuation: closing brackets", "URLs", "LaTeX commands", "uppercase words", "",
)


def synthetic_text(seed: int = 0, n_chars: int = 24_000) -> str:
    """A few KB of mixed text (English, code, DNA, base64, hex, scripts) to train a tiny tokenizer."""
    rng = np.random.default_rng(seed)
    words = ("the of and to in is that for it as with was on be by this are from at or an which "
             "model feature neuron token layer sparse dictionary learning attention superposition").split()
    pieces = []
    while sum(len(p) for p in pieces) < n_chars:
        which = rng.integers(8)
        if which < 3:
            pieces.append(" ".join(rng.choice(words, size=rng.integers(8, 30))).capitalize() + ". ")
        elif which == 3:
            pieces.append("".join(rng.choice(list("ACGT"), size=60)) + "\n")
        elif which == 4:
            alphabet = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
            pieces.append("".join(rng.choice(alphabet, size=64)) + "==\n")
        elif which == 5:
            pieces.append("0x" + "".join(rng.choice(list("0123456789abcdef"), size=16)) + " ")
        elif which == 6:
            pieces.append("def f(x):\n    if x > 0:\n        return x + 1\n    return None\n")
        else:
            pieces.append(rng.choice(["مرحبا بالعالم ", "שלום עולם ", "Привет мир ", "你好世界 ", "Γειά σου κόσμε "]))
    return "".join(pieces)


def _train_tokenizer(text: str, vocab_size: int) -> str:
    """tokenizer.json text of a byte-level BPE trained on ``text``."""
    from engine.data.tokenizer import Tokenizer

    chunks = [text[i:i + 2000] for i in range(0, len(text), 2000)]
    return Tokenizer.train(chunks, vocab_size=vocab_size).to_json()


def _lognormal_density(rng: np.random.Generator, n: int, n_tokens: int) -> np.ndarray:
    """Bimodal log10 densities like the paper's: a main mode near 1e-3.5 and an ultralow mode near 1e-7,
    with ~3% dead units (density exactly 0)."""
    log10 = rng.normal(-3.3, 0.7, size=n)
    ultralow = rng.random(n) < 0.06
    log10[ultralow] = rng.normal(-6.8, 0.3, size=int(ultralow.sum()))
    density = np.minimum(10.0 ** log10, 0.5)
    density[rng.random(n) < 0.03] = 0.0
    return density


def _unit_chunk(rng: np.random.Generator, kind: str, n: int, start: int, n_tokens: int, V: int,
                n_other: int, hc: HarvestConfig, labels_pool: list[str]) -> UnitStats:
    """Random but well-formed statistics for units [start, start + n)."""
    K, I, P, B, L, A = hc.top_k, hc.n_intervals, hc.per_interval, hc.hist_bins, hc.n_logits, hc.n_align
    W = hc.ctx_left + 1 + hc.ctx_right
    c = hc.ctx_left
    density = _lognormal_density(rng, n, n_tokens)
    dead = density == 0
    max_act = rng.gamma(3.0, 2.0, size=n).astype(np.float32)
    max_act[dead] = 0
    mean_act = (max_act * rng.uniform(0.15, 0.4, size=n)).astype(np.float32)

    # activation histogram: decreasing counts over (0, max_act], total = active tokens
    n_active = np.rint(density * n_tokens).astype(np.int64)
    shape_B = np.exp(-np.arange(B) / 6.0)
    act_hist = np.floor(n_active[:, None] * shape_B / shape_B.sum()).astype(np.int64)     # (N, B)
    act_hist[:, 0] += n_active - act_hist.sum(1)

    # top examples: descending peaks at the centre, a few active neighbours, zeros elsewhere
    top_tokens = rng.integers(0, V, size=(n, K, W), dtype=np.int32)                     # (N, K, W)
    peaks = max_act[:, None] * np.sort(rng.uniform(0.5, 1.0, size=(n, K)), axis=1)[:, ::-1]
    peaks[:, 0] = max_act
    top_acts = np.zeros((n, K, W), np.float32)
    neighbours = rng.random((n, K, W)) < 0.15
    top_acts[neighbours] = rng.uniform(0, 1, size=int(neighbours.sum()))
    top_acts *= peaks[:, :, None] * 0.5
    top_acts[:, :, c] = peaks
    n_real = np.minimum(K, n_active)                     # units with few active tokens have few examples
    missing = np.arange(K)[None, :] >= n_real[:, None]   # (N, K)
    top_tokens[missing] = -1
    top_acts[missing] = 0
    edge_pad = rng.random(n) < 0.05                      # some windows start at the text's beginning
    top_tokens[edge_pad, :, :2] = -1
    top_acts[edge_pad, :, :2] = 0

    # subsample intervals: I equal activation ranges, P examples each
    bounds = np.linspace(0, 1, I + 1, dtype=np.float32)
    interval_bounds = np.stack([bounds[:-1], bounds[1:]], axis=-1)[None] * max_act[:, None, None]  # (N, I, 2)
    interval_tokens = rng.integers(0, V, size=(n, I, P, W), dtype=np.int32)
    centre = interval_bounds[:, :, None, 0] + rng.random((n, I, P)) * (interval_bounds[:, :, None, 1] - interval_bounds[:, :, None, 0])
    interval_acts = np.zeros((n, I, P, W), np.float32)
    interval_acts[..., c] = centre
    interval_tokens[dead] = -1
    interval_acts[dead] = 0

    # direct logit effects: sorted tops and bottoms, a bell-shaped histogram over V weights
    logit_top_values = -np.sort(-rng.gamma(2.0, 0.3, size=(n, L)), axis=1).astype(np.float32)
    logit_bottom_values = np.sort(-rng.gamma(2.0, 0.3, size=(n, L)), axis=1).astype(np.float32)
    logit_range = np.stack([logit_bottom_values[:, 0], logit_top_values[:, 0]], axis=1)
    centres = (np.arange(B) + 0.5) / B
    bell = np.exp(-0.5 * ((centres - 0.5) / 0.15) ** 2)
    logit_hist = np.floor(V * bell / bell.sum()).astype(np.int64)[None].repeat(n, 0)
    logit_hist[:, B // 2] += V - logit_hist.sum(1)

    # alignment with the other kind's units, correlated units
    align_ids = rng.integers(0, n_other, size=(n, A), dtype=np.int32)
    align_values = (rng.normal(0, 0.2, size=(n, A)) * np.linspace(1, 0.2, A)).astype(np.float32)
    order = np.argsort(-np.abs(align_values), axis=1)
    align_values = np.take_along_axis(align_values, order, 1)
    corr_values = -np.sort(-rng.uniform(-0.2, 0.9, size=(n, A)), axis=1).astype(np.float32)

    top_token_ids = np.full((n, 5), -1, np.int32)                                      # (N, 5)
    top_token_ids[:, :min(K, 5)] = np.where(missing[:, :5], -1, top_tokens[:, :5, c])

    label_idx = rng.integers(0, len(labels_pool), size=n)
    labels = [labels_pool[j] for j in label_idx]
    scores = rng.beta(4 if kind == "feature" else 2, 2 if kind == "feature" else 4, size=n).astype(np.float32)
    scores[np.array([not s for s in labels]) | dead] = np.nan
    for j in np.flatnonzero(dead):
        labels[j] = ""

    return UnitStats(
        kind=kind, density=density, max_act=max_act, mean_act=mean_act, act_hist=act_hist,
        top_tokens=top_tokens, top_acts=top_acts.astype(np.float16), top_center=c,
        interval_tokens=interval_tokens, interval_acts=interval_acts.astype(np.float16),
        interval_bounds=interval_bounds.astype(np.float32),
        top_token_ids=top_token_ids,
        logit_top_ids=rng.integers(0, V, size=(n, L), dtype=np.int32), logit_top_values=logit_top_values,
        logit_bottom_ids=rng.integers(0, V, size=(n, L), dtype=np.int32),
        logit_bottom_values=logit_bottom_values, logit_hist=logit_hist, logit_range=logit_range.astype(np.float32),
        align_ids=align_ids, align_values=align_values,
        align_l1=rng.uniform(0.05, 0.6, size=n).astype(np.float32),
        corr_ids=rng.integers(0, n_other, size=(n, A), dtype=np.int32), corr_values=corr_values,
        labels=labels, scores=scores,
    )


def _curve(rng: np.random.Generator, n: int, x_max: float, start: float, end: float) -> np.ndarray:
    x = np.linspace(x_max / n, x_max, n)
    y = end + (start - end) * np.exp(-5 * x / x_max) + rng.normal(0, 0.01 * abs(start - end), n)
    return np.stack([x, y], axis=1)


def write_synthetic_bundle(
    path: str | os.PathLike,
    n_features: int = 4096,
    n_neurons: int = 512,
    vocab_size: int = 512,
    seed: int = 0,
    n_tokens: int = 200_000,
    *,
    harvest: HarvestConfig | None = None,
    chunk: int = 4096,
    sample_tokens: int | None = None,
) -> Path:
    """Write a valid bundle of ``n_features`` features and ``n_neurons`` neurons to ``path``.

    ``vocab_size`` is the tokenizer's target size (the real size may be smaller: the training text is
    small). Deterministic for a given seed. Returns the path.
    """
    import torch

    from engine.model import OneLayerTransformer

    rng = np.random.default_rng(seed)
    hc = harvest or HarvestConfig()
    if sample_tokens is not None:
        hc = hc.replace(sample_tokens=sample_tokens)
    tokenizer_json = _train_tokenizer(synthetic_text(seed), vocab_size)
    from engine.data.tokenizer import Tokenizer

    V = Tokenizer.from_json(tokenizer_json).vocab_size
    k = min(24, n_features)
    config = preset("demo").with_overrides(
        name="synthetic",
        tokenizer={"vocab_size": V},
        model={"vocab_size": V, "d_mlp": n_neurons},
        sae={"d_sae": n_features, "d_in": n_neurons, "k": k, "aux_k": min(256, n_features)},
        harvest=hc.to_dict(),
    )
    model_cfg: ModelConfig = config.model
    torch.manual_seed(seed)
    model = OneLayerTransformer(model_cfg)

    with BundleWriter(path) as w:
        metrics = {"mse": 0.012, "fvu": 0.21, "l0": float(k), "dead_fraction": 0.03, "ultralow_fraction": 0.06,
                   "loss_clean": 3.1, "loss_sae": 3.4, "loss_zero_ablation": 4.5, "loss_recovered": 0.79,
                   "n_tokens": int(hc.eval_tokens), "synthetic": True}
        curves = {"model/train_loss": _curve(rng, 200, 4e6, 8.0, 3.0), "model/val_loss": _curve(rng, 40, 4e6, 8.0, 3.1),
                  "model/lr": np.stack([np.linspace(0, 4e6, 200), np.linspace(3e-3, 3e-4, 200)], 1),
                  "sae/mse": _curve(rng, 200, 2e6, 0.1, 0.012), "sae/l0": _curve(rng, 200, 2e6, k, k),
                  "sae/dead_fraction": _curve(rng, 50, 2e6, 0.0, 0.03)}
        w.write_header(config=config, tokenizer_json=tokenizer_json, metrics=metrics, curves=curves,
                       extra_info={"synthetic": True, "seed": seed})
        w.write_model(model.state_dict(), model_cfg)
        del model

        # SAE: unit-norm random decoder rows, encoder = decoder transpose, written chunkwise
        sae = w.create_sae(config.sae, n_neurons, n_features)
        for a in range(0, n_features, chunk):
            b = min(a + chunk, n_features)
            W_dec = rng.standard_normal((b - a, n_neurons), dtype=np.float32)
            W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
            sae["W_dec"][a:b] = W_dec
            sae["W_enc"][:, a:b] = W_dec.T
            sae["b_enc"][a:b] = 0
        sae["b_dec"][:] = 0

        # unit statistics
        w.set_vocab_size(V)
        W = hc.ctx_left + 1 + hc.ctx_right
        dims = {"K": hc.top_k, "W": W, "I": hc.n_intervals, "P": hc.per_interval, "B": hc.hist_bins,
                "L": hc.n_logits, "A": hc.n_align, "C": hc.n_align}
        feature_density = np.empty(n_features)
        for kind, n, n_other in (("feature", n_features, n_neurons), ("neuron", n_neurons, n_features)):
            w.create_units(kind, n, dims)
            pool = list(SYNTHETIC_LABELS) if kind == "feature" else ["polysemantic: " + s for s in SYNTHETIC_LABELS if s]
            for a in range(0, n, chunk):
                stats = _unit_chunk(rng, kind, min(chunk, n - a), a, n_tokens, V, n_other, hc, pool)
                if kind == "neuron":   # neurons are dense: no dead ones, high density
                    stats.density = np.clip(stats.density * 100, 0.01, 0.6)
                else:
                    feature_density[a:a + len(stats)] = stats.density
                w.write_units(kind, a, stats)

        live = feature_density[feature_density > 0]
        edges = np.linspace(-8, 0, 41)
        counts, _ = np.histogram(np.log10(live), bins=edges)
        w.write_harvest_info(n_tokens=n_tokens, harvest_config=hc, top_center=hc.ctx_left,
                             density_hist_edges=edges, density_hist_counts=counts)

        # the paired sample: dense neurons, sparse features as CSR by feature
        S = hc.sample_tokens
        per_feature = rng.poisson(np.minimum(feature_density * S, S)).astype(np.int64)
        per_feature = np.minimum(per_feature, S)
        indptr = np.concatenate([[0], np.cumsum(per_feature)])
        nnz = int(indptr[-1])
        g = w.create_sample(S, n_neurons, n_features, nnz)
        if S:
            g["token_ids"][:] = rng.integers(0, V, size=S, dtype=np.int32)
            g["neuron_acts"][:] = np.maximum(rng.normal(-0.5, 1.0, size=(S, n_neurons)), 0).astype(np.float16)
        g["feature_indptr"][:] = indptr
        if nnz:
            g["feature_token"][:] = rng.integers(0, S, size=nnz, dtype=np.int32)
            g["feature_value"][:] = rng.gamma(2.0, 1.0, size=nnz).astype(np.float16)
        if S:   # whole contexts at random places, as the harvest draws them (one context if S is no multiple)
            T = model_cfg.n_ctx if S % model_cfg.n_ctx == 0 else S
            starts = spread_contexts(max(n_tokens // T, S // T), S // T, seed) * T
            create_dataset(g, SAMPLE_CONTEXT_STARTS, starts.shape, np.int64, compress=False)[...] = starts
    return Path(path)
