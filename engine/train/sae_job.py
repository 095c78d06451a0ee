"""The SAE training job: ``train_sae(cfg, source, ...)`` is a generator over the batches of an
activation source. *How* each step learns is the recipe's trainer (``engine.train.recipes``); this
loop owns what every recipe shares:

- the budget: total_steps = cfg.n_activations // cfg.batch_size steps of cfg.batch_size rows;
- initialisation on the first INIT_BATCHES batches (input scale, b_dec), then the source from batch 0;
- the recipe's scheduled resampling (``trainer.resample_steps``), which draws fresh batches;
- events: ``Progress(stage="sae")`` after every step, its metrics the trainer's, and the curves:
  the metric ``key`` is stored as the curve ``f"sae/{key}"`` (x = activations seen);
- checkpoints every cfg.checkpoint_every steps and on cancel (atomic), ``resume=True`` continuing
  exactly (same batches: the source is restarted at the batch index it had reached);
- divergence: a non-finite loss stops with TrainingDiverged, the last good checkpoint kept.

It returns an ``SAETrainResult`` whose SAE works on raw MLP activations (input scaling folded in).

Under torchrun (``engine.train.distributed``) the batch size is global: each rank trains on its
block of every global batch (``distributed.rank_source``), the initialisation and the resampling see
the gathered global batches, the trainer all-reduces its gradients (``SAETrainer.sync_``), and rank 0
alone writes checkpoints; ``data_pos`` counts global batches, so any world size resumes a checkpoint.

Shape legend: B batch, D d_in.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Iterator, Protocol

import numpy as np
import torch

from engine import events
from engine.config import ConfigError, SAEConfig
from engine.data.activations import ActivationFileError
from engine.errors import CheckpointError, TrainingDiverged
from engine.train.accel import HostToDevice, accel_policy, as_device
from engine.train import distributed
from engine.train.checkpoint import load_checkpoint, save_checkpoint
from engine.sae import SparseAutoencoder
from engine.train.recipes import make_trainer

__all__ = ["train_sae", "SAETrainResult", "ActivationSource", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "sae_checkpoint.pt"
INIT_BATCHES = 2              # batches used for the input scale and the geometric median


class ActivationSource(Protocol):
    """What train_sae needs: batches (B, D) float32, the same sequence for the same start index."""

    d_in: int

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]: ...


@dataclass
class SAETrainResult:
    sae: SparseAutoencoder                  # folded to raw activations, eval mode, on the CPU
    curves: dict[str, np.ndarray]           # "sae/<metric>" -> (n, 2) columns (activations seen, value)
    seconds: float
    n_activations: int
    steps: int = 0
    scale: float = 1.0                      # s of x_s = s·x used during training (already folded)
    final: dict[str, float] = field(default_factory=dict)


def train_sae(cfg: SAEConfig, source: ActivationSource, device: str | torch.device = "cpu",
              checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
              cancel: events.CancelToken | None = None,
              precision: str = "auto") -> Generator[object, None, SAETrainResult]:
    """Generator: train an SAE on `source`; yields StageStarted("sae"), Progress per step and
    StageFinished, returns SAETrainResult.

    Raises events.Cancelled (after saving a checkpoint) when `cancel` is set, and
    TrainingDiverged when the loss becomes NaN/inf (the last good checkpoint is kept).
    ``precision``: "fp32" keeps CUDA's fp32 matmuls exact; otherwise they use TF32 (``engine.train.accel``).
    """
    policy = accel_policy(distributed.rank_device(as_device(device)), "fp32" if precision == "fp32" else "auto")
    device = policy.device
    if source.d_in != cfg.d_in:
        raise ConfigError(f"activations have {source.d_in} columns but the SAE expects d_in={cfg.d_in}")
    distributed.check_divisible(cfg.batch_size, "the SAE batch size (--batch-size)")
    source = distributed.rank_source(source)      # under torchrun: this rank's block of each global batch
    total_steps = max(1, cfg.n_activations // cfg.batch_size)
    total = total_steps * cfg.batch_size
    trainer = make_trainer(cfg, device, total_steps)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    cfg_json = json.dumps(cfg.to_dict(), sort_keys=True)
    curves: dict[str, list[tuple[float, float]]] = {}
    data_pos = 0                      # batches consumed from the source (training + resampling)
    seconds_before = 0.0
    resamples_done = 0

    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, _REQUIRED, "SAE checkpoint")
        if state.get("config") != cfg_json:
            raise CheckpointError(f"checkpoint {ckpt_path} was made with a different SAE configuration; "
                             "delete it or train without resume")
        trainer.load_state_dict(state["trainer"])
        data_pos = int(state["data_pos"])
        seconds_before = float(state["seconds"])
        resamples_done = int(state["resamples_done"])
        curves = {name: [tuple(row) for row in points.tolist()] for name, points in state["curves"].items()}
    else:
        init_batches = []
        for batch in source.iter_batches(cfg.batch_size, start=0):
            init_batches.append(batch)
            if len(init_batches) >= INIT_BATCHES:
                break
        if not init_batches:
            raise ActivationFileError("the activation source gave no data")
        trainer.initialise(torch.cat([distributed.gather_rows(b) for b in init_batches]))

    def save_checkpoint(seconds: float) -> str | None:
        if ckpt_path is None:
            return None
        if not distributed.is_writer():
            return str(ckpt_path)
        _save(ckpt_path, {
            "config": cfg_json,
            "trainer": trainer.state_dict(),
            "data_pos": data_pos,
            "seconds": seconds,
            "resamples_done": resamples_done,
            "curves": {name: torch.tensor(points, dtype=torch.float64).reshape(-1, 2)
                       for name, points in curves.items()},
        })
        return str(ckpt_path)

    yield events.StageStarted("sae", total=total, unit="activations")
    t_start = time.perf_counter()
    meter = events.RateMeter(total)
    last_metrics: dict[str, float] = {}
    batches = HostToDevice(device, policy.pin_memory).batches(source.iter_batches(cfg.batch_size, start=data_pos))
    while trainer.steps_done < total_steps:
        elapsed = seconds_before + time.perf_counter() - t_start
        if distributed.agree(cancel is not None and cancel.cancelled):
            raise events.Cancelled("SAE training cancelled", checkpoint=save_checkpoint(elapsed))
        if resamples_done < len(trainer.resample_steps) and \
                trainer.steps_done >= trainer.resample_steps[resamples_done]:
            inputs = []
            for _ in range(trainer.resample_batches):
                inputs.append(distributed.gather_rows(_next_batch(batches)))   # the global batch
                data_pos += 1
            trainer.resample_dead_(torch.cat(inputs), seed=cfg.seed * 1_000_003 + trainer.steps_done)
            resamples_done += 1
            continue
        x_BD = _next_batch(batches)
        data_pos += 1
        metrics = trainer.step(x_BD)
        if not math.isfinite(metrics["loss"]):
            raise TrainingDiverged(
                f"SAE loss became {metrics['loss']} at step {trainer.steps_done} "
                f"({trainer.n_seen:,} activations); try a lower learning rate or check the activations "
                "for NaN/inf" + (f"; last good checkpoint: {ckpt_path}" if ckpt_path and ckpt_path.exists() else ""))
        last_metrics = metrics
        for key, value in metrics.items():
            curves.setdefault(f"sae/{key}", []).append((trainer.n_seen, value))
        if ckpt_path is not None and cfg.checkpoint_every > 0 and trainer.steps_done % cfg.checkpoint_every == 0:
            save_checkpoint(seconds_before + time.perf_counter() - t_start)
        rate, eta = meter.update(trainer.n_seen)
        yield events.Progress(stage="sae", done=trainer.n_seen, total=total, step=trainer.steps_done,
                              metrics={k: float(v) for k, v in metrics.items()}, rate=rate, eta_s=eta,
                              unit="activations")
    seconds = seconds_before + time.perf_counter() - t_start
    if ckpt_path is not None:
        save_checkpoint(seconds)
    yield events.StageFinished("sae", seconds=time.perf_counter() - t_start,
                               summary={k: float(v) for k, v in last_metrics.items()})
    return SAETrainResult(sae=trainer.to_sae(), curves=_curves_to_arrays(curves), seconds=seconds,
                          n_activations=trainer.n_seen, steps=trainer.steps_done, scale=trainer.scale,
                          final={k: float(v) for k, v in last_metrics.items()})


_REQUIRED = ("config", "trainer", "data_pos", "seconds", "resamples_done", "curves")


def _save(path: Path, state: dict[str, Any]) -> None:
    save_checkpoint(path, state, "the SAE checkpoint")


def _curves_to_arrays(curves: dict[str, list]) -> dict[str, np.ndarray]:
    return {name: np.asarray(points, dtype=np.float64).reshape(-1, 2) for name, points in curves.items()}


def _next_batch(batches: Iterator[torch.Tensor]) -> torch.Tensor:
    try:
        return next(batches)
    except StopIteration:
        raise ActivationFileError("the activation source ran out of data") from None
