"""Corpus sources: a spec's files or dataset -> ``(doc_id, text)`` documents, split train/val.

A ``CorpusSource`` yields documents of at most ``max_chars`` characters in all; the sources here
read a text file (cut into documents at line breaks), a folder or glob (each file a document), a
``.jsonl`` file (each line's ``text`` field a document) or a Hugging Face dataset (streamed). The
built-in demo corpus is ``engine.data.builtin``; ``engine.data.spec.open_corpus`` picks the source
a spec string names.

Every document goes to train or validation by a stable hash of ``(seed, doc_id)``
(``hash < val_fraction`` -> validation), so the split never depends on reading order or on which
other documents exist.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from engine.config import CorpusConfig
from engine.errors import UserError

__all__ = ["CorpusError", "CorpusSource", "TextFileSource", "FolderSource", "JsonlSource", "HFSource",
           "split_hash", "cut_document", "decode_file_bytes", "summarise_report", "TEXT_EXTENSIONS", "DOC_CHARS"]

TEXT_EXTENSIONS = (".txt", ".md", ".py", ".rst", ".json")
DOC_CHARS = 16_384            # longer documents are cut (at line breaks) into pieces about this long


class CorpusError(UserError, ValueError):
    """The corpus cannot be used; the message says what was wrong and what to do."""


class CorpusSource:
    """A sequence of documents. ``iter_documents()`` yields ``(doc_id, text)`` (at most
    ``max_chars`` characters in all); ``report`` lists ``(path, reason)`` for skipped inputs."""

    kind = "base"
    skip_unit = "file(s)"          # what one entry of ``report`` is (a file; a line of a .jsonl)

    def __init__(self, cfg: CorpusConfig):
        self.cfg = cfg
        self.spec = cfg.spec
        self.report: list[tuple[str, str]] = []

    # subclasses yield (doc_id, text) without the cap
    def _iter_raw(self) -> Iterator[tuple[str, str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def estimate_chars(self) -> int:
        """Roughly how many characters ``iter_documents`` will yield (for progress bars)."""
        return 0

    def iter_documents(self) -> Iterator[tuple[str, str]]:
        self.report.clear()
        budget = self.cfg.max_chars
        n_docs = 0
        for doc_id, text in self._iter_raw():
            if not text:
                continue
            if budget is not None:
                if budget <= 0:
                    break
                text = text[:budget]
                budget -= len(text)
            n_docs += 1
            yield doc_id, text
        if n_docs == 0:
            skipped = (f" ({len(self.report)} {self.skip_unit} skipped: {summarise_report(self.report)})"
                       if self.report else "")
            raise CorpusError(f"the corpus {self.spec!r} holds no usable text{skipped}")

    def is_val(self, doc_id: str) -> bool:
        return split_hash(self.cfg.seed, doc_id) < self.cfg.val_fraction

    def iter_split(self) -> Iterator[tuple[str, str, bool]]:
        """``(doc_id, text, is_val)`` for every document. If the hash sends no document to
        validation although there are at least two, the last document goes there instead (the
        guarantee costs one document of look-ahead, so it works on streams too)."""
        pending: tuple[str, str] | None = None
        any_val = False
        n_docs = 0
        for doc_id, text in self.iter_documents():
            n_docs += 1
            if self.is_val(doc_id):
                any_val = True
                yield doc_id, text, True
                continue
            if pending is not None:
                yield pending[0], pending[1], False
            pending = (doc_id, text)
        if pending is not None:
            yield pending[0], pending[1], (not any_val and n_docs >= 2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def split_hash(seed: int, doc_id: str) -> float:
    """A stable number in [0, 1) for ``(seed, doc_id)``; the train/val split compares it with val_fraction."""
    digest = hashlib.sha256(f"{seed}\0{doc_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def summarise_report(report: list[tuple[str, str]], n: int = 3) -> str:
    shown = "; ".join(f"{p}: {r}" for p, r in report[:n])
    return shown + (f"; and {len(report) - n} more" if len(report) > n else "")


def cut_document(text: str, limit: int = DOC_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, preferring blank lines, then line
    breaks, then spaces as cut points (so pieces stay readable)."""
    if len(text) <= limit:
        return [text]
    pieces = []
    start = 0
    while len(text) - start > limit:
        window_lo, window_hi = start + limit // 2, start + limit
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, window_lo, window_hi)
            if cut >= 0:
                cut += len(sep)
                break
        if cut < 0:
            cut = window_hi
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def _is_utf16(head: bytes) -> bool:
    """A byte-order mark, or the NUL in every other byte that UTF-16 gives mostly-ASCII text."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    sample = head[:4096]
    half = len(sample) // 2
    return half >= 8 and max(sample[0::2].count(0), sample[1::2].count(0)) >= 0.9 * half


UTF16 = "UTF-16 text, not UTF-8: convert it to UTF-8 first (e.g. iconv -f UTF-16 -t UTF-8)"


def decode_file_bytes(data: bytes) -> tuple[str | None, str]:
    """``(text, "")`` or ``(None, reason)`` for one file's bytes."""
    if _is_utf16(data):
        return None, UTF16
    if b"\x00" in data:
        return None, "binary file (contains NUL bytes)"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 (bad byte at offset {exc.start})"
    if not text.strip():
        return None, "empty file"
    return text, ""


