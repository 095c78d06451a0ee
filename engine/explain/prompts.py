"""The prompts (one template, versioned by ``PROMPT_VERSION``) and the parsers of their answers.

Explain (the paper's and delphi's recipe): the top examples, examples from lower activation
intervals and random text, each as one line of text with the active tokens marked <<like this>>,
followed by every active token with its activation quantised 0–9 (``quantise``: 0 means below a
tenth of the unit's largest activation); then the tokens the unit's direct logit effect promotes
and suppresses most. The model answers one line, ``Explanation: …``.

Score:

- detection: the explanation and a batch of unmarked examples; the model answers one digit per
  example (1 = the unit fires on it). Delphi's detection scorer.
- fuzzing: the same, but every example has some tokens marked; the model says whether the marked
  tokens are what the explanation describes. Delphi's fuzzing scorer.
- simulation: the explanation and one example's tokens, one per line; the model answers one digit
  0–9 per token (the predicted activation). With logprobs the prediction is the expected digit.

Every answer is digits, one per line, so one parser (``parse_digits``) reads all three scorers
and, given logprobs, the probability of each digit. Asked for structured output
(``engine.explain.ask``), the answers are ``{"answers": [digits]}`` and ``{"explanation": "…"}``,
read by ``parse_digits_json`` (the logprobs of the digit tokens inside the JSON) and
``parse_explanation_json``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Sequence

import numpy as np

from engine.explain.client import MalformedReply, RefusalError, Reply

__all__ = ["PROMPT_VERSION", "quantise", "render_marked", "render_plain", "explain_messages",
           "detection_messages", "fuzzing_messages", "simulation_messages", "parse_explanation", "parse_digits",
           "parse_explanation_json", "parse_digits_json", "Example"]

PROMPT_VERSION = "superpos-explain-2"     # 2: structured output where the server takes it, one re-ask

Example = tuple[np.ndarray, np.ndarray]    # (tokens [W] int, -1 = padding; acts [W] float)

_REFUSAL = re.compile(r"^\s*(i'?m sorry|i am sorry|i can(?:no|')t|i cannot|i won'?t|as an ai)\b", re.I)

EXPLAIN_SYSTEM = (
    "You are a meticulous interpretability researcher studying one unit of a small language model. "
    "You see text excerpts in which the unit is active. In each excerpt the tokens where it fires are "
    "marked <<like this>>, and after it each marked token is listed with its activation from 1 (weak) to "
    "9 (strongest). Find what the unit responds to: a token, a kind of text, a context or a pattern. "
    "Be concrete and short (at most 15 words); say in what context it fires if that matters. "
    "Answer with one line: Explanation: <your explanation>")
DETECTION_SYSTEM = (
    "You test an explanation of a unit of a language model. You get the explanation and numbered text "
    "excerpts. For each excerpt decide whether the unit fires anywhere in it, judging only by the "
    "explanation. Answer with exactly one line per excerpt, in order, each line holding only 1 (fires) "
    "or 0 (does not).")
FUZZING_SYSTEM = (
    "You test an explanation of a unit of a language model. You get the explanation and numbered text "
    "excerpts in which some tokens are marked <<like this>>. For each excerpt decide whether the marked "
    "tokens are ones the explanation says the unit fires on. Answer with exactly one line per excerpt, "
    "in order, each line holding only 1 (correctly marked) or 0 (not).")
SIMULATION_SYSTEM = (
    "You predict a language-model unit's activation on every token of a text from an explanation of the "
    "unit. You get the explanation and the text's tokens, one per numbered line. Answer with exactly one "
    "line per token, in order, each line holding only one digit from 0 (silent) to 9 (strongest).")


def quantise(acts: np.ndarray, max_act: float) -> np.ndarray:
    """Activations -> int levels 0..9 relative to ``max_act`` (0: below a tenth of it, or max_act <= 0)."""
    acts = np.asarray(acts, np.float64)
    if not max_act > 0:
        return np.zeros(acts.shape, np.int64)
    return np.clip(np.floor(10.0 * acts / max_act), 0, 9).astype(np.int64)


def _tok(vocab: Sequence[str], t: int) -> str:
    return vocab[t].replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def render_plain(vocab: Sequence[str], tokens: np.ndarray) -> str:
    """An example's text on one line (newlines shown as \\n)."""
    return "".join(_tok(vocab, int(t)) for t in tokens if t >= 0)


