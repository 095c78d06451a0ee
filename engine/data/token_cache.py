"""The tokenized corpus: each split as one flat token file, cached on disk, returned as memmaps.

``tokenize_corpus`` writes each split as one flat token file (uint16 when the vocabulary fits, else
uint32) with ``<|endoftext|>`` after every document, in a cache folder keyed by the corpus
fingerprint, the tokenizer hash and the split settings, and returns memmaps — a multi-GB corpus
never sits in RAM and a second call with the same key costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator

import numpy as np

from engine import paths
from engine.config import CorpusConfig
from engine.data.sources import CorpusSource, summarise_report
from engine.data.spec import open_corpus
from engine.data.tokenizer import Tokenizer
from engine.fileio import DISK_FULL, write_error
from engine.events import Cancelled, CancelToken, Message, Progress, RateMeter, StageFinished, StageStarted

__all__ = ["TokenData", "token_dtype", "tokenize_corpus"]

CACHE_VERSION = 1
ENCODE_BATCH_CHARS = 1_000_000  # characters handed to the tokenizer per encode_batch call


@dataclass
class TokenData:
    """The tokenized corpus: two flat id arrays (read-only memmaps) with ``eos_id`` after each document."""

    train: np.ndarray
    val: np.ndarray
    eos_id: int
    path: Path
    meta: dict = field(default_factory=dict)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _cache_key(source: CorpusSource, cfg: CorpusConfig, tokenizer: Tokenizer) -> str:
    parts = [f"cache-v{CACHE_VERSION}", source.fingerprint(), tokenizer.hash(),
             f"seed={cfg.seed}", f"val={cfg.val_fraction!r}", f"max_chars={cfg.max_chars}"]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _map(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.stat().st_size == 0:  # mmap cannot map an empty file
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def _load_cached(folder: Path) -> TokenData:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    dtype = np.dtype(meta["dtype"])
    return TokenData(train=_map(folder / "train.bin", dtype), val=_map(folder / "val.bin", dtype),
                     eos_id=int(meta["eos_id"]), path=folder, meta=meta)


def _skip_message(report: list[tuple[str, str]]) -> Message:
    return Message(f"skipped {len(report)} unusable input(s): {summarise_report([tuple(r) for r in report], 5)}",
                   level="warning")


def tokenize_corpus(cfg: CorpusConfig, tokenizer: Tokenizer, cache_dir: str | os.PathLike | None = None,
                    cancel: CancelToken | None = None) -> Generator[Any, None, TokenData]:
    """Tokenize the corpus ``cfg`` names into cached train/val token files (or reuse the cache); yields
    ``StageStarted("tokenize")``, ``Progress`` (units = characters), ``Message`` events and
    ``StageFinished`` (summary: train and validation tokens), returns ``TokenData``."""
    t0 = time.perf_counter()
    yield StageStarted("tokenize", unit="chars")
    data = yield from _tokenize(cfg, tokenizer, cache_dir, cancel)
    yield StageFinished("tokenize", seconds=time.perf_counter() - t0,
                        summary={"train_tokens": float(len(data.train)), "val_tokens": float(len(data.val))})
    return data


def _tokenize(cfg: CorpusConfig, tokenizer: Tokenizer, cache_dir: str | os.PathLike | None,
              cancel: CancelToken | None) -> Generator[Any, None, TokenData]:
    """The work of ``tokenize_corpus``, without its stage events.

    Streaming: documents are encoded in batches of ~1M characters and appended to the files, so
    memory stays flat. Files are written in a temporary folder that is renamed into place, so a
    crash or cancel never leaves a half-written cache that a later run would trust."""
    source = open_corpus(cfg)
    key = _cache_key(source, cfg, tokenizer)
    root = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "tokens"
    root.mkdir(parents=True, exist_ok=True)
    final = root / key[:32]
    if (final / "meta.json").exists():
        try:
            data = _load_cached(final)
        except (OSError, ValueError, KeyError):
            shutil.rmtree(final, ignore_errors=True)  # damaged cache: rebuild it
        else:
            if data.meta.get("skipped"):
                yield _skip_message(data.meta["skipped"])
            chars = int(data.meta.get("chars", 0))
            yield Progress(stage="tokenize", done=chars, total=chars, unit="chars",
                           metrics={"tokens": float(len(data.train) + len(data.val)), "cached": 1.0})
            return data
    if final.exists():  # a folder without meta.json is not a finished cache
        shutil.rmtree(final, ignore_errors=True)
    _remove_stale_temp_folders(root)

    dtype = token_dtype(tokenizer.vocab_size)
    eos = np.array([tokenizer.eos_id], dtype=dtype)
    total_chars = source.estimate_chars()
    if cfg.max_chars is not None:
        total_chars = min(total_chars, cfg.max_chars) if total_chars else cfg.max_chars
    meter = RateMeter(total_chars)
    tmp = root / f".{key[:32]}.tmp-{os.getpid()}-{random.getrandbits(32):08x}"
    tmp.mkdir(parents=True)
    counts = {"train": 0, "val": 0}
    n_docs = {"train": 0, "val": 0}
    chars_done = 0
    last_yield = 0.0
    try:
        with open(tmp / "train.bin", "wb") as f_train, open(tmp / "val.bin", "wb") as f_val:
            files = {False: f_train, True: f_val}

            def flush(batch: list[tuple[str, bool]]):
                for (_, is_val), ids in zip(batch, tokenizer.encode_batch([t for t, _ in batch])):
                    arr = np.asarray(ids, dtype=dtype)
                    files[is_val].write(arr.tobytes())
                    files[is_val].write(eos.tobytes())
                    split = "val" if is_val else "train"
                    counts[split] += len(arr) + 1
                    n_docs[split] += 1

            batch: list[tuple[str, bool]] = []
            batch_chars = 0
            for _, text, is_val in source.iter_split():
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("tokenizing cancelled")
                batch.append((text, is_val))
                batch_chars += len(text)
                if batch_chars >= ENCODE_BATCH_CHARS:
                    flush(batch)
                    chars_done += batch_chars
                    batch, batch_chars = [], 0
                    now = time.perf_counter()
                    if now - last_yield > 0.1:
                        last_yield = now
                        rate, eta = meter.update(chars_done)
                        yield Progress(stage="tokenize", done=chars_done, total=max(total_chars, chars_done),
                                       unit="chars", rate=rate, eta_s=eta,
                                       metrics={"tokens": float(counts["train"] + counts["val"])})
            if batch:
                flush(batch)
                chars_done += batch_chars

        if counts["val"] == 0 and counts["train"] > 1:
            # A single document: hold out its tail instead (cut on a token boundary).
            _move_tail_to_val(tmp, dtype, counts, cfg.val_fraction, eos)
        meta = {
            "cache_version": CACHE_VERSION, "dtype": dtype.name, "eos_id": int(tokenizer.eos_id),
            "vocab_size": int(tokenizer.vocab_size), "n_train": counts["train"], "n_val": counts["val"],
            "train_docs": n_docs["train"], "val_docs": n_docs["val"], "chars": chars_done,
            "spec": cfg.spec, "seed": cfg.seed, "val_fraction": cfg.val_fraction, "max_chars": cfg.max_chars,
            "fingerprint": source.fingerprint(), "tokenizer_hash": tokenizer.hash(),
            "skipped": [list(r) for r in source.report],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:   # (reading the corpus raises its own)
            raise write_error(exc, final, "the token cache") from exc
        raise

    if source.report:
        yield _skip_message(source.report)
    yield Progress(stage="tokenize", done=chars_done, total=chars_done, unit="chars",
                   metrics={"tokens": float(counts["train"] + counts["val"])})
    return _load_cached(final)


def _remove_stale_temp_folders(root: Path, max_age_s: float = 86_400.0) -> None:
    """Temp folders of tokenize runs that crashed (a live run touches its folder far more often)."""
    now = time.time()
    for tmp in root.glob(".*.tmp-*"):
        try:
            if now - tmp.stat().st_mtime > max_age_s:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _move_tail_to_val(folder: Path, dtype: np.dtype, counts: dict, val_fraction: float, eos: np.ndarray) -> None:
    train = np.fromfile(folder / "train.bin", dtype=dtype)
    n_val = max(1, int(round(len(train) * max(val_fraction, 0.05))))
    n_val = min(n_val, len(train) - 1)
    cut = len(train) - n_val
    train[:cut].tofile(folder / "train.bin")
    tail = train[cut:]
    if tail[-1] != eos[0]:
        tail = np.concatenate([tail, eos])
    tail.tofile(folder / "val.bin")
    counts["train"], counts["val"] = cut, len(tail)
