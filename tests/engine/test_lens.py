"""LensEngine against direct model + SAE calls: activations, truncation, clamping, error term."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from engine.config import ModelConfig
from engine.analysis.lens import LensEngine, window_plan
from engine.events import Cancelled
from engine.model import OneLayerTransformer


class CharTokenizer:
    """One token per character (code point mod vocab): enough to exercise offsets and truncation."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def encode_with_offsets(self, text):
        return [ord(c) % self.vocab_size for c in text], [(i, i + 1) for i in range(len(text))]

    def token_str(self, i):
        return chr(i)

    def vocab_strings(self):
        return tuple(chr(i) for i in range(self.vocab_size))

    def readable_strings(self):
        return tuple(chr(i) for i in range(self.vocab_size))


class TinySAE(nn.Module):
    """f = ReLU(W_enc (x - b_dec) + b_enc); x_hat = W_dec f + b_dec (the SAELens orientation)."""

    def __init__(self, d_in, d_sae):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.W_enc = nn.Parameter(torch.randn(d_in, d_sae, generator=g) * 0.5)
        self.b_enc = nn.Parameter(torch.full((d_sae,), -0.05))
        self.W_dec = nn.Parameter(self.W_enc.detach().T.clone())
        self.b_dec = nn.Parameter(torch.randn(d_in, generator=g) * 0.01)

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f):
        return f @ self.W_dec + self.b_dec


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=128, n_ctx=16, d_model=32, n_heads=2, d_mlp=64)
    model = OneLayerTransformer(cfg).eval()
    sae = TinySAE(64, 96).eval()
    return LensEngine(model, sae, CharTokenizer(128))


def _direct(engine, text, clamp=None, error_term=True):
    ids = torch.tensor([[ord(c) % 128 for c in text[: engine.n_ctx]]])
    with torch.no_grad():
        h = engine.model.mlp_acts(ids)[0]
        f = engine.sae.encode(h)
        h_hat = engine.sae.decode(f)
        err = h - h_hat if error_term else 0
        base = engine.model(ids, mlp_acts=(h_hat + err)[None])[0]
        f2 = f.clone()
        for i, c in (clamp or {}).items():
            f2[:, i] *= c
        clamped = engine.model(ids, mlp_acts=(engine.sae.decode(f2) + err)[None])[0]
    return h.numpy(), f.numpy(), base.softmax(-1).numpy(), clamped.softmax(-1).numpy()


def test_activations_match_direct_call(engine):
    text = "hello superpos!!"                       # exactly one context (16 tokens)
    res = engine.analyze(text)
    h, f, base, _ = _direct(engine, text)
    assert not res.truncated and res.n_tokens == 16 and res.n_tokens_total == len(text)
    assert res.tokens == list(text[:16])
    np.testing.assert_array_equal(res.offsets[:, 0], np.arange(16))
    np.testing.assert_allclose(res.neuron_acts, h, rtol=1e-5, atol=1e-6)
    assert (f > 0).any(), "the toy SAE must fire for the test to mean anything"
    for i in np.flatnonzero(f.max(0) > 0)[:10]:
        np.testing.assert_allclose(res.acts_of("feature", int(i)), f[:, i], rtol=1e-5, atol=1e-6)
    # per-token top features are the largest of f, in order
    t = int(np.argmax((f > 0).sum(1)))
    want = np.argsort(-f[t])[: engine.top_k]
    got = res.top_ids[t][res.top_ids[t] >= 0]
    np.testing.assert_array_equal(got, want[: len(got)])
    # ranked active list: every active feature once, by max activation
    assert set(res.active_ids.tolist()) == set(np.flatnonzero(f.max(0) > 0).tolist())
    assert np.all(np.diff(res.active_max) <= 0)
    # with the error term the baseline is the clean model's prediction
    np.testing.assert_allclose(res.predictions.probs[:, 0], base.max(-1), rtol=1e-4, atol=1e-6)
    assert res.clamped is None


