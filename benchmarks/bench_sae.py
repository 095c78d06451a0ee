"""SAE trainer speed against the matmul bound (512 -> 4,096 latents, batch 4,096, CPU).

    python benchmarks/bench_sae.py [--recipes topk,2023,2024-04,jumprelu,batchtopk,matryoshka] [--steps 8]
                                   [--rounds 2] [--threads N]

For each recipe (default: every one in engine.config.SAE_RECIPES) it prints the trainer's activations/s (train_sae end to end on an in-memory array,
first steps excluded) and, in the same run, the bound: the time of the five matmuls of one dense
step alone, each into a preallocated output —

    enc fwd  x[B,D] @ W_enc[D,F]       dec fwd  f[B,F] @ W_dec[F,D]
    grad W_dec = fᵀ @ e                grad f = e @ W_decᵀ          grad W_enc = xᵀ @ g

bound activations/s = B / (sum of those five times). Trainer and bound are measured alternately,
several times, and the medians compared, because this machine is shared.

The trainer runs in fp32. bf16 is only worth it where the CPU has bf16 matmul units (AMX or
AVX512-BF16); the script times one small bf16 matmul and prints its throughput so that the
choice can be checked on the machine at hand.

Measured 2026-11-29 on the shared 2-core AMD EPYC (AVX2 only: no AMX / AVX512-BF16, so bf16
matmuls run at 1.1 GFLOP/s against 17 for fp32 and the trainer stays fp32), load average ~3-4 from
other jobs, `python benchmarks/bench_sae.py`:

    [   topk] trainer 4,539 activations/s | fp32 5-matmul bound 2,600 activations/s (55 GFLOP/s) | ratio 1.75
    [   2023] trainer 1,880 activations/s | fp32 5-matmul bound 2,526 activations/s (53 GFLOP/s) | ratio 0.74
    [2024-04] trainer 1,885 activations/s | fp32 5-matmul bound 2,472 activations/s (52 GFLOP/s) | ratio 0.76

Every recipe, 2026-12-02 on the shared 2-core AVX-512 machine, one thread, load average ~3-5 from
other jobs (so the bound itself varied 28-64 GFLOP/s between rounds),
`python benchmarks/bench_sae.py --threads 1 --steps 6 --rounds 2` (jumprelu with θ₀ = 2.0, λ = 0.7, its
defaults at the time; its speed follows its L0):

    [      topk] trainer 6,084 activations/s | fp32 5-matmul bound 1,343 activations/s | ratio 4.53 | l0 24.0
    [   2024-04] trainer 2,401 activations/s | fp32 5-matmul bound 3,031 activations/s | ratio 0.79 | l0 0.0
    [      2023] trainer 2,128 activations/s | fp32 5-matmul bound 2,523 activations/s | ratio 0.84 | l0 1983.1
    [  jumprelu] trainer 8,727 activations/s | fp32 5-matmul bound 2,867 activations/s | ratio 3.04 | l0 23.2
    [ batchtopk] trainer 4,898 activations/s | fp32 5-matmul bound 2,601 activations/s | ratio 1.88 | l0 24.0
    [matryoshka] trainer 2,667 activations/s | fp32 5-matmul bound 2,158 activations/s | ratio 1.24 | l0 24.0

topk, jumprelu, batchtopk and matryoshka beat the bound because only their encoder is a dense matmul
(engine/train/recipes/sparse.py); batchtopk adds a TopK over the whole (B, F) batch and matryoshka
one reconstruction per nested level (five by default). jumprelu's speed depends on its L0 (the
pairs above the threshold), printed with it.

No allocator settings are needed: the trainer preallocates its (B, F) and (B, D) buffers and
writes into them with out=...; the remaining temporaries are below glibc's dynamic mmap threshold,
so they are recycled rather than page-faulted in afresh. Any MALLOC_* variables set are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.data.activations import ArrayActivationSource  # noqa: E402
from engine.config import SAE_RECIPES, SAEConfig  # noqa: E402
from engine.events import Progress  # noqa: E402

from figures import add_json_flag, write_json  # noqa: E402
from engine.train.sae_job import train_sae  # noqa: E402

D, F, B = 512, 4096, 4096


def matmul_bound_seconds(dtype=torch.float32, reps: int = 3) -> float:
    """Median over reps of the summed time of the five matmuls of one step."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, D, generator=g).to(dtype)
    W_enc = torch.randn(D, F, generator=g).to(dtype) * 0.05
    W_dec = torch.randn(F, D, generator=g).to(dtype) * 0.05
    f = torch.rand(B, F, generator=g).to(dtype)
    e = torch.randn(B, D, generator=g).to(dtype)
    out_BF, out_BD = torch.empty(B, F, dtype=dtype), torch.empty(B, D, dtype=dtype)
    out_FD, out_DF = torch.empty(F, D, dtype=dtype), torch.empty(D, F, dtype=dtype)
    ops = [lambda: torch.mm(x, W_enc, out=out_BF),
           lambda: torch.mm(f, W_dec, out=out_BD),
           lambda: torch.mm(f.t(), e, out=out_FD),
           lambda: torch.mm(e, W_dec.t(), out=out_BF),
           lambda: torch.mm(x.t(), f, out=out_DF)]
    for op in ops:
        op()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for op in ops:
            op()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def trainer_rate(recipe: str, data: np.ndarray, steps: int, warmup: int = 3) -> tuple[float, dict]:
    cfg = SAEConfig(recipe=recipe, d_in=D, d_sae=F, k=24, batch_size=B, n_activations=B * (steps + warmup),
                    l1_coeff=5.0 if recipe == "2024-04" else 1.0, dead_window=B * 2)
    # (jumprelu: its defaults; its L0, printed, sets its speed: pairs above the threshold)
    job = train_sae(cfg, ArrayActivationSource(data, seed=0))
    stamps = []
    metrics = {}
    for event in job:
        if isinstance(event, Progress):          # one per optimiser step (the job also announces its stage)
            stamps.append(time.perf_counter())
            metrics = dict(event.metrics)
    dt = stamps[-1] - stamps[warmup - 1]
    return B * (len(stamps) - warmup) / dt, metrics


