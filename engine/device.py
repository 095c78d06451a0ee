"""Device choice and CPU performance settings."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

from engine.config import ConfigError, is_device_name

_ALLOCATOR_TUNED = False


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit choice that is missing is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not is_device_name(name):
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps", "device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was requested but no CUDA GPU is available; use --device auto or cpu",
                          "device")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' was requested but Apple MPS is not available; use --device auto or cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def tune_allocator() -> bool:
    """Stop glibc from returning large freed blocks to the OS after every training step.

    PyTorch's CPU allocator hands big tensors straight to malloc, and glibc serves blocks over the
    mmap threshold with fresh mmap()s that it unmaps on free. A training step that allocates the
    same 64 MB logits tensor each time then pays for zero-filling page faults on every step
    (~25% of CPU time measured here). Raising the mmap and trim thresholds keeps those pages in
    the heap for reuse. Returns True when the setting was applied (glibc only).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        # No mmap()ed chunks at all (the mmap threshold is capped at 32 MB, below our logits), and
        # never trim the heap top: freed blocks stay mapped and are reused by the next step.
        ok = libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 62)
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = bool(ok)
    return _ALLOCATOR_TUNED
