"""How universal are a family's features, and what limits it: the SAE's own seed, or its budget?

    python benchmarks/universality_sweep.py FAMILY.h5 [--size 1024] [--budgets 1.6M,6.4M] [--match-tokens 65536]

FAMILY.h5 is a two-seed family bundle (``superpos run --preset demo-family``). Its two models (A,
B) are kept; for each budget the script trains, from one pass over each model's activation stream
(``engine.train.family_job``), two SAEs of ``--size`` features on model A (two initialisation seeds)
and one on model B, with the bundle's SAE settings. Then, on the run's matching sample (random
whole contexts of the validation split, units active on at least 10 of its tokens), it prints the
median best-match activation correlation of

- A's SAE against A's other SAE (the same model, another SAE seed: the dictionary's own
  reproducibility, the most any cross-model figure can reach with that budget);
- A's SAE against B's (another model seed: the paper's universality, features 0.72 vs neurons 0.46);
- A's neurons against B's.

Nothing is written; the figures go in docs/families.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.analysis.matching import best_match_summary, correlation_matches  # noqa: E402
from engine.analysis.universality import (DEFAULT_MIN_ACTIVE, feature_acts, neuron_acts,  # noqa: E402
                                          sparse_correlation_matches, spread_windows)
from engine.bundle import open_bundle  # noqa: E402
from engine.data.activations import ModelActivationSource  # noqa: E402
from engine.data.token_cache import tokenize_corpus  # noqa: E402
from engine.jobs import collect  # noqa: E402
from engine.train.family_job import train_sae_family  # noqa: E402


def _count(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def duplicates(sae, acts) -> float:
    """Share of the live features (active on the sample) whose decoder direction has cosine > 0.95
    with another live feature of the same SAE: copies, not features (an L1 SAE with too high a
    learning rate grows them)."""
    import torch

    live = np.bincount(acts.indices, minlength=acts.shape[1]) > 0
    W = sae.W_dec.detach()[torch.from_numpy(live)]
    W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
    C = W @ W.T
    C.fill_diagonal_(-1.0)
    return float((C.max(dim=1).values > 0.95).float().mean()) if len(W) else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--budgets", default="1.6M,6.4M", help="SAE activations per budget, comma-separated")
    ap.add_argument("--match-tokens", type=int, default=65_536)
    ap.add_argument("--min-active", type=int, default=DEFAULT_MIN_ACTIVE)
    ap.add_argument("--recipe", default=None, help="another SAE recipe than the bundle's (e.g. 2023)")
    ap.add_argument("--lr", type=float, default=None, help="another SAE learning rate than the bundle's")
    ap.add_argument("--l1", type=float, default=None, help="another L1 coefficient than the bundle's")
    args = ap.parse_args(argv)
    budgets = [_count(b) for b in args.budgets.split(",")]

    with open_bundle(args.bundle) as b:
        if len({m["model"] for m in b.family.members}) < 2:
            raise SystemExit(f"{args.bundle} has one model: make it with --model-seeds 0,1")
        cfg, tokenizer = b.config, b.tokenizer()
        model_a = b.load_model()
        second = next(i for i, m in enumerate(b.family.members) if m["model"] == 1)
    with open_bundle(args.bundle, second) as d:
        model_b = d.load_model()
    tokens, _ = collect(tokenize_corpus(cfg.corpus, tokenizer))
    changes = {k: v for k, v in (("recipe", args.recipe), ("lr", args.lr), ("l1_coeff", args.l1)) if v is not None}
    base = cfg.sae.replace(d_sae=args.size, **changes)
    print(f"{args.bundle}: models A (seed {cfg.train.seed}) and B; {args.size}-feature {base.recipe} SAEs "
          f"(k={base.k}, lr={base.lr:g}, l1={base.l1_coeff:g}), budgets {', '.join(f'{n:,}' for n in budgets)} activations")

    def train(model, seeds):
        cfgs = [base.replace(n_activations=n, seed=s) for n in budgets for s in seeds]
        source = ModelActivationSource(model, tokens.train, n_ctx=cfg.model.n_ctx, batch_size=base.batch_size,
                                       buffer_batches=base.buffer_batches, seed=base.seed)
        t0 = time.perf_counter()
        results, _ = collect(train_sae_family(cfgs, source))
        print(f"  trained {len(cfgs)} SAEs from one pass in {time.perf_counter() - t0:.0f} s")
        return {(n, s): r.sae for (n, s), r in zip([(n, s) for n in budgets for s in seeds], results)}

    saes_a = train(model_a, (101, 202))
    saes_b = train(model_b, (101,))
    windows = spread_windows(tokens.val, args.match_tokens, cfg.model.n_ctx, cfg.harvest.seed)
    xa, xb = neuron_acts(model_a, windows), neuron_acts(model_b, windows)

    def median(A, B):
        return best_match_summary(sparse_correlation_matches(A, B, min_active=args.min_active)[1])

    print(f"\nmedian best-match activation correlation on {windows.size:,} tokens (units active on >= "
          f"{args.min_active}):")
    print(f"{'SAE activations':>16} | {'A vs A (SAE seed)':>18} | {'A vs B (model seed)':>20} | L0 (A) | duplicates (A)")
    for n in budgets:
        fa, fa2, fb = (feature_acts(s, x) for s, x in ((saes_a[(n, 101)], xa), (saes_a[(n, 202)], xa),
                                                        (saes_b[(n, 101)], xb)))
        same, cross = median(fa, fa2), median(fa, fb)
        print(f"{n:>16,} | {same['median']:>11.3f} (n={int(same['n']):>4}) | {cross['median']:>13.3f} (n={int(cross['n']):>4})"
              f" | {fa.nnz / max(1, fa.shape[0]):>6.1f} | {duplicates(saes_a[(n, 101)], fa):.1%}")
    neurons = best_match_summary(correlation_matches(xa, xb)[1])
    print(f"{'neurons':>16} | {'':>18} | {neurons['median']:>13.3f} (n={int(neurons['n']):>4})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
