"""The evaluation's metric names and their JSON form, without torch (``superpos eval`` on a stored
evaluation, ``superpos info`` and the app read them; only computing them needs ``evaluate.py``)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["METRIC_KEYS", "json_safe"]

METRIC_KEYS = ("mse", "fvu", "l0", "dead_fraction", "ultralow_fraction", "loss_clean", "loss_sae",
               "loss_zero_ablation", "loss_recovered", "n_tokens")


def json_safe(metrics: dict) -> dict:
    """The metrics without the numpy array, NaN/inf turned into None (strict JSON)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, np.ndarray):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out
