"""The paired sample against the stored statistics: the bundle's own sample and new ones, side by side.

    python benchmarks/bench_sample.py RUN.h5 [--sizes 4096,8192,16384,32768] [--top 300] [--harvest]

For the ``--top`` densest features of a bundle it prints, for each sample: the fraction with >= 5
active sample tokens, the median |r(sample) - r(stored)| between the feature and its stored
best-correlated neuron (r on the sample is what the compare pane's scatter shows; a feature silent on
the sample counts |stored r|, the pane can show no r for it), and the sample's bytes (raw, and as the
bundle writer stores them: gzip for the neuron activations). Rows:

* ``bundle``: the bundle's /sample (a schema <= 4 bundle: its first tokens);
* ``first S``: the first S harvested tokens, as schema <= 4 drew them (recomputed);
* ``contexts S``: S tokens as whole contexts at random across the harvest (schema 5, the same
  picks as ``engine.analysis.harvest`` for the bundle's harvest seed), computed from the bundle's
  model and SAE on the held-out split its config names (tokenized again, or read from the cache);
* ``--harvest``: the whole harvest re-run with this code at the config's ``sample_tokens`` (its
  sample and its own stored r), with its time and peak RSS, to check it stays streaming and bounded.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.analysis.spread import spread_contexts  # noqa: E402
from engine.analysis.universality import feature_acts, neuron_acts  # noqa: E402
from engine.bundle import open_bundle  # noqa: E402
from engine.bundle.schema import create_dataset  # noqa: E402
from engine.events import run_to_completion  # noqa: E402


def _stored_bytes(acts_SM: np.ndarray, A_SF: sp.csr_matrix) -> int:
    """Bytes of a sample as the bundle writer stores it (engine.bundle.write.create_sample)."""
    with tempfile.TemporaryDirectory() as d, h5py.File(Path(d) / "s.h5", "w") as f:
        g = f.create_group("sample")
        S, M = acts_SM.shape
        nnz = A_SF.nnz
        for name, shape, dtype, kw in (("token_ids", (S,), np.int32, dict(compress=False)),
                                       ("neuron_acts", (S, M), np.float16, dict(unit_chunk=1 << 30, chunk_bytes=1 << 20)),
                                       ("feature_indptr", (A_SF.shape[1] + 1,), np.int64, dict(compress=False)),
                                       ("feature_token", (nnz,), np.int32, dict(compress=False)),
                                       ("feature_value", (nnz,), np.float16, dict(compress=False))):
            ds = create_dataset(g, name, shape, dtype, **kw)
            if name == "neuron_acts" and S:
                ds[...] = acts_SM.astype(np.float16)
            elif ds.size:
                ds[...] = 0
        f.flush()
        return sum(g[n].id.get_storage_size() for n in g)


def _figures(acts_SM: np.ndarray, A_SF: sp.csr_matrix, units: np.ndarray, best: np.ndarray,
             stored: np.ndarray) -> tuple[float, float, int, int, int]:
    """(fraction with >= 5 active tokens, median |dr|, silent units, raw bytes, stored bytes)."""
    A = A_SF.tocsc()
    active = np.diff(A.indptr)[units]
    deltas = []
    for u, n, r0 in zip(units, best, stored):
        y = A[:, int(u)].toarray().ravel().astype(np.float64)
        x = acts_SM[:, int(n)].astype(np.float64)
        if x.std() > 0 and y.std() > 0:
            deltas.append(abs(float(np.corrcoef(x, y)[0, 1]) - float(r0)))
        else:
            deltas.append(abs(float(r0)))
    S, M = acts_SM.shape
    raw = S * M * 2 + A_SF.nnz * 6 + S * 4 + (A_SF.shape[1] + 1) * 8
    return float((active >= 5).mean()), float(np.median(deltas)), int((active == 0).sum()), raw, _stored_bytes(acts_SM, A_SF)


def _row(name: str, S: int, fig) -> None:
    frac, med, silent, raw, stored = fig
    print(f"{name:<22} {S:>8,} {frac:>10.1%} {med:>10.3f} {silent:>7} {raw / 2**20:>9.1f} {stored / 2**20:>9.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--sizes", default="4096,8192,16384,32768")
    ap.add_argument("--top", type=int, default=300)
    ap.add_argument("--harvest", action="store_true", help="also re-run the whole harvest with this code")
    args = ap.parse_args()

    from engine.data.token_cache import tokenize_corpus

    with open_bundle(args.bundle) as b:
        cfg, N = b.config, int(b.n_tokens)
        model, sae, tokenizer = b.load_model().eval(), b.load_sae().eval(), b.tokenizer()
        density = np.asarray(b.column("feature", "density"), np.float64)
        corr_ids = np.asarray(b.column("feature", "corr_ids"))[:, 0]
        corr_r = np.asarray(b.column("feature", "corr_values"), np.float64)[:, 0]
        tok_b, acts_b = b.sample_neurons()
        F = b.n_features
        parts = [b.sample_feature(i) for i in range(F)]
        kind = "contexts" if b.sample_context_starts() is not None else "first tokens"
        bundle_bytes = sum(b._file["sample"][n].id.get_storage_size() for n in b._file["sample"])
        file_bytes = Path(args.bundle).stat().st_size
    rows = np.concatenate([p[0] for p in parts]).astype(np.int64)
    cols = np.repeat(np.arange(F), [p[0].size for p in parts])
    A_b = sp.csr_matrix((np.concatenate([p[1] for p in parts]), (rows, cols)), shape=(len(tok_b), F))
    units = np.argsort(-density, kind="stable")[: args.top]
    units = units[corr_ids[units] >= 0]
    best, stored = corr_ids[units], corr_r[units]
    print(f"{args.bundle}: {file_bytes / 2**20:.1f} MiB, {F:,} features x {b.n_neurons} neurons, {N:,} harvested "
          f"tokens; the {units.size} densest features (density {density[units].min():.4f} … {density[units].max():.4f})")
    print(f"{'sample':<22} {'tokens':>8} {'>=5 active':>10} {'med |dr|':>10} {'silent':>7} {'raw MiB':>9} {'disk MiB':>9}")
    fig = _figures(acts_b, A_b, units, best, stored)
    _row(f"bundle ({kind})", len(tok_b), fig[:4] + (bundle_bytes,))

    t0 = time.perf_counter()
    data = run_to_completion(tokenize_corpus(cfg.corpus, tokenizer))
    T = int(cfg.model.n_ctx)
    n_seq = min(N, len(data.val)) // T
    windows_all = np.asarray(data.val[: n_seq * T], np.int64).reshape(n_seq, T)
    print(f"(held-out split read in {time.perf_counter() - t0:.1f} s: {n_seq:,} contexts of {T})")
    for S in (int(s) for s in args.sizes.split(",")):
        W = max(1, S // T)
        for name, picks in ((f"first {W * T:,}", np.arange(min(W, n_seq))),
                            (f"contexts {W * T:,}", spread_contexts(n_seq, W, cfg.harvest.seed))):
            x = neuron_acts(model, windows_all[picks])
            A = feature_acts(sae, x)
            _row(name, x.shape[0], _figures(x.astype(np.float16), A, units, best, stored))

    if args.harvest:
        from engine.analysis.harvest import harvest

        t0 = time.perf_counter()
        res = run_to_completion(harvest(model, sae, data.val, cfg.harvest.replace(n_tokens=N)))
        seconds = time.perf_counter() - t0
        fs = res.features
        ptr, tok, val = res.sample_feature_indptr, res.sample_feature_token, res.sample_feature_value
        S = len(res.sample_token_ids)
        A = sp.csr_matrix((val.astype(np.float32), (tok.astype(np.int64), np.repeat(np.arange(F), np.diff(ptr)))),
                          shape=(S, F))
        u = np.argsort(-fs.density, kind="stable")[: args.top]
        u = u[fs.corr_ids[u, 0] >= 0]
        _row("harvest (this code)", S, _figures(res.sample_neuron_acts, A, u, fs.corr_ids[u, 0], fs.corr_values[u, 0]))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"harvest: {seconds:.0f} s for {res.n_tokens:,} tokens, peak RSS {rss:.0f} MiB; sample contexts "
              f"{res.sample_context_starts.size} from position {res.sample_context_starts.min():,} to "
              f"{res.sample_context_starts.max():,}")


if __name__ == "__main__":
    main()
