"""The built-in demo corpus, made from what every Python install has.

The standard library's ``.py`` sources (code, comments, docstrings) and ``pydoc_data.topics`` (the
language reference's English prose), plus generated segments so that the paper's hallmark features
have something to find: DNA (FASTA records and bare ACGT runs), base64 of random bytes, hex dumps
(``xxd`` style and bare hex strings) and real-language text sampled by word frequency
(``engine.data.languages``: Arabic, Hebrew, Cyrillic, Greek ~2% each; Chinese, Japanese, Korean,
French, German, Spanish ~1% each; DNA, base64 and hex ~3% each of the characters). Documents of all classes are shuffled together with the seed before the ``max_chars``
cap, so a small corpus still holds every class. The output is deterministic for
``CorpusConfig.seed`` (and the Python version whose stdlib it reads, and the wordfreq and numpy
versions whose lists it samples with: all are in the fingerprint).
"""

from __future__ import annotations

import base64
import os
import random
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterator

from engine.config import CorpusConfig
from engine.data.languages import gen_language_text, text_versions
from engine.data.sources import CorpusSource, cut_document, decode_file_bytes

__all__ = ["BuiltinSource", "BUILTIN_MIX", "BUILTIN_VERSION"]

BUILTIN_VERSION = 3           # bump when the built-in recipe changes (invalidates token caches)

# Fraction of the built-in corpus's characters per generated class; the rest is stdlib code and prose.
BUILTIN_MIX = {
    "dna": 0.03, "base64": 0.03, "hex": 0.03,
    "arabic": 0.02, "hebrew": 0.02, "cyrillic": 0.02, "greek": 0.02,
    "chinese": 0.01, "japanese": 0.01, "korean": 0.01, "french": 0.01, "german": 0.01, "spanish": 0.01,
}
PROSE_MAX_FRACTION = 0.12     # pydoc topics: at most this share (there are only ~0.5M chars of them)


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
    """The demo corpus: stdlib code + pydoc prose + generated DNA/base64/hex + sampled real languages.

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
        return (f"builtin|v{BUILTIN_VERSION}|{sys.version}|{self.stdlib_root}|{text_versions()}"
                f"|seed={self.cfg.seed}"
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
        prose_sample = "\n".join(self.topics[k] for k in sorted(self.topics)[:8])
        for kind, payload, _ in self.docs:
            if kind == "code":
                try:
                    data = (self.stdlib_root / payload).read_bytes()
                except OSError as exc:
                    self.report.append((payload, f"cannot read: {exc.strerror or exc}"))
                    continue
                text, reason = decode_file_bytes(data)
                if text is None:
                    self.report.append((payload, reason))
                    continue
                for i, piece in enumerate(cut_document(text)):
                    yield (f"stdlib/{payload}" if i == 0 else f"stdlib/{payload}#{i}"), piece
            elif kind == "topic":
                for i, piece in enumerate(cut_document(self.topics[payload])):
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
                    text = gen_language_text(rng, size, kind)
                yield f"gen/{kind}/{index}", text
