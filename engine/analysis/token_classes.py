"""Token classes: what kind of text each token of a window stands in, from its string alone.

``TokenTable`` sorts a vocabulary's tokens into classes from their text and Unicode data:
whitespace, a script (Arabic, Hebrew, Cyrillic, Greek, CJK, …), DNA (A/C/G/T runs), hex digits,
base64, digits, Python keywords, brackets, punctuation, upper-case words, words, other. DNA, hex
and base64 are decided by the characters around a token (±6 tokens: ≥ 6 characters of the class's
alphabet and ≤ 10% others; hex needs digits and a-f letters, base64 upper, lower, and digits or
+/), so they hold whether a tokenizer keeps "GATTACA" whole or splits it into letters, and "A",
"be" or "Zk" take the class of the text they stand in. Partial UTF-8 characters (byte tokens such
as "\\xd8") take the script of their lead byte, or of their neighbours.

The rules (``ClassRule``, ``TokenRule``, ``TokenInClassRule``) predict an activation (1 or 0) for
every token of windows from those classes; ``engine.analysis.labels`` picks and scores them.
``class_share`` is the most common class among a unit's top examples.

Shape legend: E examples (windows), W window tokens, V vocabulary.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from engine.stats import UnitStats

__all__ = ["TokenTable", "Rule", "ClassRule", "TokenRule", "TokenInClassRule", "WeightedTokenRule", "AfterRule",
           "AmidRule", "CodeContextRule", "near_class_count", "code_contexts", "CODE_CONTEXTS", "quote_token",
           "previous_classes", "class_share", "CLASS_LABELS", "LANGUAGES"]

# fixed token classes; scripts get ids from SCRIPT0 on, one per script seen in the vocabulary
PAD, WHITESPACE, DNA, HEX, BASE64, DIGITS, KEYWORD, BRACKET, PUNCT, UPPER, WORD, OTHER, PARTIAL = range(13)
# languages, decided from the words around a token (``_LANGUAGE_EVIDENCE``)
FRENCH, GERMAN, SPANISH, RUSSIAN, UKRAINIAN, BULGARIAN, CHINESE, JAPANESE, EUROPEAN = range(13, 22)
LANGUAGES = (FRENCH, GERMAN, SPANISH, RUSSIAN, UKRAINIAN, BULGARIAN, CHINESE, JAPANESE, EUROPEAN)
SCRIPT0 = 22
CLASS_LABELS = {
    PAD: "", WHITESPACE: "whitespace / indentation", DNA: "DNA", HEX: "hex",
    BASE64: "base64", DIGITS: "digits", KEYWORD: "Python keywords", BRACKET: "brackets",
    PUNCT: "punctuation", UPPER: "upper-case words", WORD: "words", OTHER: "mixed tokens",
    PARTIAL: "partial characters", FRENCH: "French text", GERMAN: "German text", SPANISH: "Spanish text",
    RUSSIAN: "Russian text", UKRAINIAN: "Ukrainian text", BULGARIAN: "Bulgarian text", CHINESE: "Chinese text",
    JAPANESE: "Japanese text", EUROPEAN: "French / German / Spanish text",
}
_CONTEXT_RADIUS = 6
_SCRIPT_NAMES = {"CJK": "CJK characters", "HANGUL": "Korean text", "HIRAGANA": "Japanese kana",
                 "KATAKANA": "Japanese kana"}
# (class, wordfreq code, script of its words, letters only it uses among its neighbours); "en" has no class
_LANGUAGE_EVIDENCE = ((None, "en", "LATIN", ""), (FRENCH, "fr", "LATIN", "èêçœàùâîôûé"),
                      (GERMAN, "de", "LATIN", "äöüß"), (SPANISH, "es", "LATIN", "ñ¿¡áíóúé"),
                      (RUSSIAN, "ru", "CYRILLIC", "ыэё"), (UKRAINIAN, "uk", "CYRILLIC", "іїєґ"),
                      (BULGARIAN, "bg", "CYRILLIC", "ъ"))
_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")


# --------------------------------------------------------------------------------------- token table
def _script_of_lead_bytes(data: bytes) -> str | None:
    """Script of a partial UTF-8 sequence from its lead byte (None: only continuation bytes)."""
    for i, b in enumerate(data):
        if b < 0x80 or b >= 0xC0:
            nxt = data[i + 1] if i + 1 < len(data) else None
            if 0xCE <= b <= 0xCF or (b == 0xCD and (nxt or 0) >= 0xB0):
                return "GREEK"
            if 0xD0 <= b <= 0xD3:
                return "CYRILLIC"
            if b in (0xD6, 0xD7):
                return "HEBREW"
            if 0xD8 <= b <= 0xDB:
                return "ARABIC"
            if b == 0xE0 and nxt in (0xA4, 0xA5):
                return "DEVANAGARI"
            if b == 0xE0 and nxt in (0xB8, 0xB9):
                return "THAI"
            if 0xE4 <= b <= 0xE9:
                return "CJK"
            if 0xEA <= b <= 0xED:
                return "HANGUL"
            if b == 0xE3 and nxt in (0x81, 0x82, 0x83):
                return "HIRAGANA"
            return None
    return None


def _letter_script(text: str) -> str | None:
    """The most common non-Latin script among the letters of text (None if Latin or no letters)."""
    counts: dict[str, int] = {}
    for ch in text:
        if unicodedata.category(ch)[0] != "L":
            continue
        name = unicodedata.name(ch, "")
        script = name.split(" ")[0] if name else ""
        if script in ("", "LATIN"):
            continue
        counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.get) if counts else None


@dataclass
class TokenTable:
    """Per-token-id flags and classes for a vocabulary (built once, from token strings)."""

    strings: list[str]
    base: np.ndarray          # int16 [V] context-free class (scripts >= SCRIPT0)
    chars: np.ndarray         # int16 [V, len(_CHAR_STATS)] character counts that decide DNA/hex/base64
    scripts: list[str]        # script names; class SCRIPT0 + i
    stripped: list[str]
    evidence: np.ndarray      # bool [V, len(_LANGUAGE_EVIDENCE)] the token is a word of that language only
    code: np.ndarray          # int8 [V, len(_CODE_FLAGS)] what a token holds of code's structure
    display: list[str]        # as the app shows tokens (a byte that is not whole UTF-8 as ⟨0xD8⟩)

    @classmethod
    def from_strings(cls, strings: Sequence[str], display: Sequence[str] | None = None) -> "TokenTable":
        """``strings``: each token's text with incomplete UTF-8 bytes as ``\\xd8`` (``vocab_strings``);
        ``display``: as the app shows them (``readable_strings``), default ``strings``."""
        V = len(strings)
        base = np.full(V, OTHER, dtype=np.int16)
        chars = np.zeros((V, len(_CHAR_STATS)), dtype=np.int16)
        scripts: list[str] = []
        stripped = [s.strip() for s in strings]
        kw = set(keyword.kwlist)
        for i, (s, t) in enumerate(zip(strings, stripped)):
            escapes = _ESCAPE.findall(s)
            plain = _ESCAPE.sub("", s).strip()
            script = _letter_script(plain)
            if script is None and escapes and not plain:
                script = _script_of_lead_bytes(bytes(int(h, 16) for h in escapes))
                if script is None:
                    base[i] = PARTIAL
                    continue
            if script is not None:
                if script not in scripts:
                    scripts.append(script)
                base[i] = SCRIPT0 + scripts.index(script)
                continue
            chars[i] = _char_stats(s)
            if not t:
                base[i] = WHITESPACE if s else OTHER
                continue
            if t.isdigit():
                base[i] = DIGITS
            elif t in kw:
                base[i] = KEYWORD
            elif all(c in "()[]{}<>" for c in t):
                base[i] = BRACKET
            elif all(unicodedata.category(c)[0] in "PS" for c in t):
                base[i] = PUNCT
            elif t.isalpha():
                base[i] = UPPER if t.isupper() and len(t) >= 2 else WORD
        display = list(strings) if display is None else list(display)[:V]
        return cls(list(strings), base, chars, scripts, stripped, _language_evidence(stripped),
                   _code_flags(strings), display)

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int | None = None) -> "TokenTable":
        V = vocab_size if vocab_size is not None else tokenizer.vocab_size
        readable = getattr(tokenizer, "readable_strings", None)
        return cls.from_strings(tokenizer.vocab_strings()[:V], readable()[:V] if readable else None)

    def class_name(self, c: int) -> str:
        if c >= SCRIPT0:
            script = self.scripts[c - SCRIPT0]
            return _SCRIPT_NAMES.get(script, f"{script.title()} script")
        return CLASS_LABELS[c]

    def quoted(self, token: int) -> str:
        """A token as a label names it: its text as the app shows it (⟨0xD8⟩ for a partial character,
        ↵ for a newline, → for a tab), in quotes that show its spaces."""
        return quote_token(self.display[token])

    def classify(self, tokens_EW: np.ndarray) -> np.ndarray:
        """Class of every token (E, W) of windows, using its neighbours for ambiguous tokens."""
        tokens_EW = np.asarray(tokens_EW)
        valid = tokens_EW >= 0
        ids = np.where(valid, tokens_EW, 0)
        base = np.where(valid, self.base[ids], PAD).astype(np.int16)
        out = base.copy()
        ch = np.where(valid[..., None], self.chars[ids], 0).astype(np.float32)          # (E, W, stats)
        near = _neighbour_sum(ch.reshape(ch.shape[0], ch.shape[1], -1), radius=_CONTEXT_RADIUS) + ch
        for cls_ in (BASE64, HEX, DNA):          # later wins: DNA over hex over base64
            good, bad = _STAT[cls_, "good"], _STAT[cls_, "bad"]
            capable = (ch[..., good] > 0) & (ch[..., bad] == 0)
            in_context = _composition_ok(cls_, near, min_chars=6) | _composition_ok(cls_, ch, min_chars=6)
            take = capable & in_context & (base < SCRIPT0) & (base != WHITESPACE)
            out[take] = cls_
        # partial characters take the script of their neighbours
        partial = out == PARTIAL
        if partial.any() and self.scripts:
            for s in range(len(self.scripts)):
                near = _neighbour_sum((base == SCRIPT0 + s).astype(np.float32))
                out[partial & (near >= 1)] = SCRIPT0 + s
        self._languages_(out, ids, valid)
        return out

    def _script_class(self, name: str) -> int | None:
        return SCRIPT0 + self.scripts.index(name) if name in self.scripts else None

    def _languages_(self, out: np.ndarray, ids: np.ndarray, valid: np.ndarray) -> None:
        """Word tokens in text of one language take its class (in place): Latin words where ≥ 2 of the
        tokens within ±6 are French (German, Spanish) words that English lacks, more than of the other two and
        than English-only words;
        Cyrillic the same among Russian, Ukrainian and Bulgarian; CJK characters are Japanese
        next to kana, else Chinese; kana are Japanese."""
        ev = np.where(valid[..., None], self.evidence[ids], False).astype(np.float32)        # (E, W, L)
        near = _neighbour_sum(ev) + ev
        cols = {code: j for j, (_, code, _, _) in enumerate(_LANGUAGE_EVIDENCE)}
        cyrillic = self._script_class("CYRILLIC")
        for members, codes, rival in (((WORD, UPPER, OTHER, PARTIAL), ("fr", "de", "es"), near[..., cols["en"]]),
                                      ((cyrillic,), ("ru", "uk", "bg"), None)):
            if members == (None,):
                continue
            counts = near[..., [cols[c] for c in codes]]                                     # (E, W, 3)
            order = np.sort(counts, axis=-1)
            best = np.argmax(counts, axis=-1)
            ok = (order[..., -1] >= 2) & np.isin(out, members)
            if rival is not None:
                ok &= order[..., -1] > rival
                out[ok & (order[..., -1] == order[..., -2])] = EUROPEAN     # foreign, but which one is a tie
            ok &= order[..., -1] > order[..., -2]
            for j, code in enumerate(codes):
                out[ok & (best == j)] = next(c for c, k, _, _ in _LANGUAGE_EVIDENCE if k == code)
        cjk = self._script_class("CJK")
        kana = [k for k in (self._script_class("HIRAGANA"), self._script_class("KATAKANA")) if k is not None]
        if kana:
            is_kana = np.isin(out, kana)
            if cjk is not None:
                near_kana = _neighbour_sum(is_kana.astype(np.float32)) >= 1
                out[(out == cjk) & near_kana] = JAPANESE
            out[is_kana] = JAPANESE
        if cjk is not None:
            out[out == cjk] = CHINESE


def quote_token(text: str) -> str:
    """A token's text in quotes, its line breaks and tabs made visible (↵, →) as the app draws them."""
    text = text.replace("\r", "").replace("\n", "↵").replace("\t", "→")
    return f'"{text}"' if "'" in text and '"' not in text else f"'{text}'"


