"""Text sources -> documents -> a cached stream of token ids.

A corpus *spec* is one string that the CLI and the app share:

    builtin            the demo corpus (below), deterministic for ``CorpusConfig.seed``
    PATH.txt / .md ... one text file (cut into documents of at most a few thousand characters)
    PATH/              a folder, searched recursively for .txt .md .py .rst .json; each file a document
    PATTERN            a glob such as ``notes/**/*.txt`` (``**`` recurses); each file a document
    PATH.jsonl         one JSON object per line with a ``text`` field; each line a document
    hf:NAME[:split]    a Hugging Face dataset's ``text`` column, streamed (needs ``datasets``, online)

The built-in corpus is made from what every Python install has: the standard library's ``.py``
sources (code, comments, docstrings) and ``pydoc_data.topics`` (the language reference's English
prose), plus generated segments so that the paper's hallmark features have something to find:
DNA (FASTA records and bare ACGT runs), base64 of random bytes, hex dumps (``xxd`` style and bare
hex strings) and pseudo-text in five other scripts (Arabic, Hebrew, Cyrillic, Greek, CJK). Each
generated class is ~3% (DNA, base64, hex) or ~2% (each script) of the characters. Documents of all
classes are shuffled together with the seed before the ``max_chars`` cap, so a small corpus still
holds every class.

Every document goes to train or validation by a stable hash of ``(seed, doc_id)``
(``hash < val_fraction`` -> validation), so the split never depends on reading order or on which
other documents exist. ``tokenize_corpus`` then writes each split as one flat token file (uint16
when the vocabulary fits, else uint32) with ``<|endoftext|>`` after every document, in a cache folder
keyed by the corpus fingerprint, the tokenizer hash and the split settings, and returns memmaps — a
multi-GB corpus never sits in RAM and a second call with the same key costs nothing.
"""

from __future__ import annotations

import base64
import codecs
import glob
import hashlib
import itertools
import json
import os
import random
import shutil
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator, Iterator

import numpy as np

from engine.config import CorpusConfig
from engine.events import Cancelled, CancelToken, Message, Progress, RateMeter
from engine.errors import UserError

if TYPE_CHECKING:
    from engine.data.tokenizer import Tokenizer

__all__ = ["CorpusError", "CorpusSource", "TokenData", "open_corpus", "tokenize_corpus", "iter_texts",
           "TEXT_EXTENSIONS", "BUILTIN_MIX"]

TEXT_EXTENSIONS = (".txt", ".md", ".py", ".rst", ".json")
DOC_CHARS = 16_384            # longer documents are cut (at line breaks) into pieces about this long
BUILTIN_VERSION = 2           # bump when the built-in recipe changes (invalidates token caches)
CACHE_VERSION = 1
ENCODE_BATCH_CHARS = 1_000_000  # characters handed to the tokenizer per encode_batch call

# Fraction of the built-in corpus's characters per generated class; the rest is stdlib code and prose.
BUILTIN_MIX = {
    "dna": 0.03, "base64": 0.03, "hex": 0.03,
    "arabic": 0.02, "hebrew": 0.02, "cyrillic": 0.02, "greek": 0.02, "cjk": 0.02,
}
PROSE_MAX_FRACTION = 0.12     # pydoc topics: at most this share (there are only ~0.5M chars of them)


class CorpusError(UserError, ValueError):
    """The corpus cannot be used; the message says what was wrong and what to do."""


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


class CorpusSource:
    """A sequence of documents. ``iter_documents()`` yields ``(doc_id, text)`` (at most
    ``max_chars`` characters in all); ``report`` lists ``(path, reason)`` for skipped inputs."""

    kind = "base"

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
            skipped = f" ({len(self.report)} file(s) skipped: {_summarise_report(self.report)})" if self.report else ""
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


def _summarise_report(report: list[tuple[str, str]], n: int = 3) -> str:
    shown = "; ".join(f"{p}: {r}" for p, r in report[:n])
    return shown + (f"; and {len(report) - n} more" if len(report) > n else "")


