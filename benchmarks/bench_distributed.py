"""How equal 2 torchrun processes are to 1 process on the same global batch (CPU, gloo).

    python benchmarks/bench_distributed.py [--nproc 2]

Trains the tiny seeded model and an SAE of every recipe (``engine.testing.distributed_jobs``) once
under the real torchrun (``--nproc`` gloo processes, c10d rendezvous on 127.0.0.1) and once in this
process, and prints, per job, the largest difference of any weight and of the loss curve relative
to the single-process value's largest magnitude. It prints agreement, not speed: on a shared 2-core
machine several processes are no faster (the seconds are printed only to say what the check cost).

Measured 2026-12-02 on the shared 2-core machine, `python benchmarks/bench_distributed.py`:

    [     model] weights 4.2e-04 (attn.qkv.bias; every other tensor <= 6.3e-07) | loss curve 1.1e-07
    [      topk] weights 1.7e-07 (b_enc; every other tensor <= 1.3e-07) | loss curve 3.4e-07
    [ batchtopk] weights 4.9e-07 (W_enc; every other tensor <= 2.7e-07) | loss curve 2.3e-07
    [      2023] weights 2.4e-07 (W_dec; every other tensor <= 1.9e-07) | loss curve 8.6e-08
    [   2024-04] weights 1.9e-07 (W_dec; every other tensor <= 1.7e-07) | loss curve 1.5e-07
    [  jumprelu] weights 1.3e-07 (W_dec; every other tensor <= 1.3e-07) | loss curve 1.7e-07
    [matryoshka] weights 1.2e-06 (W_enc; every other tensor <= 2.0e-07) | loss curve 2.6e-07
    2 processes under torchrun 35 s (start-up included), 1 process 8 s

The key bias has no true gradient (softmax is shift-invariant), so Adam turns its rounding noise
into steps of the learning rate's size in both runs alike; docs/distributed.md explains the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = ("topk", "batchtopk", "2023", "2024-04", "jumprelu", "matryoshka")


def _train_all(spec: dict) -> dict:
    import torch

    from engine.testing.distributed_jobs import drive_until, tiny_jobs

    torch.set_num_threads(1)
    model_job, sae_job = tiny_jobs(spec)
    model = drive_until(model_job)
    out = {"model": (model.model.state_dict(), torch.from_numpy(model.curves["model/train_loss"]))}
    for recipe in RECIPES:
        result = drive_until(sae_job(recipe))
        out[recipe] = (result.sae.state_dict(), torch.from_numpy(result.curves["sae/loss"]))
    return out


def _worker(spec_path: str, out_path: str) -> int:
    import torch

    from engine.train import distributed

    with distributed.session("cpu"):
        results = _train_all(json.loads(Path(spec_path).read_text()))
        if distributed.is_writer():
            torch.save(results, out_path)
    return 0


def _rel(a, b) -> float:
    import torch

    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(*args.worker)

    import torch

    from engine.testing.distributed_jobs import TINY_SPEC

    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "two.pt"
        spec_path.write_text(json.dumps(TINY_SPEC))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.nproc),
                        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--max-restarts", "0",
                        __file__, "--worker", str(spec_path), str(out_path)],
                       check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        t_many = time.perf_counter() - t0
        many = torch.load(out_path, weights_only=True)
    t0 = time.perf_counter()
    one = _train_all(TINY_SPEC)
    t_one = time.perf_counter() - t0
    for job, (state_1, curve_1) in one.items():
        state_n, curve_n = many[job]
        diffs = {name: _rel(state_n[name], value) for name, value in state_1.items()}
        worst = max(diffs, key=diffs.get)
        others = max((v for k, v in diffs.items() if k != worst), default=0.0)
        print(f"[{job:>10}] weights {diffs[worst]:.1e} ({worst}; every other tensor <= {others:.1e}) | "
              f"loss curve {_rel(curve_n[:, 1], curve_1[:, 1]):.1e}")
    print(f"{args.nproc} processes under torchrun {t_many:.0f} s (start-up included), 1 process {t_one:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
