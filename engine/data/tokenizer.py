"""Byte-level BPE tokenizer (HF ``tokenizers``): train on a corpus, or load a ``tokenizer.json``.

Byte-level means the base alphabet is the 256 byte values (shown as the printable characters of
GPT-2's byte-to-unicode table), so *any* text encodes and ``decode(encode(s)) == s`` exactly:
Arabic, Hebrew, CJK, emoji, code with tabs and trailing spaces. BPE then merges frequent byte pairs
up to ``vocab_size`` tokens. One special token, ``<|endoftext|>``, separates documents (``eos_id``).

    tok = Tokenizer.train(texts, vocab_size=4096)
    ids = tok.encode("def f(x):\\n\\treturn x")      # list[int]
    tok.decode(ids)                                 # the same string back
    tok.token_str(ids[0])                           # readable text of one token
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from engine.errors import UserError

__all__ = ["Tokenizer", "TokenizerError", "EOS_TOKEN"]

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
        self._token_str_cache: dict[int, str] = {}

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> "Tokenizer":
        """Train byte-level BPE on ``texts``. The result may hold fewer than ``vocab_size`` tokens
        when the text is too small to support that many merges (``.vocab_size`` is the real size)."""
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
        """Write ``tokenizer.json`` atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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
        cached = self._token_str_cache.get(token_id)
        if cached is None:
            cached = self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")
            self._token_str_cache[token_id] = cached
        return cached

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eos_id={self.eos_id})"
