"""Harvest statistics against a brute-force dense computation on a tiny random model + SAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import HarvestConfig, ModelConfig, SAEConfig
from engine.events import CancelToken, Cancelled, Progress, StageFinished, StageStarted
from engine.jobs import collect
from engine.analysis.harvest import HarvestError, harvest
from engine.analysis.tallies import hash_key, top_token_ids, window_tokens
from engine.model import OneLayerTransformer
from engine.sae import SparseAutoencoder

T, V, M, F = 16, 64, 32, 48
CFG = HarvestConfig(n_tokens=T * 30 + 7, top_k=5, n_intervals=4, per_interval=3, ctx_left=3, ctx_right=2,
                    hist_bins=8, n_logits=4, n_align=3, sample_tokens=100, seed=3)




def _setup(recipe: str):
    torch.manual_seed(1)
    model = OneLayerTransformer(ModelConfig(vocab_size=V, n_ctx=T, d_model=16, n_heads=2, d_mlp=M)).eval()
    sae = SparseAutoencoder(SAEConfig(recipe=recipe, d_in=M, d_sae=F, k=6, seed=2)).eval()
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.05)   # some features rarely or never fire
        sae.b_enc[:3] = -100.0       # dead features
    tokens = np.random.default_rng(0).integers(0, V, size=T * 40).astype(np.uint16)
    return model, sae, tokens


def _dense(model, sae, tokens, n):
    with torch.no_grad():
        idx = torch.from_numpy(tokens[:n].astype(np.int64)).view(-1, T)
        h = model.mlp_acts(idx).reshape(-1, M)
        f = sae.encode(h).reshape(-1, F)
    return f.numpy().astype(np.float64), h.numpy().astype(np.float64)


@pytest.fixture(scope="module", params=["2023", "topk"])
def case(request):
    model, sae, tokens = _setup(request.param)
    result, events = collect(harvest(model, sae, tokens, CFG, batch_size=4))
    N = (CFG.n_tokens // T) * T
    f, h = _dense(model, sae, tokens, N)
    return dict(model=model, sae=sae, tokens=tokens, result=result, events=events, N=N, f=f, h=h)


def _windows(tokens, acts_u, pos, left=CFG.ctx_left, right=CFG.ctx_right):
    toks, vals = [], []
    for o in range(-left, right + 1):
        p = pos + o
        inside = (p // T == pos // T) and 0 <= p
        toks.append(int(tokens[p]) if inside else -1)
        vals.append(acts_u[p] if inside else 0.0)
    return np.array(toks), np.array(vals)


def test_counts_and_progress(case):
    res, events, N = case["result"], case["events"], case["N"]
    assert res.n_tokens == N == 30 * T
    prog = [e for e in events if isinstance(e, Progress)]
    assert prog and all(e.stage == "harvest" and e.unit == "tokens" for e in prog)
    assert prog[-1].done == prog[-1].total == 2 * N
    assert res.features.labels == [] and len(res.features) == F and len(res.neurons) == M


@pytest.mark.parametrize("kind", ["features", "neurons"])
def test_density_max_mean(case, kind):
    acts = case["f"] if kind == "features" else case["h"]
    st = getattr(case["result"], kind)
    active = acts > 0
    np.testing.assert_allclose(st.density, active.mean(0), atol=1e-12)
    np.testing.assert_allclose(st.max_act, acts.max(0), rtol=1e-5, atol=1e-6)
    mean = np.where(active.sum(0) > 0, acts.sum(0) / np.maximum(active.sum(0), 1), 0)
    np.testing.assert_allclose(st.mean_act, mean, rtol=1e-4, atol=1e-6)
    assert st.act_hist.sum(1).tolist() == active.sum(0).tolist()
    if kind == "features":
        assert (st.density[:3] == 0).all()


@pytest.mark.parametrize("kind", ["features", "neurons"])
def test_top_examples_are_the_largest_and_recompute(case, kind):
    acts = case["f"] if kind == "features" else case["h"]
    st, tokens, K = getattr(case["result"], kind), case["tokens"], CFG.top_k
    c = st.top_center
    assert c == CFG.ctx_left and st.top_tokens.shape == (acts.shape[1], K, CFG.ctx_left + 1 + CFG.ctx_right)
    for u in range(acts.shape[1]):
        order = np.argsort(-acts[:, u], kind="stable")[:K]
        order = order[acts[order, u] > 0]
        stored = st.top_acts[u, :, c].astype(np.float64)
        # the stored top-K are the K largest harvested activations, in descending order
        np.testing.assert_allclose(stored[: len(order)], acts[order, u], rtol=2e-3, atol=1e-4)
        assert (stored[len(order):] == 0).all() and (st.top_tokens[u, len(order):] == -1).all()
        for k, pos in enumerate(order):
            # equal activations (same token at a sequence start) may stand in for each other
            tied = np.nonzero(np.abs(acts[:, u] - acts[pos, u]) <= 1e-6 * (1 + abs(acts[pos, u])))[0]
            windows = [_windows(tokens, acts[:, u], p) for p in tied]
            match = [w for w in windows if w[0].tolist() == st.top_tokens[u, k].tolist()]
            assert match, (u, k)
            # every window token's activation is the recomputed one
            np.testing.assert_allclose(st.top_acts[u, k].astype(np.float64), match[0][1], rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("kind", ["features", "neurons"])
def test_histogram_and_intervals(case, kind):
    acts = case["f"] if kind == "features" else case["h"]
    st, tokens, N = getattr(case["result"], kind), case["tokens"], case["N"]
    I, P, B, c = CFG.n_intervals, CFG.per_interval, CFG.hist_bins, CFG.ctx_left
    keys = hash_key(torch.arange(N), CFG.seed).numpy()
    for u in range(acts.shape[1]):
        a, mx = acts[:, u], st.max_act[u]
        np.testing.assert_allclose(st.interval_bounds[u, :, 1], mx * np.arange(1, I + 1) / I, rtol=1e-5)
        np.testing.assert_allclose(st.interval_bounds[u, 1:, 0], st.interval_bounds[u, :-1, 1])
        if mx == 0:
            assert (st.interval_tokens[u] == -1).all() and st.act_hist[u].sum() == 0
            continue
        frac = a / mx
        hist = np.bincount(np.clip(np.ceil(frac[a > 0] * B) - 1, 0, B - 1).astype(int), minlength=B)
        assert np.abs(hist - st.act_hist[u]).sum() <= 2      # bin-edge rounding only
        j_of = np.clip(np.ceil(frac * I) - 1, 0, I - 1).astype(int)
        for j in range(I):
            lo, hi = st.interval_bounds[u, j]
            members = np.nonzero((a > 0) & (j_of == j))[0]
            chosen = members[np.argsort(keys[members], kind="stable")][:P]
            valid = st.interval_tokens[u, j, :, c] >= 0
            assert valid.sum() == len(chosen)
            centers = st.interval_acts[u, j, valid, c].astype(np.float64)
            assert (centers > lo - 1e-3 * mx).all() and (centers <= hi + 1e-3 * mx).all()
            expected = sorted(tuple(_windows(tokens, a, p)[0]) for p in chosen)
            assert sorted(map(tuple, st.interval_tokens[u, j, valid])) == expected
            # stored in descending order of activation
            assert (np.diff(centers) <= 1e-3).all()


def test_correlations_match_corrcoef(case):
    f, h, res, A = case["f"], case["h"], case["result"], CFG.n_align
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(np.concatenate([f, h], axis=1).T)[:F, F:]     # (F, M); NaN where constant
    r = np.nan_to_num(r)
    for i in range(F):
        np.testing.assert_allclose(res.features.corr_values[i], np.sort(r[i])[::-1][:A], atol=1e-5)
        np.testing.assert_allclose(r[i, res.features.corr_ids[i]], res.features.corr_values[i], atol=1e-5)
    for m in range(M):
        np.testing.assert_allclose(res.neurons.corr_values[m], np.sort(r[:, m])[::-1][:A], atol=1e-5)
        np.testing.assert_allclose(r[res.neurons.corr_ids[m], m], res.neurons.corr_values[m], atol=1e-5)


def test_logit_effects_and_alignment(case):
    model, sae, res, L = case["model"], case["sae"], case["result"], CFG.n_logits
    W_U = model.unembed.weight.detach().double().numpy()
    W_out = model.mlp.W_out.weight.detach().double().numpy()
    g = model.ln_final.weight.detach().double().numpy()
    W_dec = sae.W_dec.detach().double().numpy()
    for kind, dirs in (("features", W_dec), ("neurons", np.eye(M))):
        st = getattr(res, kind)
        for i in range(dirs.shape[0]):
            resid = W_out @ dirs[i]
            eff = W_U @ (g * (resid - resid.mean()))
            top = np.argsort(-eff)[:L]
            np.testing.assert_allclose(st.logit_top_values[i], eff[top], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(eff[st.logit_top_ids[i]], eff[top], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(st.logit_bottom_values[i], np.sort(eff)[:L], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(st.logit_range[i], [eff.min(), eff.max()], rtol=1e-4, atol=1e-6)
            assert st.logit_hist[i].sum() == V and st.logit_hist.shape[1] == CFG.hist_bins
    A = CFG.n_align
    for i in range(F):
        ids = np.argsort(-np.abs(W_dec[i]))[:A]
        assert set(res.features.align_ids[i].tolist()) == set(ids.tolist())
        np.testing.assert_allclose(res.features.align_values[i], W_dec[i, res.features.align_ids[i]], rtol=1e-5)
        np.testing.assert_allclose(res.features.align_l1[i], np.abs(W_dec[i, ids]).sum() / np.abs(W_dec[i]).sum(),
                                   rtol=1e-5)
    for m in range(M):
        ids = np.argsort(-np.abs(W_dec[:, m]))[:A]
        assert set(res.neurons.align_ids[m].tolist()) == set(ids.tolist())
        np.testing.assert_allclose(res.neurons.align_values[m], W_dec[res.neurons.align_ids[m], m], rtol=1e-5)


def test_paired_sample_and_density_histogram(case):
    f, h, res, tokens = case["f"], case["h"], case["result"], case["tokens"]
    starts = res.sample_context_starts
    W = CFG.sample_tokens // T                                 # whole contexts, rounded down
    assert starts.shape == (W,) and (np.diff(starts) > 0).all() and (starts % T == 0).all()
    rows = (starts[:, None] + np.arange(T)).reshape(-1)        # harvest positions of the sample's rows
    S = rows.size
    assert res.sample_token_ids.tolist() == tokens[rows].tolist()
    np.testing.assert_allclose(res.sample_neuron_acts.astype(np.float64), h[rows], rtol=2e-3, atol=1e-4)
    dense = np.zeros((S, F))
    ptr = res.sample_feature_indptr
    assert ptr.shape == (F + 1,) and ptr[-1] == len(res.sample_feature_token) == len(res.sample_feature_value)
    for i in range(F):
        tok = res.sample_feature_token[ptr[i]:ptr[i + 1]]
        assert (np.diff(tok) > 0).all()
        dense[tok, i] = res.sample_feature_value[ptr[i]:ptr[i + 1]]
    np.testing.assert_allclose(dense, f[rows], rtol=2e-3, atol=1e-4)
    live = res.features.density > 0
    assert res.density_hist_counts.sum() == live.sum()
    assert res.density_hist_edges[0] <= np.log10(res.features.density[live]).min() + 1e-9


def test_cache_and_chunking_do_not_change_results(case):
    model, sae, tokens, ref = case["model"], case["sae"], case["tokens"], case["result"]
    for kwargs in (dict(cache_bytes=0, batch_size=3), dict(batch_size=100)):
        res, _ = collect(harvest(model, sae, tokens, CFG, **kwargs))
        for kind in ("features", "neurons"):
            a, b = getattr(ref, kind), getattr(res, kind)
            np.testing.assert_array_equal(a.top_tokens, b.top_tokens)
            np.testing.assert_array_equal(a.interval_tokens, b.interval_tokens)
            np.testing.assert_allclose(a.top_acts.astype(float), b.top_acts.astype(float), rtol=2e-3, atol=1e-4)
            np.testing.assert_array_equal(a.act_hist.sum(1), b.act_hist.sum(1))
        np.testing.assert_array_equal(ref.sample_context_starts, res.sample_context_starts)
        np.testing.assert_array_equal(ref.sample_feature_indptr, res.sample_feature_indptr)
        np.testing.assert_array_equal(ref.sample_feature_token, res.sample_feature_token)
        np.testing.assert_allclose(ref.sample_neuron_acts.astype(float), res.sample_neuron_acts.astype(float),
                                   rtol=2e-3, atol=1e-4)


def _sample_r(res, i: int, j: int) -> float:
    """r between feature i and neuron j on the paired sample (NaN if either is constant there)."""
    x = res.sample_neuron_acts[:, j].astype(np.float64)
    y = np.zeros(len(x))
    a, b = res.sample_feature_indptr[i:i + 2]
    y[res.sample_feature_token[a:b]] = res.sample_feature_value[a:b]
    return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")


def test_paired_sample_is_spread_over_the_harvest_and_agrees_with_the_stored_r():
    """The sample is whole contexts from across the harvest (not its first tokens), and on it the
    densest features' r with their best-correlated neuron agrees with the stored r (all N tokens)."""
    model, sae, _ = _setup("topk")
    tokens = np.random.default_rng(5).integers(0, V, size=T * 400).astype(np.uint16)
    cfg = CFG.replace(n_tokens=T * 400, sample_tokens=T * 100, seed=4)
    res, _ = collect(harvest(model, sae, tokens, cfg))
    starts, N = res.sample_context_starts, T * 400
    assert starts.size == 100 and starts.min() < N // 4 and starts.max() >= 3 * N // 4
    assert not np.array_equal(starts, np.arange(100) * T)            # not the first contexts
    assert np.median(np.diff(starts)) > T                             # spread, not one stretch
    other, _ = collect(harvest(model, sae, tokens, cfg.replace(seed=5)))
    assert not np.array_equal(other.sample_context_starts, starts)    # the seed draws them
    feats = res.features
    densest = np.argsort(-feats.density)[:20]
    active = np.diff(res.sample_feature_indptr)[densest]
    assert (active >= 5).mean() >= 0.9
    delta = [abs(_sample_r(res, i, int(feats.corr_ids[i, 0])) - float(feats.corr_values[i, 0])) for i in densest]
    assert np.nanmedian(delta) <= 0.10, delta