def _cut_document(text: str, limit: int = DOC_CHARS) -> list[str]:
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


def _decode_file_bytes(data: bytes) -> tuple[str | None, str]:
    """``(text, "")`` or ``(None, reason)`` for one file's bytes."""
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
                pieces = _cut_document(buffer, self.doc_chars)
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
            text, reason = _decode_file_bytes(data)
            if text is None:
                self.report.append((str(path), reason))
                continue
            pieces = _cut_document(text)
            for i, piece in enumerate(pieces):
                yield (rel if i == 0 else f"{rel}#{i}"), piece


class JsonlSource(CorpusSource):
    """A ``.jsonl`` file: one JSON object per line, its ``text`` field one document."""

    kind = "jsonl"

    def __init__(self, cfg: CorpusConfig, path: Path):
        super().__init__(cfg)
        self.path = path
        self.size, _ = _text_head(path, "expected JSON lines")

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
                for i, piece in enumerate(_cut_document(text)):
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
                    for j, piece in enumerate(_cut_document(text)):
                        yield (f"{i}" if j == 0 else f"{i}#{j}"), piece
        except CorpusError:
            raise
        except Exception as exc:
            raise CorpusError(f"reading the Hugging Face dataset {self.name!r} failed: "
                              f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# The built-in corpus
# ---------------------------------------------------------------------------------------------


def _stdlib_files() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(library, tests)``: sorted ``(relative path, size)`` of the stdlib's .py files, without
    site-packages. Test suites are kept apart so they are only used once the library runs out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    library, tests = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__")
                             and not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        parts = set(rel_dir.split("/"))
        is_test = bool(parts & {"test", "tests", "idle_test"})
        for name in filenames:
            if not name.endswith(".py"):
                continue
            rel = f"{rel_dir}/{name}" if rel_dir != "." else name
            if rel == "pydoc_data/topics.py":  # used as prose instead
                continue
            try:
                size = (Path(dirpath) / name).stat().st_size
            except OSError:
                continue
            (tests if is_test or name.startswith("test_") else library).append((rel, size))
    library.sort()
    tests.sort()
    return library, tests


def _pydoc_topics() -> dict[str, str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - stripped Python builds
        return {}
    return dict(topics)


_SCRIPTS = {
    # name: (letters, sentence punctuation, comma, words are letters joined with no spaces?)
    "arabic": ([chr(c) for c in range(0x0621, 0x063B)] + [chr(c) for c in range(0x0641, 0x064B)], ".", "،", False),
    "hebrew": ([chr(c) for c in range(0x05D0, 0x05EB)], ".", ",", False),
    "cyrillic": ([chr(c) for c in range(0x0430, 0x0450)], ".", ",", False),
    "greek": ([chr(c) for c in range(0x03B1, 0x03CA) if c != 0x03C2], ".", ",", False),
    "cjk": ([chr(c) for c in range(0x4E00, 0x9FA6)], "。", "，", True),
}


def _script_lexicon(script: str, seed: int, size: int = 600) -> list[str]:
    """A fixed vocabulary of pseudo-words for a script (so BPE finds merges and a model finds
    regularities); drawn once per (script, seed)."""
    letters, _, _, cjk = _SCRIPTS[script]
    rng = random.Random(f"lexicon:{script}:{seed}")
    if cjk:
        chars = rng.sample(letters, 1500)  # a realistic working set of characters
        weights = [1.0 / (i + 1) for i in range(len(chars))]
        return ["".join(rng.choices(chars, weights, k=rng.choice((1, 2, 2, 2, 3, 4)))) for _ in range(size)]
    weights = [1.0 / (i + 1) ** 0.6 for i in range(len(letters))]
    return ["".join(rng.choices(letters, weights, k=rng.randint(2, 9))) for _ in range(size)]


def _gen_script(rng: random.Random, n_chars: int, script: str, lexicon: list[str],
                cum_weights: list[float]) -> str:
    """Paragraphs of sentences of Zipf-distributed pseudo-words from ``lexicon``."""
    letters, stop, comma, cjk = _SCRIPTS[script]
    sep = "" if cjk else " "
    paragraphs, total = [], 0
    while total < n_chars:
        sentences = []
        for _ in range(rng.randint(2, 6)):
            words = rng.choices(lexicon, cum_weights=cum_weights, k=rng.randint(4, 16))
            if len(words) > 6 and rng.random() < 0.5:
                words[rng.randint(2, len(words) - 3)] += comma
            if not cjk and script in ("cyrillic", "greek"):
                words[0] = words[0][:1].upper() + words[0][1:]
            sentences.append(sep.join(words) + stop)
        paragraph = sep.join(sentences)
        paragraphs.append(paragraph)
        total += len(paragraph) + 1
    return "\n".join(paragraphs) + "\n"


def _gen_dna(rng: random.Random, n_chars: int) -> str:
    out, total = [], 0
    while total < n_chars:
        length = rng.randint(200, 1500)
        # GC-content varies per record; occasional low-complexity repeats as in real genomes
        # random bytes mapped to bases: byte values below the A/C/G/T thresholds give that base
        gc = rng.uniform(0.3, 0.65)
        a, c, g = int(256 * (1 - gc) / 2), int(256 * gc / 2), int(256 * gc / 2)
        table = bytes(b"A" * a + b"C" * c + b"G" * g + b"T" * (256 - a - c - g))
        seq = rng.randbytes(length).translate(table).decode("ascii")
        if rng.random() < 0.3:
            unit = "".join(rng.choices("ACGT", k=rng.randint(1, 4)))
            at = rng.randint(0, length)
            seq = seq[:at] + unit * rng.randint(5, 20) + seq[at:]
        if rng.random() < 0.15:
            seq = seq.lower()
        style = rng.random()
        if style < 0.6:
            header = f">seq{rng.randint(1, 99999)} chr{rng.randint(1, 22)}:{rng.randint(1, 10**8)}-{rng.randint(1, 10**8)}"
            lines = [header] + [seq[i:i + 60] for i in range(0, len(seq), 60)]
            text = "\n".join(lines) + "\n"
        elif style < 0.85:
            text = seq + "\n"
        else:
            text = f'primer = "{seq[:rng.randint(18, 30)]}"\n'
        out.append(text)
        total += len(text)
    return "".join(out)


def _gen_base64(rng: random.Random, n_chars: int) -> str:
    out, total = [], 0
    while total < n_chars:
        raw = rng.randbytes(rng.randint(48, 1200))
        encoded = base64.b64encode(raw).decode("ascii")
        style = rng.random()
        if style < 0.5:
            text = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76)) + "\n"
        elif style < 0.75:
            label = rng.choice(("CERTIFICATE", "PUBLIC KEY", "PRIVATE KEY"))
            body = "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
            text = f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"
        else:
            text = f'data = "{encoded[:rng.randint(16, 200)]}"\n'
        out.append(text)
        total += len(text)
    return "".join(out)


