"""Reading the field's files safely: JSON configs and tensor files, with one error class for all.

``load_tensors(path)`` opens ``.safetensors`` with safetensors and ``.pt`` / ``.pth`` with
``torch.load(..., weights_only=True)`` only, so an untrusted checkpoint never runs code: a pickled
object other than tensors, dicts, lists and numbers is refused with one line. Every path must be a
regular file (``engine.inputs.regular_file``: FIFOs, devices, folders refused before opening).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from engine.inputs import regular_file
from engine.errors import UserError

__all__ = ["InteropError", "read_json", "load_tensors", "find_one", "Fields", "check_finite", "TENSOR_SUFFIXES"]

TENSOR_SUFFIXES = (".safetensors", ".pth", ".pt")


class InteropError(UserError, ValueError):
    """A model or SAE from another library cannot be used as it is; the message says why and what to do."""


def read_json(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    path = regular_file(path, InteropError, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InteropError(f"{path}: the {what} is not UTF-8 text (undecodable byte at offset {exc.start}); "
                           "a JSON config is UTF-8") from None
    except RecursionError:
        raise InteropError(f"{path}: the {what} nests JSON too deeply to be a config") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InteropError(f"{path}: the {what} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InteropError(f"{path}: the {what} must be a JSON object, not {type(data).__name__}")
    return data


_MISSING = object()


class Fields:
    """Typed reads of one foreign config, field by field: a wrong type, an out-of-range or non-finite
    number is one ``InteropError`` naming the file and the key (``cfg.json: d_model must be a whole
    number from 1 to 65536, not 'sixty-four'``). ``names`` are aliases tried in order."""

    def __init__(self, cfg: dict[str, Any], where: str):
        self.cfg, self.where = cfg, where

    def _find(self, names: tuple[str, ...], default: Any) -> tuple[str, Any]:
        for name in names:
            if name in self.cfg:
                return name, self.cfg[name]
        if default is _MISSING:
            raise InteropError(f"{self.where} lacks {names[0]}")
        return names[0], default

    def _bad(self, name: str, must: str, value: Any) -> InteropError:
        shown = repr(value)
        return InteropError(f"{self.where}: {name} must be {must}, not {shown if len(shown) <= 60 else shown[:57] + '...'}")

    def integer(self, *names: str, default: Any = _MISSING, low: int = 0, high: int = 1 << 31) -> int:
        name, value = self._find(names, default)
        ok = isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer())
        if not ok or not low <= value <= high:
            raise self._bad(name, f"a whole number from {low:,} to {high:,}", value)
        return int(value)

    def number(self, *names: str, default: Any = _MISSING, low: float = -1e30, high: float = 1e30) -> float:
        name, value = self._find(names, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not low <= value <= high:
            raise self._bad(name, f"a finite number from {low:g} to {high:g}", value)
        return float(value)

    def choice(self, *names: str, options: tuple, default: Any = _MISSING) -> Any:
        name, value = self._find(names, default)
        try:
            known = value in options
        except TypeError:            # an unhashable value (a list, an object) is no option
            known = False
        if not known:
            raise self._bad(name, "one of " + ", ".join(repr(o) for o in options), value)
        return value

    def flag(self, *names: str, default: Any = _MISSING) -> bool:
        name, value = self._find(names, default)
        if not isinstance(value, bool) and value not in (0, 1, None):
            raise self._bad(name, "true or false", value)
        return bool(value)


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
            if "Unsupported global" in str(exc):
                raise InteropError(f"{path} holds pickled Python objects, not only tensors; it is refused "
                                   f"because loading it could run code. Save a plain state dict "
                                   f"(torch.save(model.state_dict(), ...)) or a .safetensors file") from None
            if "weights_only" in first.lower() or "weights only" in first.lower():
                reason = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("Unsupported")]
                first = reason[0] if reason else "damaged or not a checkpoint"
            raise InteropError(f"{path}: not a readable PyTorch file ({first})") from None
        tensors = _flatten(obj)
    if not tensors:
        raise InteropError(f"{path} holds no tensors")
    return {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v for k, v in tensors.items()}


def check_finite(t, name: str, where: str):
    """``t`` if every value is finite, else one line naming the tensor. One pass over the values: 16M
    float32 took 0.34-0.39 s on the busy 2-core dev machine (~22 ms per million; a Towards-Monosemanticity
    sized model plus its 4,096-feature SAE is ~5M values). Buffers such as attention masks (TransformerLens'
    IGNORE is -inf) are not checked, only the weights a loader takes."""
    import torch

    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise InteropError(f"{where}: {name} holds {bad:,} NaN or infinite value{'s' if bad != 1 else ''}; "
                           "the weights are damaged (or the run that made them diverged)")
    return t


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
