"""The one-liners that used to mislead now say what is actually wrong (each case of the issue)."""

from __future__ import annotations

import json
import os

import h5py
import pytest

from bundle_parts import copy_bundle
from engine.bundle import BundleError, load_sae_file, open_bundle
from engine.config import CorpusConfig
from engine.data.sources import CorpusError
from engine.data.spec import open_corpus


def _documents(spec) -> list:
    return list(open_corpus(CorpusConfig(spec=str(spec))).iter_documents())


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_a_symlink_loop_is_not_no_such_file(tmp_path):
    os.symlink(tmp_path / "b.h5", tmp_path / "a.h5")
    os.symlink(tmp_path / "a.h5", tmp_path / "b.h5")
    with pytest.raises(BundleError, match="is a symbolic link that loops") as info:
        open_bundle(tmp_path / "a.h5")
    assert "no such file" not in str(info.value)
    os.symlink(tmp_path / "gone.h5", tmp_path / "dangling.h5")
    with pytest.raises(BundleError, match=r"dangling.h5 is a symbolic link to .*gone.h5, which does not exist"):
        open_bundle(tmp_path / "dangling.h5")
    with pytest.raises(BundleError, match="no such file"):
        open_bundle(tmp_path / "missing.h5")


def test_a_string_typed_sae_tensor_says_strings_not_the_same_shape_twice(written, tmp_path):
    path = copy_bundle(written, tmp_path)
    with h5py.File(path, "r+") as f:
        n = f["sae/b_dec"].shape[0]
        del f["sae/b_dec"]
        f.create_dataset("sae/b_dec", data=["0.5"] * n, dtype=h5py.string_dtype())
    for load in (open_bundle, load_sae_file):
        with pytest.raises(BundleError, match=r"b_dec holds strings, expected floating-point numbers") as info:
            load(path)
        assert f"({n},), expected ({n},)" not in str(info.value)


def test_zero_heads_in_a_file_is_named_not_a_modulo_by_zero(written, tmp_path):
    path = copy_bundle(written, tmp_path)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f["model"].attrs["config"])
        f["model"].attrs["config"] = json.dumps({**cfg, "n_heads": 0})
        run = json.loads(f["config"][()])
        run["model"]["n_heads"] = 0
        del f["config"]
        f.create_dataset("config", data=json.dumps(run), dtype=h5py.string_dtype())
    with pytest.raises(BundleError, match=r"model.n_heads \(attention heads\) must be an integer from 1 to 1,024; got 0") as info:
        open_bundle(path)
    assert "modulo" not in str(info.value)


def test_plain_text_named_jsonl_says_so_not_thousands_of_files_skipped(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("just some prose\n" * 500, encoding="utf-8")
    with pytest.raises(CorpusError, match=r"notes.jsonl is named .jsonl but its first line is not JSON") as info:
        _documents(path)
    assert "file(s) skipped" not in str(info.value)
    mixed = tmp_path / "mixed.jsonl"                     # valid JSON, but no usable line: lines, not files
    mixed.write_text('{"title": "a"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"holds no usable text \(2 line\(s\) skipped: .*mixed.jsonl:1: no string"):
        _documents(mixed)


def test_utf16_text_is_named_utf16_not_binary(tmp_path):
    text = "Hello, this is a UTF-16 document.\n" * 40
    for name, data in (("bom.txt", text.encode("utf-16")), ("nobom.txt", text.encode("utf-16-le"))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorpusError, match="is UTF-16 text, not UTF-8: convert it to UTF-8 first") as info:
            _documents(path)
        assert "binary" not in str(info.value)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_bytes(text.encode("utf-16"))
    with pytest.raises(CorpusError, match=r"1 file\(s\) skipped: .*a.txt: UTF-16 text, not UTF-8"):
        _documents(folder)


def test_family_on_a_one_dictionary_bundle_says_so_and_fails(written, capsys):
    """Not "splits: none found" with exit 0: the bundle holds one dictionary, which is a user's mistake."""
    from engine.cli.main import main

    assert main(["family", str(written)]) == 1
    err = capsys.readouterr().err
    assert "holds one dictionary" in err and "splits: none found" not in err
    assert len(err.strip().splitlines()) == 1


def test_eval_names_the_tokens_dead_is_judged_on(written, capsys):
    """Not `dead_tokens 199,936` (a count of dead tokens?): the name says what the number is."""
    from engine.cli.bundle_cmds import shown_metrics

    with open_bundle(written) as b:
        shown = shown_metrics(b)
    assert "dead_tokens" not in shown and shown["dead_judged_on_tokens"] == b.n_tokens
