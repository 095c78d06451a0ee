"""The whole demo on one CUDA GPU, and its components, in one command (a few minutes; target ≤ 60 s demo).

    python benchmarks/bench_gpu_demo.py [--precision auto|fp32|bf16] [--compile] [--no-demo]
                                        [--no-components] [--device cuda|cuda:N]

Without a CUDA device it prints one line saying it skipped and exits 0.

What it measures and prints, in this order:

1. The GPU (name, compute capability, memory), torch's version, and the policy the run uses
   (``engine.train.accel``: precision, TF32, fused AdamW, pinned transfers, torch.compile).
2. **The demo**: ``superpos run --preset demo --device cuda`` (the CLI's own ``main``, in this
   process) into a fresh ``SUPERPOS_HOME`` — so the token cache and the run's work folder are cold,
   as on a first run — then each stage's seconds (from the bundle's ``info/stage_seconds``), the
   total wall time against the 60 s target, the peak GPU memory allocated, and the bundle's science
   figures as ``superpos eval`` shows them (loss recovered, L0, dead fraction over the harvested tokens).
3. **The components**, to locate a shortfall:
   - the GPU's dense matmul rate (8192² fp32-with-TF32 and bf16), the reference for
   - model training tokens/s (``train_model`` on the demo's model and batch, random tokens, steady
     state after the first 20 steps) and the fraction of the matmul rate it reaches, for fp32 and
     for the chosen precision;
   - activation production for the SAE (``ModelActivationSource`` on the GPU: forward, the host
     shuffle, the copy back) in activations/s;
   - every SAE recipe's trainer alone on a batch already on the GPU, activations/s.

``--device cpu --preset tiny`` runs the same code on the CPU (a dry run of the script itself; the
figures then mean nothing for a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 60.0


def _cuda_missing(device: str) -> str | None:
    import torch

    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return f"no CUDA device visible (torch {torch.__version__}, {build})"
    return None


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def header(args) -> None:
    import torch

    from engine.train.accel import accel_policy

    policy = accel_policy(args.device, args.precision, args.compile)
    if policy.device.type == "cuda":
        props = torch.cuda.get_device_properties(policy.device)
        print(f"GPU: {props.name}, compute capability {props.major}.{props.minor}, "
              f"{props.total_memory / 2**30:.0f} GiB; torch {torch.__version__} (CUDA {torch.version.cuda})")
    else:
        print(f"device: {policy.device} (dry run of the script; torch {torch.__version__})")
    print(f"policy: {policy.describe()}")
    for note in policy.notes:
        print(f"note: {note}")


# ------------------------------------------------------------------------------------------ the demo
def run_demo(args) -> int:
    """The demo through the CLI; returns its exit status."""
    import torch

    from engine.cli.main import main

    with tempfile.TemporaryDirectory(prefix="superpos-gpu-demo-") as home:
        os.environ["SUPERPOS_HOME"] = home                       # cold token cache and work folder
        out = Path(home) / "demo.h5"
        argv = ["run", "--preset", args.preset, "--device", args.device, "--precision", args.precision,
                "--out", str(out), "--quiet"] + (["--compile"] if args.compile else [])
        cuda = args.device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        print(f"\ndemo: superpos {' '.join(argv)}   (SUPERPOS_HOME={home}, cold caches)", flush=True)
        t0 = time.perf_counter()
        rc = main(argv)
        wall = time.perf_counter() - t0
        if rc != 0:
            print(f"demo: superpos run failed with exit status {rc}")
            return rc
        stages, metrics, device_text = demo_report(out)
    print(f"demo on {device_text}:")
    for stage, seconds in stages.items():
        print(f"  {stage:>10}  {seconds:7.1f} s")
    print(f"  {'the rest':>10}  {wall - sum(stages.values()):7.1f} s (the bundle stage, the CLI's start)")
    verdict = "within" if wall <= TARGET_S else "OVER"
    print(f"  {'total':>10}  {wall:7.1f} s wall ({verdict} the {TARGET_S:.0f} s target)")
    if cuda:
        print(f"  peak GPU memory allocated: {torch.cuda.max_memory_allocated(args.device) / 2**30:.2f} GiB")
    print(f"  precision: {args.precision} -> the policy above")
    print(f"  science: loss recovered {metrics.get('loss_recovered', float('nan')):.4f}, "
          f"L0 {metrics.get('l0', float('nan')):.2f}, dead {metrics.get('dead_fraction', float('nan')):.2%} "
          f"(over {metrics.get('dead_judged_on_tokens', 0):,} harvested tokens)")
    return 0


def demo_report(path) -> tuple[dict[str, float], dict, str]:
    """(stage seconds, the metrics as ``superpos eval`` shows them, the device) of a bundle ``superpos run`` wrote."""
    from engine.bundle import open_bundle
    from engine.cli.bundle_cmds import shown_metrics

    with open_bundle(path) as bundle:
        extra = bundle.info.get("extra_info", {})
        return json.loads(extra.get("stage_seconds", "{}")), shown_metrics(bundle), extra.get("device", "")


# ------------------------------------------------------------------------------------------ components
def matmul_tflops(device, dtype, n: int, seconds: float = 1.0) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b, out=out)
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            torch.matmul(a, b, out=out)
        _sync(device)
        reps += 10
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def model_rate(cfg, device, precision: str, compile: bool, steps: int) -> float:
    """Training tokens/s of ``train_model`` in steady state (steps after the first 20)."""
    import numpy as np

    from engine.train.model_job import train_model

    warm = 20
    tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, 4_000_000).astype(np.uint16)
    per_step = cfg.train.batch_size * cfg.model.n_ctx
    train = cfg.train.replace(tokens=(warm + steps) * per_step, eval_every=10**9, checkpoint_every=10**9)
    job = train_model(cfg.model, train, tokens[:3_900_000], tokens[3_900_000:], device=device,
                      precision=precision, compile=compile)
    t_warm = None
    for event in job:
        if getattr(event, "stage", None) == "model" and getattr(event, "step", None) == warm:
            _sync(device)
            t_warm = time.perf_counter()
    _sync(device)
    return steps * per_step / (time.perf_counter() - t_warm)


def activation_rate(cfg, device, n_batches: int) -> float:
    import numpy as np
    import torch

    from engine.data.activations import ModelActivationSource
    from engine.model import OneLayerTransformer

    torch.manual_seed(0)
    model = OneLayerTransformer(cfg.model).to(device)
    tokens = np.random.default_rng(1).integers(0, cfg.model.vocab_size, 2_000_000).astype(np.uint16)
    source = ModelActivationSource(model, tokens, batch_size=cfg.sae.batch_size,
                                   buffer_batches=cfg.sae.buffer_batches, device=device)
    batches = source.iter_batches(cfg.sae.batch_size)
    next(batches)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(batches).to(device)
    _sync(device)
    return n_batches * cfg.sae.batch_size / (time.perf_counter() - t0)


def sae_rate(cfg, recipe: str, device, steps: int) -> tuple[float, float]:
    """(activations/s of the recipe's trainer on a batch already on the device, its last L0)."""
    import torch

    from engine.train.recipes import make_trainer

    sae_cfg = cfg.sae.replace(recipe=recipe)
    trainer = make_trainer(sae_cfg, torch.device(device), steps + 5)
    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(4 * sae_cfg.batch_size, sae_cfg.d_in, generator=gen)).to(device)
    trainer.initialise(x)
    batch = x[:sae_cfg.batch_size].contiguous()
    for _ in range(5):
        trainer.step(batch)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        metrics = trainer.step(batch)
    _sync(device)
    return steps * sae_cfg.batch_size / (time.perf_counter() - t0), float(metrics.get("l0", float("nan")))