def test_errors_and_cancel():
    model, sae, tokens = _setup("topk")
    with pytest.raises(HarvestError, match="no held-out tokens"):
        collect(harvest(model, sae, tokens[:0], CFG))
    with pytest.raises(HarvestError, match="vocabulary"):
        collect(harvest(model, sae, np.full(100, V + 5), CFG))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        collect(harvest(model, sae, tokens, CFG, cancel=token))
    # fewer tokens than one context: one short sequence
    res, _ = collect(harvest(model, sae, tokens, CFG.replace(n_tokens=10)))
    assert res.n_tokens == 10


def test_window_tokens_stop_at_document_boundaries():
    tokens = np.array([5, 6, 0, 7, 8, 9, 0, 4, 3, 2])   # 0 = EOS
    tok, mask = window_tokens(tokens, np.array([4]), T=10, left=3, right=3, eos_id=0)
    assert tok[0].tolist() == [-1, 0, 7, 8, 9, 0, -1]
    tok, _ = window_tokens(tokens, np.array([4]), T=10, left=3, right=3, eos_id=None)
    assert tok[0].tolist() == [6, 0, 7, 8, 9, 0, 4]
    tok, _ = window_tokens(tokens, np.array([1, -1]), T=5, left=2, right=4, eos_id=None)
    assert tok.tolist() == [[-1, 5, 6, 0, 7, 8, -1], [-1] * 7]   # window stays in its context