def _language_evidence(stripped: Sequence[str]) -> np.ndarray:
    """[V, languages]: the token is one of a language's frequent words (wordfreq's lists, as the corpus
    samples them) and not an English one (French, German, Spanish) or of no other language of its script
    (English, Russian, Ukrainian, Bulgarian), or holds a letter that language uses and English does not."""
    from engine.data.languages import language     # wordfreq's lists: loaded once per process

    words = [frozenset(language(code, (script,)).words) for _, code, script, _ in _LANGUAGE_EVIDENCE]
    out = np.zeros((len(stripped), len(_LANGUAGE_EVIDENCE)), bool)
    english = next(j for j, e in enumerate(_LANGUAGE_EVIDENCE) if e[1] == "en")
    for i, t in enumerate(stripped):
        w = t.lower()
        if not w.isalpha():
            continue
        for j, (_, _, script, letters) in enumerate(_LANGUAGE_EVIDENCE):
            if w in words[j]:
                # a Latin word counts for each non-English language that has it, if English has not;
                # English words and Cyrillic ones count only if no other language of their script has them
                if script == "LATIN" and j != english:
                    others = [english]
                else:
                    others = [k for k, e in enumerate(_LANGUAGE_EVIDENCE) if k != j and e[2] == script]
                out[i, j] = not any(w in words[k] for k in others)
            if letters and any(ch in letters for ch in w):
                out[i, j] = True
    return out