def run_components(args) -> None:
    import torch

    from bench_model import flops_per_token
    from engine.config import SAE_RECIPES, preset
    from engine.train.accel import accel_policy

    cfg = preset(args.preset)
    device = str(accel_policy(args.device, args.precision, args.compile).device)
    cuda = device.startswith("cuda")
    n = 8192 if cuda else 512
    print("\ncomponents:")
    accel_policy(device, "auto")                                    # TF32 on for the fp32 figure
    tf32 = matmul_tflops(device, torch.float32, n)
    bf16 = matmul_tflops(device, torch.bfloat16, n) if cuda else float("nan")
    print(f"  matmul {n}x{n}: fp32/TF32 {tf32:.3g} TFLOP/s, bf16 {bf16:.3g} TFLOP/s")
    flops = flops_per_token(cfg.model)
    for precision in dict.fromkeys(("fp32", accel_policy(device, args.precision).precision)):
        rate = model_rate(cfg, device, precision, args.compile, args.model_steps)
        peak = bf16 if accel_policy(device, precision).precision == "bf16" else tf32
        print(f"  model training ({precision}{', compiled' if args.compile else ''}): {rate:,.0f} tokens/s, "
              f"{rate * flops / 1e12:.3g} TFLOP/s = {rate * flops / 1e12 / peak:.1%} of the matmul rate; "
              f"the demo's {cfg.train.tokens:,} tokens in {cfg.train.tokens / rate:.1f} s")
    accel_policy(device, args.precision)
    rate = activation_rate(cfg, device, args.act_batches)
    print(f"  SAE inputs (ModelActivationSource: forward, host shuffle, copy): {rate:,.0f} activations/s; "
          f"the demo's {cfg.sae.n_activations:,} in {cfg.sae.n_activations / rate:.1f} s")
    for recipe in SAE_RECIPES:
        rate, l0 = sae_rate(cfg, recipe, device, args.sae_steps)
        print(f"  SAE trainer {recipe:>10}: {rate:,.0f} activations/s (L0 {l0:.1f}); "
              f"the demo's {cfg.sae.n_activations:,} in {cfg.sae.n_activations / rate:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N (or cpu for a dry run of the script)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--no-demo", action="store_true", help="only the components")
    parser.add_argument("--no-components", action="store_true", help="only the demo")
    parser.add_argument("--model-steps", type=int, default=300)
    parser.add_argument("--act-batches", type=int, default=48)
    parser.add_argument("--sae-steps", type=int, default=100)
    args = parser.parse_args()
    missing = _cuda_missing(args.device)
    if missing:
        print(f"bench_gpu_demo: skipped, {missing}; run it on a machine with a CUDA GPU")
        return 0
    header(args)
    rc = 0 if args.no_demo else run_demo(args)
    if not args.no_components:
        run_components(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
