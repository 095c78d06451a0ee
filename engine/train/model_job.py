"""Training the one-layer transformer: ``train_model`` is a generator job.

It yields ``engine.events`` (Progress with step, tokens seen, tokens/s, ETA and the metrics
"train_loss", "lr" and, every eval_every steps, "val_loss"; the metric ``key`` is stored as the curve
``f"model/{key}"``) and returns a ``ModelTrainResult``. AdamW (``engine.train.optim.make_adamw``),
linear warm-up then cosine decay, gradient clipping, bf16 autocast on CUDA. Checkpoints hold only
tensors and plain numbers (``torch.save`` loaded with ``weights_only=True``) and are written
atomically; ``resume=True`` continues the same run.

Determinism: the batch at step s depends only on (seed, s), and the model's initialisation only on
the seed, so a run that is killed and resumed from a checkpoint sees exactly the same batches and
optimiser state as an uninterrupted one; on the same CPU and thread count the final weights are
bit-identical (tests/engine/test_training.py checks it).

Under torchrun (``engine.train.distributed``, docs/distributed.md) the model trains inside
DistributedDataParallel: every rank draws the same global batch ``batch_at(step)`` and trains on its
contiguous block of rows, so the data position is the global step whatever the world size (a
checkpoint resumes with any number of processes); rank 0 alone estimates the validation loss and
writes checkpoints.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator

import numpy as np
import torch

from engine.config import ModelConfig, TrainConfig
from engine.data.sources import CorpusError
from engine.device import tune_allocator
from engine.errors import CheckpointError, TrainingDiverged
from engine.events import Cancelled, CancelToken, Message, Progress, RateMeter, StageFinished, StageStarted
from engine.train import distributed
from engine.train.checkpoint import load_checkpoint, save_checkpoint
from engine.train.glimpse import baseline_losses, sample_predictions
from engine.model import OneLayerTransformer
from engine.train.accel import AccelPolicy, TokenBatcher, accel_policy, as_device
from engine.train.optim import make_adamw

__all__ = ["train_model", "ModelTrainResult", "batch_at", "lr_at", "estimate_loss", "unigram_entropy",
           "load_checkpoint_model", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "model_checkpoint.pt"


@dataclass
class ModelTrainResult:
    model: OneLayerTransformer            # trained, on the CPU, in eval mode
    config: ModelConfig
    train_config: TrainConfig
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, 2): (tokens, value)
    steps: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    final_val_loss: float = float("nan")


def batch_at(tokens: np.ndarray, step: int, batch_size: int, n_ctx: int,
             seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training batch for ``step``: random windows of n_ctx+1 tokens. Returns x, y: (B, T) int64."""
    if len(tokens) < n_ctx + 2:
        raise CorpusError(f"the corpus has only {len(tokens)} training tokens; at least {n_ctx + 2} are needed")
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - n_ctx - 1, size=batch_size)
    window = np.asarray(tokens[starts[:, None] + np.arange(n_ctx + 1)], dtype=np.int64)  # (B, T+1)
    window = torch.from_numpy(window)
    return window[:, :-1], window[:, 1:]


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.lr * cfg.min_lr_ratio at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


@torch.no_grad()
def estimate_loss(model: OneLayerTransformer, tokens: np.ndarray, n_batches: int, batch_size: int,
                  device: torch.device, seed: int = 1_000_003, policy: AccelPolicy | None = None) -> float:
    """Mean cross-entropy over a fixed set of random windows (the same windows every call), in the
    policy's precision (default: bf16 autocast on CUDA, as ``--precision auto``)."""
    was_training = model.training
    model.eval()
    losses = []
    for i in range(n_batches):
        x, y = batch_at(tokens, i, batch_size, model.cfg.n_ctx, seed)
        with (policy.autocast() if policy is not None else _autocast(device)):
            losses.append(model.loss(x.to(device), y.to(device)).item())
    model.train(was_training)
    return float(np.mean(losses))


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the corpus's unigram distribution: the loss of the best context-free model."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _save_checkpoint(path: Path, model, optimizer, step, tokens_seen, elapsed, curves, model_cfg, train_cfg) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "tokens_seen": tokens_seen,
        "elapsed": elapsed,
        "curves": {name: torch.tensor(np.asarray(points, dtype=np.float64).reshape(-1, 2))
                   for name, points in curves.items()},
        "model_config": json.dumps(model_cfg.to_dict()),
        "train_config": json.dumps(train_cfg.to_dict()),
    }
    save_checkpoint(path, state, "the model checkpoint")


_REQUIRED = ("model", "optimizer", "step", "elapsed", "curves", "model_config")


def _load_checkpoint(path: Path) -> dict:
    return load_checkpoint(path, _REQUIRED, "model checkpoint")


def load_checkpoint_model(path: str | Path) -> OneLayerTransformer:
    """The model stored in a training checkpoint (for ``--resume``-less reuse, e.g. the pipeline)."""
    state = _load_checkpoint(Path(path))
    cfg = ModelConfig.from_dict(json.loads(state["model_config"]))
    return OneLayerTransformer.from_state_dict(cfg, state["model"])


def _global_mean(loss: torch.Tensor) -> float:
    """The loss of the whole global batch: this rank's loss, averaged over the ranks under torchrun."""
    if not distributed.current().active:
        return loss.item()
    return distributed.sum_(loss.detach().float().reshape(1)).item() / distributed.current().world_size