def _neighbour_sum(x_EW: np.ndarray, radius: int = _CONTEXT_RADIUS) -> np.ndarray:
    """Sum of x over the positions within ``radius`` of each position (axis 1), itself excluded."""
    E, W = x_EW.shape[:2]
    c = np.zeros((E, W + 1) + x_EW.shape[2:], dtype=np.float32)
    np.cumsum(x_EW, axis=1, out=c[:, 1:])
    idx = np.arange(W)
    hi = np.minimum(idx + radius + 1, W)
    lo = np.maximum(idx - radius, 0)
    return c[:, hi] - c[:, lo] - x_EW


# character statistics of a token (columns of TokenTable.chars)
_CHAR_STATS = ("dna", "not_dna", "hex", "not_hex", "hex_digit", "hex_letter", "b64", "not_b64", "upper",
               "lower", "digit", "plus_slash")
_COL = {name: j for j, name in enumerate(_CHAR_STATS)}
_STAT = {(DNA, "good"): _COL["dna"], (DNA, "bad"): _COL["not_dna"],
         (HEX, "good"): _COL["hex"], (HEX, "bad"): _COL["not_hex"],
         (BASE64, "good"): _COL["b64"], (BASE64, "bad"): _COL["not_b64"]}


def _char_stats(s: str) -> list[int]:
    """Counts per _CHAR_STATS. Neutral characters (in none of the counts): newlines for DNA and
    base64, whitespace and , : for hex, '=' (padding) for base64, 'x'/'X' (0x) for hex."""
    dna = sum(c in "ACGTacgt" for c in s)
    not_dna = sum(c not in "ACGTacgt\n\r" for c in s)
    hex_digit = sum(c.isdigit() and c.isascii() for c in s)
    hex_letter = sum(c in "abcdefABCDEF" for c in s)
    not_hex = sum(not (c in "0123456789abcdefABCDEF" or c in " \t\n\r,:xX") for c in s)
    b64 = sum(c.isascii() and (c.isalnum() or c in "+/") for c in s)
    not_b64 = sum(not (c.isascii() and (c.isalnum() or c in "+/=\n\r")) for c in s)
    upper = sum(c.isascii() and c.isupper() for c in s)
    lower = sum(c.isascii() and c.islower() for c in s)
    return [dna, not_dna, hex_digit + hex_letter, not_hex, hex_digit, hex_letter, b64, not_b64, upper, lower,
            hex_digit, sum(c in "+/" for c in s)]


