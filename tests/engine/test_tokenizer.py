"""Byte-level BPE: exact round trip on any Unicode, offsets, readable tokens, save/load, errors."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from engine.config import CorpusConfig, TokenizerConfig, preset
from engine.data.sources import CorpusError
from engine.data.spec import iter_texts, open_corpus
from engine.data.tokenizer import EOS_TOKEN, Tokenizer, TokenizerError, train_tokenizer_job
from engine.events import Cancelled, CancelToken, Progress, StageFinished, StageStarted
from engine.jobs import collect
from engine.pipeline import prepare_data

SAMPLES = [
    "def f(x):\n\treturn x  # trailing spaces   \n\n",
    "مرحبا بالعالم، كيف حالك؟",                       # Arabic
    "שלום עולם! מה שלומך?",                            # Hebrew
    "日本語のテキストと中文字符，한국어도。",              # CJK + Hangul
    "Привет, мир! Ελληνικά γράμματα.",                 # Cyrillic, Greek
    "emoji 👩‍👩‍👧‍👦 🎉🇫🇷 ✔️ and skin tones 👍🏽",            # ZWJ sequences, flags, modifiers
    "mixed\r\nline endings\rand\u2028separators\u00a0nbsp",
    "\x00\x01 control \x7f chars \ufeff BOM in the middle",
    "   leading spaces and a lone combining mark e\u0301",
    "ACGTTGCAACGT base64: SGVsbG8gd29ybGQ= hex: deadbeef 0x1F",
    "",
]


def _training_text() -> list[str]:
    rng = random.Random(0)
    words = ["the", "function", "return", "self", "value", "import", "class", "data", "def", "None"]
    lines = [" ".join(rng.choices(words, k=12)) for _ in range(400)]
    return lines + SAMPLES


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(_training_text(), vocab_size=400)


def _random_unicode(rng: random.Random, n: int) -> str:
    """Code points from all planes (no surrogates), biased to common blocks and whitespace."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.2:
            cp = rng.choice([9, 10, 13, 32, 32, 32])
        elif r < 0.5:
            cp = rng.randint(0x20, 0x7E)
        elif r < 0.8:
            cp = rng.randint(0x80, 0xFFFF)
        else:
            cp = rng.randint(0x10000, 0x10FFFF)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xFFFD
        out.append(chr(cp))
    return "".join(out)


