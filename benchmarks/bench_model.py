"""Model-training throughput on this machine, next to its measured matmul rate.

    python benchmarks/bench_model.py [--preset demo] [--steps 30] [--threads N] [--impl plain fused]

Prints, in one run: the fp32 matmul FLOP rate (a large square matmul and one of the model's own
output-layer shape; measured at the start and again at the end, so a run on a loaded machine shows
itself), training tokens/s of the preset's model, the FLOPs that represents, and the fraction of the
matmul rate reached, for each loss implementation x allocator setting, each in a fresh subprocess
(mallopt cannot be undone):

* impl ``plain``: logits (B*T, V) materialised, then ``F.cross_entropy`` (the textbook path);
* impl ``fused``: ``engine.model.linear_cross_entropy``, the output layer and the loss in chunks of
  ``LOSS_CHUNK_ROWS`` rows with the gradient formed in cache (what training uses);
* allocator ``glibc``: malloc as it comes; ``tuned``: ``engine.device.tune_allocator`` (no mmap for
  big blocks, no trimming: freed pages are reused instead of zero-filled again). The fused path's
  speed comes from not making the big tensors at all; the tuned allocator is what model training
  applies on a CPU, and it is the row to read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

from figures import add_json_flag, write_json  # noqa: E402


def matmul_gflops(m: int, k: int, n: int, dtype=torch.float32, seconds: float = 1.5) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    out = torch.empty(m, n, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b, out=out)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.matmul(a, b, out=out)
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def flops_per_token(cfg) -> float:
    """Training FLOPs per token: 6 x matmul parameters + attention scores and mixing (fwd + bwd)."""
    d, m, v, t = cfg.d_model, cfg.d_mlp, cfg.vocab_size, cfg.n_ctx
    matmul_params = 3 * d * d + d * d + 2 * d * m + d * v
    return 6 * matmul_params + 6 * 2 * t * d  # QK^T and AV: 2*T*d each way per token, x3 for fwd+bwd


def train_rates(preset_name: str, steps: int, tuned: bool, impls: list[str], rounds: int = 5) -> dict:
    """tokens/s of each loss implementation, in interleaved rounds of ``steps // rounds`` steps (the
    same process, model and batches), best round each: a busy neighbour hits both alike."""
    from engine.config import preset
    from engine.device import tune_allocator
    from engine.model import OneLayerTransformer
    from engine.train.model_job import batch_at
    from engine.train.optim import make_adamw

    applied = tune_allocator() if tuned else False
    cfg = preset(preset_name)
    model = OneLayerTransformer(cfg.model)
    opt = make_adamw(model, cfg.train)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.model.vocab_size, 2_000_000).astype(np.uint16)

    def step(i, fused):
        x, y = batch_at(tokens, i, cfg.train.batch_size, cfg.model.n_ctx, 0)
        loss = model.loss(x, y, fused=fused)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()

    per_round = max(1, steps // rounds)
    best = {impl: 0.0 for impl in impls}
    for impl in impls:
        for i in range(2):
            step(i, impl == "fused")                     # warm-up: first allocations, thread pools
    for r in range(rounds):
        for impl in impls:
            t0 = time.perf_counter()
            for i in range(per_round):
                step(r * per_round + i, impl == "fused")
            rate = per_round * cfg.train.batch_size * cfg.model.n_ctx / (time.perf_counter() - t0)
            best[impl] = max(best[impl], rate)
    return {impl: {"tokens_per_s": tok_s, "gflops": tok_s * flops_per_token(cfg.model) / 1e9,
                   "allocator_tuned": applied, "demo_model_minutes": cfg.train.tokens / tok_s / 60}
            for impl, tok_s in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", type=int, default=30, help="steps per implementation, in 5 interleaved rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--impl", nargs="+", choices=["plain", "fused"], default=["plain", "fused"])
    parser.add_argument("--allocator", nargs="+", choices=["glibc", "tuned"], default=["glibc", "tuned"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_json_flag(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(train_rates(args.preset, args.steps, args.child == "tuned", args.impl)))
        return

    from engine.config import preset

    cfg = preset(args.preset).model
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; preset {args.preset}: "
          f"d_model {cfg.d_model}, d_mlp {cfg.d_mlp}, vocab {cfg.vocab_size}, n_ctx {cfg.n_ctx}")
    b = preset(args.preset).train.batch_size * cfg.n_ctx

    def matmul_rate(when: str) -> float:
        square, unembed = matmul_gflops(2048, 2048, 2048), matmul_gflops(b, cfg.d_model, cfg.vocab_size)
        print(f"matmul fp32 ({when}): {square:7.1f} GFLOP/s (2048^3)   {unembed:7.1f} GFLOP/s "
              f"({b}x{cfg.d_model} @ {cfg.d_model}x{cfg.vocab_size}, the output layer)")
        return max(square, unembed)

    start = matmul_rate("start")
    print(f"training FLOPs per token: {flops_per_token(cfg) / 1e6:.2f} M")
    rows = []
    for alloc in args.allocator:
        cmd = [sys.executable, __file__, "--preset", args.preset, "--steps", str(args.steps),
               "--child", alloc, "--impl", *args.impl]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows += [(impl, alloc, r) for impl, r in json.loads(out.strip().splitlines()[-1]).items()]
    end = matmul_rate("end")
    peak = max(start, end)
    print(f"fractions below are of the better matmul rate, {peak:.1f} GFLOP/s (end/start {end / start:.2f}: "
          "far from 1 means the machine was busy); each row is the best of 5 interleaved rounds")
    for impl, alloc, r in rows:
        print(f"impl {impl:5s} allocator {alloc:5s}: {r['tokens_per_s']:9,.0f} tokens/s = {r['gflops']:6.1f} "
              f"GFLOP/s = {r['gflops'] / peak:5.1%} of the matmul rate; the preset's "
              f"{preset(args.preset).train.tokens:,} tokens take {r['demo_model_minutes']:.1f} min")
    write_json(args.json, {"preset": args.preset, "matmul_gflops": peak, "end_over_start": end / start,
                           "rows": [{"impl": impl, "allocator": alloc, "tokens_per_s": r["tokens_per_s"],
                                     "gflops": r["gflops"], "fraction": r["gflops"] / peak} for impl, alloc, r in rows]})


if __name__ == "__main__":
    main()