def test_long_text_is_read_in_overlapping_windows(engine):
    """Past the context every token gets its activations from a window where it has >= n_ctx/2
    tokens of left context; each window equals a direct call on that window's tokens."""
    text = "".join(chr(33 + (i * 7) % 90) for i in range(100))
    res = engine.analyze(text)
    assert not res.truncated and res.n_tokens == res.n_tokens_total == 100
    plan = window_plan(100, engine.n_ctx)
    assert plan[0] == (0, 0, 16) and [w[1] for w in plan[1:]] == [w[2] for w in plan[:-1]] and plan[-1][2] == 100
    for start, take, end in plan:
        assert take == 0 or take - start >= engine.n_ctx // 2                 # left context kept
        h = _direct(engine, text[start:end])[0]
        np.testing.assert_allclose(res.neuron_acts[take:end], h[take - start:], rtol=1e-5, atol=1e-6)
    # windows depend on the position alone, so editing the end reuses the prefix exactly
    fresh = LensEngine(engine.model, engine.sae, engine.tokenizer, incremental=False)
    for edited in (text + "xyz", text[:70] + "Q" + text[71:]):
        a, b = engine.analyze(edited), fresh.analyze(edited)
        np.testing.assert_allclose(a.neuron_acts, b.neuron_acts, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a.feat_ids, b.feat_ids)
        np.testing.assert_allclose(a.predictions.probs, b.predictions.probs, rtol=1e-4, atol=1e-6)


def test_max_tokens_bounds_the_analysis_and_a_stop_request_cancels(engine):
    small = LensEngine(engine.model, engine.sae, engine.tokenizer, max_tokens=40)
    res = small.analyze("z" * 50)
    assert res.truncated and res.n_tokens == 40 and res.n_tokens_total == 50
    res = small.analyze("z" * 100_000)                       # only a prefix is tokenized: not counted
    assert res.truncated and res.n_tokens == 40 and res.n_tokens_total == -1
    assert res.tokens == ["z"] * 40
    with pytest.raises(Cancelled):
        small.analyze("y" * 1000, should_stop=lambda: True)


def test_clamp_to_zero_matches_direct_ablation(engine):
    text = "abcabcabcabc"
    f = _direct(engine, text)[1]
    feat = int(np.argmax(f.sum(0)))
    for error_term in (True, False):
        res = engine.analyze(text, clamp={feat: 0.0}, error_term=error_term)
        _, _, base, clamped = _direct(engine, text, {feat: 0.0}, error_term=error_term)
        np.testing.assert_array_equal(res.predictions.ids[:, 0], base.argmax(-1))
        np.testing.assert_allclose(res.clamped.probs, -np.sort(-clamped, axis=-1)[:, :5], rtol=1e-4, atol=1e-6)
        assert not np.allclose(res.clamped.probs, res.predictions.probs), "ablating must change predictions"
    # a multiplier of 1 changes nothing
    res = engine.analyze(text, clamp={feat: 1.0})
    np.testing.assert_allclose(res.clamped.probs, res.predictions.probs, rtol=1e-5, atol=1e-7)


def test_set_mode_and_errors(engine):
    res = engine.analyze("xyz", clamp={3: 5.0}, clamp_mode="set")
    assert res.clamped is not None and res.clamp == {3: 5.0}
    with pytest.raises(ValueError, match="does not exist"):
        engine.analyze("xyz", clamp={10_000: 0.0})
    with pytest.raises(ValueError):
        engine.analyze("xyz", clamp_mode="bogus")
    empty = engine.analyze("")
    assert empty.n_tokens == 0 and not empty.truncated


def test_neuron_kind_ranks_neurons(engine):
    res = engine.analyze("neurons", unit_kind="neuron")
    h = _direct(engine, "neurons")[0]
    assert res.top_ids[0, 0] == int(np.argmax(h[0]))
    np.testing.assert_allclose(res.acts_of("neuron", 5), h[:, 5], rtol=1e-5, atol=1e-6)
    assert np.isnan(res.predictions.next_logprob[-1]) and np.isfinite(res.predictions.next_logprob[:-1]).all()