def test_top_token_ids_by_frequency_then_rank():
    centers = np.array([[3, 7, 7, 3, 9, 7, -1, 2], [-1, -1, -1, -1, -1, -1, -1, -1]])
    out = top_token_ids(centers, n=5)
    assert out.tolist() == [[7, 3, 9, 2, -1], [-1] * 5]


def test_cross_product_branches_agree():
    from engine.analysis.chunks import Chunk, cross_add_

    g = torch.Generator().manual_seed(0)
    f = torch.relu(torch.randn(50, 12, generator=g) - 1.0)
    h = torch.relu(torch.randn(50, 7, generator=g))
    for use_scipy in (True, False):
        cross = torch.zeros(12, 7, dtype=torch.float64)
        cross_add_(cross, Chunk.from_dense(f), h, use_scipy=use_scipy)
        np.testing.assert_allclose(cross.numpy(), (f.T.double() @ h.double()).numpy(), rtol=1e-5, atol=1e-6)


def test_harvest_announces_its_stage_and_keeps_inference_mode_to_itself():
    model, sae, tokens = _setup("topk")
    job = harvest(model, sae, tokens, CFG, batch_size=4)
    first = next(job)
    assert isinstance(first, StageStarted) and first.stage == "harvest" and first.unit == "tokens"
    events = [first]
    while True:
        assert not torch.is_inference_mode_enabled()      # the driver runs outside the job's mode
        try:
            events.append(next(job))
        except StopIteration as stop:
            result = stop.value
            break
    assert first.total == 2 * result.n_tokens
    assert isinstance(events[-1], StageFinished) and events[-1].summary["tokens"] == result.n_tokens
    assert sum(isinstance(e, (StageStarted, StageFinished)) for e in events) == 2


