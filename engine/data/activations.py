"""Where SAE training data comes from: MLP activations streamed from the model, or a file.

Every source yields float32 batches (B, D) through ``iter_batches(batch_size, start)``, and the
same (seed, start) always gives the same batches: a resumed SAE run continues on exactly the data
an uninterrupted one would have seen, without replaying what came before.

``ModelActivationSource`` never holds more than a shuffling buffer of activations. Generation g
runs the model on H = buffer_batches·batch_size/2 token positions from random context windows
(chosen by seed and g) and shuffles them into two halves A_g, B_g. Chunk r of the stream is a
shuffle of B_r ∪ A_{r+1}: the buffer is refilled by replacing half of it, and any chunk can be
rebuilt from two generations. Positions within a context are all kept (or a random subset with
``positions_per_context``) — the shuffle keeps one batch from being a few whole contexts.

Shape legend: B batch, D d_in (MLP neurons), N rows, T context positions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from engine.data.sources import CorpusError
from engine.errors import UserError
from engine.fileio import atomic_path

__all__ = ["ModelActivationSource", "ArrayActivationSource", "ActivationFileError", "cache_activations",
           "load_activation_array"]


class ActivationFileError(UserError, ValueError):
    """An activations file that cannot be used; the message says why and what is expected."""


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, *stream])


class ModelActivationSource:
    def __init__(self, model, tokens: np.ndarray, n_ctx: int | None = None, batch_size: int = 4096,
                 buffer_batches: int = 16, seed: int = 0, device: str | torch.device = "cpu",
                 positions_per_context: int | None = None, forward_batch: int = 64):
        self.model = model
        self.tokens = tokens
        self.n_ctx = int(n_ctx or model.cfg.n_ctx)
        self.batch_size = batch_size
        self.buffer_batches = max(2, int(buffer_batches))
        self.seed = seed
        self.device = torch.device(device)
        self.positions_per_context = positions_per_context
        self.forward_batch = forward_batch
        self.d_in = model.cfg.d_mlp
        if tokens.ndim != 1:
            raise ValueError("tokens must be a 1-D array of token ids")
        if len(tokens) < self.n_ctx:
            raise CorpusError(f"only {len(tokens)} tokens; need at least one context of {self.n_ctx}")

    def _half(self, batch_size: int) -> int:
        return max(1, self.buffer_batches // 2) * batch_size

    @torch.no_grad()
    def _generation(self, g: int, batch_size: int) -> np.ndarray:
        """H activations from random contexts, shuffled (H, D) float32."""
        H = self._half(batch_size)
        T = self.n_ctx
        per_ctx = min(T, self.positions_per_context or T)
        n_contexts = -(-H // per_ctx)
        rng = _rng(self.seed, 1, g)
        starts = rng.integers(0, len(self.tokens) - T + 1, size=n_contexts)
        out_ND = np.empty((n_contexts * per_ctx, self.d_in), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        row = 0
        for i in range(0, n_contexts, self.forward_batch):
            s = starts[i:i + self.forward_batch]
            idx_BT = np.asarray(self.tokens[s[:, None] + np.arange(T)], dtype=np.int64)
            acts_BTD = self.model.mlp_acts(torch.from_numpy(idx_BT).to(self.device)).float().cpu().numpy()
            if per_ctx < T:
                pos = np.stack([rng.choice(T, per_ctx, replace=False) for _ in range(len(s))])
                acts_BTD = np.take_along_axis(acts_BTD, pos[:, :, None], axis=1)
            flat = acts_BTD.reshape(-1, self.d_in)
            out_ND[row:row + len(flat)] = flat
            row += len(flat)
        if was_training:
            self.model.train()
        out_ND = out_ND[rng.permutation(len(out_ND))[:H]]
        return out_ND

    def iter_batches(self, batch_size: int | None = None, start: int = 0) -> Iterator[torch.Tensor]:
        batch_size = batch_size or self.batch_size
        H = self._half(batch_size)
        per_chunk = H // batch_size
        r, skip = divmod(start, per_chunk)
        prev = self._generation(r, batch_size)
        half = H // 2
        while True:
            cur = self._generation(r + 1, batch_size)
            chunk = np.concatenate([prev[half:], cur[:half]])           # B_r ∪ A_{r+1}: (H, D)
            chunk = chunk[_rng(self.seed, 2, r).permutation(len(chunk))]
            for j in range(skip, per_chunk):
                yield torch.from_numpy(np.ascontiguousarray(chunk[j * batch_size:(j + 1) * batch_size]))
            skip = 0
            prev = cur
            r += 1


def load_activation_array(path: str | os.PathLike, dataset: str | None = None):
    """Open an [n, d_in] float array in a .npy (memory-mapped) or .h5/.hdf5 file."""
    path = Path(path)
    if not path.exists():
        raise ActivationFileError(f"activations file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as exc:
            raise ActivationFileError(f"{path} is not a readable .npy file ({exc})") from None
        where = str(path)
    elif suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                if dataset is not None:
                    if dataset not in h5 or not isinstance(h5[dataset], h5py.Dataset):
                        raise ActivationFileError(f"{path} has no dataset {dataset!r}")
                    ds = h5[dataset]
                else:
                    found = []
                    h5.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset)
                                  and obj.ndim == 2 and obj.dtype.kind == "f" else None)
                    if not found:
                        raise ActivationFileError(f"{path} holds no 2-D float dataset; expected an "
                                                  "[n, d_in] array of activations")
                    ds = found[0]
                where = f"{path}:{ds.name}"
                _check_array(ds.shape, ds.dtype, where)
                array = ds[()]       # read into memory (use .npy for arrays bigger than RAM)
        except OSError as exc:
            raise ActivationFileError(f"{path} is not a readable HDF5 file ({exc})") from None
    else:
        raise ActivationFileError(f"{path}: activations must be a .npy or .h5 file")
    _check_array(array.shape, array.dtype, where)
    return array


def _check_array(shape, dtype, where: str) -> None:
    if len(shape) != 2:
        raise ActivationFileError(f"{where} has shape {tuple(shape)}; expected a 2-D [n, d_in] array")
    if np.dtype(dtype).kind != "f":
        raise ActivationFileError(f"{where} has dtype {dtype}; expected floating-point activations")
    if shape[0] < 1 or shape[1] < 1:
        raise ActivationFileError(f"{where} is empty")


class ArrayActivationSource:
    """Shuffled batches from an [n, d_in] array (in memory or memory-mapped), epoch after epoch."""

    def __init__(self, array, seed: int = 0, dataset: str | None = None):
        if isinstance(array, (str, os.PathLike)):
            array = load_activation_array(array, dataset)
        else:
            _check_array(np.shape(array), np.asarray(array[:1]).dtype if len(array) else np.float32, "array")
        self.array = array
        self.seed = seed
        self.n, self.d_in = array.shape

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]:
        if batch_size > self.n:
            raise ActivationFileError(f"batch size {batch_size} exceeds the {self.n} activations available")
        per_epoch = self.n // batch_size
        epoch, j = divmod(start, per_epoch)
        while True:
            perm = _rng(self.seed, 3, epoch).permutation(self.n)
            for b in range(j, per_epoch):
                rows = np.sort(perm[b * batch_size:(b + 1) * batch_size])
                yield torch.from_numpy(np.asarray(self.array[rows], dtype=np.float32))
            j = 0
            epoch += 1


def cache_activations(source, n: int, path: str | os.PathLike, batch_size: int = 4096) -> Path:
    """Write the first n activations of `source` to a .npy file (atomically) and return its path.

    An existing file of the right shape is reused, so several SAE runs share one pass of the model.
    """
    path = Path(path)
    d_in = source.d_in
    if path.exists():
        try:
            existing = np.load(path, mmap_mode="r")
            if existing.shape == (n, d_in):
                return path
        except Exception:
            pass
    with atomic_path(path, suffix=".tmp.npy", what="the activation cache", size=4 * n * d_in) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d_in))
        row = 0
        for batch in source.iter_batches(batch_size):
            take = min(len(batch), n - row)
            out[row:row + take] = batch[:take].numpy()
            row += take
            if row >= n:
                break
        out.flush()
        del out
    return path