def _gen_hex(rng: random.Random, n_chars: int, prose: str) -> str:
    out, total = [], 0
    while total < n_chars:
        style = rng.random()
        if style < 0.5:  # xxd dump of either random bytes or some text
            if rng.random() < 0.5 and prose:
                at = rng.randint(0, max(0, len(prose) - 512))
                data = prose[at:at + rng.randint(64, 512)].encode("utf-8")
            else:
                data = rng.randbytes(rng.randint(64, 512))
            base = rng.randrange(0, 1 << 20, 16)
            lines = []
            for i in range(0, len(data), 16):
                chunk = data[i:i + 16]
                hexpart = " ".join(chunk[j:j + 2].hex() for j in range(0, len(chunk), 2))
                ascii_part = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
                lines.append(f"{base + i:08x}: {hexpart:<39}  {ascii_part}")
            text = "\n".join(lines) + "\n"
        elif style < 0.8:  # digests next to file names
            lines = [f"{rng.randbytes(rng.choice((16, 20, 32))).hex()}  file{rng.randint(0, 999)}.bin"
                     for _ in range(rng.randint(2, 12))]
            text = "\n".join(lines) + "\n"
        else:  # bare hex strings and 0x literals
            words = [rng.randbytes(rng.randint(4, 32)).hex() for _ in range(rng.randint(2, 8))]
            if rng.random() < 0.5:
                words = [f"0x{rng.randbytes(rng.choice((1, 2, 4))).hex()}," for _ in range(rng.randint(8, 40))]
            text = " ".join(words) + "\n"
        out.append(text)
        total += len(text)
    return "".join(out)


