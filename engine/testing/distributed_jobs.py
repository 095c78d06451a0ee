"""Tiny seeded training jobs for the torchrun checks (tests/engine/test_distributed.py, its worker
tests/ddp_child.py, and benchmarks/bench_distributed.py): the same jobs in one process and in
several, so their results can be compared.

A spec is a plain dict (JSON-able, so a torchrun worker can be handed one in a file):
``{"vocab", "model": ModelConfig kwargs, "train": TrainConfig kwargs, "sae": SAEConfig kwargs
(without the recipe), "ckpt": checkpoint folder or absent, "resume": bool}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["tiny_jobs", "drive_until", "TINY_SPEC"]

TINY_SPEC = {
    "vocab": 64,
    "model": {"vocab_size": 64, "n_ctx": 16, "d_model": 16, "n_heads": 2, "d_mlp": 32},
    "train": {"tokens": 24 * 8 * 16, "batch_size": 8, "lr": 1e-2, "warmup_steps": 4, "eval_every": 6,
              "eval_batches": 2, "checkpoint_every": 6},
    "sae": {"d_in": 24, "d_sae": 48, "k": 4, "aux_k": 8, "batch_size": 256, "n_activations": 30 * 256,
            "dead_window": 1024, "checkpoint_every": 5, "lr": 4e-3, "l1_coeff": 1.0},
}


def tiny_jobs(spec: dict):
    """(the model-training job, recipe -> the SAE-training job) on seeded random tokens and activations."""
    from engine.config import ModelConfig, SAEConfig, TrainConfig
    from engine.data.activations import ArrayActivationSource
    from engine.train.model_job import train_model
    from engine.train.sae_job import train_sae

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, spec["vocab"], size=20_000).astype(np.uint16)
    model_job = train_model(ModelConfig(**spec["model"]), TrainConfig(**spec["train"]), tokens[:18_000],
                            tokens[18_000:], device="cpu", checkpoint_dir=spec.get("ckpt"),
                            resume=spec.get("resume", False))
    # no two rows alike: equal rows tie at batchtopk's k·B-th value, which the ranks keep all of
    acts = np.abs(rng.standard_normal((4096, spec["sae"]["d_in"]), dtype=np.float32)) * \
        (0.2 + rng.random((4096, 1), dtype=np.float32))

    def sae_job(recipe: str):
        cfg = SAEConfig(**{**spec["sae"], "recipe": recipe})
        ckpt = Path(spec["ckpt"]) / recipe if spec.get("ckpt") else None
        return train_sae(cfg, ArrayActivationSource(acts, seed=3), device="cpu", checkpoint_dir=ckpt,
                         resume=spec.get("resume", False))

    return model_job, sae_job


def drive_until(job, steps: int | None = None):
    """Run a job to its end and return its result; with `steps`, stop dead after that many Progress
    events instead (a crash: no cancel, no final checkpoint) and return None."""
    from engine.events import Progress

    done = 0
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, Progress) and steps is not None:
            done += 1
            if done >= steps:
                job.close()
                return None
