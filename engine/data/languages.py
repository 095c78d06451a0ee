"""Real-language text for the built-in corpus: words of real languages sampled by frequency.

The words and their frequencies are ``wordfreq``'s lists (Robyn Speer et al., data CC-BY-SA 4.0;
read from the package's own files, nothing is downloaded, and no segmenter such as jieba or MeCab
is needed: ``wordfreq.get_frequency_list`` only reads them). Each language keeps its ``TOP_WORDS``
most frequent words written wholly in its script, each drawn with its corpus frequency
(``10 ** (-bucket / 100)``, wordfreq's centibel buckets), so a sample has the language's real
Zipf shape: its function words, its letter and character statistics, its word lengths.

The text is shaped the way the script writes sentences: words separated by spaces, or run together
in Chinese and Japanese; sentence ends and commas of the script (Arabic ``،`` and ``؟``, Greek
``;`` as a question mark, CJK ``。``, ``，``, ``、``); a capital at the start of a sentence in the
cased scripts; French elisions joined (``l'`` + word); Greek word-final sigma as ``ς`` and Korean
particles attached to the word before (wordfreq stores the one as ``σ`` and splits the other off).
It is word salad — real words in real proportions, not grammar — which is what a script-level or
language-level feature needs. Deterministic for the ``random.Random`` given.
"""

from __future__ import annotations

import functools
import operator
import random
import unicodedata
from dataclasses import dataclass

import numpy as np

__all__ = ["LANGUAGE_CLASSES", "TOP_WORDS", "Language", "language", "gen_language_text", "text_versions"]

TOP_WORDS = 5000      # words kept per language (the tail beyond is < 1% of running text)
_BATCH = 64           # sentences drawn at once
_COMMA_RATE = 0.08    # a comma after about one word in twelve (not after the first or last)
_QUESTION_RATE = 0.08
_PARAGRAPH_RATE = 0.25


@dataclass(frozen=True)
class Style:
    """How a language writes sentences."""

    script: tuple[str, ...]        # Unicode name prefixes every letter of a kept word must have
    spaced: bool = True            # words separated by spaces (False: Chinese, Japanese)
    stop: str = "."
    comma: str = ","
    question: str = "?"
    cased: bool = False            # capital letter at a sentence start
    words: tuple[int, int] = (4, 16)   # words per sentence (Chinese / Japanese: morphemes)


_ARABIC = Style(("ARABIC",), comma="،", question="؟")
_HEBREW = Style(("HEBREW",))
_CYRILLIC = Style(("CYRILLIC",), cased=True)
_GREEK = Style(("GREEK",), question=";", cased=True)
_LATIN = Style(("LATIN",), cased=True)
_CHINESE = Style(("CJK UNIFIED",), spaced=False, stop="。", comma="，", question="？", words=(5, 20))
_JAPANESE = Style(("CJK UNIFIED", "HIRAGANA", "KATAKANA"), spaced=False, stop="。", comma="、",
                  question="？", words=(6, 24))
_KOREAN = Style(("HANGUL",), words=(5, 18))

# corpus class -> ((wordfreq language code, share of the class's documents), ...), style
LANGUAGE_CLASSES: dict[str, tuple[tuple[tuple[str, float], ...], Style]] = {
    "arabic": ((("ar", 1.0),), _ARABIC),
    "hebrew": ((("he", 1.0),), _HEBREW),
    "cyrillic": ((("ru", 0.6), ("uk", 0.25), ("bg", 0.15)), _CYRILLIC),
    "greek": ((("el", 1.0),), _GREEK),
    "chinese": ((("zh", 1.0),), _CHINESE),
    "japanese": ((("ja", 1.0),), _JAPANESE),
    "korean": ((("ko", 1.0),), _KOREAN),
    "french": ((("fr", 1.0),), _LATIN),
    "german": ((("de", 1.0),), _LATIN),
    "spanish": ((("es", 1.0),), _LATIN),
}

# French elided words (wordfreq splits "l'homme" into "l", "homme") and their full form before a consonant
_FRENCH_ELISIONS = {"l": "le", "d": "de", "j": "je", "qu": "que", "n": "ne", "s": "se", "c": "ce", "m": "me",
                    "t": "te", "jusqu": "jusque", "lorsqu": "lorsque", "puisqu": "puisque"}
_FRENCH_VOWELS = frozenset("aâàeéèêëiîïoôuûùyh")
# Korean particles and endings wordfreq's MeCab split splits off; they are written onto the word before
_KOREAN_BOUND = frozenset({"이", "는", "을", "에", "다", "의", "고", "은", "가", "를", "도", "에서", "으로", "로", "과",
                           "와", "만", "게", "지", "면", "요", "습니다", "지만", "는데", "에게", "라고", "며", "던",
                           "었", "했", "겠", "어", "기", "적", "들", "한", "할", "된", "니", "서", "까지", "부터"})