class BuiltinSource(CorpusSource):
    """The demo corpus: stdlib code + pydoc prose + generated DNA/base64/hex/other scripts.

    Building it lists and stats stdlib files (fast) but reads only the files it uses, and
    generates each generated document from its own seed only when iterated."""

    kind = "builtin"
    GEN_DOC_CHARS = (800, 4000)

    def __init__(self, cfg: CorpusConfig):
        super().__init__(cfg)
        self.stdlib_root = Path(sysconfig.get_paths()["stdlib"])
        self.topics = _pydoc_topics()
        self.docs = self._plan()

    def is_val(self, doc_id: str) -> bool:
        """Stratified for the generated classes: the first document of each class and then every
        1/val_fraction-th one is held out, so even a tiny corpus validates (and harvests) DNA,
        base64, hex and every script, not only code and prose."""
        if doc_id.startswith("gen/"):
            return self._gen_is_val(int(doc_id.rsplit("/", 1)[1]))
        return super().is_val(doc_id)

    def fingerprint(self) -> str:
        return (f"builtin|v{BUILTIN_VERSION}|{sys.version}|{self.stdlib_root}|seed={self.cfg.seed}"
                f"|max_chars={self.cfg.max_chars}")

    def estimate_chars(self) -> int:
        return sum(size for _, _, size in self.docs)

    def _plan(self) -> list[tuple[str, Any, int]]:
        """The document list: ``(kind, payload, approx_chars)``, shuffled with the seed."""
        seed = self.cfg.seed
        rng = random.Random(f"builtin:{seed}")
        library, tests = _stdlib_files()
        topic_chars = sum(len(t) for t in self.topics.values())
        code_chars = sum(s for _, s in library) + sum(s for _, s in tests)
        gen_fraction = sum(BUILTIN_MIX.values())
        if self.cfg.max_chars is None:
            total = int((code_chars + topic_chars) / (1 - gen_fraction))
        else:
            total = int(self.cfg.max_chars)
        # Slightly overfill every class so that the cap (not a shortfall) decides the final size.
        slack = 1.03
        docs: list[tuple[str, Any, int]] = []

        # prose: pydoc topics, shuffled, up to its share
        prose_budget = min(topic_chars, int(PROSE_MAX_FRACTION * total * slack))
        names = sorted(self.topics)
        rng.shuffle(names)
        used = 0
        for name in names:
            if used >= prose_budget:
                break
            size = len(self.topics[name])
            docs.append(("topic", name, size))
            used += size
        prose_used = used

        # generated classes
        gen_rng = random.Random(f"gen-sizes:{seed}")
        for kind, fraction in BUILTIN_MIX.items():
            budget = int(fraction * total * slack)
            used, index = 0, 0
            while used < budget:
                size = min(gen_rng.randint(*self.GEN_DOC_CHARS), budget - used)
                if self._gen_is_val(index):  # keep the held-out share near val_fraction at any size
                    size = min(size, int(2 * self.cfg.val_fraction * budget))
                size = max(size, 200)
                docs.append((kind, (index, size), size))
                used += size
                index += 1

        # code: library first, then test suites; files large relative to a small budget are
        # skipped so that one 200 kB module cannot crowd out the rest of a tiny corpus
        code_budget = int(total * slack - prose_used - gen_fraction * total * slack)
        max_file = max(8192, code_budget // 40)
        used = 0
        for pool in (library, tests):
            pool = [item for item in pool if 0 < item[1] <= max_file]
            rng.shuffle(pool)
            for rel, size in pool:
                if used >= code_budget:
                    break
                docs.append(("code", rel, size))
                used += size
        rng.shuffle(docs)
        # Held-out generated documents go first so that the max_chars cap (which drops the tail)
        # can never remove a class from the validation split.
        held_out = [d for d in docs if d[0] in BUILTIN_MIX and self._gen_is_val(d[1][0])]
        return held_out + [d for d in docs if not (d[0] in BUILTIN_MIX and self._gen_is_val(d[1][0]))]

    def _gen_is_val(self, index: int) -> bool:
        return self.cfg.val_fraction > 0 and index % max(1, round(1 / self.cfg.val_fraction)) == 0

    def _iter_raw(self) -> Iterator[tuple[str, str]]:
        seed = self.cfg.seed
        lexicons: dict[str, tuple[list[str], list[float]]] = {}
        prose_sample = "\n".join(self.topics[k] for k in sorted(self.topics)[:8])
        for kind, payload, _ in self.docs:
            if kind == "code":
                try:
                    data = (self.stdlib_root / payload).read_bytes()
                except OSError as exc:
                    self.report.append((payload, f"cannot read: {exc.strerror or exc}"))
                    continue
                text, reason = _decode_file_bytes(data)
                if text is None:
                    self.report.append((payload, reason))
                    continue
                for i, piece in enumerate(_cut_document(text)):
                    yield (f"stdlib/{payload}" if i == 0 else f"stdlib/{payload}#{i}"), piece
            elif kind == "topic":
                for i, piece in enumerate(_cut_document(self.topics[payload])):
                    yield (f"pydoc/{payload}" if i == 0 else f"pydoc/{payload}#{i}"), piece
            else:
                index, size = payload
                rng = random.Random(f"gen:{kind}:{seed}:{index}")
                if kind == "dna":
                    text = _gen_dna(rng, size)
                elif kind == "base64":
                    text = _gen_base64(rng, size)
                elif kind == "hex":
                    text = _gen_hex(rng, size, prose_sample)
                else:
                    if kind not in lexicons:
                        words = _script_lexicon(kind, seed)
                        lexicons[kind] = (words, list(itertools.accumulate(1.0 / (i + 1) for i in range(len(words)))))
                    text = _gen_script(rng, size, kind, *lexicons[kind])
                yield f"gen/{kind}/{index}", text


# ---------------------------------------------------------------------------------------------
# Opening a spec
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Tokenizing into the cache
# ---------------------------------------------------------------------------------------------


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


def _cache_key(source: CorpusSource, cfg: CorpusConfig, tokenizer: "Tokenizer") -> str:
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
    return Message(f"skipped {len(report)} unusable input(s): {_summarise_report([tuple(r) for r in report], 5)}",
                   level="warning")


def tokenize_corpus(cfg: CorpusConfig, tokenizer: "Tokenizer", cache_dir: str | os.PathLike | None = None,
                    cancel: CancelToken | None = None) -> Generator[Any, None, TokenData]:
    """Tokenize the corpus ``cfg`` names into cached train/val token files; yields ``Progress``
    (stage ``"tokenize"``, units = characters) and ``Message`` events, returns ``TokenData``.

    Streaming: documents are encoded in batches of ~1M characters and appended to the files, so
    memory stays flat. Files are written in a temporary folder that is renamed into place, so a
    crash or cancel never leaves a half-written cache that a later run would trust."""
    from engine import paths

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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
