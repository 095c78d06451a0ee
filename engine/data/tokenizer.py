"""Byte-level BPE tokenizer (HF ``tokenizers``): train on a corpus, or load a ``tokenizer.json``.

Byte-level means the base alphabet is the 256 byte values (shown as the printable characters of
GPT-2's byte-to-unicode table), so *any* text encodes and ``decode(encode(s)) == s`` exactly:
Arabic, Hebrew, CJK, emoji, code with tabs and trailing spaces. BPE then merges frequent byte pairs
up to ``vocab_size`` tokens. One special token, ``<|endoftext|>``, separates documents (``eos_id``).

    tok = Tokenizer.train(texts, vocab_size=4096)
    ids = tok.encode("def f(x):\\n\\treturn x")      # list[int]
    tok.decode(ids)                                 # the same string back
    tok.token_str(ids[0])                           # readable text of one token
    tok.vocab_strings()                             # every token's readable text, index = id

``train_tokenizer_job`` trains the same BPE as ``Tokenizer.train`` as a generator job: the Rust
trainer runs in a worker thread, fed by an iterator that counts the characters it hands over and
stops when the ``CancelToken`` is set, while the job yields ``Progress`` (unit ``"chars"``).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import Generator, Iterable, Iterator, Sequence

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from engine.config import TokenizerConfig
from engine.errors import UserError
from engine.events import Cancelled, CancelToken, Progress, RateMeter, StageFinished, StageStarted
from engine.fileio import atomic_path

__all__ = ["Tokenizer", "TokenizerError", "EOS_TOKEN", "train_tokenizer_job"]

_READABLE_BYTES = "superpos-readable-bytes"


def _readable_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    """Decode error handler: each byte that is not part of a complete UTF-8 character as ``⟨0xCD⟩``."""
    return "".join(f"⟨0x{b:02X}⟩" for b in err.object[err.start:err.end]), err.end


codecs.register_error(_READABLE_BYTES, _readable_bytes)

EOS_TOKEN = "<|endoftext|>"
MIN_VOCAB = 257  # 256 byte tokens + <|endoftext|>


class TokenizerError(UserError, ValueError):
    """A tokenizer could not be trained or loaded; the message says why and what to do."""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}


class Tokenizer:
    """A thin wrapper around an HF ``tokenizers.Tokenizer`` with byte-level BPE and one EOS token."""

    def __init__(self, hf: _HFTokenizer):
        self._hf = hf
        eos = hf.token_to_id(EOS_TOKEN)
        if eos is None:
            raise TokenizerError(f"the tokenizer has no {EOS_TOKEN} token; train one with superpos "
                                 "or add it as a special token")
        self.eos_id: int = int(eos)
        self.vocab_size: int = int(hf.get_vocab_size(with_added_tokens=True))

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> "Tokenizer":
        """Train byte-level BPE on ``texts``. The result may hold fewer than ``vocab_size`` tokens
        when the text is too small to support that many merges (``.vocab_size`` is the real size).
        ``train_tokenizer_job`` is the same training with progress and a cancel point."""
        hf, trainer = _untrained_bpe(vocab_size, min_frequency)
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @classmethod
    def from_json(cls, text: str) -> "Tokenizer":
        try:
            hf = _HFTokenizer.from_str(text)
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise TokenizerError(f"not a valid tokenizer.json: {exc}") from None
        return cls(hf)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.exists():
            raise TokenizerError(f"tokenizer file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"cannot read tokenizer file {path}: {exc}") from None
        try:
            return cls.from_json(text)
        except TokenizerError as exc:
            raise TokenizerError(f"{path}: {exc}") from None

    def to_json(self) -> str:
        return self._hf.to_str()

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` atomically (engine.fileio: temp file, fsync, rename)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        with atomic_path(path, what="the tokenizer") as tmp:
            tmp.write_text(self.to_json(), encoding="utf-8")
        return path

    @cached_property
    def _hash(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def hash(self) -> str:
        """sha256 of the serialised tokenizer: two tokenizers with equal hashes encode identically."""
        return self._hash

    # ---- encoding -----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts at once (parallel in Rust): much faster than a loop of ``encode``."""
        texts = list(texts)
        fast = getattr(self._hf, "encode_batch_fast", None)  # tokenizers >= 0.20: skips offsets
        encodings = fast(texts, add_special_tokens=False) if fast else self._hf.encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encodings]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and, per token, the ``(start, end)`` character span in ``text`` it came from.
        A character split over several byte tokens (an emoji, say) gives each of them its span."""
        enc = self._hf.encode(text, add_special_tokens=False)
        return enc.ids, [(int(s), int(e)) for s, e in enc.offsets]

    def decode(self, ids: Iterable[int]) -> str:
        return self._hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes a token stands for (``<|endoftext|>`` gives its literal text)."""
        token = self._hf.id_to_token(int(token_id))
        if token is None:
            raise TokenizerError(f"token id {token_id} is outside the vocabulary (size {self.vocab_size})")
        if int(token_id) == self.eos_id:
            return token.encode("utf-8")
        try:
            return bytes(_UNICODE_TO_BYTE[c] for c in token)
        except KeyError:  # an added token that is not byte-level: its text is its meaning
            return token.encode("utf-8")

    def token_str(self, token_id: int) -> str:
        """A token as a person reads it: its text, with bytes that are not complete UTF-8 shown as
        ``\\xe2``-style escapes (a token holding half of an emoji, say)."""
        token_id = int(token_id)
        if 0 <= token_id < self.vocab_size:
            return self._vocab_strings[token_id]
        return self._read_token_str(token_id)      # raises TokenizerError: outside the vocabulary

    def vocab_strings(self) -> tuple[str, ...]:
        """``token_str`` of every id, index = id (built once, then shared by every caller)."""
        return self._vocab_strings

    @cached_property
    def _vocab_strings(self) -> tuple[str, ...]:
        return tuple(self._read_token_str(i) for i in range(self.vocab_size))

    def _read_token_str(self, token_id: int) -> str:
        return self._shown_bytes(token_id, "backslashreplace")

    def _shown_bytes(self, token_id: int, errors: str) -> str:
        """A token's text for people, at most ``MAX_SHOWN_CHARS`` characters (then "…"): a tokenizer from a
        file may hold a 10 MB "token", which every table, search key and example would otherwise carry."""
        token = self._hf.id_to_token(int(token_id))
        if token is not None and len(token) > MAX_SHOWN_CHARS and int(token_id) != self.eos_id:
            head = token[:MAX_SHOWN_CHARS]
            try:
                raw = bytes(_UNICODE_TO_BYTE[c] for c in head)
            except KeyError:
                raw = head.encode("utf-8")
            return raw.decode("utf-8", errors=errors) + "\u2026"
        return self.token_bytes(token_id).decode("utf-8", errors=errors)

    def readable_strings(self) -> tuple[str, ...]:
        """Every token as the app shows it: like ``vocab_strings`` but a byte that is not complete
        UTF-8 reads ``⟨0xCD⟩`` instead of ``\\xcd`` (which looks like source text)."""
        return self._readable_strings

    @cached_property
    def _readable_strings(self) -> tuple[str, ...]:
        return tuple(self._shown_bytes(i, _READABLE_BYTES) for i in range(self.vocab_size))

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eos_id={self.eos_id})"


