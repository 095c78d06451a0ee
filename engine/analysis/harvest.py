"""Feature and neuron statistics: everything the dashboards show, as numpy columns.

``harvest(model, sae, tokens, cfg)`` streams the first ``cfg.n_tokens`` held-out tokens through the
model and the SAE as consecutive context windows of ``n_ctx`` tokens (a last partial window is
dropped) and computes, with the same unit-agnostic code for the F features (f = sae.encode(h)) and
the M neurons (h = model.mlp_acts(x)):

    density_u   = #{t : a_u(t) > 0} / N                         fraction of tokens active
    max_u       = max_t a_u(t)
    mean_u      = Σ_t a_u(t) / #{t : a_u(t) > 0}                 mean when active
    hist_u[b]   = #{t : a_u(t) ∈ (b·max_u/B, (b+1)·max_u/B]}     B equal bins over (0, max_u]
    top_u       = the K token positions with the largest a_u(t) > 0 (one example per position)
    interval_uj = P positions drawn uniformly among {t : a_u(t) ∈ (j·max_u/I, (j+1)·max_u/I]}
    r(f_i, h_m) = Pearson correlation over the N tokens (zeros included)

Two passes, because the bins need the max. Pass 1 accumulates counts, sums, the max, the top-K and
the correlation sums; pass 2 the histograms and the interval samples. Both work on the *nonzero*
activations of a chunk of sequences (a TopK SAE has k of F features active per token; see
``engine.analysis.chunks``). Pass 1 keeps those sparse chunks (up to ``cache_bytes``), so pass 2
re-runs neither the SAE nor, usually, the model. The running per-unit state (top-K, reservoirs,
histograms, example windows) is ``engine.analysis.tallies.UnitTally``; the statistics read off the
weights alone (logit effects, decoder alignment) are ``engine.analysis.weights``.

The paired sample: ``cfg.sample_tokens`` tokens (rounded down to whole contexts, at least one) as
whole contexts drawn at random, seeded by ``cfg.seed``, among all the harvested ones
(``engine.analysis.spread``), with every neuron's activation (dense) and every feature's (CSR by
feature), for the compare pane's scatter and the labeller's random held-out windows. Why whole
contexts at random and not per-unit samples: one sample serves every pair (a feature against any
neuron: the scatter plots the joint activations, which per-unit samples could not pair), a unit's
activation depends on its whole context (so a context is the natural unit to draw), and random
contexts make it a fair sample of the corpus: a unit active on a fraction d of the harvest is active
on about d·S sample tokens, and r on the sample estimates the stored r. Up to schema 4 the sample was
the *first* tokens: one to three documents, on which most features never fired. The picks are
known before the first chunk, so the sample is gathered in pass 1 as the chunks stream by; its
memory is S·M float16 plus the features' nonzeros (the default 8,192 tokens x 512 neurons: 8 MB;
2.4 MiB on disk, gzip). On the demo (``benchmarks/bench_sample.py``) the first 4,096 tokens had
75% of the 300 densest features active on >= 5 of them and a median |r(sample) - r(stored)| of
0.24; 4,096 tokens in random contexts 99.7% and 0.04; the default 8,192 100% and 0.025, a margin
for sparser features for about 1 MiB more per dictionary.

Shape legend: N harvested tokens, n chunk rows (tokens), T context, F features, M neurons,
S sample tokens.
"""

from __future__ import annotations

import contextlib
import time
from typing import Generator, Iterator

import numpy as np
import torch

from engine.analysis.chunks import Chunk, cross_add_
from engine.analysis.spread import spread_contexts
from engine.analysis.tallies import UnitTally, correlations
from engine.analysis.weights import decoder_alignment, logit_effects
from engine.config import HarvestConfig
from engine.errors import UserError
from engine.events import CancelToken, Cancelled, Progress, RateMeter, StageFinished, StageStarted
from engine.stats import HarvestResult, UnitStats

__all__ = ["harvest", "HarvestError"]


