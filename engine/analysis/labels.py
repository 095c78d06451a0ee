"""Offline labels for features and neurons, and a score that says how well each label predicts.

No language model: a *labeller* looks at a unit's labelling examples (the even-ranked top
examples) and returns a short label with a *rule* — a function from token windows to predicted
activations. The score is the paper's, computed without a model: the rule predicts every token's
activation on held-out windows (the odd-ranked top examples, all interval examples, and random
windows of the paired sample), and

    score = Spearman ρ(predicted, true activation)        over all tokens of those windows

(a constant prediction scores 0). Features and neurons are scored the same way, so their scores
compare. ``Labeller`` is a protocol: an LLM labeller with its own rule can replace ``RuleLabeller``.

``RuleLabeller`` reads the token classes of ``engine.analysis.token_classes``. Its candidate rules
are the class with the largest activation-weighted share of the example tokens, a dominating token
(≥ half the weight; "the token ' self'", "Python keyword 'def'"), that token only within its class
("the token 'C' in DNA"), a word family, the two to four tokens that carry 80% of the
weight, each predicting its own mean activation ("the tokens ' self', ' cls'"), and each of those in
context: after the class or the token that precedes most of the weight ("… after Greek script",
"… after '):'"), in text of one class ("whitespace / indentation in base64": the line breaks of a
base64 block, not of prose; "the token ' se' in Spanish text") or at one place in code ("… in
comments", "… in string literals", "Python keyword 'return' after indentation"). Classes too common
to say anything ("words", "punctuation") are never a context. The classes include languages
(French, German, Spanish, Russian, Ukrainian, Bulgarian, Chinese, Japanese: from the words around a
token, ``token_classes``) and scripts (Arabic, Hebrew, Greek, Korean). The labeller keeps the rule
whose predictions best match every token of the labelling windows (Spearman again — the example's
neighbours are the negatives), preferring the more general rule on near-ties (0.02) and an
informative class ("base64", "French text") within ``class_slack`` (0.05), then the rule's
in-context form if it fits within ``context_slack`` (0.02; the more specific description is the true
one). Tokens are written as the app shows them (⟨0xD8⟩ for a byte of a partial character, ↵ for a
newline). "… (top: ' >=')" marks a polysemantic unit: the rule misses most of its three strongest
labelling examples, which fire on that token. A label whose best fit is below ``loose_fit`` (0.2)
says so: "… (loose fit)". ``benchmarks/bench_labels.py`` measures the labeller on a real bundle
against the labels stored in it.

``label_harvest`` is the pipeline's labelling job (progress in units labelled, cancellable);
``label_units`` labels one kind's units in one call.

Shape legend: E examples (windows), W window tokens, S sample tokens, R random windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Generator, Iterable, Protocol

import numpy as np

from engine.analysis.token_classes import (BASE64, BRACKET, BULGARIAN, CODE_CONTEXTS, DIGITS, DNA, EUROPEAN, FRENCH,
                                           GERMAN, HEX, KEYWORD, LANGUAGES, OTHER, PAD, PARTIAL, PUNCT, RUSSIAN,
                                           SCRIPT0, SPANISH, UKRAINIAN, UPPER, WHITESPACE, WORD, AfterRule, AmidRule,
                                           ClassRule, CodeContextRule, Rule, TokenInClassRule, TokenRule, TokenTable,
                                           WeightedTokenRule, code_contexts, near_class_count, quote_token)
from engine.events import Cancelled, CancelToken, Progress, RateMeter, StageFinished, StageStarted
from engine.stats import HarvestResult, UnitStats

__all__ = ["Labeller", "RuleLabeller", "UnitView", "HeldOutSample", "label_units", "label_harvest", "spearman",
           "score_medians"]

# classes that say more than the token's kind; a single dominating token beats only the others
DISTINCTIVE = {DNA, HEX, BASE64, WHITESPACE, *LANGUAGES}
# classes too common to say where a token is ("in words", "after punctuation" tell a reader nothing)
VAGUE = {PAD, WORD, OTHER, PARTIAL, PUNCT, UPPER, DIGITS}


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
    """Labels from the token classes of a ``TokenTable`` (the candidate rules: see the module docstring)."""

    def __init__(self, tokenizer=None, table: TokenTable | None = None, token_share: float = 0.5,
                 context_share: float = 0.7, loose_fit: float = 0.2, context_slack: float = 0.02,
                 class_slack: float = 0.05):
        if table is None:
            if tokenizer is None:
                raise ValueError("RuleLabeller needs a tokenizer or a TokenTable")
            table = TokenTable.from_tokenizer(tokenizer)
        self.table = table
        self.token_share = token_share
        self.context_share = context_share
        self.loose_fit = loose_fit
        self.context_slack = context_slack
        self.class_slack = class_slack

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
        languages = self._languages(by_class, total)
        if languages:            # text of several languages, none alone ("pour dans le", "jeweils", "Desaparecer")
            names = " / ".join(self.table.class_name(k).removesuffix(" text") for k in languages)
            candidates.append((f"{names} text", ClassRule(frozenset(languages), self.table),
                               np.isin(classes, list(languages))))
        if same_share >= self.token_share:
            ids = same if same else frozenset([best_token])
            is_token = np.isin(unit.tokens, list(ids))
            name = (f"Python keyword {quote_token(text)}" if self.table.base[best_token] == KEYWORD
                    else f"the token {self.table.quoted(best_token)}")
            if (best_class in DISTINCTIVE | self._script_classes() and class_share >= 0.5
                    and self.table.base[best_token] != best_class):    # "'C' in DNA", not "'д' in Cyrillic"
                candidates.append((in_text_of(name, class_name), TokenInClassRule(ids, best_class, self.table),
                                   is_token & in_class))
            candidates.append((name, TokenRule(ids), is_token))
        if best_class == WORD:
            family = self._word_family(tok_c, w, cls_c)
            if family is not None:
                candidates.append((*family, np.isin(unit.tokens, list(family[1].token_ids))))
        token_set = self._token_set(tokens, by_token, total, unit.acts[ok, unit.center][:, None], inverse)
        if token_set is not None:
            candidates.append((*token_set, token_set[1].predict(unit.tokens)))
        candidates += self._in_context(unit, classes, ok, w, candidates)
        # keep the rule that best predicts those tokens (ties within 0.02: the earlier, more general)
        valid = unit.tokens >= 0
        fit = [spearman(pred[valid], unit.acts[valid]) for _, _, pred in candidates]
        best = max(fit)
        label, rule, _ = next(c for c, f in zip(candidates, fit) if f >= best - 0.02)
        if best_class not in VAGUE | {WHITESPACE} and fit[0] >= best - self.class_slack:
            label, rule, _ = candidates[0]       # "base64", "French text": the kind of text, if it fits nearly as well
        if languages and fit[1] >= best - self.class_slack:
            label, rule, _ = candidates[1]
        # the same rule in its context, if that fits as well: the more specific description is the true one
        chosen = fit[[c[1] for c in candidates].index(rule)]
        in_context = [(f, lab, r) for (lab, r, _), f in zip(candidates, fit)
                      if isinstance(r, (AfterRule, AmidRule, CodeContextRule)) and r.rule is rule
                      and f >= chosen - self.context_slack]
        if in_context:
            _, label, rule = max(in_context, key=lambda x: x[0])
        top = self._top_elsewhere(unit, rule, classes)
        if top and top.split(" in ")[0] not in label and top.split(" in ")[-1] not in label:
            label += f" (top: {top})"
        if best < self.loose_fit:
            label += " (loose fit)"
        return label, rule

    def _top_elsewhere(self, unit: UnitView, rule: Rule, classes: np.ndarray) -> str:
        """What the top examples fire on when the rule misses most of them (the unit is polysemantic:
        its label says what the bulk is, this what its strongest activations are); else ""."""
        c = unit.center
        top = unit.tokens[:3]
        live = top[:, c] >= 0
        if live.sum() < 2 or (rule.predict(top)[live, c] > 0).sum() * 2 > live.sum():
            return ""
        t = int(top[0, c])
        name = (f"Python keyword {quote_token(self.table.stripped[t])}" if self.table.base[t] == KEYWORD
                else self.table.quoted(t))
        cls = int(classes[0, c])
        if cls in DISTINCTIVE - {WHITESPACE} or cls >= SCRIPT0:
            name += f" in {self.table.class_name(cls)}"
        return name

    @staticmethod
    def _languages(by_class: np.ndarray, total: float) -> list[int]:
        """Two or more languages of one family (French, German, Spanish; Russian, Ukrainian, Bulgarian) that
        together hold half of the examples' weight, each a tenth of it."""
        for family in ((FRENCH, GERMAN, SPANISH, EUROPEAN), (RUSSIAN, UKRAINIAN, BULGARIAN)):
            weight = {k: by_class[k] for k in family if k < len(by_class)}
            some = [k for k, v in weight.items() if v >= 0.1 * total]
            if len(some) >= 2 and sum(weight[k] for k in some) >= 0.5 * total:
                return sorted(set(some) | ({FRENCH, GERMAN, SPANISH} if EUROPEAN in some else set()))
        return []

    def _token_set(self, tokens: np.ndarray, by_token: np.ndarray, total: float, center_acts: np.ndarray,
                   inverse: np.ndarray):
        """The few tokens (2–4) that carry most of the weight, each predicting its mean activation."""
        order = np.argsort(-by_token)
        share = np.cumsum(by_token[order]) / total
        n = int(np.searchsorted(share, 0.8) + 1)
        if n < 2 or n > 4:
            return None
        keep = order[:n]
        mean = np.array([center_acts[inverse == j].mean() for j in keep], np.float64)
        weights = {int(tokens[j]): float(m / mean.max()) for j, m in zip(keep, mean)}
        names = ", ".join(self.table.quoted(int(tokens[j])) for j in keep)
        shared = {int(self.table.base[int(tokens[j])]) for j in keep}
        if len(shared) == 1 and shared & {KEYWORD, BRACKET, DIGITS, PUNCT}:    # "brackets '(', '['"
            return f"{self.table.class_name(shared.pop())} {names}", WeightedTokenRule(weights)
        return f"the tokens {names}", WeightedTokenRule(weights)

    def _in_context(self, unit: UnitView, classes: np.ndarray, ok: np.ndarray, w: np.ndarray, candidates: list):
        """Each candidate restricted to what comes before the unit's token, where one class or one token
        precedes most of its weight ("newline after base64", "' self' after '('")."""
        c = unit.center
        if c == 0:
            return []
        prev_cls = classes[ok, c - 1].astype(int)
        prev_tok = unit.tokens[ok, c - 1].astype(int)
        live = prev_tok >= 0
        if not live.any():
            return []
        out = []
        total = w.sum()
        pc_weight = np.bincount(prev_cls[live], weights=w[live])
        pc = int(np.argmax(pc_weight))
        toks, inv = np.unique(prev_tok[live], return_inverse=True)
        pt_weight = np.bincount(inv, weights=w[live])
        pt = int(toks[np.argmax(pt_weight)])
        # the class that surrounds the unit's token (other than its own): "newline in base64"
        near_by_class = {k: near_class_count(classes, k) for k in set(int(x) for x in np.unique(classes[ok]))
                         | set(int(x) for x in np.unique(prev_cls)) if k not in VAGUE | {WHITESPACE}}
        amid = None
        if near_by_class:
            share = {k: w[near[ok, c] >= 2].sum() / total for k, near in near_by_class.items()}
            k_best = max(share, key=share.get)
            if share[k_best] >= self.context_share:
                amid = k_best
        contexts = code_contexts(self.table, unit.tokens)
        for where in CODE_CONTEXTS:
            inside = contexts[where]
            if w[inside[ok, c]].sum() >= self.context_share * total:
                out += [(f"{label} {where}", CodeContextRule(rule, self.table, where), pred * inside)
                        for label, rule, pred in list(candidates)]
        if amid is not None:
            around = near_by_class[amid] >= 2
            for label, rule, pred in list(candidates):
                if self.table.class_name(amid) not in label:
                    out.append((in_text_of(label, self.table.class_name(amid)), AmidRule(rule, self.table, amid),
                                pred * around))
        after_class = np.zeros(unit.tokens.shape, bool)     # predictions on the labelling windows, from
        after_class[:, 1:] = classes[:, :-1] == pc           # the classes already known (no re-classify)
        after_token = np.zeros(unit.tokens.shape, bool)
        after_token[:, 1:] = unit.tokens[:, :-1] == pt
        for label, rule, pred in list(candidates):
            if pc_weight[pc] >= self.context_share * total and pc not in VAGUE and self.table.class_name(pc) not in label:
                out.append((f"{label} after {self.table.class_name(pc)}",
                            AfterRule(rule, self.table, prev_classes=frozenset([pc])), pred * after_class))
            if pt_weight.max() >= self.context_share * total:
                out.append((f"{label} after {self.table.quoted(pt)}",
                            AfterRule(rule, self.table, prev_tokens=frozenset([pt])), pred * after_token))
        return out

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


