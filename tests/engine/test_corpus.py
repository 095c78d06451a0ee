"""Corpus sources, the built-in corpus, the train/val split and the token cache."""

from __future__ import annotations

import base64
import json
import re
import sys
import time

import numpy as np
import pytest

from engine.config import CorpusConfig
from engine.data.builtin import BUILTIN_MIX
from engine.data.sources import CorpusError, split_hash
from engine.data.spec import iter_texts, open_corpus
from engine.data.token_cache import token_dtype, tokenize_corpus
from engine.events import Cancelled, CancelToken, Message, Progress, StageFinished, StageStarted
from engine.data.tokenizer import Tokenizer


def run_job(gen):
    """Drive a generator job; return (events, result)."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def docs_of(cfg: CorpusConfig) -> list[tuple[str, str]]:
    return list(open_corpus(cfg).iter_documents())


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    src = open_corpus(CorpusConfig(max_chars=150_000))
    return Tokenizer.train(iter_texts(src, 150_000), vocab_size=300)


@pytest.fixture()
def text_folder(tmp_path):
    root = tmp_path / "texts"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("The cat sat on the mat.\nIt was happy.\n", encoding="utf-8")
    (root / "b.md").write_text("# Title\n\nSome *markdown* text, שלום, 日本語.\n", encoding="utf-8")
    (root / "sub" / "c.py").write_text("def f(x):\n\treturn x * 2  \n", encoding="utf-8")
    (root / "sub" / "deeper" / "d.rst").write_text("Heading\n=======\n\nBody text here.\n", encoding="utf-8")
    (root / "sub" / "e.json").write_text('{"key": "value"}\n', encoding="utf-8")
    (root / "ignored.bin").write_bytes(b"\x00\x01\x02")
    return root


# ---- sources ----------------------------------------------------------------------------------


def test_folder_reads_text_files_recursively(text_folder):
    docs = dict(docs_of(CorpusConfig(spec=str(text_folder))))
    assert sorted(docs) == ["a.txt", "b.md", "sub/c.py", "sub/deeper/d.rst", "sub/e.json"]
    assert docs["sub/c.py"] == "def f(x):\n\treturn x * 2  \n"  # exact text, whitespace kept


def test_glob_pattern(text_folder):
    docs = dict(docs_of(CorpusConfig(spec=str(text_folder / "**" / "*.py"))))
    assert list(docs) == ["sub/c.py"]
    docs = dict(docs_of(CorpusConfig(spec=str(text_folder / "*.*"))))
    assert list(docs) == ["a.txt", "b.md"]  # ignored.bin matched but binary: skipped
    with pytest.raises(CorpusError, match="matches no files"):
        open_corpus(CorpusConfig(spec=str(text_folder / "*.xyz")))


def test_folder_skips_and_reports_bad_files(text_folder, tok, tmp_path):
    (text_folder / "bad_utf8.txt").write_bytes(b"caf\xe9 au lait\n")
    (text_folder / "binary.txt").write_bytes(b"PK\x03\x04\x00\x00abc")
    source = open_corpus(CorpusConfig(spec=str(text_folder)))
    ids = [doc_id for doc_id, _ in source.iter_documents()]
    assert "bad_utf8.txt" not in ids and "binary.txt" not in ids and "a.txt" in ids
    reasons = {path.split("/")[-1]: reason for path, reason in source.report}
    assert "UTF-8" in reasons["bad_utf8.txt"]
    assert "binary" in reasons["binary.txt"]
    events, data = run_job(tokenize_corpus(CorpusConfig(spec=str(text_folder)), tok, cache_dir=tmp_path / "c"))
    warnings = [e for e in events if isinstance(e, Message) and e.level == "warning"]
    assert warnings and "skipped 2" in warnings[0].text
    assert len(data.train) > 0


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no such file or folder"):
        open_corpus(CorpusConfig(spec=str(tmp_path / "nope")))


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "only.bin").write_bytes(b"x")
    with pytest.raises(CorpusError, match="no text files"):
        open_corpus(CorpusConfig(spec=str(tmp_path)))


def test_folder_of_only_bad_files_errors_when_read(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xff\xfe\x00b\x00a\x00d")
    src = open_corpus(CorpusConfig(spec=str(tmp_path)))
    with pytest.raises(CorpusError, match="no usable text"):
        list(src.iter_documents())


def test_direct_bad_files_error(tmp_path):
    binary = tmp_path / "data.txt"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(CorpusError, match="binary"):
        open_corpus(CorpusConfig(spec=str(binary)))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("déjà vu\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="UTF-8"):
        open_corpus(CorpusConfig(spec=str(latin1)))
    late = tmp_path / "late.txt"  # the bad byte only after the first block that open_corpus sniffs
    late.write_bytes(b"ok line\n" * 20_000 + b"\xff\n")
    src = open_corpus(CorpusConfig(spec=str(late)))
    with pytest.raises(CorpusError, match="UTF-8"):
        list(src.iter_documents())
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match="empty"):
        open_corpus(CorpusConfig(spec=str(empty)))


def test_text_file_is_cut_into_documents(tmp_path):
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(3000)]
    text = "\n".join(lines) + "\n"
    path = tmp_path / "book.txt"
    path.write_text(text, encoding="utf-8")
    docs = docs_of(CorpusConfig(spec=str(path)))
    assert len(docs) > 10
    assert "".join(t for _, t in docs) == text  # nothing lost or changed
    assert all(t.endswith("\n") for _, t in docs)  # cut at line breaks
    capped = docs_of(CorpusConfig(spec=str(path), max_chars=5000))
    assert sum(len(t) for _, t in capped) == 5000


def test_jsonl(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [json.dumps({"text": "first doc"}), "", json.dumps({"text": "second ✓", "meta": 1}),
            "{broken", json.dumps({"body": "no text field"}), json.dumps({"text": "third"})]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    source = open_corpus(CorpusConfig(spec=str(path)))
    docs = list(source.iter_documents())
    assert [t for _, t in docs] == ["first doc", "second ✓", "third"]
    assert len({d for d, _ in docs}) == 3
    assert [p.rsplit(":", 1)[1] for p, _ in source.report] == ["4", "5"]


def test_hf_without_datasets_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(CorpusError, match="datasets"):
        open_corpus(CorpusConfig(spec="hf:roneneldan/TinyStories"))


def test_hf_streams_text_column_and_reports_failures(monkeypatch):
    import types

    calls = []

    def load_dataset(name, split, streaming):
        calls.append((name, split, streaming))
        if name == "offline/ds":
            raise ConnectionError("no network")
        if name == "notext/ds":
            return iter([{"content": "x"}])
        return iter([{"text": "one"}, {"text": "two"}, {"text": None}, {"text": "three"}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    docs = docs_of(CorpusConfig(spec="hf:some/ds:validation"))
    assert [t for _, t in docs] == ["one", "two", "three"]
    assert calls[-1] == ("some/ds", "validation", True)
    docs_of(CorpusConfig(spec="hf:some/ds"))
    assert calls[-1][1] == "train"
    with pytest.raises(CorpusError, match="network"):
        docs_of(CorpusConfig(spec="hf:offline/ds"))
    with pytest.raises(CorpusError, match="no 'text' column"):
        docs_of(CorpusConfig(spec="hf:notext/ds"))


def test_bad_settings():
    with pytest.raises(CorpusError):
        open_corpus(CorpusConfig(val_fraction=1.5))
    with pytest.raises(CorpusError):
        open_corpus(CorpusConfig(max_chars=0))


# ---- built-in corpus --------------------------------------------------------------------------


def _kind(doc_id: str) -> str:
    parts = doc_id.split("/")
    return parts[1] if parts[0] == "gen" else parts[0]


def test_builtin_is_deterministic_and_capped():
    cfg = CorpusConfig(max_chars=200_000, seed=3)
    t0 = time.perf_counter()
    first = docs_of(cfg)
    assert time.perf_counter() - t0 < 5.0
    assert first == docs_of(cfg)
    assert sum(len(t) for _, t in first) == 200_000
    assert first != docs_of(cfg.replace(seed=4))
    assert open_corpus(cfg).fingerprint() == open_corpus(cfg).fingerprint()
    assert open_corpus(cfg).fingerprint() != open_corpus(cfg.replace(seed=4)).fingerprint()


def test_builtin_holds_every_class():
    docs = docs_of(CorpusConfig(max_chars=300_000))
    chars: dict[str, int] = {}
    texts: dict[str, list[str]] = {}
    for doc_id, text in docs:
        kind = _kind(doc_id)
        chars[kind] = chars.get(kind, 0) + len(text)
        texts.setdefault(kind, []).append(text)
    total = sum(chars.values())
    assert set(chars) == {"stdlib", "pydoc"} | set(BUILTIN_MIX)
    for kind, fraction in BUILTIN_MIX.items():  # each generated class near its share
        assert 0.5 * fraction < chars[kind] / total < 2 * fraction, (kind, chars[kind] / total)
    assert chars["stdlib"] / total > 0.5
    dna = "".join(texts["dna"])
    assert re.search(r"^[ACGT]{60}$", dna, re.M) and re.search(r"^>seq\d+", dna, re.M)
    b64_lines = re.findall(r"^[A-Za-z0-9+/]{76}$", "".join(texts["base64"]), re.M)
    assert b64_lines and len(base64.b64decode(b64_lines[0])) == 57
    hexes = "".join(texts["hex"])
    assert re.search(r"^[0-9a-f]{8}: ([0-9a-f]{4} ){7}[0-9a-f]{4}  .{16}$", hexes, re.M)  # xxd line
    assert re.search(r"^[0-9a-f]{32,64}  file\d+\.bin$", hexes, re.M)
    ranges = {"arabic": (0x0600, 0x06FF), "hebrew": (0x0590, 0x05FF), "cyrillic": (0x0400, 0x04FF),
              "greek": (0x0370, 0x03FF), "chinese": (0x4E00, 0x9FFF), "korean": (0xAC00, 0xD7A3)}
    for kind, (lo, hi) in ranges.items():
        letters = [c for c in "".join(texts[kind]) if c.isalpha()]
        assert letters and sum(lo <= ord(c) <= hi for c in letters) / len(letters) > 0.95, kind
    assert any("def " in t for t in texts["stdlib"])


def test_builtin_small_cap_loads_fast():
    t0 = time.perf_counter()
    docs = docs_of(CorpusConfig(max_chars=600_000))
    assert time.perf_counter() - t0 < 3.0
    assert len({_kind(d) for d, _ in docs}) == 2 + len(BUILTIN_MIX)


# ---- split ------------------------------------------------------------------------------------


def test_split_is_deterministic_and_disjoint():
    cfg = CorpusConfig(max_chars=200_000, val_fraction=0.1)
    a = [(d, v) for d, _, v in open_corpus(cfg).iter_split()]
    b = [(d, v) for d, _, v in open_corpus(cfg).iter_split()]
    assert a == b
    val = {d for d, v in a if v}
    train = {d for d, v in a if not v}
    assert val and train and not (val & train)
    assert len(val) + len(train) == len(a)  # document ids are unique
    assert 0.02 < len(val) / len(a) < 0.25
    # the split of a document depends only on (seed, doc_id); generated classes are stratified
    assert all(v == (split_hash(cfg.seed, d) < 0.1) for d, v in a if not d.startswith("gen/"))
    held_out_classes = {d.split("/")[1] for d, v in a if v and d.startswith("gen/")}
    assert held_out_classes == set(BUILTIN_MIX)
    train_texts = list(iter_texts(open_corpus(cfg), None))
    assert len(train_texts) == len(train)


def test_split_guarantees_a_val_doc(text_folder):
    split = [(d, v) for d, _, v in open_corpus(CorpusConfig(spec=str(text_folder), val_fraction=0.0)).iter_split()]
    assert sum(v for _, v in split) == 1
    assert len(split) == 5


def test_iter_texts_caps_characters():
    texts = list(iter_texts(open_corpus(CorpusConfig(max_chars=100_000)), 20_000))
    assert sum(map(len, texts)) == 20_000


# ---- token cache ------------------------------------------------------------------------------


def test_tokenize_round_trips_and_is_cached(text_folder, tok, tmp_path):
    cfg = CorpusConfig(spec=str(text_folder), val_fraction=0.3, seed=1)
    cache = tmp_path / "cache"
    events, data = run_job(tokenize_corpus(cfg, tok, cache_dir=cache))
    assert any(isinstance(e, Progress) and e.stage == "tokenize" for e in events)
    assert isinstance(data.train, np.memmap) and isinstance(data.val, np.memmap)
    assert data.train.dtype == np.uint16 and data.eos_id == tok.eos_id
    assert data.train[-1] == tok.eos_id and data.val[-1] == tok.eos_id
    # decoding each split, document by document, gives back exactly the source documents
    split = {text: v for _, text, v in open_corpus(cfg).iter_split()}

    def docs_in(arr):
        ids = np.asarray(arr).tolist()
        out, cur = [], []
        for i in ids:
            if i == tok.eos_id:
                out.append(tok.decode(cur))
                cur = []
            else:
                cur.append(i)
        return out

    assert sorted(docs_in(data.train)) == sorted(t for t, v in split.items() if not v)
    assert sorted(docs_in(data.val)) == sorted(t for t, v in split.items() if v)
    assert data.meta["train_docs"] + data.meta["val_docs"] == 5

    t0 = time.perf_counter()
    events2, again = run_job(tokenize_corpus(cfg, tok, cache_dir=cache))
    assert time.perf_counter() - t0 < 1.0
    assert again.path == data.path
    assert isinstance(events2[0], StageStarted) and isinstance(events2[-1], StageFinished)
    assert [e for e in events2 if isinstance(e, Progress)][-1].metrics.get("cached") == 1.0
    np.testing.assert_array_equal(again.train, data.train)
    np.testing.assert_array_equal(again.val, data.val)
    assert [p.name for p in cache.iterdir()] == [data.path.name]  # no temp folders left

    # a changed file changes the key; a different split setting too
    (text_folder / "a.txt").write_text("Changed text.\n", encoding="utf-8")
    _, changed = run_job(tokenize_corpus(cfg, tok, cache_dir=cache))
    assert changed.path != data.path
    _, other_split = run_job(tokenize_corpus(cfg.replace(seed=2), tok, cache_dir=cache))
    assert other_split.path not in (data.path, changed.path)


def test_damaged_cache_is_rebuilt(text_folder, tok, tmp_path):
    cfg = CorpusConfig(spec=str(text_folder))
    cache = tmp_path / "cache"
    _, data = run_job(tokenize_corpus(cfg, tok, cache_dir=cache))
    expected = np.asarray(data.train).copy()
    (data.path / "meta.json").unlink()  # as if a crash had left the folder half-built
    _, again = run_job(tokenize_corpus(cfg, tok, cache_dir=cache))
    np.testing.assert_array_equal(again.train, expected)
    (again.path / "meta.json").write_text("{garbage", encoding="utf-8")
    _, third = run_job(tokenize_corpus(cfg, tok, cache_dir=cache))
    np.testing.assert_array_equal(third.train, expected)


def test_tokenize_builtin_default_cache_dir(tok):
    cfg = CorpusConfig(max_chars=100_000)
    _, data = run_job(tokenize_corpus(cfg, tok))
    assert data.path.parent.name == "tokens"
    # ~5% of documents, but the stratified generated classes are token-dense: about a tenth of the tokens
    assert len(data.train) > 8 * len(data.val) > 0
    assert data.meta["chars"] == 100_000


def test_single_document_still_gets_val_tokens(tmp_path, tok):
    path = tmp_path / "short.txt"
    path.write_text("just one short document about cats and dogs\n", encoding="utf-8")
    _, data = run_job(tokenize_corpus(CorpusConfig(spec=str(path)), tok, cache_dir=tmp_path / "c"))
    assert len(data.train) > 0 and len(data.val) > 0
    joined = np.concatenate([np.asarray(data.train), np.asarray(data.val)]).tolist()
    assert tok.decode([i for i in joined if i != tok.eos_id]) == path.read_text(encoding="utf-8")


def test_tokenize_cancel_leaves_no_cache(tmp_path, tok):
    cancel = CancelToken()
    cancel.cancel()
    cache = tmp_path / "c"
    with pytest.raises(Cancelled):
        run_job(tokenize_corpus(CorpusConfig(max_chars=50_000), tok, cache_dir=cache, cancel=cancel))
    assert list(cache.iterdir()) == []


def test_token_dtype():
    assert token_dtype(4096) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