class HarvestError(UserError, ValueError):
    """The harvest cannot run on what it was given; the message says why."""


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with n intra-op threads (None: unchanged), restoring the setting after."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------- the job
def _density_histogram(density_F: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    live = density_F[density_F > 0]
    if live.size == 0:
        return np.linspace(-8.0, 0.0, n_bins + 1), np.zeros(n_bins, dtype=np.int64)
    logd = np.log10(live)
    lo, hi = float(logd.min()), float(logd.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(logd, bins=n_bins, range=(lo, hi))
    return edges.astype(np.float64), counts.astype(np.int64)


@torch.inference_mode()     # entered on each resume of the generator, so it never leaks to the driver
def harvest(model, sae, tokens: np.ndarray, cfg: HarvestConfig, device: str | torch.device = "cpu",
            cancel: CancelToken | None = None, eos_id: int | None = None, *,
            batch_size: int | None = None, cache_bytes: int = 1 << 30, bookkeeping_threads: int | None = 1,
            ) -> Generator[object, None, HarvestResult]:
    """Statistics of every feature and neuron over the first ``cfg.n_tokens`` of ``tokens``.

    Generator job: yields ``StageStarted("harvest")``, a ``Progress(unit="tokens")`` per chunk
    (``total`` counts both passes) and ``StageFinished``, checks ``cancel`` before every chunk
    (raising ``Cancelled``), and returns a ``HarvestResult`` whose ``labels``/``scores`` are left
    for ``engine.analysis.labels.label_harvest``. ``batch_size``: sequences per chunk (default:
    sized so a chunk's dense feature matrix stays near 128 MB). ``cache_bytes``: memory for pass 1's activations
    (features as nonzeros, neurons dense where they are dense), which spares pass 2 the forward
    passes; a kind that does not fit is recomputed instead (200k tokens of the demo sizes: ~540 MB).
    ``bookkeeping_threads``: intra-op threads for the many small bookkeeping ops on a CPU (the
    forward keeps the global setting): one thread avoids OpenMP's synchronisation stalls, up to 10x
    on a busy 2-core machine, and loses little on an idle one because the ops are memory-bound.
    Moves model and SAE to ``device``.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    sae = sae.to(device).eval()
    T_max = int(model.cfg.n_ctx)
    n_avail = min(int(cfg.n_tokens), int(len(tokens)))
    if n_avail <= 0:
        raise HarvestError("no held-out tokens to harvest: the validation split is empty")
    T = min(T_max, n_avail)
    n_seq = n_avail // T
    N = n_seq * T
    tokens_N = np.asarray(tokens[:N]).astype(np.int64)
    if tokens_N.min() < 0 or tokens_N.max() >= model.cfg.vocab_size:
        raise HarvestError(f"token ids outside the model's vocabulary (0…{model.cfg.vocab_size - 1}): "
                           "the tokens do not belong to this model")
    F, M = int(sae.W_dec.shape[0]), int(sae.W_dec.shape[1])
    if batch_size is None:
        batch_size = max(1, min(256, (32 << 20) // (T * max(F, M))))
    feat = UnitTally("feature", F, cfg, T, device)
    neur = UnitTally("neuron", M, cfg, T, device)
    cross_dtype = torch.float64 if F * M * 8 <= (512 << 20) else torch.float32
    cross_FM = torch.zeros((F, M), dtype=cross_dtype, device=device)
    picks_W = spread_contexts(n_seq, int(cfg.sample_tokens) // T, cfg.seed)   # the sample's contexts
    S = picks_W.size * T
    sample_neur: list[np.ndarray] = []                                     # (rows, M) per chunk
    sample_feat: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []      # (unit, token, value)
    cached_bytes = 0
    meter = RateMeter(2 * N)
    yield StageStarted("harvest", total=2 * N, unit="tokens")

    def check_cancel() -> None:
        if cancel is not None and cancel.cancelled:
            raise Cancelled("harvest cancelled")

    topk_sae = sae.k is not None

    def forward(s0: int, s1: int, need_features: bool):
        """Neurons (n, M) and the features' raw form: TopK (values, indices) (n, k), or (n, F)."""
        idx = torch.from_numpy(tokens_N[s0 * T:s1 * T]).view(s1 - s0, T).to(device)
        h_nM = model.mlp_acts(idx).reshape(-1, M)                              # (n, M)
        if not need_features:
            return h_nM, None
        if topk_sae:
            return h_nM, sae.encode_sparse(h_nM)
        return h_nM, sae.encode(h_nM).reshape(-1, F)

    def feature_chunk(raw) -> Chunk:
        return Chunk.from_topk(*raw, F) if topk_sae else Chunk.from_dense(raw)

    book_threads = bookkeeping_threads if device.type == "cpu" else None
    t_start = time.perf_counter()
    # ---------------------------------------------------------------- pass 1
    for s0 in range(0, n_seq, batch_size):
        check_cancel()
        s1 = min(n_seq, s0 + batch_size)
        pos0 = s0 * T
        h_nM, f_raw = forward(s0, s1, True)
        with _torch_threads(book_threads):
            fch = feature_chunk(f_raw)
            del f_raw
            nch = Chunk.from_dense(h_nM)
            feat.pass1(fch, pos0)
            neur.pass1(nch, pos0)
            cross_add_(cross_FM, fch, h_nM)
        _gather_sample(picks_W, s0, s1, T, h_nM, fch, sample_neur, sample_feat)
        for tally, ch in ((feat, fch), (neur, nch)):
            if tally.cache is not None:
                if cached_bytes + ch.nbytes() <= cache_bytes:
                    tally.cache.append(ch)
                    cached_bytes += ch.nbytes()
                else:
                    cached_bytes -= sum(c.nbytes() for c in tally.cache)
                    tally.cache = None
        done = s1 * T
        rate, eta = meter.update(done)
        yield Progress(stage="harvest", done=done, total=2 * N, rate=rate, eta_s=eta, unit="tokens",
                       metrics={"pass": 1.0})
    # ---------------------------------------------------------------- pass 2
    for i, s0 in enumerate(range(0, n_seq, batch_size)):
        check_cancel()
        s1 = min(n_seq, s0 + batch_size)
        pos0 = s0 * T
        h_nM = f_raw = None
        if feat.cache is None or neur.cache is None:
            h_nM, f_raw = forward(s0, s1, feat.cache is None)
        with _torch_threads(book_threads):
            fch = feat.cache[i] if feat.cache is not None else feature_chunk(f_raw)
            nch = neur.cache[i] if neur.cache is not None else Chunk.from_dense(h_nM)
            # a cached kind gathers its windows afterwards, only for the final examples
            feat.pass2(fch, pos0, gather_windows=feat.cache is None)
            neur.pass2(nch, pos0, gather_windows=neur.cache is None)
        done = N + s1 * T
        rate, eta = meter.update(done)
        yield Progress(stage="harvest", done=done, total=2 * N, rate=rate, eta_s=eta, unit="tokens",
                       metrics={"pass": 2.0})

    with _torch_threads(book_threads):
        for tally in (feat, neur):
            for i, ch in enumerate(tally.cache or []):
                tally.gather_top_windows(ch, i * batch_size * T)
                tally.gather_interval_windows(ch, i * batch_size * T)
            tally.cache = None

    # ---------------------------------------------------------------- weights-only statistics
    W_dec_FM = sae.W_dec.detach()
    with _torch_threads(book_threads):          # mostly top-k and histograms: faster on one thread
        f_logits = logit_effects(model, W_dec_FM, cfg.n_logits, cfg.hist_bins)
        n_logits = logit_effects(model, torch.eye(M, device=device), cfg.n_logits, cfg.hist_bins)
        f_align, n_align = decoder_alignment(W_dec_FM, cfg.n_align)
        f_corr, n_corr = correlations(cross_FM, feat, neur, N, cfg.n_align)

    features = UnitStats(**feat.finish(tokens_N, N, eos_id), **f_logits, **f_align, **f_corr)
    neurons = UnitStats(**neur.finish(tokens_N, N, eos_id), **n_logits, **n_align, **n_corr)
    edges, counts = _density_histogram(features.density, cfg.hist_bins)
    result = HarvestResult(
        features=features,
        neurons=neurons,
        n_tokens=N,
        density_hist_edges=edges,
        density_hist_counts=counts,
        sample_token_ids=tokens_N.reshape(n_seq, T)[picks_W].reshape(-1).astype(np.int32),
        sample_context_starts=picks_W * T,
        **_paired_sample(sample_feat, sample_neur, F, M),
    )
    seconds = time.perf_counter() - t_start
    yield StageFinished("harvest", seconds=seconds,
                        summary={"tokens": float(N), "tokens_per_s": 2 * N / max(seconds, 1e-9),
                                 "features_live": float((features.density > 0).sum())})
    return result


def _gather_sample(picks_W: np.ndarray, s0: int, s1: int, T: int, h_nM: torch.Tensor, fch: Chunk,
                   sample_neur: list[np.ndarray], sample_feat: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Append the sample's rows among the chunk of sequences [s0, s1): neurons dense, features as
    (unit, sample row, value). Sample row of context ``picks_W[w]``'s token j: w·T + j."""
    w0, w1 = np.searchsorted(picks_W, [s0, s1])
    if w0 == w1:
        return
    offs_T = np.arange(T)
    local = torch.from_numpy(((picks_W[w0:w1] - s0)[:, None] * T + offs_T).reshape(-1)).to(h_nM.device)
    sample_neur.append(h_nM[local].half().cpu().numpy())
    row_map = torch.full((h_nM.shape[0],), -1, dtype=torch.int64, device=h_nM.device)
    row_map[local] = torch.arange(w0 * T, w1 * T, device=h_nM.device)
    rows = row_map[fch.row]
    m = rows >= 0
    sample_feat.append((fch.unit[m].cpu().numpy(), rows[m].cpu().numpy(), fch.val[m].cpu().numpy()))


def _paired_sample(sample_feat: list[tuple[np.ndarray, np.ndarray, np.ndarray]], sample_neur: list[np.ndarray],
                   F: int, M: int) -> dict[str, np.ndarray]:
    """The sample's neuron activations (S, M) and its feature activations as CSR by feature."""
    units = np.concatenate([u for u, _, _ in sample_feat]) if sample_feat else np.zeros(0, np.int64)
    rows = np.concatenate([r for _, r, _ in sample_feat]) if sample_feat else np.zeros(0, np.int64)
    vals = np.concatenate([v for _, _, v in sample_feat]) if sample_feat else np.zeros(0, np.float32)
    order = np.lexsort((rows, units))
    indptr = np.zeros(F + 1, dtype=np.int64)
    np.cumsum(np.bincount(units, minlength=F), out=indptr[1:])
    return dict(
        sample_neuron_acts=np.concatenate(sample_neur) if sample_neur else np.zeros((0, M), np.float16),
        sample_feature_indptr=indptr,
        sample_feature_token=rows[order].astype(np.int32),
        sample_feature_value=vals[order].astype(np.float16),
    )
