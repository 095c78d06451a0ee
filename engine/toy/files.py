"""A toy run's arrays as one ``.npz`` file (numpy's own zip of arrays), written atomically through
``engine.fileio``: built in memory, then one ``write_bytes`` (temporary name, fsync, rename)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from engine.fileio import write_bytes

__all__ = ["write_npz"]


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray | float | int | str]) -> Path:
    """Write ``arrays`` (names → arrays or scalars) to ``path``; nothing half-written is ever left there."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return write_bytes(path, buffer.getbuffer(), what="the toy-model file")
