"""Harvest throughput next to a bare model + SAE forward over the same tokens, in one run.

    python benchmarks/bench_harvest.py [--tokens 200000] [--preset demo] [--bundle RUN.h5] [--device cpu]

Without ``--bundle`` the model and SAE are the preset's sizes with random weights (a TopK SAE, so
features are as sparse as a trained one's; a random model's neurons fire on ~50% of tokens, more
than a trained model's, so this is the harder case for the neuron bookkeeping) and the tokens are
random ids. With ``--bundle`` the bundle's model, SAE and tokenizer are used (tokens still random
unless ``--token-file X.npy`` gives held-out ids). Prints tokens/s of both, their ratio (target
≥ 0.5), the labelling time for every feature and neuron, and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from figures import add_json_flag, write_json  # noqa: E402

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.jobs import run_to_completion  # noqa: E402
from engine.config import preset  # noqa: E402
from engine.analysis.harvest import harvest  # noqa: E402
from engine.analysis.labels import label_harvest  # noqa: E402
from engine.model import OneLayerTransformer  # noqa: E402
from engine.sae import SparseAutoencoder  # noqa: E402


class _NumberedTokens:
    """Stand-in tokenizer: token i reads "t{i}" (labels are then all 'words'; timing only)."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def token_str(self, i: int) -> str:
        return f"t{i}"

    def vocab_strings(self) -> tuple[str, ...]:
        return tuple(self.token_str(i) for i in range(self.vocab_size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--preset", default="demo")
    add_json_flag(ap)
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--token-file", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64, help="sequences per chunk for the bare forward")
    args = ap.parse_args()

    cfg = preset(args.preset)
    torch.manual_seed(0)
    if args.bundle:
        from engine.bundle import open_bundle

        with open_bundle(args.bundle) as b:
            model, sae, tokenizer = b.load_model(), b.load_sae(), b.tokenizer()
            cfg = b.config
    else:
        model, sae = OneLayerTransformer(cfg.model), SparseAutoencoder(cfg.sae)
        tokenizer = _NumberedTokens(cfg.model.vocab_size)
    model, sae = model.to(args.device).eval(), sae.to(args.device).eval()
    T = cfg.model.n_ctx
    n = (args.tokens // T) * T
    if args.token_file:
        tokens = np.load(args.token_file, mmap_mode="r")[:n]
        n = (len(tokens) // T) * T
    else:
        tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, n).astype(np.int32)
    hcfg = cfg.harvest.replace(n_tokens=n)
    print(f"model d_model={cfg.model.d_model} d_mlp={cfg.model.d_mlp} n_ctx={T} vocab={cfg.model.vocab_size}; "
          f"SAE {sae.extra_repr()}; {n:,} tokens on {args.device}, {torch.get_num_threads()} threads")

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s0 in range(0, n // T, args.batch):
                idx = torch.from_numpy(np.asarray(tokens[s0 * T:(s0 + args.batch) * T], dtype=np.int64))
                f = sae.encode(model.mlp_acts(idx.view(-1, T).to(args.device)))
                f.sum().item()  # synchronise (a GPU would otherwise run ahead)
        return time.perf_counter() - t0

    def harvested():
        t0 = time.perf_counter()
        result = run_to_completion(harvest(model, sae, tokens, hcfg, device=args.device))
        return time.perf_counter() - t0, result

    t_bare = bare()
    t_harvest, result = harvested()
    t_bare2 = bare()                       # again, so a load change on a shared machine shows
    t_bare = min(t_bare, t_bare2)
    t0 = time.perf_counter()
    run_to_completion(label_harvest(result, tokenizer))
    t_labels = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"bare model+SAE forward : {n / t_bare:10,.0f} tokens/s  ({t_bare:.1f} s)")
    print(f"harvest (2 passes)     : {n / t_harvest:10,.0f} tokens/s  ({t_harvest:.1f} s)")
    print(f"ratio harvest / bare   : {t_bare / t_harvest:10.2f}   (target >= 0.5)")
    print(f"labels ({len(result.features)} features + {len(result.neurons)} neurons): {t_labels:.1f} s")
    print(f"peak RSS               : {rss:10,.0f} MB")
    live = result.features.density > 0
    print(f"features live {live.sum()}/{len(live)}, neuron density mean {result.neurons.density.mean():.3f}")
    write_json(args.json, {"tokens": n, "bare_per_s": n / t_bare, "harvest_per_s": n / t_harvest,
                           "ratio": t_bare / t_harvest, "labels_s": t_labels, "peak_rss_mb": rss,
                           "bundle": args.bundle})


if __name__ == "__main__":
    main()