def _composition_ok(cls_: int, counts: np.ndarray, min_chars: int) -> np.ndarray:
    """Whether character counts (..., stats) look like DNA, hex or base64 text."""
    good, bad = counts[..., _STAT[cls_, "good"]], counts[..., _STAT[cls_, "bad"]]
    ok = (good >= min_chars) & (bad <= 0.1 * (good + bad))
    if cls_ == HEX:
        ok &= (counts[..., _COL["hex_digit"]] >= 1) & (counts[..., _COL["hex_letter"]] >= 1)
    elif cls_ == BASE64:
        ok &= (counts[..., _COL["upper"]] >= 1) & (counts[..., _COL["lower"]] >= 1)
        ok &= (counts[..., _COL["digit"]] + counts[..., _COL["plus_slash"]]) >= 1
    return ok


# --------------------------------------------------------------------------------------- code contexts
# columns of TokenTable.code: '#' characters, quote characters outside triple quotes, holds a newline,
# ends with a newline, ends with a newline and indentation, is only spaces / tabs
_CODE_FLAGS = ("hash", "quotes", "newline", "ends_newline", "ends_indent", "blank")
_INDENT_END = re.compile(r"\n[ \t]+$")


def _code_flags(strings: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(strings), len(_CODE_FLAGS)), np.int8)
    for i, s in enumerate(strings):
        single = s.replace('"""', "").replace("'''", "")
        out[i] = (min(s.count("#"), 1), min(single.count('"') + single.count("'"), 9), "\n" in s,
                  s.endswith("\n"), bool(_INDENT_END.search(s)), bool(s) and not s.strip(" \t"))
    return out


