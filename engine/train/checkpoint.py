"""Training checkpoints on disk: ``save_checkpoint`` and ``load_checkpoint`` (model and SAE jobs).

A checkpoint is a dict of tensors and plain numbers / strings. It is serialised in memory first
(``torch.save`` into a buffer), so its size is known: the free space is checked before anything is
written, the bytes go out through ``engine.fileio.write_bytes`` (atomic; a full disk is one
``WriteError`` line, not torch's ``[enforce fail at inline_container.cc]``), and a failed save never
leaves half a checkpoint.

Loading uses ``weights_only=True``: a checkpoint holding pickled Python objects (which could run code)
is refused with one line of our own; torch's warnings and multi-line explanations never reach the user.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch

from engine.inputs import regular_file
from engine.errors import CheckpointError
from engine.fileio import write_bytes

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], what: str = "the checkpoint") -> Path:
    """Write ``state`` to ``path`` atomically (free space checked first); returns ``path``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes(path, buffer.getbuffer(), what)


def _looks_pickled(path: Path) -> bool:
    """Whether ``path`` is a torch.save archive (a zip) or a bare pickle (protocol 2+ starts with 0x80)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_checkpoint(path: str | os.PathLike, required: Iterable[str] = (), what: str = "checkpoint") -> dict:
    """The dict in a checkpoint written by ``save_checkpoint``; ``CheckpointError`` (one line) if the
    file cannot be read, holds pickled objects, or lacks one of the ``required`` keys."""
    path = regular_file(path, CheckpointError, what)      # a FIFO or folder would hang torch.load
    fresh = "delete it (or choose another folder) to start afresh"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _looks_pickled(path):      # torch says "weights only load failed" for any bytes at all
            raise CheckpointError(f"the {what} {path} is damaged or not a PyTorch checkpoint; {fresh}") from None
        raise CheckpointError(f"the {what} {path} holds pickled Python objects, not only tensors; superpos "
                              f"does not load such files (they can run code): {fresh}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read the {what} {path}: {exc.strerror or type(exc).__name__}") from None
    except Exception:  # torch's reader: a truncated, damaged or foreign file
        raise CheckpointError(f"the {what} {path} is damaged or not a PyTorch checkpoint; {fresh}") from None
    missing = [key for key in required if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"the {what} {path} is not a superpos {what} (it lacks {', '.join(missing)}); "
                              f"{fresh}")
    return state
