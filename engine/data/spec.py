"""A corpus *spec*: the one string that the CLI and the app share, and the source it names.

    builtin            the demo corpus (``engine.data.builtin``), deterministic for ``CorpusConfig.seed``
    PATH.txt / .md ... one text file (cut into documents of at most a few thousand characters)
    PATH/              a folder, searched recursively for .txt .md .py .rst .json; each file a document
    PATTERN            a glob such as ``notes/**/*.txt`` (``**`` recurses); each file a document
    PATH.jsonl         one JSON object per line with a ``text`` field; each line a document
    hf:NAME[:split]    a Hugging Face dataset's ``text`` column, streamed (needs ``datasets``, online)
"""

from __future__ import annotations

import glob
import itertools
from pathlib import Path
from typing import Iterator

from engine.config import CorpusConfig
from engine.data.builtin import BuiltinSource
from engine.data.sources import CorpusError, CorpusSource, FolderSource, HFSource, JsonlSource, TextFileSource

__all__ = ["open_corpus", "iter_texts"]


def open_corpus(cfg: CorpusConfig) -> CorpusSource:
    """The source a spec names; raises ``CorpusError`` with a readable message if it is unusable."""
    if not isinstance(cfg, CorpusConfig):
        raise TypeError("open_corpus expects a CorpusConfig")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise CorpusError(f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
    if cfg.max_chars is not None and cfg.max_chars <= 0:
        raise CorpusError(f"max_chars must be positive, got {cfg.max_chars}")
    spec = (cfg.spec or "").strip()
    if spec in ("", "builtin"):
        return BuiltinSource(cfg)
    if spec.startswith("hf:"):
        name, _, split = spec[3:].partition(":")
        return HFSource(cfg, name.strip(), split.strip() or "train")
    path = Path(spec).expanduser()
    if glob.has_magic(spec) and not path.exists():
        pattern = str(path)
        root = Path(*[part for part in itertools.takewhile(lambda q: not glob.has_magic(q), path.parts)] or ["."])
        return FolderSource(cfg, root, pattern=pattern)
    try:
        if not path.exists():
            raise CorpusError(f"no such file or folder: {path} (a corpus is 'builtin', a text file, a "
                              "folder, a glob pattern, a .jsonl file or hf:NAME)")
        if path.is_dir():
            return FolderSource(cfg, path)
        if not path.is_file():
            raise CorpusError(f"{path} is not a regular file or folder")
        if path.suffix.lower() == ".jsonl":
            return JsonlSource(cfg, path)
        return TextFileSource(cfg, path)
    except PermissionError as exc:
        raise CorpusError(f"permission denied reading {exc.filename or path}") from None
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None


def iter_texts(source: CorpusSource, max_chars: int | None) -> Iterator[str]:
    """The first ``max_chars`` characters of the *training* documents (to train a tokenizer on)."""
    budget = max_chars
    for _, text, is_val in source.iter_split():
        if is_val:
            continue
        if budget is not None:
            if budget <= 0:
                return
            text = text[:budget]
            budget -= len(text)
        yield text