def test_incremental_reuse_equals_fresh_computation(engine):
    """Typing, deleting, editing the middle, toggling settings: the prefix cache never changes results."""
    fresh = LensEngine(engine.model, engine.sae, engine.tokenizer, incremental=False)
    inc = LensEngine(engine.model, engine.sae, engine.tokenizer, incremental=True)
    steps = [("abc", None, True), ("abcd", None, True), ("abcde", {5: 0.0}, True), ("abcdef", {5: 0.0}, True),
             ("abXdef", {5: 0.0}, True), ("abXde", {5: 2.0}, True), ("abXde", {5: 2.0}, False),
             ("abXdefghijklmnopqrst", {7: 0.0}, False), ("abXdefghijklmnopqrstu", {7: 0.0}, False),
             ("abXdefghijklmnopqrstu", None, True), ("a", None, True), ("", None, True), ("zz", {1: 3.0}, True)]
    for k, (text, clamp, err) in enumerate(steps):
        kind = "neuron" if k in (3, 9) else "feature"
        a = inc.analyze(text, clamp=clamp, error_term=err, unit_kind=kind)
        b = fresh.analyze(text, clamp=clamp, error_term=err, unit_kind=kind)
        assert a.text == text and a.unit_kind == kind
        _assert_same_result(a, b)


