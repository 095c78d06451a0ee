"""How training uses the device: precision, TF32, fused optimiser steps, transfers, ``torch.compile``.

One ``AccelPolicy`` is decided per job from the device's capabilities and the user's flags
(``--device``, ``--precision``, ``--compile``) by ``decide_policy``, a pure function of a
``Capabilities`` record, so the CUDA branches are unit-tested on a CPU-only machine.

What the policy turns on, and why (docs/gpu.md has the measurements to make):

- ``precision``: ``bf16`` autocasts the transformer's forward/backward (weights, optimiser state and
  every saved tensor stay fp32, so a bundle is the same whatever the precision). ``auto`` is bf16
  on a CUDA GPU that supports it, fp32 elsewhere: a CPU without bf16 units (AVX512-BF16 / AMX) runs a
  bf16 matmul many times slower than fp32, so ``--precision bf16`` on the CPU is honoured with a
  warning (a milder note where oneDNN reports bf16 units).
- ``tf32``: on CUDA, fp32 matmuls (the SAE trainers, which write their passes by hand in fp32, the
  activation forward, the evaluation) use TF32 tensor cores, unless ``--precision fp32`` asks for
  exact IEEE fp32.
- ``fused_adamw``: ``torch.optim.AdamW(fused=True)`` on CUDA (one kernel for all parameters);
  ``foreach=True`` elsewhere. (The SAE trainers' Adam is fused wherever torch has the kernel.)
- ``pin_memory``: host batches (activations for the SAE) are copied through pinned staging buffers
  and sent with ``non_blocking=True`` on CUDA (``HostToDevice``).
- resident tokens: on CUDA the training token array is kept on the GPU when it fits
  (``resident_tokens_fit``), so a step sends B start offsets instead of a (B, T+1) window
  (``TokenBatcher``: the same batches as ``model_job.batch_at``, bit for bit).
- ``compile``: ``torch.compile`` of the transformer's loss, CUDA only (it needs triton); on the CPU
  the flag is ignored with one warning line: compiling a tiny model's loss with inductor on the shared
  2-core CPU took 170 s (same loss, gradients within 4e-8 of eager), more than a CPU demo run saves.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from engine.config import PRECISIONS, ConfigError
from engine.device import resolve_device

__all__ = ["Capabilities", "AccelPolicy", "decide_policy", "probe_capabilities", "accel_policy",
           "resident_tokens_fit", "window_starts", "TokenBatcher", "HostToDevice"]

RESIDENT_FRACTION = 1 / 8          # at most this share of the GPU's memory holds the token array


@dataclass(frozen=True)
class Capabilities:
    """What the device can do; ``probe_capabilities`` measures it, tests write it by hand."""

    device: str                    # "cpu", "cuda:0", "mps"
    bf16: bool = False             # native bf16 matmuls (CUDA: compute capability >= 8.0; CPU: oneDNN's bf16)
    total_memory: int = 0          # bytes of device memory (0: not a GPU)
    triton: bool = False           # torch.compile's GPU backend is importable
    name: str = ""

    @property
    def type(self) -> str:
        return self.device.split(":")[0]


@dataclass(frozen=True)
class AccelPolicy:
    device: torch.device
    precision: str                 # "bf16" or "fp32": what the model's forward/backward runs in
    tf32: bool                     # fp32 matmuls may use TF32 (CUDA)
    fused_adamw: bool
    pin_memory: bool
    compile: bool
    total_memory: int = 0
    notes: tuple[str, ...] = field(default=())   # warnings to show the user, one line each

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    def autocast(self):
        """The context the transformer's forward/backward runs in."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def apply(self) -> None:
        """Set the process-wide matmul precision for this policy (CUDA only: the CPU ignores TF32)."""
        if self.device.type != "cuda":
            return
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.set_float32_matmul_precision("high" if self.tf32 else "highest")

    def adamw_kwargs(self) -> dict[str, bool]:
        return {"fused": True} if self.fused_adamw else {"foreach": True}

    def compiled(self, fn: Callable) -> Callable:
        """``fn`` through ``torch.compile`` when the policy compiles, else ``fn`` itself."""
        if not self.compile:
            return fn
        return torch.compile(fn, dynamic=False)

    def describe(self) -> str:
        parts = [self.precision + (" autocast" if self.precision == "bf16" else "")]
        if self.tf32:
            parts.append("TF32 matmuls")
        parts.append("fused AdamW" if self.fused_adamw else "foreach AdamW")
        if self.pin_memory:
            parts.append("pinned transfers")
        if self.compile:
            parts.append("torch.compile")
        return ", ".join(parts)