def in_text_of(label: str, class_name: str) -> str:
    """A rule's label restricted to text of one class, the class first as the paper writes them
    ("Arabic script: '⟨0xD8⟩'", "base64: '7', '1'"); other labels take "… in <class>"."""
    for head in ("the tokens ", "the token "):
        if label.startswith(head):
            return f"{class_name}: {label[len(head):]}"
    return f"{label} in {class_name}"


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
    context: int = 0               # the sample is whole contexts of this many tokens (0: one stretch)

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
        W = np.asarray(result.sample_context_starts).size
        return cls(result.sample_token_ids, acts_of, positions, S // W if W else 0)

    def windows(self, left: int, right: int) -> tuple[np.ndarray, np.ndarray]:
        """Token windows (R, W) and the sample indices they read (R, W) (-1 outside the sample or the
        centre's context)."""
        off = np.arange(-left, right + 1)
        idx = self.positions[:, None] + off[None, :]
        inside = (idx >= 0) & (idx < len(self.token_ids))
        if self.context:
            inside &= idx // self.context == self.positions[:, None] // self.context
        idx = np.where(inside, idx, -1)
        toks = np.where(inside, self.token_ids[np.clip(idx, 0, max(len(self.token_ids) - 1, 0))], -1)
        return toks.astype(np.int64), idx


def _flatten_intervals(x: np.ndarray) -> np.ndarray:
    """(N, I, P, W) -> (N, I*P, W)."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def _resolve(tokenizer, labeller: Labeller | None, table: TokenTable | None) -> tuple[Labeller, TokenTable | None]:
    """The labeller (default: a RuleLabeller) and the table whose classes go into UnitView.classes."""
    if labeller is None:
        labeller = RuleLabeller(tokenizer, table=table)
    if isinstance(labeller, RuleLabeller):
        table = labeller.table
    return labeller, table


def _label_some(stats: UnitStats, labeller: Labeller, table: TokenTable | None, held_out: HeldOutSample | None,
                units: list[int], labels: list[str], scores: np.ndarray) -> None:
    """Label and score ``units`` of ``stats`` into ``labels`` / ``scores`` (in place)."""
    c = stats.top_center
    W = stats.top_tokens.shape[-1]
    left, right = c, W - 1 - c
    rand_tokens = rand_idx = None
    if held_out is not None and len(held_out.positions):
        rand_tokens, rand_idx = held_out.windows(left, right)
    int_tokens = _flatten_intervals(stats.interval_tokens)
    int_acts = _flatten_intervals(stats.interval_acts)
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


def label_units(stats: UnitStats, tokenizer=None, held_out: HeldOutSample | None = None, seed: int = 0,
                labeller: Labeller | None = None, table: TokenTable | None = None,
                units: Iterable[int] | None = None) -> tuple[list[str], np.ndarray]:
    """Label and score every unit of ``stats`` (or only ``units``); also stores them in stats.

    Labelling examples: top examples of even rank. Held-out examples: top examples of odd rank, all
    interval examples, and the random windows of ``held_out`` (if given). Returns (labels, scores):
    scores are NaN for units with no active example. Deterministic: ``seed`` is accepted for
    labellers that sample; the random windows are drawn by ``HeldOutSample.from_result(seed=...)``.
    """
    labeller, table = _resolve(tokenizer, labeller, table)
    N = len(stats)
    labels = list(stats.labels) if len(stats.labels) == N else [""] * N
    scores = (np.asarray(stats.scores, dtype=np.float32).copy() if stats.scores is not None
              and len(stats.scores) == N else np.full(N, np.nan, dtype=np.float32))
    _label_some(stats, labeller, table, held_out, list(range(N) if units is None else units), labels, scores)
    stats.labels, stats.scores = labels, scores
    return labels, scores


def label_harvest(result: HarvestResult, tokenizer, seed: int = 0, cancel: CancelToken | None = None,
                  labeller: Labeller | None = None, chunk: int = 256) -> Generator[object, None, HarvestResult]:
    """Generator job: label and score every feature, then every neuron, of a harvest (in place).

    Yields ``StageStarted("labels")``, a ``Progress(unit="units")`` per ``chunk`` units labelled
    and ``StageFinished`` (summary: the median scores); checks ``cancel`` before every chunk
    (raising ``Cancelled``). Returns ``result`` with ``labels`` / ``scores`` filled in; the held-out
    random windows of each kind are ``HeldOutSample.from_result(result, kind, seed=seed)``.
    """
    labeller, table = _resolve(tokenizer, labeller, None)
    total = len(result.features) + len(result.neurons)
    t0 = time.perf_counter()
    meter = RateMeter(total)
    yield StageStarted("labels", total=total, unit="units")
    done = 0
    for stats in (result.features, result.neurons):
        held_out = HeldOutSample.from_result(result, stats.kind, seed=seed)
        labels = [""] * len(stats)
        scores = np.full(len(stats), np.nan, dtype=np.float32)
        for start in range(0, len(stats), chunk):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("labelling cancelled")
            units = list(range(start, min(start + chunk, len(stats))))
            _label_some(stats, labeller, table, held_out, units, labels, scores)
            done += len(units)
            rate, eta = meter.update(done)
            yield Progress(stage="labels", done=done, total=total, rate=rate, eta_s=eta, unit="units")
        stats.labels, stats.scores = labels, scores
    yield StageFinished("labels", seconds=time.perf_counter() - t0, summary=score_medians(result))
    return result


def score_medians(result: HarvestResult) -> dict[str, float]:
    """Median label score of the features and of the neurons (NaN where no unit has a score)."""
    out = {}
    for name, stats in (("feature", result.features), ("neuron", result.neurons)):
        scores = np.asarray(stats.scores if stats.scores is not None else [], dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        out[f"{name}_score_median"] = float(np.median(scores)) if scores.size else float("nan")
    return out