def _assert_same_result(a, b):
    assert a.tokens == b.tokens and a.truncated == b.truncated and a.n_tokens_total == b.n_tokens_total
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.top_ids, b.top_ids)
    np.testing.assert_allclose(a.top_values, b.top_values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.active_ids, b.active_ids)
    np.testing.assert_array_equal(a.active_count, b.active_count)
    np.testing.assert_array_equal(a.feat_indptr, b.feat_indptr)
    np.testing.assert_array_equal(a.feat_ids, b.feat_ids)
    np.testing.assert_allclose(a.feat_values, b.feat_values, rtol=1e-5, atol=1e-6)
    for pa, pb in ((a.predictions, b.predictions), (a.clamped, b.clamped)):
        if pb is None:
            assert pa is None
            continue
        np.testing.assert_array_equal(pa.ids, pb.ids)
        np.testing.assert_allclose(pa.probs, pb.probs, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(pa.next_logprob, pb.next_logprob, rtol=1e-5, atol=1e-6)
        assert pa.strs == pb.strs


def _topk_sae(d_in=64, d_sae=128, k=4):
    from engine.config import SAEConfig
    from engine.sae import SparseAutoencoder

    sae = SparseAutoencoder(SAEConfig(recipe="topk", d_in=d_in, d_sae=d_sae, k=k, seed=3))
    with torch.no_grad():
        sae.b_enc.fill_(0.05)
        sae.W_enc.mul_(8.0)                    # loud features, so that a clamp visibly moves predictions
        sae.W_dec.mul_(8.0)
        sae.b_dec.normal_(0, 0.01, generator=torch.Generator().manual_seed(4))
    return sae.eval()


def test_topk_sparse_path_equals_the_dense_path(engine):
    """TopK SAEs run on the (T, K) form, incrementally; every result equals the dense, fresh path."""
    sae = _topk_sae()
    sparse = LensEngine(engine.model, sae, engine.tokenizer)                    # incremental, (T, K)
    dense = LensEngine(engine.model, sae, engine.tokenizer, incremental=False, sparse=False)
    assert sparse.sparse and not dense.sparse
    h = engine.model.mlp_acts(torch.tensor([[ord(c) % 128 for c in "abcdefghij"]]))[0]
    with torch.no_grad():
        kept = sae.encode(h).numpy() > 0
    # a latent kept at the first token (every text below starts with "a"), and one never kept
    always, never = int(np.flatnonzero(kept[0])[0]), int(np.flatnonzero(kept.sum(0) == 0)[0])
    steps = [("abc", None, "scale", True), ("abcd", {always: 0.0}, "scale", True),
             ("abcde", {always: 2.5}, "scale", False), ("abcdef", {never: 3.0}, "set", True),
             ("abXdef", {never: 3.0}, "set", True), ("abXdefg", {always: 1.5, never: -1.0}, "set", False),
             ("abXdefghijklmnopqrstu", {always: 0.0}, "scale", True), ("abXdefghijklmnopqrstuv", None, "scale", True),
             ("a", {never: 2.0}, "set", True), ("", None, "scale", True)]
    for text, clamp, mode, err in steps:
        a = sparse.analyze(text, clamp=clamp, clamp_mode=mode, error_term=err)
        b = dense.analyze(text, clamp=clamp, clamp_mode=mode, error_term=err)
        _assert_same_result(a, b)
        if clamp and a.n_tokens:
            assert np.abs(a.clamped.probs - a.predictions.probs).max() > 1e-5, "the clamp must matter here"
    assert (np.diff(a.feat_indptr) <= 4).all()
    with pytest.raises(ValueError, match="TopK"):
        LensEngine(engine.model, engine.sae, engine.tokenizer, sparse=True)


def test_topk_sparse_path_never_forms_the_dense_matrix(engine):
    sae = _topk_sae()
    reference = LensEngine(engine.model, sae, engine.tokenizer, sparse=False).analyze("sparse!", clamp={5: 2.0},
                                                                                       clamp_mode="set")

    def dense_forbidden(*_a):
        raise AssertionError("the sparse path called the dense encode/decode")

    sae.encode = sae.decode = dense_forbidden
    got = LensEngine(engine.model, sae, engine.tokenizer).analyze("sparse!", clamp={5: 2.0}, clamp_mode="set")
    _assert_same_result(got, reference)


def test_any_sae_with_encode_decode_works(engine):
    """Without W_dec/b_dec attributes the engine falls back to sae.decode (same numbers)."""

    class Opaque:
        def __init__(self, inner):
            self.inner = inner

        def encode(self, x):
            return self.inner.encode(x)

        def decode(self, f):
            return self.inner.decode(f)

    other = LensEngine(engine.model, Opaque(engine.sae), engine.tokenizer)
    assert other._W_dec_FM is None
    a, b = other.analyze("opaque sae", clamp={2: 0.0}), engine.analyze("opaque sae", clamp={2: 0.0})
    np.testing.assert_allclose(a.clamped.probs, b.clamped.probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.predictions.probs, b.predictions.probs, rtol=1e-5, atol=1e-7)


def test_real_sae_and_tokenizer():
    """The engine on the project's own SparseAutoencoder (TopK) and byte-level BPE tokenizer."""
    from engine.config import SAEConfig
    from engine.sae import SparseAutoencoder
    from engine.data.tokenizer import Tokenizer

    tok = Tokenizer.train(["the cat sat on the mat. " * 50, "def f(x):\n    return x\n" * 50], vocab_size=300)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_ctx=12, d_model=32, n_heads=2, d_mlp=64)
    model = OneLayerTransformer(cfg).eval()
    sae = SparseAutoencoder(SAEConfig(recipe="topk", d_in=64, d_sae=128, k=4)).eval()
    eng = LensEngine(model, sae, tok)
    text = "the cat sat on the mat and then def f(x): return x"
    r = eng.analyze(text, clamp={int(3): 0.0})
    all_ids = tok.encode(text)
    ids = all_ids[:12]
    with torch.no_grad():
        f = sae.encode(model.mlp_acts(torch.tensor([ids]))[0]).numpy()
    assert len(all_ids) > 12 and not r.truncated and r.n_tokens == len(all_ids)      # read in windows
    assert r.tokens[:12] == [tok.token_str(i) for i in ids]
    assert (np.diff(r.feat_indptr) <= 4).all()                      # TopK: at most k per token
    for i in np.flatnonzero(f.max(0) > 0):
        np.testing.assert_allclose(r.acts_of("feature", int(i))[:12], f[:, i], rtol=1e-5, atol=1e-6)
    start, end = r.offsets[1]
    assert text[start:end].strip() == tok.token_str(ids[1]).strip()