def decide_policy(caps: Capabilities, precision: str = "auto", compile: bool = False) -> AccelPolicy:
    """The policy for a device with these capabilities and the user's flags; ``ConfigError`` for a
    request the device cannot honour."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}", "precision")
    cuda = caps.type == "cuda"
    notes: list[str] = []
    if precision == "auto":
        chosen = "bf16" if cuda and caps.bf16 else "fp32"
    elif precision == "bf16" and cuda and not caps.bf16:
        raise ConfigError(f"--precision bf16: {caps.name or 'this GPU'} has no native bf16 matmuls "
                          "(compute capability 8.0 or newer is needed); use --precision auto or fp32", "precision")
    else:
        chosen = precision
        if chosen == "bf16" and not cuda and not caps.bf16:
            notes.append(f"--precision bf16 on {caps.type.upper()}: without bf16 matmul units (AVX512-BF16 / AMX) "
                         "bf16 matmuls are many times slower than fp32 (15x measured on an AVX2 CPU); "
                         "expect a much slower run")
        elif chosen == "bf16" and not cuda:
            notes.append("--precision bf16 on the CPU: this CPU has bf16 matmul units, so it may pay; the results "
                         "differ from fp32 by bf16 rounding (auto keeps fp32 on CPUs)")
    use_compile = bool(compile)
    if use_compile and not cuda:
        notes.append(f"--compile is ignored on {caps.type.upper()}: torch.compile is used on CUDA GPUs only "
                     "(compiling even a tiny model's loss took 170 s on a 2-core CPU, more than it saves)")
        use_compile = False
    elif use_compile and not caps.triton:
        raise ConfigError("--compile needs triton, torch.compile's GPU backend, which is not installed; "
                          "install it (pip install triton) or run without --compile", "compile")
    return AccelPolicy(device=torch.device(caps.device), precision=chosen, tf32=cuda and precision != "fp32",
                       fused_adamw=cuda, pin_memory=cuda, compile=use_compile,
                       total_memory=caps.total_memory, notes=tuple(notes))


def probe_capabilities(device: torch.device) -> Capabilities:
    if device.type == "cpu":
        return Capabilities(device="cpu", bf16=_cpu_has_bf16())
    if device.type != "cuda":
        return Capabilities(device=device.type if device.index is None else str(device))
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device cuda:{index} was requested but only {torch.cuda.device_count()} CUDA "
                          "GPU(s) exist; use --device cuda:0 or auto", "device")
    props = torch.cuda.get_device_properties(index)
    return Capabilities(device=f"cuda:{index}", bf16=props.major >= 8, total_memory=int(props.total_memory),
                        triton=importlib.util.find_spec("triton") is not None, name=props.name)


def _cpu_has_bf16() -> bool:
    """oneDNN's own answer (AVX512-BF16 or AMX); False where the build cannot say."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def as_device(device: str | torch.device) -> torch.device:
    """A torch.device as given, or a name resolved by ``engine.device.resolve_device``."""
    return device if isinstance(device, torch.device) else resolve_device(device)


def accel_policy(device: str | torch.device, precision: str = "auto", compile: bool = False) -> AccelPolicy:
    """The policy for ``device`` (a name for ``engine.device.resolve_device`` or a torch.device), applied."""
    dev = as_device(device)
    policy = decide_policy(probe_capabilities(dev), precision, compile)
    policy.apply()
    return policy