def test_a_real_bundles_sample_agrees_with_its_stored_r(real_tiny_bundle):
    """On the pipeline's tiny bundle (built-in corpus: code, prose, DNA, base64, ten languages) the
    stored sample is whole contexts from across the harvest, the densest features fire on it, and r
    on it between each and its best-correlated neuron agrees with the stored r over the harvest."""
    from engine.bundle import open_bundle

    with open_bundle(real_tiny_bundle) as b:
        starts, (tok, acts) = b.sample_context_starts(), b.sample_neurons()
        T, N = b.config.model.n_ctx, b.n_tokens
        assert starts is not None and starts.size * T == tok.size
        assert starts.max() >= N // 2 and not np.array_equal(starts, np.arange(starts.size) * T)
        density = np.asarray(b.column("feature", "density"))
        best = np.asarray(b.column("feature", "corr_ids"))[:, 0]
        stored = np.asarray(b.column("feature", "corr_values"))[:, 0]
        densest = np.argsort(-density, kind="stable")[:100]
        active, delta = [], []
        for i in densest:
            idx, val = b.sample_feature(int(i))
            y = np.zeros(tok.size)
            y[idx] = val
            x = acts[:, best[i]].astype(np.float64)
            active.append(idx.size)
            delta.append(abs(np.corrcoef(x, y)[0, 1] - stored[i]) if x.std() > 0 and y.std() > 0 else abs(stored[i]))
    assert np.mean(np.array(active) >= 5) >= 0.9
    assert np.median(delta) <= 0.10