CODE_CONTEXTS = ("in comments", "in string literals", "after indentation", "at line start")


def code_contexts(table: TokenTable, tokens_EW: np.ndarray) -> dict[str, np.ndarray]:
    """Where each token of windows (E, W) stands in code, read from the window alone (bool (E, W) per
    name of ``CODE_CONTEXTS``): after a '#' on its line; after an odd number of quotes on its line (not
    in a comment); the first token of an indented line; the first token of a line."""
    tokens_EW = np.asarray(tokens_EW)
    valid = tokens_EW >= 0
    f = np.where(valid[..., None], table.code[np.where(valid, tokens_EW, 0)], 0)            # (E, W, flags)
    col = {name: j for j, name in enumerate(_CODE_FLAGS)}
    E, W = tokens_EW.shape
    idx = np.broadcast_to(np.arange(W), (E, W))
    last_hash = np.maximum.accumulate(np.where(f[..., col["hash"]] > 0, idx, -1), axis=1)
    nl_at = np.where(f[..., col["newline"]] > 0, idx, -1)
    last_nl_before = np.full((E, W), -1)
    last_nl_before[:, 1:] = np.maximum.accumulate(nl_at, axis=1)[:, :-1]
    comment = (last_hash >= 0) & (last_hash > last_nl_before) & valid
    # quotes on the line before the token: the running count less the count at the line's start
    q = np.cumsum(f[..., col["quotes"]], axis=1) - f[..., col["quotes"]]                     # before each token
    q_line = np.where(last_nl_before >= 0,
                      np.take_along_axis(np.cumsum(f[..., col["quotes"]], axis=1), np.maximum(last_nl_before, 0),
                                         axis=1), 0)
    string = ((q - q_line) % 2 == 1) & ~comment & valid
    prev = np.zeros_like(f)
    prev[:, 1:] = f[:, :-1]
    prev2 = np.zeros_like(f)
    prev2[:, 2:] = f[:, :-2]
    me_blank = f[..., col["blank"]] > 0
    indented = ((prev[..., col["ends_indent"]] > 0)
                | ((prev[..., col["blank"]] > 0) & (prev2[..., col["ends_newline"]] > 0))) & ~me_blank & valid
    line_start = (prev[..., col["ends_newline"]] > 0) & ~me_blank & valid
    return {"in comments": comment, "in string literals": string, "after indentation": indented,
            "at line start": line_start}


@dataclass
class CodeContextRule:
    """Another rule, only where the token stands in one place of code ("Python keyword 'return' after
    indentation", "words in comments")."""

    rule: object
    table: TokenTable
    context: str

    def predict(self, tokens_EW: np.ndarray) -> np.ndarray:
        return self.rule.predict(tokens_EW) * code_contexts(self.table, tokens_EW)[self.context]