def render_marked(vocab: Sequence[str], tokens: np.ndarray, marked: np.ndarray) -> str:
    """An example's text with the tokens where ``marked`` is true wrapped in << >> (runs joined)."""
    out, open_ = [], False
    for t, m in zip(tokens, marked):
        if t < 0:
            continue
        if m and not open_:
            out.append("<<")
        elif not m and open_:
            out.append(">>")
        open_ = bool(m)
        out.append(_tok(vocab, int(t)))
    if open_:
        out.append(">>")
    return "".join(out)


def _activations_line(vocab: Sequence[str], tokens: np.ndarray, levels: np.ndarray) -> str:
    pairs = [f"{json.dumps(_tok(vocab, int(t)), ensure_ascii=False)} {int(q)}"
             for t, q in zip(tokens, levels) if t >= 0 and q > 0]
    return "Activations: " + (", ".join(pairs) if pairs else "none")


def explain_messages(vocab: Sequence[str], sections: Sequence[tuple[str, Sequence[Example]]], max_act: float,
                     promoted: Sequence[int], suppressed: Sequence[int]) -> list[dict[str, str]]:
    """The explain request: each section is (title, examples)."""
    lines: list[str] = []
    n = 0
    for title, examples in sections:
        if not examples:
            continue
        lines.append(f"{title}:")
        for tokens, acts in examples:
            n += 1
            levels = quantise(acts, max_act)
            lines.append(f"Example {n}: {render_marked(vocab, tokens, levels > 0)}")
            lines.append(_activations_line(vocab, tokens, levels))
        lines.append("")
    def names(ids):
        return ", ".join(json.dumps(_tok(vocab, int(t)), ensure_ascii=False) for t in ids if t >= 0) or "none"
    lines.append(f"Next tokens it promotes most: {names(promoted)}")
    lines.append(f"Next tokens it suppresses most: {names(suppressed)}")
    return [{"role": "system", "content": EXPLAIN_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def _numbered(explanation: str, texts: Sequence[str], kind: str) -> str:
    body = "\n".join(f"{kind} {i + 1}: {t}" for i, t in enumerate(texts))
    return f"Explanation: {explanation}\n\n{body}\n\nAnswer with {len(texts)} lines."


def detection_messages(explanation: str, vocab: Sequence[str], examples: Sequence[Example]) -> list[dict[str, str]]:
    texts = [render_plain(vocab, t) for t, _ in examples]
    return [{"role": "system", "content": DETECTION_SYSTEM},
            {"role": "user", "content": _numbered(explanation, texts, "Excerpt")}]


def fuzzing_messages(explanation: str, vocab: Sequence[str], examples: Sequence[Example],
                     marks: Sequence[np.ndarray]) -> list[dict[str, str]]:
    texts = [render_marked(vocab, t, m) for (t, _), m in zip(examples, marks)]
    return [{"role": "system", "content": FUZZING_SYSTEM},
            {"role": "user", "content": _numbered(explanation, texts, "Excerpt")}]


def simulation_messages(explanation: str, vocab: Sequence[str], tokens: np.ndarray) -> list[dict[str, str]]:
    toks = [json.dumps(_tok(vocab, int(t)), ensure_ascii=False) for t in tokens if t >= 0]
    return [{"role": "system", "content": SIMULATION_SYSTEM},
            {"role": "user", "content": _numbered(explanation, toks, "Token")}]


# ------------------------------------------------------------------------------------------ parsing
def parse_explanation(reply: Reply) -> str:
    """The explanation in an explain answer (after the last "Explanation:", else its first line)."""
    text = reply.content.strip()
    if _REFUSAL.match(text):
        raise RefusalError(f"the model declined: {text[:100]}")
    found = re.findall(r"explanation\s*:\s*(.+)", text, flags=re.I)
    line = (found[-1] if found else re.sub(r"^\s*explanation\s*:", "", text.splitlines()[0], flags=re.I)).strip()
    if len(line) > 1 and line[0] == line[-1] == '"' and line.count('"') == 2:     # "a quoted answer"
        line = line[1:-1].strip()
    if not line:
        raise MalformedReply("the answer holds no explanation")
    return line[:300]


_DIGIT_LINE = re.compile(r"^\s*(?:[A-Za-z]+\s*)?(?:\d+\s*[:.)\t-]\s*)?([0-9])\s*[.,]?\s*$")
_DIGITS_ONLY = re.compile(r"^[\s\[\](),;0-9]+$")


def parse_digits(reply: Reply, n: int, top: int = 9) -> np.ndarray:
    """The n answers (float [n]) of a digits-per-line answer: the digit, or with logprobs the expected
    digit over 0..top. MalformedReply if there are not n digit lines."""
    text = reply.content.strip()
    if _REFUSAL.match(text):
        raise RefusalError(f"the model declined: {text[:100]}")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    digits = []
    if len(lines) == 1 and n > 1 and _DIGITS_ONLY.match(lines[0]):     # "1, 0, 1" on one line
        digits = [int(d) for d in re.findall(r"\d+", lines[0])]
        if any(d > 9 for d in digits):
            raise MalformedReply(f"expected digits 0-9, got {lines[0].strip()[:40]!r}")
        lines = []
    read = [_read_line(ln, top) for ln in lines]
    hits = [i for i, d in enumerate(read) if d is not None]
    if hits:                  # words before the first answer line or after the last ("Here are my answers:")
        lines, read = lines[hits[0]:hits[-1] + 1], read[hits[0]:hits[-1] + 1]
    for ln, d in zip(lines, read):
        if d is None:
            raise MalformedReply(f"expected one digit per line, got {ln.strip()[:40]!r}")
        digits.append(d)
    if len(digits) != n:
        raise MalformedReply(f"expected {n} lines of digits, got {len(digits)}")
    values = np.clip(np.asarray(digits, np.float64), 0, top)
    expected = _expected_digits(reply, n, top)
    return expected if expected is not None else values


_YES_NO = re.compile(r"^\s*(?:[A-Za-z]+\s*)?(?:\d+\s*[:.)\t-]\s*)?(yes|no|true|false)\b[.!]?\s*$", re.I)


def _read_line(line: str, top: int) -> int | None:
    """One answer line's digit ("1", "3: 1", "Excerpt 2: 0"; for 0/1 answers also "yes" / "no"), else None."""
    m = _DIGIT_LINE.match(line)
    if m is not None:
        return int(m.group(1))
    m = _YES_NO.match(line) if top == 1 else None
    return None if m is None else int(m.group(1).lower() in ("yes", "true"))


def parse_explanation_json(data, reply: Reply) -> str:
    """The explanation of a structured answer ``{"explanation": "…"}``."""
    text = data.get("explanation") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise MalformedReply('expected {"explanation": "<text>"}')
    if _REFUSAL.match(text):
        raise RefusalError(f"the model declined: {text[:100]}")
    return " ".join(text.split())[:300]


def parse_digits_json(data, reply: Reply, n: int, top: int = 9) -> np.ndarray:
    """The n answers of a structured answer ``{"answers": [d, …]}``: the digits, or with logprobs the
    expected digit of each (from the output tokens that are the answers' digits)."""
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in answers):
        raise MalformedReply(f'expected {{"answers": [{n} digits]}}, got {json.dumps(data)[:60]}')
    if len(answers) != n:
        raise MalformedReply(f"expected {n} answers, got {len(answers)}")
    values = np.clip(np.asarray(answers, np.float64), 0, top)
    expected = _expected(_digit_tokens(reply, "json"), n, top)
    return expected if expected is not None else values


def _digit_tokens(reply: Reply, shape: str) -> list[tuple[str, dict[str, float]]] | None:
    """The output tokens (with their alternatives) that are the answer's digits, in order: in a JSON
    answer every token that is one digit (up to quotes, commas, brackets); in text the last digit of
    each line."""
    if not reply.logprobs:
        return None
    if shape == "json":
        return [(t, alts) for t, alts in reply.logprobs if _one_digit(t) is not None]
    out = []
    line_digit: tuple[str, dict[str, float]] | None = None
    for token, alts in reply.logprobs + [("\n", {})]:
        if token.strip().isdigit() and len(token.strip()) == 1:
            line_digit = (token, alts)
        if "\n" in token:
            if line_digit is not None:
                out.append(line_digit)
            line_digit = None
    return out


def _one_digit(token: str) -> int | None:
    t = token.strip(" \t\n,[]{}:\"")
    return int(t) if len(t) == 1 and t.isdigit() else None


def _expected(tokens: list | None, n: int, top: int) -> np.ndarray | None:
    """Expected digit per answer from its token's alternatives (None where they do not line up)."""
    if tokens is None or len(tokens) != n:
        return None
    values = []
    for _, alts in tokens:
        probs: dict[int, float] = {}
        for k, v in alts.items():
            d = _one_digit(k)
            if d is not None and d <= top:
                probs[d] = probs.get(d, 0.0) + math.exp(v)
        total = sum(probs.values())
        if total <= 0:
            return None
        values.append(sum(d * p for d, p in probs.items()) / total)
    return np.asarray(values, np.float64)


def _expected_digits(reply: Reply, n: int, top: int) -> np.ndarray | None:
    """Expected digit per answer line of a text answer, from its logprobs (None where missing)."""
    return _expected(_digit_tokens(reply, "text"), n, top)
