"""Writing an activation cache (the format, and reading it back: ``engine.data.act_cache``).

``write_activation_cache`` is a job generator: the first ``rows`` of the model's
``ModelActivationSource`` stream, one shard at a time through ``engine.fileio`` (temporary name,
fsync, rename), ``writing.json`` (the identity) first and ``manifest.json`` last. An interrupted write
resumes (``resume=True``) at the first missing shard with exactly the rows an uninterrupted one would
have written; a complete cache is reused and never rewritten (its files lose their write bits);
anything that does not match is refused.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Generator

import numpy as np
import torch

from engine import events
from engine.data.act_cache import (FORMAT, HOOK_NAME, IDENTITY_KEYS, MANIFEST, STORAGE_DTYPES, VERSION, WRITING,
                                   ActivationCacheError, ShardedActivationSource, encode_rows, file_crc32,
                                   model_fingerprint, npy_bytes, read_manifest, shard_name, tokens_fingerprint)
from engine.data.activations import ModelActivationSource
from engine.fileio import atomic_path, write_bytes

__all__ = ["write_activation_cache", "run_cache_source", "DEFAULT_SHARD_ROWS"]

DEFAULT_SHARD_ROWS = 65_536


def _write_batch(shard_rows: int, cap: int = 4096) -> int:
    """The stream's batch size: the largest divisor of shard_rows up to cap (a shard is whole batches)."""
    return max(d for d in range(1, min(cap, shard_rows) + 1) if shard_rows % d == 0)


def _identity(model, tokens: np.ndarray, rows: int, shard_rows: int, dtype: str, seed: int, n_ctx: int,
              buffer_batches: int, positions_per_context: int | None) -> dict:
    return {
        "format": FORMAT, "version": VERSION, "d_in": int(model.cfg.d_mlp), "rows": int(rows),
        "shard_rows": int(shard_rows), "dtype": dtype, "hook": HOOK_NAME,
        "model": {"fingerprint": model_fingerprint(model), "config": model.cfg.to_dict()},
        "tokens": {"fingerprint": tokens_fingerprint(tokens), "n_tokens": int(len(tokens))},
        "stream": {"source": "ModelActivationSource", "seed": int(seed), "n_ctx": int(n_ctx),
                   "buffer_batches": int(buffer_batches), "batch_size": _write_batch(shard_rows),
                   "positions_per_context": positions_per_context},
    }


def _differences(found: dict, wanted: dict) -> str:
    names = {"model": "model weights", "tokens": "token data", "stream": "stream settings"}
    diff = [names.get(k, k) for k in IDENTITY_KEYS if found.get(k) != wanted.get(k)]
    return ", ".join(diff)


def _present_shards(folder: Path, identity: dict) -> int:
    """How many leading shards of an unfinished cache are on disk, whole."""
    rows, S, d, dtype = identity["rows"], identity["shard_rows"], identity["d_in"], identity["dtype"]
    k = 0
    while k * S < rows:
        path = folder / shard_name(k)
        if not path.is_file() or path.stat().st_size != npy_bytes(min(S, rows - k * S), d, dtype):
            break
        k += 1
    return k


