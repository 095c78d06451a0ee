"""What the Toy Models window runs off the GUI thread: a slider's retrain (latest request wins,
``retrain_job`` on the app's one ``LatestRunner``) and the longer jobs behind its buttons
(generators of engine events, run by ``superpos_app.workers.worker.Worker`` with progress and
cancel). Only numpy copies and frozen dataclasses
come back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.events import CancelToken
from engine.jobs import run_to_completion
from engine.toy.measures import ToyMeasures, measure
from engine.toy.model import ToyBatch, ToyConfig, importances, train_toys, train_toy
from superpos_app.workers.latest_runner import torch_on_one_thread

__all__ = ["retrain_job", "TrainedToy", "DimensionalitySweep", "dimensionality_sweep", "single_threaded",
           "SWEEP_DENSITIES"]

SWEEP_DENSITIES = np.geomspace(1.0, 0.003, 16)     # 1 − S from dense to very sparse


@dataclass(frozen=True)
class TrainedToy:
    cfg: ToyConfig
    W_MN: np.ndarray
    b_N: np.ndarray
    loss: float
    measures: ToyMeasures


def retrain_job(cfg: ToyConfig):
    """A ``LatestRunner`` job: the toy model of ``cfg`` trained (the runner times it). A newer request
    cancels it between steps (``Cancelled``)."""

    def job(token: CancelToken) -> TrainedToy:
        torch_on_one_thread()
        result = run_to_completion(train_toy(cfg, token))
        W_MN = result.W_IMN[0]
        return TrainedToy(cfg, W_MN, result.b_IN[0], float(result.loss_I[0]), measure(W_MN))
    return job


@dataclass(frozen=True)
class DimensionalitySweep:
    sparsity_I: np.ndarray            # (I,)
    dimensionality_IN: np.ndarray     # (I, N)
    norms_IN: np.ndarray              # (I, N)


def dimensionality_sweep(cfg: ToyConfig, cancel: CancelToken):
    """Generator job: the current n, m and importance trained at every sparsity of SWEEP_DENSITIES as
    one batch (stage "sweep"); returns a DimensionalitySweep."""
    S_I = 1.0 - SWEEP_DENSITIES
    spec = ToyBatch(cfg.n_features, cfg.n_hidden, S_I, np.tile(importances(cfg.n_features, cfg.importance_decay),
                                                              (len(S_I), 1)),
                    steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    result = yield from train_toys(spec, cancel, stage="sweep")
    ms = [measure(W) for W in result.W_IMN]
    return DimensionalitySweep(S_I, np.stack([m.dimensionality_N for m in ms]), np.stack([m.norms_N for m in ms]))


def single_threaded(job):
    """A generator job with torch on one thread while it runs on a worker thread (``torch_on_one_thread``):
    these tensors are too small for intra-op threads to pay, and on a busy 2-core machine their
    spin-waiting made a toy step ~10× slower (measured: 57 ms vs 6 ms per step)."""

    def run(token):
        torch_on_one_thread()
        return (yield from job(token))
    return run
