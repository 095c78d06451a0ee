"""Offline labels for features and neurons, and a score that says how well each label predicts.

No language model: a *labeller* looks at a unit's labelling examples (the even-ranked top
examples) and returns a short label with a *rule* — a function from token windows to predicted
activations. The score is the paper's, computed without a model: the rule predicts every token's
activation on held-out windows (the odd-ranked top examples, all interval examples, and random
windows of the paired sample), and

    score = Spearman ρ(predicted, true activation)        over all tokens of those windows

(a constant prediction scores 0). Features and neurons are scored the same way, so their scores
compare. ``Labeller`` is a protocol: an LLM labeller with its own rule can replace ``RuleLabeller``.

``RuleLabeller`` sorts tokens into classes from their text and Unicode data: whitespace, a script
(Arabic, Hebrew, Cyrillic, Greek, CJK, …), DNA (A/C/G/T runs), hex digits, base64, digits, Python
keywords, brackets, punctuation, upper-case words, words, other. DNA, hex and base64 are decided by
the characters around a token (±6 tokens: ≥ 6 characters of the class's alphabet and ≤ 10% others;
hex needs digits and a-f letters, base64 upper, lower, and digits or +/), so they hold whether a
tokenizer keeps "GATTACA" whole or splits it into letters, and "A", "be" or "Zk" take the class of
the text they stand in. The candidate rules are the class with the largest activation-weighted share
of the example tokens, a dominating token (≥ half the weight; "the token ' self'", "Python keyword
'def'"), that token only within its class ("the token 'C' in DNA (ACGT runs)"), and a word family;
the labeller keeps the one whose predictions best match every token of the labelling windows
(Spearman again — the example's neighbours are the negatives), preferring the more general rule on
near-ties.

Shape legend: E examples (windows), W window tokens, V vocabulary, S sample tokens.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import numpy as np

from engine.stats import HarvestResult, UnitStats

__all__ = ["Labeller", "RuleLabeller", "Rule", "ClassRule", "TokenRule", "TokenInClassRule", "UnitView",
           "HeldOutSample", "TokenTable", "label_units", "label_harvest", "spearman", "class_share"]

# fixed token classes; scripts get ids from SCRIPT0 on, one per script seen in the vocabulary
PAD, WHITESPACE, DNA, HEX, BASE64, DIGITS, KEYWORD, BRACKET, PUNCT, UPPER, WORD, OTHER, PARTIAL = range(13)
SCRIPT0 = 13
CLASS_LABELS = {
    PAD: "", WHITESPACE: "whitespace / indentation", DNA: "DNA (ACGT runs)", HEX: "hex digits",
    BASE64: "base64", DIGITS: "digits", KEYWORD: "Python keywords", BRACKET: "brackets",
    PUNCT: "punctuation", UPPER: "upper-case words", WORD: "words", OTHER: "mixed tokens",
    PARTIAL: "partial characters",
}
# classes that say more than the token's kind; a single dominating token beats only the others
DISTINCTIVE = {DNA, HEX, BASE64, WHITESPACE}
_CONTEXT_RADIUS = 6
_SCRIPT_NAMES = {"CJK": "CJK characters", "HANGUL": "Hangul (Korean)", "HIRAGANA": "Japanese kana",
                 "KATAKANA": "Japanese kana"}
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

    @classmethod
    def from_strings(cls, strings: Sequence[str]) -> "TokenTable":
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
        return cls(list(strings), base, chars, scripts, stripped)

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int | None = None) -> "TokenTable":
        V = vocab_size if vocab_size is not None else int(getattr(tokenizer, "vocab_size", 0) or len(tokenizer))
        return cls.from_strings([tokenizer.token_str(i) for i in range(V)])

    def class_name(self, c: int) -> str:
        if c >= SCRIPT0:
            script = self.scripts[c - SCRIPT0]
            return _SCRIPT_NAMES.get(script, f"{script.title()} script")
        return CLASS_LABELS[c]

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
class UnitView:
    """What a labeller may look at for one unit: its labelling examples, classes and logits."""

    kind: str
    index: int
    tokens: np.ndarray            # int32 [E, W] windows (-1 padding)
    acts: np.ndarray              # float32 [E, W]
    center: int
    logit_top_ids: np.ndarray     # int32 [L]
    classes: np.ndarray | None = None   # int16 [E, W] token classes (RuleLabeller's table), if known


class Labeller(Protocol):
    def label(self, unit: UnitView) -> tuple[str, Rule]:
        ...


class RuleLabeller:
    """Labels from token classes (see the module docstring)."""

    def __init__(self, tokenizer=None, table: TokenTable | None = None, token_share: float = 0.5):
        if table is None:
            if tokenizer is None:
                raise ValueError("RuleLabeller needs a tokenizer or a TokenTable")
            table = TokenTable.from_tokenizer(tokenizer)
        self.table = table
        self.token_share = token_share

    def label(self, unit: UnitView) -> tuple[str, Rule]:
        center_tok = unit.tokens[:, unit.center]
        weight = np.maximum(unit.acts[:, unit.center].astype(np.float64), 0.0)
        ok = (center_tok >= 0) & (weight > 0)
        if not ok.any():
            return "", TokenRule(frozenset())
        classes = unit.classes if unit.classes is not None else self.table.classify(unit.tokens)
        cls_c, tok_c, w = classes[ok, unit.center].astype(int), center_tok[ok].astype(int), weight[ok]
        total = w.sum()
        by_class = np.bincount(cls_c, weights=w)
        best_class = int(np.argmax(by_class))
        class_share = by_class[best_class] / total
        tokens, inverse = np.unique(tok_c, return_inverse=True)
        by_token = np.bincount(inverse, weights=w)
        best_token = int(tokens[np.argmax(by_token)])
        token_share = by_token.max() / total
        # tokens with the same text up to surrounding spaces count as one token ("def", " def")
        text = self.table.stripped[best_token]
        same = frozenset(int(t) for t in tokens if self.table.stripped[t] == text and text)
        same_share = w[np.isin(tok_c, list(same))].sum() / total if same else token_share
        # candidate rules, most general first; each predicts the labelling windows' every token
        class_name = self.table.class_name(best_class)
        in_class = classes == best_class
        candidates = [(class_name, ClassRule(frozenset([best_class]), self.table), in_class)]
        if same_share >= self.token_share:
            ids = same if same else frozenset([best_token])
            is_token = np.isin(unit.tokens, list(ids))
            raw = self.table.strings[best_token]
            name = (f"Python keyword {text!r}" if self.table.base[best_token] == KEYWORD
                    else f"the token {raw!r}")
            if (best_class in DISTINCTIVE | self._script_classes() and class_share >= 0.5
                    and self.table.base[best_token] != best_class):    # "'C' in DNA", not "'д' in Cyrillic"
                candidates.append((f"{name} in {class_name}", TokenInClassRule(ids, best_class, self.table),
                                   is_token & in_class))
            candidates.append((name, TokenRule(ids), is_token))
        if best_class == WORD:
            family = self._word_family(tok_c, w, cls_c)
            if family is not None:
                candidates.append((*family, np.isin(unit.tokens, list(family[1].token_ids))))
        # keep the rule that best predicts those tokens (ties within 0.02: the earlier, more general)
        valid = unit.tokens >= 0
        fit = [spearman(pred[valid], unit.acts[valid]) for _, _, pred in candidates]
        best = max(fit)
        label, rule, _ = next(c for c, f in zip(candidates, fit) if f >= best - 0.02)
        return label, rule

    def _script_classes(self) -> set[int]:
        return {SCRIPT0 + i for i in range(len(self.table.scripts))}

    def _word_family(self, tok_c: np.ndarray, w: np.ndarray, cls_c: np.ndarray):
        """A common lowercase stem (≥ 4 letters) carrying half of the word examples' weight."""
        words = cls_c == WORD
        stems: dict[str, float] = {}
        for t, weight in zip(tok_c[words], w[words]):
            s = self.table.stripped[t].lower()
            if len(s) >= 4:
                stems[s[:4]] = stems.get(s[:4], 0.0) + weight
        if not stems:
            return None
        stem, share = max(stems.items(), key=lambda kv: kv[1])
        if share < 0.5 * w[words].sum():
            return None
        ids = frozenset(i for i, s in enumerate(self.table.stripped)
                        if s.lower().startswith(stem) and self.table.base[i] == WORD)
        return f"words starting {stem!r}", TokenRule(ids)


