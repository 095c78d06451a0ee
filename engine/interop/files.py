"""Reading the field's files safely: JSON configs and tensor files, with one error class for all.

``load_tensors(path)`` opens ``.safetensors`` with safetensors and ``.pt`` / ``.pth`` with
``torch.load(..., weights_only=True)`` only, so an untrusted checkpoint never runs code: a pickled
object other than tensors, dicts, lists and numbers is refused with one line. Every path must be a
regular file (``engine.inputs.regular_file``: FIFOs, devices, folders refused before opening).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine.inputs import regular_file
from engine.errors import UserError

__all__ = ["InteropError", "read_json", "load_tensors", "find_one", "TENSOR_SUFFIXES"]

TENSOR_SUFFIXES = (".safetensors", ".pth", ".pt")


class InteropError(UserError, ValueError):
    """A model or SAE from another library cannot be used as it is; the message says why and what to do."""


def read_json(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    path = regular_file(path, InteropError, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InteropError(f"{path}: the {what} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InteropError(f"{path}: the {what} must be a JSON object, not {type(data).__name__}")
    return data


def _flatten(obj: Any, prefix: str = "") -> dict:
    import torch

    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        out: dict = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {}


def load_tensors(path: str | os.PathLike, what: str = "weights") -> dict:
    """name -> float32 CPU tensor, from a .safetensors file or a .pt/.pth state dict (nested dicts are
    flattened with dots, non-tensor entries dropped)."""
    import torch

    path = regular_file(path, InteropError, what)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise InteropError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle raises UnpicklingError, RuntimeError, EOFError, ... on bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                raise InteropError(f"{path} holds pickled Python objects, not only tensors; it is refused "
                                   f"because loading it could run code. Save a plain state dict "
                                   f"(torch.save(model.state_dict(), ...)) or a .safetensors file") from None
            raise InteropError(f"{path}: not a readable PyTorch file ({first})") from None
        tensors = _flatten(obj)
    if not tensors:
        raise InteropError(f"{path} holds no tensors")
    return {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}


def find_one(folder: Path, patterns: tuple[str, ...], what: str) -> Path:
    """The one file in ``folder`` matching the first pattern that matches anything (sorted, so
    ``*final.pth`` wins over checkpoints only through its pattern coming first)."""
    for pattern in patterns:
        hits = sorted(p for p in folder.glob(pattern) if p.is_file() or p.is_fifo())
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            names = ", ".join(p.name for p in hits[:4])
            raise InteropError(f"{folder} holds several {what} files ({names}); give the one to use as the path")
    raise InteropError(f"{folder} has no {what} file ({' or '.join(patterns)})")