def write_activation_cache(folder: str | os.PathLike, model, tokens: np.ndarray, rows: int, *,
                           seed: int = 0, n_ctx: int | None = None, buffer_batches: int = 16,
                           shard_rows: int = DEFAULT_SHARD_ROWS, dtype: str = "float32",
                           positions_per_context: int | None = None, device: str | torch.device = "cpu",
                           resume: bool = False, cancel: events.CancelToken | None = None
                           ) -> Generator[object, None, Path]:
    """Job: write the first ``rows`` activations of the model's stream into ``folder`` (see module doc).

    Yields StageStarted("cache"), Progress per stream batch, StageFinished; returns the folder. A
    complete cache of the same identity is reused as it is; an unfinished one continues with
    ``resume=True``; anything else in the folder is refused (ActivationCacheError)."""
    folder = Path(folder)
    if dtype not in STORAGE_DTYPES:
        raise ActivationCacheError(f"storage dtype {dtype!r}: choose one of {', '.join(STORAGE_DTYPES)}")
    if rows < 1 or shard_rows < 1:
        raise ActivationCacheError(f"an activation cache needs at least one row and one row per shard "
                                   f"(got {rows} rows, {shard_rows} per shard)")
    n_ctx = int(n_ctx or model.cfg.n_ctx)
    identity = _identity(model, tokens, rows, shard_rows, dtype, seed, n_ctx, buffer_batches, positions_per_context)
    if folder.exists() and not folder.is_dir():
        raise ActivationCacheError(f"{folder} is a file; give a folder for the activation cache")
    if (folder / MANIFEST).exists():
        found = read_manifest(folder / MANIFEST)
        if any(found.get(k) != identity[k] for k in IDENTITY_KEYS):
            raise ActivationCacheError(f"{folder} already holds a complete activation cache with other "
                                       f"{_differences(found, identity)}; choose another --out or delete it")
        ShardedActivationSource(folder)               # whole and readable: reused as it is
        yield events.Message(f"{folder} already holds this activation cache ({rows:,} rows); reusing it")
        return folder
    first = 0
    if (folder / WRITING).exists():
        found = read_manifest(folder / WRITING)
        if any(found.get(k) != identity[k] for k in IDENTITY_KEYS):
            raise ActivationCacheError(f"{folder} holds an unfinished activation cache with other "
                                       f"{_differences(found, identity)}; choose another --out or delete it")
        if not resume:
            raise ActivationCacheError(f"{folder} holds an unfinished activation cache; run the same command "
                                       "with --resume to finish it, or delete the folder")
        first = _present_shards(folder, identity)
        identity["created"] = found.get("created", {})
    elif folder.exists() and any(not p.name.startswith(".") for p in folder.iterdir()):
        raise ActivationCacheError(f"{folder} is not empty and is not an activation cache; give a new or empty folder")
    else:
        identity["created"] = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": socket.gethostname(),
                               "superpos": _version()}
        write_bytes(folder / WRITING, json.dumps(identity, indent=2).encode(), what="the activation cache's header")

    d_in = identity["d_in"]
    n_shards = math.ceil(rows / shard_rows)
    batch = identity["stream"]["batch_size"]
    source = ModelActivationSource(model, tokens, n_ctx=n_ctx, batch_size=batch, buffer_batches=buffer_batches,
                                   seed=seed, device=device, positions_per_context=positions_per_context)
    yield events.StageStarted("cache", total=rows, unit="activations")
    if first:
        yield events.Message(f"resuming the activation cache at shard {first} of {n_shards}")
    t0 = time.perf_counter()
    meter = events.RateMeter(rows)
    done = first * shard_rows
    crcs: dict[int, int] = {}
    if first < n_shards:
        batches = source.iter_batches(batch, start=first * shard_rows // batch)
        for k in range(first, n_shards):
            n_k = min(shard_rows, rows - k * shard_rows)
            buf = np.empty((n_k, d_in), dtype=np.float32)
            for at in range(0, n_k, batch):
                if cancel is not None and cancel.cancelled:
                    raise events.Cancelled(f"activation cache cancelled at shard {k} of {n_shards} "
                                           f"(the {k} written are kept)")
                x = next(batches).numpy()
                buf[at:at + batch] = x[:n_k - at]
                done += min(batch, n_k - at)
                rate, eta = meter.update(done)
                yield events.Progress("cache", done=done, total=rows, rate=rate, eta_s=eta, unit="activations")
            crcs[k] = _write_shard(folder / shard_name(k), encode_rows(buf, dtype))
    shards = []
    for k in range(n_shards):
        path = folder / shard_name(k)
        shards.append({"file": path.name, "rows": min(shard_rows, rows - k * shard_rows),
                       "bytes": path.stat().st_size, "crc32": crcs[k] if k in crcs else file_crc32(path)})
    identity["created"]["seconds"] = round(time.perf_counter() - t0, 3)
    manifest = {**identity, "n_shards": n_shards, "shards": shards}
    write_bytes(folder / MANIFEST, json.dumps(manifest, indent=2).encode(), what="the activation cache's manifest")
    _read_only(folder / MANIFEST)
    (folder / WRITING).unlink(missing_ok=True)
    yield events.StageFinished("cache", time.perf_counter() - t0, {"rows": float(rows), "shards": float(n_shards)})
    return folder


def _write_shard(path: Path, stored: np.ndarray) -> int:
    """One shard, atomically; returns its file's CRC-32."""
    with atomic_path(path, suffix=".tmp.npy", what="an activation-cache shard", size=stored.nbytes + 256) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, stored)
    _read_only(path)
    return file_crc32(path)


def _read_only(path: Path) -> None:
    """A finished file of the cache loses its write bits (it is never written again; deleting still works)."""
    try:
        os.chmod(path, os.stat(path).st_mode & ~0o222)
    except OSError:  # pragma: no cover - e.g. file systems without permissions
        pass


def _version() -> str:
    from engine import __version__
    return __version__


def run_cache_source(folder: str | os.PathLike, model, tokens: np.ndarray, sae_cfg, *, device: str | torch.device = "cpu",
                     resume: bool = False, cancel: events.CancelToken | None = None
                     ) -> Generator[object, None, ShardedActivationSource]:
    """Job for ``superpos run --activation-cache DIR``: the model's stream with the SAE stage's seed and
    buffer written to ``folder`` once — or the cache found there reused — and opened as the SAE's source.

    It holds the budget plus a few batches (initialisation); epochs repeat beyond that, as with any file."""
    rows = int(sae_cfg.n_activations) + 4 * int(sae_cfg.batch_size)
    folder = yield from write_activation_cache(folder, model, tokens, rows, seed=sae_cfg.seed,
                                               buffer_batches=sae_cfg.buffer_batches, device=device,
                                               resume=resume, cancel=cancel)
    return ShardedActivationSource(folder, seed=sae_cfg.seed, expect_d_in=sae_cfg.d_in)
