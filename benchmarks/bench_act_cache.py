"""Several SAEs from one activation cache vs each from the model's stream, in ONE run (CPU by default).

    python benchmarks/bench_act_cache.py [--model BUNDLE_OR_FOLDER] [--runs 3] [--n-activations 100000]
                                         [--d-sae 4096] [--dtype float32] [--threads N] [--workdir DIR]

A small sweep (``--runs`` TopK SAEs, k = 8, 16, 24, ...) is trained twice on the same model:

  stream   every SAE streams its activations from the model (``ModelActivationSource``: the model's
           forward passes are paid once per SAE), as ``superpos train-sae`` had to before;
  cache    the activations are written once into a sharded cache (``write_activation_cache``, the
           same rows the stream would give), and every SAE reads the memory-mapped shards.

It prints each side's seconds and their ratio, then the cache's read throughput (activations/s of
``ShardedActivationSource.iter_batches``, batch 4,096, over the whole cache) against the rate at
which the SAE trainer consumed them: above 1 the reader is never what a training waits for. The
shards are read right after being written, so from the page cache: a cold read from disk is bounded
by the disk instead (4 bytes x 512 per activation in float32; half with --dtype float16/bfloat16).

The model is ``--model`` (a bundle or train-model folder, on its own corpus) or, by default, a
freshly initialised model of the demo's dimensions (128 residual, 512 neurons, n_ctx 128) on random
tokens: the speed is the same, the science irrelevant here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures import add_json_flag, write_json  # noqa: E402


def _model_and_tokens(path: Path | None):
    import numpy as np

    from engine.cli.cache_cmds import load_trained_model
    from engine.config import preset
    from engine.data.token_cache import tokenize_corpus
    from engine.jobs import run_to_completion
    from engine.model import OneLayerTransformer

    if path is None:
        cfg = preset("demo")
        model = OneLayerTransformer(cfg.model).eval()
        tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, size=2_000_000).astype(np.uint16)
        return model, tokens, cfg, "a fresh demo-sized model on random tokens"
    model, cfg, tokenizer = load_trained_model(path)
    data = run_to_completion(tokenize_corpus(cfg.corpus, tokenizer))
    return model.eval(), data.train, cfg, str(path)


def _train(cfg, source) -> float:
    from engine.jobs import run_to_completion
    from engine.train.sae_job import train_sae

    t0 = time.perf_counter()
    run_to_completion(train_sae(cfg, source))
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="bundle .h5 or train-model folder (default: fresh demo-sized model)")
    parser.add_argument("--runs", type=int, default=3, help="SAEs in the sweep (TopK, k = 8, 16, 24, ...)")
    parser.add_argument("--n-activations", type=int, default=100_000, help="training budget of each SAE")
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--workdir", type=Path, help="where the cache is written (default: a temporary folder)")
    add_json_flag(parser)
    args = parser.parse_args(argv)

    import torch

    from engine.data.act_cache import ShardedActivationSource
    from engine.data.act_cache_write import write_activation_cache
    from engine.data.activations import ModelActivationSource
    from engine.jobs import run_to_completion

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokens, run_cfg, what = _model_and_tokens(args.model)
    base = run_cfg.sae.replace(d_in=model.cfg.d_mlp, d_sae=args.d_sae, recipe="topk", n_activations=args.n_activations)
    cfgs = [base.replace(k=8 * (i + 1)) for i in range(args.runs)]
    B = base.batch_size
    print(f"model: {what} (d_mlp {model.cfg.d_mlp}, n_ctx {model.cfg.n_ctx}); {len(tokens):,} tokens; "
          f"{args.runs} TopK SAEs {base.d_in} -> {base.d_sae} (k {', '.join(str(c.k) for c in cfgs)}), "
          f"{base.n_activations:,} activations each, batch {B}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)

    def stream():
        return ModelActivationSource(model, tokens, n_ctx=model.cfg.n_ctx, batch_size=B,
                                     buffer_batches=base.buffer_batches, seed=base.seed)

    stream_s = [_train(c, stream()) for c in cfgs]
    print(f"stream: {args.runs} trainings {sum(stream_s):.1f} s ({', '.join(f'{s:.1f}' for s in stream_s)})", flush=True)

    # The budget plus the batches train_sae draws for initialisation (and resampling, none for TopK).
    rows = base.n_activations + 4 * B
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-act-cache-") as tmp:
        t0 = time.perf_counter()
        folder = run_to_completion(write_activation_cache(Path(tmp) / "acts", model, tokens, rows, seed=base.seed,
                                                          buffer_batches=base.buffer_batches, dtype=args.dtype))
        build_s = time.perf_counter() - t0
        cache_s = [_train(c, ShardedActivationSource(folder, seed=c.seed)) for c in cfgs]
        print(f"cache:  build {build_s:.1f} s ({rows:,} activations, {args.dtype}) + {args.runs} trainings "
              f"{sum(cache_s):.1f} s ({', '.join(f'{s:.1f}' for s in cache_s)}) = {build_s + sum(cache_s):.1f} s",
              flush=True)
        total_stream, total_cache = sum(stream_s), build_s + sum(cache_s)
        print(f"ratio stream / cache: {total_stream / total_cache:.2f}x "
              f"({total_stream:.1f} s vs {total_cache:.1f} s for the same {args.runs} SAEs)")

        src = ShardedActivationSource(folder, seed=0)
        n_batches = src.n // B
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _, batch in zip(range(n_batches), src.iter_batches(B)):
                pass
            times.append(time.perf_counter() - t0)
        read_rate = n_batches * B / statistics.median(times)
    consume = base.n_activations / statistics.median(cache_s)
    print(f"read throughput: {read_rate:,.0f} activations/s from the memmap (batch {B}, median of 3 passes) vs "
          f"the SAE's consumption {consume:,.0f} activations/s: {read_rate / consume:.1f}x headroom")
    write_json(args.json, {"runs": args.runs, "stream_s": total_stream, "cache_s": total_cache,
                           "ratio": total_stream / total_cache, "read_per_s": read_rate, "headroom": read_rate / consume})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
