"""A sharded activation cache on disk: the model's MLP activations computed once, read by many SAE runs.

A cache is a folder::

    DIR/manifest.json          what the cache holds (written last: its presence means "complete")
    DIR/shard-00000.npy        rows [0, S) as an (S, d_in) array, S = shard_rows
    DIR/shard-00001.npy        rows [S, 2S) ...; the last shard may be shorter
    DIR/writing.json           only while being written: the manifest's identity, for --resume

Shards are float32, float16, or bfloat16 stored as the upper 16 bits (``uint16``); the manifest
records which (``dtype``) and readers always hand out float32. The manifest also records the model's
fingerprint (sha256 of its weights), the hook, the token array's fingerprint, the stream settings
(seed, n_ctx, buffer) and each shard's rows, bytes and CRC-32, so a cache is refused, with one line,
when it does not match the model or config asked for, and a damaged shard is named.

Writing (``act_cache_write.write_activation_cache``, a job generator): the rows are the first ``rows`` of the
pipeline's own ``ModelActivationSource`` stream (random context windows, shuffled through its
buffer), so training from the cache sees the same distribution as training from the model. Each
shard goes through ``engine.fileio`` (temporary name, fsync, rename); the manifest is written last.
An interrupted write (Ctrl+C, a crash, ``kill -9``) resumes at the first missing shard with the same
rows an uninterrupted one would have written (the stream restarts at that shard's batch index). A
complete cache is never written again.

Reading (``ShardedActivationSource``): every shard is memory-mapped (``np.load(mmap_mode="r")``).
Epoch e visits the shards in a seeded permutation, grouped in windows of ``window`` shards; the rows
of each window are permuted (seed, e, window index), and batches are consecutive slices of that
order (a last incomplete batch of an epoch is dropped, as in ``ArrayActivationSource``). The same
(seed, start) gives the same batches, and ``start`` skips without reading. With ``rank`` and
``world_size`` (distributed training) rank r gets exactly the contiguous block
``[r·B//W, (r+1)·B//W)`` of the global batch and reads only those rows.

Shape legend: B batch, D d_in, N rows, S shard rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from engine.data.activations import ActivationFileError

__all__ = ["ActivationCacheError", "ShardedActivationSource", "model_fingerprint", "tokens_fingerprint", "rank_block",
           "is_activation_cache", "shard_name", "STORAGE_DTYPES", "HOOK_NAME", "MANIFEST", "WRITING"]

FORMAT = "superpos-activation-cache"
VERSION = 1
MANIFEST = "manifest.json"
WRITING = "writing.json"
HOOK_NAME = "blocks.0.mlp.hook_post"          # the TransformerLens name of what is cached: post-ReLU MLP
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
IDENTITY_KEYS = ("format", "version", "d_in", "rows", "shard_rows", "dtype", "hook", "model", "tokens", "stream")


class ActivationCacheError(ActivationFileError):
    """An activation cache folder that cannot be used (missing, unfinished, damaged, or another model's)."""


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.npy"


def rank_block(batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank r's rows [lo, hi) of a global batch of ``batch_size`` split over ``world_size`` ranks."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of world_size {world_size} ranks")
    return rank * batch_size // world_size, (rank + 1) * batch_size // world_size


# ------------------------------------------------------------------------------------ fingerprints
def _sha256_chunks(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def model_fingerprint(model) -> str:
    """sha256 over the model's weights (names, shapes, dtypes, bytes): the same weights, the same value."""
    def parts():
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            yield f"{name}:{tuple(t.shape)}:{t.dtype};".encode()
            yield t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return _sha256_chunks(parts())


def tokens_fingerprint(tokens: np.ndarray, chunk: int = 1 << 24) -> str:
    """sha256 over a 1-D token array (dtype, length, ids), read in chunks (a memmap is never copied whole)."""
    def parts():
        yield f"{np.dtype(tokens.dtype).str}:{len(tokens)};".encode()
        for i in range(0, len(tokens), chunk):
            yield np.ascontiguousarray(tokens[i:i + chunk]).tobytes()
    return _sha256_chunks(parts())


def file_crc32(path: Path, chunk: int = 1 << 24) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


# ------------------------------------------------------------------------------------ storage dtypes
def encode_rows(x_ND: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":     # round to nearest even, kept as the upper 16 bits of the float32
        return torch.from_numpy(np.ascontiguousarray(x_ND)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return np.asarray(x_ND, dtype=STORAGE_DTYPES[dtype])


def decode_rows(stored: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (stored.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(stored, dtype=np.float32)


def npy_bytes(rows: int, d_in: int, dtype: str) -> int:
    """The size of a shard's .npy file (header + data), from its shape alone."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(STORAGE_DTYPES[dtype])), "fortran_order": False,
              "shape": (rows, d_in)}
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.tell() + rows * d_in * np.dtype(STORAGE_DTYPES[dtype]).itemsize


# ------------------------------------------------------------------------------------ reading
def is_activation_cache(path: str | os.PathLike) -> bool:
    """True for a folder that holds (or is writing) an activation cache."""
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST).exists() or (path / WRITING).exists())


def read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise ActivationCacheError(f"{path} is not a regular file; an activation-cache manifest is a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ActivationCacheError(f"{path} is not a readable activation-cache manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ActivationCacheError(f"{path} is not a superpos activation-cache manifest")
    if data.get("version") != VERSION:
        raise ActivationCacheError(f"{path} is activation-cache version {data.get('version')}; this superpos "
                                   f"reads version {VERSION}")
    return data


def _open_manifest(folder: Path) -> dict:
    if not folder.exists():
        raise ActivationCacheError(f"{folder}: no such activation cache folder")
    if not folder.is_dir():
        raise ActivationCacheError(f"{folder} is not a folder; an activation cache is a folder with {MANIFEST}")
    if not (folder / MANIFEST).exists():
        if (folder / WRITING).exists():
            done = len(list(folder.glob("shard-*.npy")))
            raise ActivationCacheError(f"{folder} is an unfinished activation cache ({done} shard(s) written); "
                                       "run the same superpos cache-activations command with --resume to finish it")
        raise ActivationCacheError(f"{folder} holds no {MANIFEST}; it is not an activation cache "
                                   "(make one with superpos cache-activations)")
    manifest = read_manifest(folder / MANIFEST)
    try:
        d_in, rows, shard_rows = int(manifest["d_in"]), int(manifest["rows"]), int(manifest["shard_rows"])
        shards = list(manifest["shards"])
        dtype = str(manifest["dtype"])
        str(manifest["model"]["fingerprint"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ActivationCacheError(f"{folder / MANIFEST} is damaged (missing or bad field {exc})") from None
    if dtype not in STORAGE_DTYPES:
        raise ActivationCacheError(f"{folder / MANIFEST}: unknown storage dtype {dtype!r}")
    if d_in < 1 or rows < 1 or shard_rows < 1 or len(shards) != math.ceil(rows / shard_rows):
        raise ActivationCacheError(f"{folder / MANIFEST} is damaged: {rows} rows in shards of {shard_rows} "
                                   f"do not make {len(shards)} shards")
    return manifest


class ShardedActivationSource:
    """Shuffled float32 batches (B, D) from an activation-cache folder, epoch after epoch (see module doc).

    ``expect_d_in`` / ``expect_model`` (a ``model_fingerprint``) refuse a cache made for another model.
    """

    def __init__(self, folder: str | os.PathLike, seed: int = 0, window: int = 4, *,
                 expect_d_in: int | None = None, expect_model: str | None = None):
        self.folder = Path(folder)
        self.manifest = _open_manifest(self.folder)
        self.seed = int(seed)
        self.window = max(1, int(window))
        self.d_in = int(self.manifest["d_in"])
        self.n = int(self.manifest["rows"])
        self.shard_rows = int(self.manifest["shard_rows"])
        self.dtype = str(self.manifest["dtype"])
        if expect_d_in is not None and expect_d_in != self.d_in:
            raise ActivationCacheError(f"{self.folder} holds activations of width {self.d_in}; "
                                       f"expected d_in={expect_d_in}")
        if expect_model is not None and expect_model != self.manifest["model"]["fingerprint"]:
            raise ActivationCacheError(f"{self.folder} was made from another model (fingerprint "
                                       f"{self.manifest['model']['fingerprint'][:12]}, this one {expect_model[:12]}); "
                                       "make a cache of this model with superpos cache-activations")
        self._shards = [self._map(i, entry) for i, entry in enumerate(self.manifest["shards"])]
        self._sizes = np.array([len(s) for s in self._shards], dtype=np.int64)
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._window_cache: dict[tuple[int, int], np.ndarray] = {}

    def _map(self, i: int, entry: dict) -> np.ndarray:
        path = self.folder / shard_name(i)
        rows = min(self.shard_rows, self.n - i * self.shard_rows)
        what = f"activation-cache shard {path}"
        if not path.is_file():
            raise ActivationCacheError(f"{what} is missing or not a regular file; rebuild the cache")
        size = path.stat().st_size
        if size != int(entry.get("bytes", -1)) or size != npy_bytes(rows, self.d_in, self.dtype):
            raise ActivationCacheError(f"{what} is {size:,} bytes; the manifest says {int(entry.get('bytes', -1)):,} "
                                       "(truncated or replaced); rebuild the cache")
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as exc:
            raise ActivationCacheError(f"{what} is not a readable .npy file ({exc}); rebuild the cache") from None
        if array.shape != (rows, self.d_in) or array.dtype != np.dtype(STORAGE_DTYPES[self.dtype]):
            raise ActivationCacheError(f"{what} holds {array.dtype} {array.shape}; expected "
                                       f"{np.dtype(STORAGE_DTYPES[self.dtype])} {(rows, self.d_in)}; rebuild the cache")
        return array

    def verify(self) -> None:
        """Check every shard's CRC-32 against the manifest (reads the whole cache once)."""
        for i, entry in enumerate(self.manifest["shards"]):
            path = self.folder / shard_name(i)
            if file_crc32(path) != int(entry["crc32"]):
                raise ActivationCacheError(f"activation-cache shard {path} fails its checksum (damaged); "
                                           "rebuild the cache")

    # -------------------------------------------------------------- the order of one epoch
    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """(shard order, first epoch position of each window) of epoch e."""
        if self._epoch_cache is None or self._epoch_cache[0] != e:
            order = np.random.default_rng([self.seed & 0xFFFFFFFF, 4, e]).permutation(len(self._shards))
            sizes = self._sizes[order]
            window_rows = np.add.reduceat(sizes, np.arange(0, len(order), self.window))
            starts = np.concatenate([[0], np.cumsum(window_rows)])
            self._epoch_cache = (e, order, starts)
        return self._epoch_cache[1], self._epoch_cache[2]

    def _window_rows(self, e: int, w: int) -> np.ndarray:
        """Global row ids of window w of epoch e, in their shuffled order."""
        key = (e, w)
        if key not in self._window_cache:
            order, _ = self._epoch(e)
            ids = np.concatenate([s * self.shard_rows + np.arange(self._sizes[s])
                                  for s in order[w * self.window:(w + 1) * self.window]])
            perm = np.random.default_rng([self.seed & 0xFFFFFFFF, 5, e, w]).permutation(len(ids))
            if len(self._window_cache) >= 2:
                self._window_cache.pop(next(iter(self._window_cache)))
            self._window_cache[key] = ids[perm]
        return self._window_cache[key]

    def order(self, e: int, lo: int, hi: int) -> np.ndarray:
        """Global row ids at positions [lo, hi) of epoch e's order."""
        _, starts = self._epoch(e)
        pieces = []
        w = int(np.searchsorted(starts, lo, side="right")) - 1
        while lo < hi:
            rows = self._window_rows(e, w)
            take = min(hi, int(starts[w + 1])) - lo
            offset = lo - int(starts[w])
            pieces.append(rows[offset:offset + take])
            lo += take
            w += 1
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)

    def read(self, ids: np.ndarray) -> np.ndarray:
        """The rows with global ids ``ids`` as float32 (D columns), in that order; each shard read in row order."""
        out = np.empty((len(ids), self.d_in), dtype=np.float32)
        shard, row = np.divmod(ids, self.shard_rows)
        for s in np.unique(shard):
            where = np.nonzero(shard == s)[0]
            rows = row[where]
            by_row = np.argsort(rows, kind="stable")
            out[where[by_row]] = decode_rows(self._shards[s][rows[by_row]], self.dtype)
        return out

    def iter_batches(self, batch_size: int, start: int = 0, rank: int = 0,
                     world_size: int = 1) -> Iterator[torch.Tensor]:
        if batch_size > self.n:
            raise ActivationCacheError(f"batch size {batch_size} exceeds the {self.n} activations in {self.folder}")
        lo, hi = rank_block(batch_size, rank, world_size)
        per_epoch = self.n // batch_size
        epoch, j = divmod(int(start), per_epoch)
        while True:
            for b in range(j, per_epoch):
                yield torch.from_numpy(self.read(self.order(epoch, b * batch_size + lo, b * batch_size + hi)))
            j = 0
            epoch += 1