def test_train_basic_properties(tok):
    assert 257 <= tok.vocab_size <= 400
    assert tok.token_str(tok.eos_id) == EOS_TOKEN
    assert tok.encode("the function") != []
    # merges were learned: a frequent word is one token
    assert len(tok.encode(" function")) == 1


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_samples(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_round_trip_random_unicode(tok):
    rng = random.Random(1234)
    texts = [_random_unicode(rng, rng.randint(0, 200)) for _ in range(300)]
    for text, ids in zip(texts, tok.encode_batch(texts)):
        assert tok.decode(ids) == text
        assert ids == tok.encode(text)


def test_eos_literal_round_trips(tok):
    text = f"a{EOS_TOKEN}b"
    ids = tok.encode(text)
    assert tok.eos_id in ids
    assert tok.decode(ids) == text


def test_offsets_cover_text(tok):
    for text in SAMPLES[:-1]:
        ids, offsets = tok.encode_with_offsets(text)
        assert len(ids) == len(offsets)
        assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
        covered = set()
        prev_start = 0
        for start, end in offsets:
            assert 0 <= start < end <= len(text)
            assert start >= prev_start
            prev_start = start
            covered.update(range(start, end))
        assert covered == set(range(len(text)))
        # whole-character tokens: the span's text is exactly what the token decodes to
        for i, (start, end) in zip(ids, offsets):
            piece = tok.token_str(i)
            if "\\x" not in piece:
                assert text[start:end] == piece


def test_token_str_shows_partial_bytes_as_escapes(tok):
    ids = tok.encode("🎉")
    assert len(ids) > 1  # not merged in this small vocab: split into byte tokens
    shown = [tok.token_str(i) for i in ids]
    assert all(s.startswith("\\x") for s in shown), shown
    assert b"".join(tok.token_bytes(i) for i in ids).decode("utf-8") == "🎉"
    assert tok.token_str(tok.encode("a")[0]) == "a"
    with pytest.raises(TokenizerError):
        tok.token_str(10**6)


def test_save_load_json_hash(tok, tmp_path):
    path = tok.save(tmp_path / "sub" / "tokenizer.json")
    assert path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    loaded = Tokenizer.load(path)
    assert loaded.hash() == tok.hash()
    assert loaded.vocab_size == tok.vocab_size and loaded.eos_id == tok.eos_id
    assert Tokenizer.load(tmp_path / "sub").hash() == tok.hash()  # a folder means its tokenizer.json
    again = Tokenizer.from_json(tok.to_json())
    text = SAMPLES[5]
    assert again.encode(text) == tok.encode(text)
    other = Tokenizer.train(_training_text()[:50], vocab_size=300)
    assert other.hash() != tok.hash()


def test_load_errors(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        Tokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not a valid tokenizer"):
        Tokenizer.load(bad)
    with pytest.raises(TokenizerError):
        Tokenizer.from_json(json.dumps({"hello": 1}))
    with pytest.raises(TokenizerError, match="at least"):
        Tokenizer.train(["abc"], vocab_size=100)


def test_tiny_text_still_encodes_everything():
    tok = Tokenizer.train(["aaa"], vocab_size=1000)
    assert tok.vocab_size < 1000  # could not learn that many merges
    text = "anything ✓ שלום"
    assert tok.decode(tok.encode(text)) == text


def test_vocab_strings_are_every_token_str_built_once(tok):
    strings = tok.vocab_strings()
    assert isinstance(strings, tuple) and len(strings) == tok.vocab_size
    assert list(strings) == [tok.token_str(i) for i in range(tok.vocab_size)]
    assert tok.vocab_strings() is strings
    assert strings[tok.eos_id] == EOS_TOKEN


# ---- train_tokenizer_job: progress, cancel, same result as Tokenizer.train ----------------------


def _slow_texts(n: int, pause_s: float, fed: list | None = None):
    """``n`` training lines, one every ``pause_s`` seconds (``fed`` counts how many were taken)."""
    texts = _training_text()
    for i in range(n):
        time.sleep(pause_s)
        if fed is not None:
            fed.append(i)
        yield texts[i % len(texts)]


def test_job_trains_the_same_tokenizer_as_train():
    texts = list(iter_texts(open_corpus(CorpusConfig(max_chars=200_000)), 200_000))
    blocking = Tokenizer.train(texts, vocab_size=500)
    tok, events = collect(train_tokenizer_job(TokenizerConfig(vocab_size=500), iter(texts), sum(map(len, texts))))
    assert tok.to_json() == blocking.to_json()
    assert isinstance(events[0], StageStarted) and events[0].stage == "tokenizer"
    assert isinstance(events[-1], StageFinished) and events[-1].stage == "tokenizer"
    events = events[1:-1]
    assert all(isinstance(e, Progress) and e.stage == "tokenizer" and e.unit == "chars" for e in events)
    assert events[-1].done == events[-1].total == sum(map(len, texts))


def test_job_reports_characters_as_they_are_read():
    n = 40
    texts = [t for _, t in zip(range(n), _slow_texts(n, 0.0))]
    tok, events = collect(train_tokenizer_job(TokenizerConfig(vocab_size=300), _slow_texts(n, 0.01),
                                              total_chars=10**6, poll_s=0.02))
    events = [e for e in events if isinstance(e, Progress)]
    done = [e.done for e in events]
    assert done == sorted(done) and done[0] == 0 and done[-1] == sum(map(len, texts))
    assert len({d for d in done if 0 < d < done[-1]}) >= 3, done  # the bar moves while reading
    assert events[1].total == 10**6 and events[-1].total == events[-1].done
    assert tok.to_json() == Tokenizer.train(texts, vocab_size=300).to_json()


def test_job_cancel_is_prompt_and_stops_reading():
    cancel = CancelToken()
    fed: list[int] = []
    job = train_tokenizer_job(TokenizerConfig(vocab_size=300), _slow_texts(10**6, 0.005, fed),
                              cancel=cancel, poll_s=0.05)
    assert isinstance(next(job), StageStarted)
    assert next(job).done == 0
    next(job)
    cancel.cancel()
    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        for _ in job:
            pass
    assert time.perf_counter() - t0 < 1.0
    time.sleep(0.1)
    taken = len(fed)
    time.sleep(0.2)
    assert len(fed) == taken  # the trainer stopped asking for text
    assert not [t for t in threading.enumerate() if t.name == "superpos-bpe-train"]


def test_job_closed_early_stops_its_worker():
    fed: list[int] = []
    job = train_tokenizer_job(TokenizerConfig(vocab_size=300), _slow_texts(10**6, 0.005, fed), poll_s=0.05)
    next(job)
    next(job)
    job.close()
    time.sleep(0.2)
    taken = len(fed)
    time.sleep(0.2)
    assert len(fed) == taken


def test_job_raises_the_texts_error_and_checks_vocab_size():
    def broken():
        yield "some text " * 100
        raise CorpusError("the corpus went away")

    with pytest.raises(CorpusError, match="went away"):
        collect(train_tokenizer_job(TokenizerConfig(vocab_size=300), broken(), poll_s=0.01))
    with pytest.raises(TokenizerError, match="at least"):
        collect(train_tokenizer_job(TokenizerConfig(vocab_size=100), ["abc"]))


def test_pipeline_tokenizer_stage_shows_progress_in_chars(tmp_path):
    cfg = preset("tiny").with_overrides(corpus={"max_chars": 200_000}, tokenizer={"vocab_size": 400})
    train_chars = cfg.tokenizer.train_chars
    gen = prepare_data(cfg, tmp_path / "work")
    events = []
    for event in gen:
        if isinstance(event, StageStarted) and event.stage == "tokenize":
            break
        events.append(event)
    gen.close()
    started = [e for e in events if isinstance(e, StageStarted)]
    assert started[0].stage == "tokenizer" and started[0].unit == "chars" and started[0].total > 0
    assert isinstance(events[-1], StageFinished) and events[-1].stage == "tokenizer"
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and all(e.stage == "tokenizer" and e.unit == "chars" for e in progress)
    texts = list(iter_texts(open_corpus(cfg.corpus), train_chars))
    assert progress[-1].done == sum(map(len, texts))
    saved = Tokenizer.load(tmp_path / "work" / "tokenizer.json")
    assert saved.to_json() == Tokenizer.train(texts, cfg.tokenizer.vocab_size).to_json()


def test_pipeline_tokenizer_stage_honours_cancel(tmp_path):
    cancel = CancelToken()
    cancel.cancel()
    cfg = preset("tiny").with_overrides(corpus={"max_chars": 200_000}, tokenizer={"vocab_size": 400})
    with pytest.raises(Cancelled):
        collect(prepare_data(cfg, tmp_path / "work", cancel=cancel))
    assert not (tmp_path / "work" / "tokenizer.json").exists()
