"""Model-training throughput on this machine, next to its measured matmul rate.

    python benchmarks/bench_model.py [--preset demo] [--steps 30] [--threads N]

Prints, in one run: the fp32 matmul FLOP rate (a large square matmul and one of the model's own
output-layer shape), training tokens/s of the preset's model, the FLOPs that represents, and the
fraction of the matmul rate reached — with glibc's allocator as it comes and with
``engine.device.tune_allocator`` (each in a fresh subprocess, since mallopt cannot be undone).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch


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


def train_rate(preset_name: str, steps: int, tuned: bool) -> dict:
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

    def step(i):
        x, y = batch_at(tokens, i, cfg.train.batch_size, cfg.model.n_ctx, 0)
        loss = model.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()

    for i in range(3):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    dt = time.perf_counter() - t0
    tok_s = steps * cfg.train.batch_size * cfg.model.n_ctx / dt
    return {"tokens_per_s": tok_s, "gflops": tok_s * flops_per_token(cfg.model) / 1e9,
            "allocator_tuned": applied, "demo_model_minutes": cfg.train.tokens / tok_s / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--child", choices=["plain", "tuned"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(train_rate(args.preset, args.steps, args.child == "tuned")))
        return

    from engine.config import preset

    cfg = preset(args.preset).model
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; preset {args.preset}: "
          f"d_model {cfg.d_model}, d_mlp {cfg.d_mlp}, vocab {cfg.vocab_size}, n_ctx {cfg.n_ctx}")
    square = matmul_gflops(2048, 2048, 2048)
    b = preset(args.preset).train.batch_size * cfg.n_ctx
    unembed = matmul_gflops(b, cfg.d_model, cfg.vocab_size)
    peak = max(square, unembed)
    print(f"matmul fp32: {square:7.1f} GFLOP/s (2048^3)   {unembed:7.1f} GFLOP/s "
          f"({b}x{cfg.d_model} @ {cfg.d_model}x{cfg.vocab_size}, the output layer)")
    print(f"training FLOPs per token: {flops_per_token(cfg) / 1e6:.2f} M")
    for mode in ("plain", "tuned"):
        cmd = [sys.executable, __file__, "--preset", args.preset, "--steps", str(args.steps), "--child", mode]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(f"allocator {mode:5s}: {r['tokens_per_s']:9,.0f} tokens/s = {r['gflops']:6.1f} GFLOP/s = "
              f"{r['gflops'] / peak:5.1%} of the matmul rate; the preset's {preset(args.preset).train.tokens:,} "
              f"tokens take {r['demo_model_minutes']:.1f} min")


if __name__ == "__main__":
    main()