# --------------------------------------------------------------------------------------- rules
class Rule(Protocol):
    def predict(self, tokens_EW: np.ndarray) -> np.ndarray:
        """Predicted activation (E, W) of every token of windows (E, W) (-1 = padding)."""


@dataclass
class ClassRule:
    classes: frozenset
    table: TokenTable

    def predict(self, tokens_EW: np.ndarray) -> np.ndarray:
        return np.isin(self.table.classify(tokens_EW), list(self.classes)).astype(np.float32)


@dataclass
class TokenRule:
    token_ids: frozenset

    def predict(self, tokens_EW: np.ndarray) -> np.ndarray:
        return np.isin(np.asarray(tokens_EW), list(self.token_ids)).astype(np.float32)


@dataclass
class TokenInClassRule:
    """Given tokens, only where they stand in text of one class ("'C' in DNA")."""

    token_ids: frozenset
    cls: int
    table: TokenTable

    def predict(self, tokens_EW: np.ndarray) -> np.ndarray:
        tokens_EW = np.asarray(tokens_EW)
        hit = np.isin(tokens_EW, list(self.token_ids)) & (self.table.classify(tokens_EW) == self.cls)
        return hit.astype(np.float32)


@dataclass
class WeightedTokenRule:
    """A few tokens, each predicting its own typical activation ("the tokens ' self', ' cls'")."""

    weights: dict

    def predict(self, tokens_EW: np.ndarray) -> np.ndarray:
        tokens_EW = np.asarray(tokens_EW)
        out = np.zeros(tokens_EW.shape, np.float32)
        for t, w in self.weights.items():
            out[tokens_EW == t] = w
        return out


def previous_classes(table: TokenTable, tokens_EW: np.ndarray, classes_EW: np.ndarray | None = None) -> np.ndarray:
    """Class of the token before each token of windows (PAD at a window's first position)."""
    classes_EW = table.classify(tokens_EW) if classes_EW is None else classes_EW
    prev = np.full(classes_EW.shape, PAD, dtype=classes_EW.dtype)
    prev[:, 1:] = classes_EW[:, :-1]
    return prev


@dataclass
class AfterRule:
    """Another rule, only where the previous token has one of some classes or is one of some tokens
    ("newline after base64", "the token 'x' after 'self'")."""

    rule: object
    table: TokenTable
    prev_classes: frozenset = frozenset()
    prev_tokens: frozenset = frozenset()

    def predict(self, tokens_EW: np.ndarray) -> np.ndarray:
        tokens_EW = np.asarray(tokens_EW)
        ok = np.zeros(tokens_EW.shape, bool)
        if self.prev_classes:
            ok |= np.isin(previous_classes(self.table, tokens_EW), list(self.prev_classes))
        if self.prev_tokens:
            ok[:, 1:] |= np.isin(tokens_EW[:, :-1], list(self.prev_tokens))
        return self.rule.predict(tokens_EW) * ok


def near_class_count(classes_EW: np.ndarray, cls: int, radius: int = 3) -> np.ndarray:
    """How many of the ``radius`` tokens either side of each token have class ``cls``."""
    return _neighbour_sum((classes_EW == cls).astype(np.float32), radius=radius)


@dataclass
class AmidRule:
    """Another rule, only amid text of one class: at least ``min_near`` of the 3 tokens either side
    have it ("newline amid base64": the line breaks of a base64 block, not of prose)."""

    rule: object
    table: TokenTable
    cls: int
    min_near: int = 2

    def predict(self, tokens_EW: np.ndarray) -> np.ndarray:
        near = near_class_count(self.table.classify(tokens_EW), self.cls)
        return self.rule.predict(tokens_EW) * (near >= self.min_near)


def class_share(stats: UnitStats, table: TokenTable, unit: int, k: int | None = None) -> tuple[str, float]:
    """The most common class among a unit's top-k example tokens and its share (unweighted)."""
    tokens = stats.top_tokens[unit][: k or stats.top_tokens.shape[1]]
    live = tokens[:, stats.top_center] >= 0
    if not live.any():
        return "", 0.0
    classes = table.classify(tokens[live])[:, stats.top_center].astype(int)
    counts = np.bincount(classes)
    best = int(np.argmax(counts))
    return table.class_name(best), float(counts[best] / live.sum())