# ---------------------------------------------------------------------------------- token batches
def resident_tokens_fit(n_bytes: int, policy: AccelPolicy) -> bool:
    """Keep a training token array of ``n_bytes`` (as int32) on the device? CUDA, and within budget."""
    return policy.device.type == "cuda" and 0 < n_bytes <= policy.total_memory * RESIDENT_FRACTION


def window_starts(n_tokens: int, step: int, batch_size: int, n_ctx: int, seed: int) -> np.ndarray:
    """The start offsets of step ``step``'s windows of n_ctx+1 tokens (``model_job.batch_at``'s draw)."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - n_ctx - 1, size=batch_size)


class TokenBatcher:
    """``batcher(step) -> (x, y)`` on the policy's device: the windows of ``batch_at(tokens, step, ...)``.

    Resident (the token array on the device): the start offsets go over and the device gathers the
    windows. Otherwise the host builds the batch (``batch_fn``, i.e. ``batch_at``) and sends it,
    through a pinned buffer when the policy pins."""

    def __init__(self, tokens: np.ndarray, batch_size: int, n_ctx: int, seed: int, policy: AccelPolicy,
                 batch_fn: Callable, resident: bool | None = None):
        self.batch_size, self.n_ctx, self.seed = batch_size, n_ctx, seed
        self.device = policy.device
        self.n_tokens = len(tokens)
        self.batch_fn = lambda step: batch_fn(tokens, step, batch_size, n_ctx, seed)
        self.resident = resident_tokens_fit(4 * len(tokens), policy) if resident is None else resident
        self.transfer = HostToDevice(policy.device, policy.pin_memory)
        if self.resident:
            self.batch_fn(0)                   # the same "corpus too short" error as batch_at
            self.tokens = torch.from_numpy(np.asarray(tokens, dtype=np.int32)).to(self.device)
            self.offsets = torch.arange(n_ctx + 1, device=self.device)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.device.type == "cpu" and not self.resident:
            return self.batch_fn(step)
        if not self.resident:
            x, y = self.batch_fn(step)
            window = self.transfer(torch.cat([x, y[:, -1:]], dim=1))
            return window[:, :-1], window[:, 1:]
        starts = window_starts(self.n_tokens, step, self.batch_size, self.n_ctx, self.seed)
        starts = self.transfer(torch.from_numpy(starts))
        window = self.tokens[starts[:, None] + self.offsets].long()      # (B, T+1)
        return window[:, :-1], window[:, 1:]


# ---------------------------------------------------------------------------------- host -> device
class HostToDevice:
    """Send host tensors to ``device``. With ``pin``: copy into one of two pinned staging buffers and
    send it with ``non_blocking=True``; a buffer is rewritten only after its previous copy finished
    (a CUDA event), so the host prepares batch n+1 while batch n is in flight."""

    def __init__(self, device: torch.device, pin: bool):
        self.device = torch.device(device)
        self.pin = bool(pin) and self.device.type == "cuda"
        self._slots: list[tuple[torch.Tensor, object] | None] = [None, None]
        self._turn = 0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self.device or (self.device.type == "cpu" and t.device.type == "cpu"):
            return t
        if not self.pin or t.device.type != "cpu":
            return t.to(self.device)
        i, self._turn = self._turn, 1 - self._turn
        slot = self._slots[i]
        if slot is None or slot[0].shape != t.shape or slot[0].dtype != t.dtype:
            slot = (torch.empty(t.shape, dtype=t.dtype, pin_memory=True), torch.cuda.Event())
            self._slots[i] = slot
        buffer, done = slot
        done.synchronize()                     # the last copy out of this buffer has finished
        buffer.copy_(t)
        out = buffer.to(self.device, non_blocking=True)
        done.record()
        return out

    def batches(self, batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        for batch in batches:
            yield self(batch)
