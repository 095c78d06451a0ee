"""engine.paths: one work folder rule for a run's settings (the CLI and the app share it)."""

from __future__ import annotations

import hashlib
import os

from engine import paths
from engine.config import preset


def test_run_workdir_is_keyed_by_the_settings():
    tiny = preset("tiny")
    assert paths.run_workdir(tiny) == paths.run_workdir(preset("tiny"))
    assert paths.run_workdir(tiny).parent == paths.cache_dir() / "runs"
    assert paths.run_workdir(tiny).name.startswith("tiny-")
    assert paths.run_workdir(tiny.with_overrides(sae={"d_sae": 512})) != paths.run_workdir(tiny)
    assert not paths.run_workdir(tiny.with_overrides(train={"tokens": 12_345})).exists()   # not created
    # the same key as the settings' JSON hash before the rule moved here: old work folders still resume
    assert paths.run_workdir(tiny).name == f"tiny-{hashlib.sha256(tiny.to_json().encode()).hexdigest()[:16]}"


def test_run_workdir_makes_a_local_corpus_path_absolute(tmp_path, monkeypatch):
    corpus = tmp_path / "texts"
    corpus.mkdir()
    monkeypatch.chdir(tmp_path)
    relative = preset("tiny").with_overrides(corpus={"spec": "texts"})
    absolute = preset("tiny").with_overrides(corpus={"spec": str(corpus)})
    assert paths.run_workdir(relative) == paths.run_workdir(absolute)
    hf = preset("tiny").with_overrides(corpus={"spec": "hf:roneneldan/TinyStories"})
    assert paths.run_workdir(hf) != paths.run_workdir(absolute)
    assert os.path.basename(paths.run_workdir(hf)).startswith("tiny-")
