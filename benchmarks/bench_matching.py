"""Memory and time of the family's activation correlation at 131,072 features (sparse, chunked).

    python benchmarks/bench_matching.py [--features 131072] [--tokens 65536] [--k 20]

Two TopK-like dictionaries of F features with k active per token on N shared tokens (feature j of B
a noisy copy of feature j of A for the first half, so there is something to find), matched by
``engine.analysis.universality.sparse_correlation_matches``. Prints the peak memory the matching
allocates (tracemalloc: numpy and scipy arrays included), the time, and beside it what the dense
way would hold: the N x F activations of both dictionaries as float32 (the matching's input before
schema 4) — the F x F correlation itself is never held either way.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp

from engine.analysis.universality import sparse_correlation_matches


def topk_like(rng, n: int, f: int, k: int, base=None) -> sp.csr_matrix:
    cols = rng.integers(0, f, size=(n, k)) if base is None else base
    vals = rng.random((n, k)).astype(np.float32) + 0.1
    return sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * k + 1, k)), shape=(n, f))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=131_072)
    ap.add_argument("--tokens", type=int, default=65_536)
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    F, N, k = args.features, args.tokens, args.k
    cols = rng.integers(0, F, size=(N, k))
    A = topk_like(rng, N, F, k, cols)
    cols_b = np.where(cols < F // 2, cols, rng.integers(0, F, size=cols.shape))
    B = topk_like(rng, N, F, k, cols_b)
    A.sum_duplicates()
    B.sum_duplicates()
    tracemalloc.start()
    t0 = time.perf_counter()
    ids, values = sparse_correlation_matches(A, B, k=5, min_active=10)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    matched = np.isfinite(values[:, 0])
    recovered = (ids[: F // 2, 0] == np.arange(F // 2))[matched[: F // 2]].mean()
    dense = 2 * N * F * 4
    print(f"{F:,} x {F:,} features on {N:,} tokens, k={k}: {seconds:.1f} s, peak {peak / 2**20:,.0f} MiB "
          f"(dense activations would be {dense / 2**30:,.1f} GiB: {dense / max(peak, 1):,.0f}x); "
          f"{int(matched.sum()):,} features matched (active >= 10), copies recovered {recovered:.1%}")


if __name__ == "__main__":
    main()