def _file_stamp(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _text_head(path: Path, expected: str) -> tuple[int, bytes]:
    """Size and first 64 KB of a file given as text; an empty or binary file is a CorpusError."""
    size = path.stat().st_size
    if size == 0:
        raise CorpusError(f"the file {path} is empty")
    with open(path, "rb") as f:
        head = f.read(65536)
    if _is_utf16(head):
        raise CorpusError(f"{path} is {UTF16}")
    if b"\x00" in head:
        raise CorpusError(f"{path} looks like a binary file (it contains NUL bytes); {expected}")
    return size, head


class TextFileSource(CorpusSource):
    """One UTF-8 text file, streamed and cut into documents at line breaks."""

    kind = "file"

    def __init__(self, cfg: CorpusConfig, path: Path):
        super().__init__(cfg)
        self.path = path
        self.size, head = _text_head(path, "give a UTF-8 text file")
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path} is not valid UTF-8 text (bad byte at offset {exc.start}); "
                              "convert it to UTF-8 first") from None
        # Enough documents for a validation split even from a small file: ~20 pieces, 2k..16k chars.
        self.doc_chars = int(min(DOC_CHARS, max(2048, self.size // 20)))

    def fingerprint(self) -> str:
        return f"file|{_file_stamp(self.path)}|{self.doc_chars}"

    def estimate_chars(self) -> int:
        return self.size

    def _iter_raw(self) -> Iterator[tuple[str, str]]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        buffer = ""
        index = 0
        offset = 0
        with open(self.path, "rb") as f:
            while True:
                block = f.read(1 << 20)
                try:
                    buffer += decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    raise CorpusError(f"{self.path} is not valid UTF-8 text (bad byte near offset "
                                      f"{offset + exc.start}); convert it to UTF-8 first") from None
                if "\x00" in buffer:
                    raise CorpusError(f"{self.path} looks like a binary file (it contains NUL bytes)")
                offset += len(block)
                pieces = cut_document(buffer, self.doc_chars)
                keep = 1 if block else 0  # the last piece may continue in the next block
                for piece in pieces[: len(pieces) - keep]:
                    yield f"{self.path.name}#{index}", piece
                    index += 1
                buffer = pieces[-1] if keep else ""
                if not block:
                    break


class FolderSource(CorpusSource):
    """Every text file under a folder (recursive; hidden folders skipped), or the files a glob
    pattern matches; each file a document (very long files are cut into pieces). Unreadable files
    are skipped and listed in ``report``."""

    kind = "folder"

    def __init__(self, cfg: CorpusConfig, root: Path, pattern: str | None = None):
        super().__init__(cfg)
        self.root = root
        self.pattern = pattern
        files = []
        if pattern is not None:
            files = [Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        else:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
                for name in filenames:
                    if name.lower().endswith(TEXT_EXTENSIONS) and not name.startswith("."):
                        files.append(Path(dirpath) / name)
        self.files = sorted(files, key=lambda p: p.relative_to(root).as_posix())
        if not self.files:
            if pattern is not None:
                raise CorpusError(f"the pattern {pattern} matches no files")
            raise CorpusError(f"the folder {root} holds no text files (looked recursively for "
                              f"{' '.join(TEXT_EXTENSIONS)})")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for path in self.files:
            try:
                h.update(_file_stamp(path).encode("utf-8", "surrogateescape") + b"\n")
            except OSError:
                h.update(f"{path}|missing\n".encode("utf-8", "surrogateescape"))
        return f"folder|{self.root.resolve()}|{self.pattern}|{h.hexdigest()}"

    def estimate_chars(self) -> int:
        total = 0
        for path in self.files:
            try:
                total += path.stat().st_size
            except OSError:
                pass
        return total

    def _iter_raw(self) -> Iterator[tuple[str, str]]:
        for path in self.files:
            rel = path.relative_to(self.root).as_posix()
            try:
                data = path.read_bytes()
            except OSError as exc:
                self.report.append((str(path), f"cannot read: {exc.strerror or exc}"))
                continue
            text, reason = decode_file_bytes(data)
            if text is None:
                self.report.append((str(path), reason))
                continue
            pieces = cut_document(text)
            for i, piece in enumerate(pieces):
                yield (rel if i == 0 else f"{rel}#{i}"), piece


class JsonlSource(CorpusSource):
    """A ``.jsonl`` file: one JSON object per line, its ``text`` field one document."""

    kind = "jsonl"
    skip_unit = "line(s)"

    def __init__(self, cfg: CorpusConfig, path: Path):
        super().__init__(cfg)
        self.path = path
        self.size, head = _text_head(path, "expected JSON lines")
        first = next((line for line in head.split(b"\n") if line.strip()), b"")
        if len(first) < len(head) or len(head) == self.size:      # a whole first line to judge
            try:
                json.loads(first.decode("utf-8-sig", errors="replace"))
            except ValueError as exc:
                raise CorpusError(
                    f"{path} is named .jsonl but its first line is not JSON ({exc.msg}); a .jsonl corpus holds "
                    "one JSON object with a 'text' field per line; give plain text a .txt name") from None

    def fingerprint(self) -> str:
        return f"jsonl|{_file_stamp(self.path)}"

    def estimate_chars(self) -> int:
        return self.size

    def _iter_raw(self) -> Iterator[tuple[str, str]]:
        with open(self.path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                where = f"{self.path}:{line_no}"
                try:
                    obj = json.loads(raw.decode("utf-8-sig"))
                except UnicodeDecodeError:
                    self.report.append((where, "not valid UTF-8"))
                    continue
                except ValueError as exc:
                    self.report.append((where, f"not valid JSON ({exc.msg})"))
                    continue
                text = obj.get("text") if isinstance(obj, dict) else None
                if not isinstance(text, str):
                    self.report.append((where, "no string 'text' field"))
                    continue
                for i, piece in enumerate(cut_document(text)):
                    yield (f"{line_no}" if i == 0 else f"{line_no}#{i}"), piece


class HFSource(CorpusSource):
    """A Hugging Face dataset's ``text`` column, streamed (``hf:NAME`` or ``hf:NAME:split``)."""

    kind = "hf"

    def __init__(self, cfg: CorpusConfig, name: str, split: str):
        super().__init__(cfg)
        self.name, self.split = name, split
        if not name:
            raise CorpusError("an hf: spec needs a dataset name, e.g. hf:roneneldan/TinyStories:train")
        try:
            import datasets  # noqa: F401  (optional dependency, imported only when asked for)
        except ImportError:
            raise CorpusError("hf: corpora need the optional 'datasets' package: pip install datasets "
                              "(and a network connection the first time)") from None

    def fingerprint(self) -> str:
        return f"hf|{self.name}|{self.split}"

    def estimate_chars(self) -> int:
        return self.cfg.max_chars or 0

    def _iter_raw(self) -> Iterator[tuple[str, str]]:
        import datasets

        try:
            dataset = datasets.load_dataset(self.name, split=self.split, streaming=True)
        except Exception as exc:  # offline, unknown name, bad split: many exception types
            raise CorpusError(f"cannot open the Hugging Face dataset {self.name!r} (split {self.split!r}): "
                              f"{type(exc).__name__}: {exc}. Check the name and your network connection.") from None
        try:
            for i, row in enumerate(dataset):
                if i == 0 and "text" not in row:
                    raise CorpusError(f"the dataset {self.name!r} has no 'text' column "
                                      f"(columns: {', '.join(map(str, row))})")
                text = row.get("text")
                if isinstance(text, str):
                    for j, piece in enumerate(cut_document(text)):
                        yield (f"{i}" if j == 0 else f"{i}#{j}"), piece
        except CorpusError:
            raise
        except Exception as exc:
            raise CorpusError(f"reading the Hugging Face dataset {self.name!r} failed: "
                              f"{type(exc).__name__}: {exc}") from None
