"""Training a family of SAEs (several dictionary sizes) from ONE pass over an activation source.

``train_sae_family(cfgs, source, ...)`` reads each batch of activations once and gives it to every
member's trainer (``engine.train.recipes``), so one model forward feeds every SAE: the cost of the
stream (the model's forward passes in ``ModelActivationSource``) is paid once, not once per size.

Each member keeps what ``train_sae`` would give it: its own budget (cfg.n_activations // batch_size
steps), initialisation on the first ``INIT_BATCHES`` batches, its recipe's scheduled resampling (a
member due to resample collects the next ``resample_batches`` batches of the shared stream instead
of stepping on them — the others step on those batches as usual), its curves (``sae/<key>``) and its
final metrics. Members share the batch size (one stream); the pass ends when the longest budget is spent.

Not done here: checkpoints and ``resume`` (a cancelled family starts its SAEs again; the model
before it is still resumed by the pipeline). A single SAE goes through ``train_sae``, which has both.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Generator, Sequence

import torch

from engine import events
from engine.config import ConfigError, SAEConfig
from engine.data.activations import ActivationFileError
from engine.errors import TrainingDiverged
from engine.train.recipes import make_trainer
from engine.train.sae_job import INIT_BATCHES, ActivationSource, SAETrainResult, _curves_to_arrays, _next_batch

__all__ = ["train_sae_family", "family_configs", "MEMBER_SEED_STRIDE"]

MEMBER_SEED_STRIDE = 1_000_033        # member i initialises from seed + i·stride (member 0: the run's own)


def family_configs(sae: SAEConfig, sizes: Sequence[int]) -> list[SAEConfig]:
    """One SAE configuration per size. Each member gets its own initialisation seed: with one seed the
    first 512 decoder rows of a 4,096-wide SAE would start as the 512-wide one's rows (torch draws
    them row by row), so matches across sizes would partly be the shared start, not learning. Member 0
    keeps the run's seed, so it is the SAE a single-size run of that size trains."""
    return [sae.replace(d_sae=int(d), seed=(sae.seed + i * MEMBER_SEED_STRIDE) % 2**32) for i, d in enumerate(sizes)]


@dataclass
class _Member:
    cfg: SAEConfig
    trainer: object
    total_steps: int
    curves: dict[str, list] = field(default_factory=dict)
    resamples_done: int = 0
    pending: list = field(default_factory=list)       # batches collected for a due resample
    last: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.trainer.steps_done >= self.total_steps

    def resample_due(self) -> bool:
        t = self.trainer
        return self.resamples_done < len(t.resample_steps) and t.steps_done >= t.resample_steps[self.resamples_done]

    def feed(self, x_BD: torch.Tensor) -> None:
        """Give this member one batch: collect it for a due resample, or take one training step."""
        t = self.trainer
        t0 = time.perf_counter()
        if self.resample_due():
            self.pending.append(x_BD)
            if len(self.pending) >= t.resample_batches:
                t.resample_dead_(torch.cat(self.pending), seed=self.cfg.seed * 1_000_003 + t.steps_done)
                self.pending.clear()
                self.resamples_done += 1
        else:
            metrics = t.step(x_BD)
            if not math.isfinite(metrics["loss"]):
                raise TrainingDiverged(
                    f"the SAE with d_sae={self.cfg.d_sae} diverged (loss {metrics['loss']}) at step "
                    f"{t.steps_done}; try a lower learning rate")
            self.last = metrics
            for key, value in metrics.items():
                self.curves.setdefault(f"sae/{key}", []).append((t.n_seen, value))
        self.seconds += time.perf_counter() - t0

    def result(self) -> SAETrainResult:
        t = self.trainer
        return SAETrainResult(sae=t.to_sae(), curves=_curves_to_arrays(self.curves), seconds=self.seconds,
                              n_activations=t.n_seen, steps=t.steps_done, scale=t.scale,
                              final={k: float(v) for k, v in self.last.items()})


def train_sae_family(cfgs: Sequence[SAEConfig], source: ActivationSource, device: str | torch.device = "cpu",
                     cancel: events.CancelToken | None = None) -> Generator[object, None, list[SAETrainResult]]:
    """Generator: train one SAE per config from one pass over ``source``; yields StageStarted("sae"),
    a Progress per batch (metrics: the first member's, plus ``loss_<d_sae>`` of each) and
    StageFinished; returns the members' ``SAETrainResult`` in the order of ``cfgs``."""
    if not cfgs:
        raise ConfigError("a family needs at least one SAE configuration")
    device = torch.device(device)
    batch = cfgs[0].batch_size
    for cfg in cfgs:
        if cfg.batch_size != batch:
            raise ConfigError("the SAEs of one family share one activation stream: give them one batch size")
        if source.d_in != cfg.d_in:
            raise ConfigError(f"activations have {source.d_in} columns but the SAE expects d_in={cfg.d_in}")
    members = []
    for cfg in cfgs:
        steps = max(1, cfg.n_activations // batch)
        members.append(_Member(cfg, make_trainer(cfg, device, steps), steps))
    init = []
    for x in source.iter_batches(batch, start=0):
        init.append(x)
        if len(init) >= INIT_BATCHES:
            break
    if not init:
        raise ActivationFileError("the activation source gave no data")
    sample = torch.cat(init)
    for m in members:
        m.trainer.initialise(sample)

    # the pass is as long as the longest member's steps plus the batches its resamples take
    total_batches = max(m.total_steps + len(m.trainer.resample_steps) * m.trainer.resample_batches for m in members)
    total = total_batches * batch
    yield events.StageStarted("sae", total=total, unit="activations")
    t_start = time.perf_counter()
    meter = events.RateMeter(total)
    batches = source.iter_batches(batch, start=0)
    seen = 0
    while not all(m.finished for m in members):
        if cancel is not None and cancel.cancelled:
            raise events.Cancelled("SAE family training cancelled (a family is not checkpointed)")
        x_BD = _next_batch(batches)
        seen += 1
        for m in members:
            if not m.finished:
                m.feed(x_BD)
        head = members[0].last
        metrics = {k: float(v) for k, v in head.items()}
        metrics.update({f"loss_{m.cfg.d_sae}": float(m.last["loss"]) for m in members if "loss" in m.last})
        rate, eta = meter.update(min(seen * batch, total))
        yield events.Progress(stage="sae", done=min(seen * batch, total), total=total, step=seen,
                              metrics=metrics, rate=rate, eta_s=eta, unit="activations")
    yield events.StageFinished("sae", seconds=time.perf_counter() - t_start,
                               summary={f"loss_{m.cfg.d_sae}": float(m.last.get("loss", float("nan")))
                                        for m in members})
    return [m.result() for m in members]