def _untrained_bpe(vocab_size: int, min_frequency: int) -> tuple[_HFTokenizer, trainers.BpeTrainer]:
    """An empty byte-level BPE tokenizer and the trainer that fills it (one recipe for both ways in)."""
    if vocab_size < MIN_VOCAB:
        raise TokenizerError(f"vocab_size must be at least {MIN_VOCAB} (256 bytes + end-of-text), "
                             f"got {vocab_size}")
    hf = _HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
        show_progress=False,
    )
    return hf, trainer


MAX_SHOWN_CHARS = 200        # a BPE token is rarely over 30 characters; this bounds a hostile one


class _StopFeeding(Exception):
    """Raised inside the trainer's input iterator to end a cancelled training."""


class _CountingFeed:
    """The trainer's input: passes ``texts`` through, counting characters; stops on cancel."""

    def __init__(self, texts: Iterable[str], cancel: CancelToken | None):
        self._texts = iter(texts)
        self._cancel = cancel
        self.stop = threading.Event()     # set by the job when it ends early (cancel, closed)
        self.chars = 0                    # read by the job's thread; only this feed writes it
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.stop.is_set() or (self._cancel is not None and self._cancel.cancelled):
            raise _StopFeeding
        try:
            text = next(self._texts)
        except StopIteration:
            self.exhausted = True
            raise
        self.chars += len(text)
        return text


def train_tokenizer_job(cfg: TokenizerConfig, texts: Iterable[str], total_chars: int = 0,
                        cancel: CancelToken | None = None, min_frequency: int = 2,
                        poll_s: float = 0.2) -> Generator[object, None, Tokenizer]:
    """Train byte-level BPE on ``texts`` (``cfg.vocab_size`` tokens at most) as a generator job:
    yields ``StageStarted("tokenizer")``, ``Progress`` (unit ``"chars"``) every ``poll_s`` seconds
    and ``StageFinished``, returns
    the ``Tokenizer`` — the same one ``Tokenizer.train`` makes from the same texts.

    Training has two phases: reading the texts (counting pre-tokenized words; ``texts`` is iterated
    in the worker thread) and then computing the merges, in Rust with no hook to stop it. While
    merging, progress stays at the characters read with ``metrics["merging"] = 1``. A cancel raises
    ``Cancelled`` within ``poll_s``: in the reading phase the feed stops the trainer; in the merging
    phase the (daemon) worker is left to finish on its own and its result is dropped. An error
    raised by ``texts`` (a ``CorpusError``, say) is raised here."""
    hf, trainer = _untrained_bpe(cfg.vocab_size, min_frequency)
    feed = _CountingFeed(texts, cancel)
    failure: list[BaseException] = []

    def train() -> None:
        try:
            hf.train_from_iterator(feed, trainer=trainer)
        except BaseException as exc:  # handed to the job's thread, which raises it
            failure.append(exc)

    worker = threading.Thread(target=train, name="superpos-bpe-train", daemon=True)
    meter = RateMeter(total_chars)
    t0 = time.perf_counter()
    yield StageStarted("tokenizer", total=total_chars, unit="chars")
    worker.start()
    try:
        yield Progress(stage="tokenizer", done=0, total=total_chars, unit="chars")
        while True:
            worker.join(poll_s)
            if cancel is not None and cancel.cancelled:
                raise Cancelled("tokenizer training cancelled")
            if not worker.is_alive():
                break
            done = feed.chars
            rate, eta = meter.update(done)
            yield Progress(stage="tokenizer", done=done, total=max(total_chars, done), unit="chars",
                           rate=rate, eta_s=None if feed.exhausted else eta,
                           metrics={"merging": 1.0} if feed.exhausted else {})
    finally:
        feed.stop.set()  # a closed or cancelled job stops the trainer at its next read
    if failure:
        raise failure[0]
    yield Progress(stage="tokenizer", done=feed.chars, total=feed.chars, unit="chars")
    tokenizer = Tokenizer(hf)
    yield StageFinished("tokenizer", seconds=time.perf_counter() - t0,
                        summary={"vocab_size": float(tokenizer.vocab_size), "chars": float(feed.chars)})
    return tokenizer