def train_model(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    device: str = "auto",
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    cancel: CancelToken | None = None,
    precision: str = "auto",
    compile: bool = False,
) -> Generator[object, None, ModelTrainResult]:
    """Train a OneLayerTransformer on 1-D token arrays; yields events, returns ModelTrainResult.
    ``precision`` / ``compile``: the GPU path's choices (``engine.train.accel``); weights stay fp32."""
    policy = accel_policy(distributed.rank_device(as_device(device)), precision, compile)
    dev = policy.device
    distributed.check_divisible(train_cfg.batch_size, "the model's batch size (--batch-size)")
    if dev.type == "cpu":
        tune_allocator()
    tokens_per_step = train_cfg.batch_size * model_cfg.n_ctx
    total_steps = max(1, train_cfg.tokens // tokens_per_step)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None

    torch.manual_seed(train_cfg.seed)
    model = OneLayerTransformer(model_cfg).to(dev)
    optimizer = make_adamw(model, train_cfg, **policy.adamw_kwargs())
    batches = TokenBatcher(train_tokens, train_cfg.batch_size, model_cfg.n_ctx, train_cfg.seed, policy, batch_at)
    loss_of = policy.compiled(distributed.wrap_model(model, dev))   # model.loss; under torchrun inside DDP
    curves: dict[str, list[tuple[float, float]]] = {"model/train_loss": [], "model/val_loss": [], "model/lr": []}
    step, elapsed_before = 0, 0.0

    if resume and ckpt_path is not None and ckpt_path.exists():
        state = _load_checkpoint(ckpt_path)
        saved_cfg = ModelConfig.from_dict(json.loads(state["model_config"]))
        if saved_cfg != model_cfg:
            raise CheckpointError(f"the checkpoint in {checkpoint_dir} was made with a different model configuration; "
                             "start without --resume or choose another output folder")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before = int(state["step"]), float(state["elapsed"])
        curves.update({name: [tuple(row) for row in t.tolist()] for name, t in state["curves"].items()})

    yield StageStarted("model", total=total_steps * tokens_per_step, unit="tokens")
    for note in policy.notes:
        yield Message(note, level="warning")
    yield baseline_losses(train_tokens, val_tokens, model_cfg.vocab_size)        # what the model has to beat
    if resume and step:
        yield Message(f"resuming model training at step {step} of {total_steps}")

    meter = RateMeter(total_steps * tokens_per_step)
    t_start = time.perf_counter()
    model.train()
    saved_step = step if step else None          # the step of the checkpoint on disk, if any
    val_loss = float("nan")

    def checkpoint():
        nonlocal saved_step
        if ckpt_path is not None and distributed.is_writer():
            saved_step = step
            _save_checkpoint(ckpt_path, model, optimizer, step, step * tokens_per_step,
                             elapsed_before + time.perf_counter() - t_start, curves, model_cfg, train_cfg)

    while step < total_steps:
        if distributed.agree(cancel is not None and cancel.cancelled):
            checkpoint()
            raise Cancelled("model training cancelled", checkpoint=str(ckpt_path) if ckpt_path else None)
        lr = lr_at(step, total_steps, train_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = batches(step)
        x, y = distributed.block(x), distributed.block(y)        # this rank's rows of the global batch
        with policy.autocast():
            loss = loss_of(x, y)
        loss_value = _global_mean(loss)
        if not math.isfinite(loss_value):
            kept = (f"the checkpoint of step {saved_step} ({ckpt_path}) is kept" if saved_step is not None
                    else "no checkpoint had been written yet" + (
                        f" (the first is due at step {train_cfg.checkpoint_every})" if ckpt_path else ""))
            raise TrainingDiverged(f"model training diverged at step {step} (loss {loss_value}); {kept}. "
                                   "Try a lower learning rate.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        step += 1
        seen = step * tokens_per_step
        metrics = {"train_loss": loss_value, "lr": lr}
        if distributed.is_writer() and (step % train_cfg.eval_every == 0 or step == total_steps):
            val_loss = estimate_loss(model, val_tokens, train_cfg.eval_batches, train_cfg.batch_size, dev,
                                     policy=policy)
            metrics["val_loss"] = val_loss
            yield sample_predictions(model, val_tokens, step, seen)             # the live view's glimpse
        for key, value in metrics.items():
            curves[f"model/{key}"].append((seen, value))
        if ckpt_path is not None and (step % train_cfg.checkpoint_every == 0):
            checkpoint()
        rate, eta = meter.update(seen)
        yield Progress("model", done=seen, total=total_steps * tokens_per_step, step=step,
                       metrics=metrics, rate=rate, eta_s=eta, unit="tokens")

    if resume and step == total_steps and not math.isfinite(val_loss) and curves["model/val_loss"]:
        val_loss = float(curves["model/val_loss"][-1][1])  # resumed a finished run: report its result
        yield Progress("model", done=step * tokens_per_step, total=total_steps * tokens_per_step, step=step,
                       metrics={"val_loss": val_loss}, unit="tokens")
    checkpoint()
    uniform = math.log(model_cfg.vocab_size)
    if math.isfinite(val_loss) and val_loss > uniform:      # finite but useless: a too-high learning rate
        yield Message(f"the model learned nothing: its validation loss {val_loss:.2f} is above a uniform guess's "
                      f"ln V = {uniform:.2f}; its features will be noise. The learning rate {train_cfg.lr:g} is "
                      f"likely too high (the default is {TrainConfig.lr:g}); rerun with a lower --lr",
                      level="warning")
    seconds = elapsed_before + time.perf_counter() - t_start
    yield StageFinished("model", seconds=seconds, summary={"val_loss": val_loss})
    model = model.to("cpu").eval()
    return ModelTrainResult(
        model=model, config=model_cfg, train_config=train_cfg,
        curves={k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in curves.items()},
        steps=step, tokens_seen=step * tokens_per_step, seconds=seconds, final_val_loss=val_loss,
    )