@dataclass(frozen=True)
class Language:
    """One language's kept words and their cumulative frequency weights."""

    code: str
    words: tuple[str, ...]
    cum_weights: np.ndarray      # float64 [len(words)] cumulative frequency
    can_comma: np.ndarray        # bool [len(words)]: False for a French elision or a Korean particle


def text_versions() -> str:
    """The versions the sampled text depends on (part of the corpus fingerprint): wordfreq's lists
    are the words, numpy's generator draws them."""
    from importlib.metadata import version
    return f"wordfreq={version('wordfreq')}|numpy={np.__version__}"


def _in_script(word: str, prefixes: tuple[str, ...]) -> bool:
    return all(unicodedata.category(ch)[0] in "LM" and unicodedata.name(ch, "").startswith(prefixes)
               or ch == "ー" for ch in word)


@functools.lru_cache(maxsize=None)
def language(code: str, prefixes: tuple[str, ...]) -> Language:
    """The ``TOP_WORDS`` most frequent words of ``code`` written only in the script ``prefixes``."""
    import wordfreq  # imported here: only the built-in corpus needs it (a few hundred ms per language)

    words: list[str] = []
    weights: list[float] = []
    for bucket, bucket_words in enumerate(wordfreq.get_frequency_list(code, wordlist="best")):
        for word in bucket_words:
            if _in_script(word, prefixes):
                if code == "el" and len(word) > 1 and word.endswith("σ"):
                    word = word[:-1] + "ς"   # wordfreq folds the final sigma
                words.append(word)
                weights.append(10.0 ** (-bucket / 100))
        if len(words) >= TOP_WORDS:
            break
    words, weights = words[:TOP_WORDS], weights[:TOP_WORDS]
    bound = {"fr": _FRENCH_ELISIONS, "ko": _KOREAN_BOUND}.get(code, ())
    return Language(code, tuple(words), np.cumsum(weights), np.array([w not in bound for w in words]))


def _join_bound(words: list[str], code: str) -> list[str]:
    """French elisions and Korean particles written as the language writes them."""
    out: list[str] = []
    glued = -1                               # index of the last Korean word that took a particle
    for word in words:
        if code == "fr" and out and out[-1] in _FRENCH_ELISIONS and word[0] in _FRENCH_VOWELS:
            out[-1] += "'" + word            # l' + homme -> l'homme
        elif code == "ko" and word in _KOREAN_BOUND:
            if out and glued != len(out) - 1:    # 사람 + 이 -> 사람이; one per word, none to start with
                head, comma = (out[-1][:-1], out[-1][-1]) if out[-1].endswith(",") else (out[-1], "")
                out[-1] = head + word + comma
                glued = len(out) - 1
        else:
            out.append(word)
    if code == "fr":                         # l' before a consonant (or a full stop) is le
        out = [_FRENCH_ELISIONS.get(word, word) for word in out]
    return out or words[:1]


def gen_language_text(rng: random.Random, n_chars: int, kind: str) -> str:
    """About ``n_chars`` characters of paragraphs in one language of class ``kind``.

    The draws are vectorised (a numpy generator seeded from ``rng``), 64 sentences at a time: the
    built-in demo samples ~2.8M characters of such text on every pass over the corpus."""
    languages, style = LANGUAGE_CLASSES[kind]
    code = rng.choices([c for c, _ in languages], weights=[w for _, w in languages])[0]
    lang = language(code, style.script)
    draw = np.random.default_rng(rng.getrandbits(64))
    sep = " " if style.spaced else ""
    glue = style.spaced and code in ("fr", "ko")
    paragraphs: list[str] = []
    sentences: list[str] = []
    total = 0
    while total < n_chars:
        lengths = draw.integers(style.words[0], style.words[1] + 1, size=_BATCH)
        picks = np.searchsorted(lang.cum_weights, draw.random(int(lengths.sum())) * lang.cum_weights[-1],
                                side="right")
        words = list(operator.itemgetter(*picks.tolist())(lang.words))
        commas = (draw.random(len(words)) < _COMMA_RATE) & lang.can_comma[picks]
        last = np.cumsum(lengths) - 1
        commas[last] = False                     # a sentence ends with its stop
        commas[last[:-1] + 1] = False            # and has a word before its first comma
        commas[0] = False
        for at in np.flatnonzero(commas).tolist():
            words[at] += style.comma
        ends = draw.random((_BATCH, 2))
        start = 0
        for s, n in enumerate(lengths.tolist()):
            sentence = words[start:start + n]
            start += n
            if glue:
                sentence = _join_bound(sentence, code)
            if style.cased:
                sentence[0] = sentence[0][:1].upper() + sentence[0][1:]
            sentences.append(sep.join(sentence) + (style.question if ends[s, 0] < _QUESTION_RATE else style.stop))
            total += len(sentences[-1]) + len(sep)
            if ends[s, 1] < _PARAGRAPH_RATE or total >= n_chars:  # paragraphs of ~4 sentences
                paragraphs.append(sep.join(sentences))
                sentences = []
                if total >= n_chars:
                    break
    return "\n".join(paragraphs) + "\n"