def bf16_probe() -> str:
    n = 512
    a, b = torch.rand(n, n).bfloat16(), torch.rand(n, n).bfloat16()
    torch.mm(a, b)
    t0 = time.perf_counter()
    torch.mm(a, b)
    dt = time.perf_counter() - t0
    a32, b32 = a.float(), b.float()
    torch.mm(a32, b32)
    t1 = time.perf_counter()
    torch.mm(a32, b32)
    dt32 = time.perf_counter() - t1
    return (f"bf16 matmul {2 * n**3 / dt / 1e9:.1f} GFLOP/s vs fp32 {2 * n**3 / dt32 / 1e9:.1f} GFLOP/s "
            f"({n}x{n}x{n})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(SAE_RECIPES))
    parser.add_argument("--steps", type=int, default=8, help="timed trainer steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating trainer/bound measurements")
    parser.add_argument("--threads", type=int, default=0)
    add_json_flag(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print("allocator env:", {k: v for k, v in os.environ.items() if k.startswith("MALLOC")} or "none")
    print(bf16_probe())
    flop = 5 * 2 * B * D * F
    rng = np.random.default_rng(0)
    # sparse non-negative data, like MLP activations
    data = (rng.random((B * 8, D), dtype=np.float32) * (rng.random((B * 8, D)) < 0.1)).astype(np.float32)
    figures = {"steps": args.steps, "rounds": args.rounds, "recipes": {}}
    for recipe in args.recipes.split(","):
        rates, bounds = [], []
        metrics = {}
        for _ in range(args.rounds):
            bounds.append(matmul_bound_seconds())
            rate, metrics = trainer_rate(recipe, data, args.steps)
            rates.append(rate)
        bound_s = statistics.median(bounds)
        bound_rate = B / bound_s
        rate = statistics.median(rates)
        print(f"[{recipe:>10}] trainer {rate:,.0f} activations/s (rounds: {', '.join(f'{r:,.0f}' for r in rates)}) | "
              f"fp32 5-matmul bound {bound_rate:,.0f} activations/s ({flop / bound_s / 1e9:.0f} GFLOP/s, "
              f"{bound_s * 1e3:.0f} ms/step) | ratio {rate / bound_rate:.2f} | "
              f"l0 {metrics.get('l0', float('nan')):.1f}")
        figures["recipes"][recipe] = {"per_s": rate, "bound_per_s": bound_rate, "ratio": rate / bound_rate,
                                      "l0": metrics.get("l0")}
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