# --------------------------------------------------------------------------------------- scoring
def spearman(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman rank correlation; 0.0 when either side is constant (the paper's convention)."""
    pred, true = np.asarray(pred, dtype=np.float64).ravel(), np.asarray(true, dtype=np.float64).ravel()
    if pred.size < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return 0.0
    from scipy.stats import rankdata

    rp, rt = rankdata(pred), rankdata(true)
    rp -= rp.mean()
    rt -= rt.mean()
    den = np.sqrt((rp * rp).sum() * (rt * rt).sum())
    return float((rp * rt).sum() / den) if den > 0 else 0.0


@dataclass
class HeldOutSample:
    """Random windows of the paired sample, with every unit's true activation on them."""

    token_ids: np.ndarray          # int32 [S]
    acts_of: object                # callable unit -> float32 [S]
    positions: np.ndarray          # int64 [R] window centres

    @classmethod
    def from_result(cls, result: HarvestResult, kind: str, n_windows: int = 20, seed: int = 0) -> "HeldOutSample":
        S = len(result.sample_token_ids)
        rng = np.random.default_rng(seed)
        positions = np.sort(rng.choice(S, size=min(n_windows, S), replace=False)) if S else np.zeros(0, np.int64)
        if kind == "neuron":
            acts = result.sample_neuron_acts

            def acts_of(i: int) -> np.ndarray:
                return acts[:, i].astype(np.float32)
        else:
            ptr, tok, val = result.sample_feature_indptr, result.sample_feature_token, result.sample_feature_value

            def acts_of(i: int) -> np.ndarray:
                out = np.zeros(S, dtype=np.float32)
                out[tok[ptr[i]:ptr[i + 1]]] = val[ptr[i]:ptr[i + 1]]
                return out
        return cls(result.sample_token_ids, acts_of, positions)

    def windows(self, left: int, right: int) -> tuple[np.ndarray, np.ndarray]:
        """Token windows (R, W) and the sample indices they read (R, W) (-1 outside the sample)."""
        off = np.arange(-left, right + 1)
        idx = self.positions[:, None] + off[None, :]
        inside = (idx >= 0) & (idx < len(self.token_ids))
        idx = np.where(inside, idx, -1)
        toks = np.where(inside, self.token_ids[np.clip(idx, 0, max(len(self.token_ids) - 1, 0))], -1)
        return toks.astype(np.int64), idx


def _flatten_intervals(x: np.ndarray) -> np.ndarray:
    """(N, I, P, W) -> (N, I*P, W)."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def label_units(stats: UnitStats, tokenizer=None, held_out: HeldOutSample | None = None, seed: int = 0,
                labeller: Labeller | None = None, table: TokenTable | None = None,
                units: Iterable[int] | None = None) -> tuple[list[str], np.ndarray]:
    """Label and score every unit of ``stats`` (or only ``units``); also stores them in stats.

    Labelling examples: top examples of even rank. Held-out examples: top examples of odd rank, all
    interval examples, and the random windows of ``held_out`` (if given). Returns (labels, scores):
    scores are NaN for units with no active example. Deterministic: ``seed`` is accepted for
    labellers that sample; the random windows are drawn by ``HeldOutSample.from_result(seed=...)``.
    """
    if labeller is None:
        if table is None:
            table = TokenTable.from_tokenizer(tokenizer)
        labeller = RuleLabeller(table=table)
    table = getattr(labeller, "table", table)
    N = len(stats)
    labels = list(stats.labels) if len(stats.labels) == N else [""] * N
    scores = (np.asarray(stats.scores, dtype=np.float32).copy() if stats.scores is not None
              and len(stats.scores) == N else np.full(N, np.nan, dtype=np.float32))
    c = stats.top_center
    W = stats.top_tokens.shape[-1]
    left, right = c, W - 1 - c
    rand_tokens = rand_idx = None
    if held_out is not None and len(held_out.positions):
        rand_tokens, rand_idx = held_out.windows(left, right)
    int_tokens = _flatten_intervals(stats.interval_tokens)
    int_acts = _flatten_intervals(stats.interval_acts)
    units = list(range(N) if units is None else units)
    # classes of the units' top windows at once (context-dependent, so per window)
    top_classes = None
    if table is not None and units:
        sel = stats.top_tokens[units]
        top_classes = dict(zip(units, table.classify(sel.reshape(-1, W)).reshape(sel.shape)))
    for u in units:
        top_t, top_a = stats.top_tokens[u], stats.top_acts[u].astype(np.float32)
        live = top_t[:, c] >= 0
        if not live.any():
            labels[u], scores[u] = "", np.nan
            continue
        ranks = np.nonzero(live)[0]
        lab, held = ranks[::2], ranks[1::2]
        view = UnitView(kind=stats.kind, index=int(u), tokens=top_t[lab], acts=top_a[lab], center=c,
                        logit_top_ids=stats.logit_top_ids[u],
                        classes=top_classes[u][lab] if top_classes is not None else None)
        label, rule = labeller.label(view)
        ok_int = int_tokens[u][:, c] >= 0
        parts_t = [top_t[held], int_tokens[u][ok_int]]
        parts_a = [top_a[held], int_acts[u][ok_int].astype(np.float32)]
        if rand_tokens is not None:
            acts = held_out.acts_of(u)
            parts_t.append(rand_tokens)
            parts_a.append(np.where(rand_idx >= 0, acts[np.clip(rand_idx, 0, None)], 0.0))
        tokens_EW = np.concatenate(parts_t)
        true_EW = np.concatenate(parts_a)
        valid = tokens_EW >= 0
        pred_EW = rule.predict(tokens_EW)
        labels[u] = label
        scores[u] = spearman(pred_EW[valid], true_EW[valid])
    stats.labels, stats.scores = labels, scores
    return labels, scores


def label_harvest(result: HarvestResult, tokenizer, seed: int = 0, cancel=None, labeller: Labeller | None = None):
    """Generator: label features then neurons of a harvest (yields Progress(stage="labels")); returns result."""
    from engine.events import Cancelled, Progress

    table = getattr(labeller, "table", None) or TokenTable.from_tokenizer(tokenizer)
    labeller = labeller or RuleLabeller(table=table)
    total = len(result.features) + len(result.neurons)
    done = 0
    for stats in (result.features, result.neurons):
        held_out = HeldOutSample.from_result(result, stats.kind, seed=seed)
        labels = [""] * len(stats)
        scores = np.full(len(stats), np.nan, dtype=np.float32)
        stats.labels, stats.scores = labels, scores
        step = 256
        for start in range(0, len(stats), step):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("labelling cancelled")
            label_units(stats, held_out=held_out, seed=seed, labeller=labeller, table=table,
                        units=range(start, min(start + step, len(stats))))
            done += min(step, len(stats) - start)
            yield Progress(stage="labels", done=done, total=total, unit="units")
    return result


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
