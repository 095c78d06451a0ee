"""The whole pipeline and the CLI, end to end on tiny configurations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.bundle import open_bundle
from engine.config import preset
from engine.events import Cancelled, CancelToken, Progress, StageFinished, StageStarted
from engine.jobs import collect
from engine.pipeline import PIPELINE_STAGES, prepare_data, run_pipeline
from engine.train.model_job import train_model, unigram_entropy




def test_tiny_builtin_bundle_holds_a_model_that_learned(real_tiny_bundle):
    with open_bundle(real_tiny_bundle) as bundle:
        m = bundle.metrics
        assert m["loss_clean"] < m["loss_zero_ablation"]
        assert 0.5 < m["loss_recovered"] <= 1.05
        assert bundle.n_features == preset("tiny").sae.d_sae
        assert bundle.n_neurons == preset("tiny").model.d_mlp
        assert len(bundle.columns("feature")["label"]) == bundle.n_features
        assert "model/train_loss" in bundle.curves() and "sae/mse" in bundle.curves()


def test_tiny_model_beats_unigram_entropy_on_builtin_and_on_text_files(tmp_path):
    # Built-in corpus.
    cfg = preset("tiny")
    data, _ = collect(prepare_data(cfg, tmp_path / "builtin"))
    result, _ = collect(train_model(data.config.model, data.config.train, data.tokens.train, data.tokens.val, "cpu"))
    unigram = unigram_entropy(data.tokens.val, data.config.model.vocab_size)
    assert result.final_val_loss < unigram - 0.5, (result.final_val_loss, unigram)

    # A folder of plain text files given by path.
    folder = tmp_path / "texts"
    folder.mkdir()
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "red", "house", "with", "big"]
    for i in range(40):
        sentences = [" ".join(rng.choice(words, 6)).capitalize() + "." for _ in range(60)]
        (folder / f"doc{i}.txt").write_text("\n".join(sentences), encoding="utf-8")
    cfg = cfg.with_overrides(corpus={"spec": str(folder), "max_chars": None}, tokenizer={"vocab_size": 300})
    data, _ = collect(prepare_data(cfg, tmp_path / "folder"))
    result, _ = collect(train_model(data.config.model, data.config.train, data.tokens.train, data.tokens.val, "cpu"))
    unigram = unigram_entropy(data.tokens.val, data.config.model.vocab_size)
    assert result.final_val_loss < unigram - 0.3, (result.final_val_loss, unigram)


def test_pipeline_cancel_then_resume_finishes(tmp_path):
    cfg = preset("tiny").with_overrides(train={"tokens": 30_000}, sae={"n_activations": 40_000},
                                        harvest={"n_tokens": 4_000, "eval_tokens": 2_000})
    cancel = CancelToken()
    job = run_pipeline(cfg, tmp_path / "b.h5", workdir=tmp_path / "work", cancel=cancel)
    stages = []
    with pytest.raises(Cancelled):
        for event in job:
            if isinstance(event, StageStarted):
                stages.append(event.stage)
            if isinstance(event, Progress) and event.stage == "sae" and event.fraction > 0.3:
                cancel.cancel()
    assert stages[:4] == list(PIPELINE_STAGES[:4])
    assert not (tmp_path / "b.h5").exists()
    out, events = collect(run_pipeline(cfg, tmp_path / "b.h5", workdir=tmp_path / "work", resume=True))
    first_model = next(e for e in events if isinstance(e, Progress) and e.stage == "model")
    assert first_model.fraction == 1.0  # the model was not trained again
    with open_bundle(out) as bundle:
        assert bundle.n_features == cfg.sae.d_sae


def test_pipeline_cancel_in_evaluation_and_labelling_then_resume(tmp_path):
    cfg = preset("tiny").with_overrides(train={"tokens": 20_000}, sae={"n_activations": 20_000},
                                        harvest={"n_tokens": 3_000, "eval_tokens": 2_000})
    out, work = tmp_path / "b.h5", tmp_path / "work"
    for stage, resume in (("evaluate", False), ("labels", True)):
        cancel = CancelToken()
        started, after_cancel = [], []
        with pytest.raises(Cancelled, match="evaluation" if stage == "evaluate" else "labelling"):
            for event in run_pipeline(cfg, out, workdir=work, resume=resume, cancel=cancel):
                if cancel.cancelled:
                    after_cancel.append(event)
                if isinstance(event, StageStarted):
                    started.append(event)
                if isinstance(event, Progress) and event.stage == stage and not cancel.cancelled:
                    assert event.unit == ("tokens" if stage == "evaluate" else "units") and event.done < event.total
                    cancel.cancel()
        assert started[-1].stage == stage and started[-1].index == PIPELINE_STAGES.index(stage)
        assert started[-1].n_stages == len(PIPELINE_STAGES) and started[-1].total > 0
        assert not any(isinstance(e, Progress) for e in after_cancel)   # stopped at the next batch / chunk
        assert not out.exists()
    result, events = collect(run_pipeline(cfg, out, workdir=work, resume=True))
    assert not any(isinstance(e, Progress) and e.stage in ("model", "sae") and e.fraction < 1 for e in events)
    stages = [e.stage for e in events if isinstance(e, StageStarted)]
    assert stages[-4:] == list(PIPELINE_STAGES[-4:])
    # One event vocabulary: every stage, even one resumed from a finished checkpoint, is announced by
    # its own job and closed before the next starts, with its place stamped on it.
    bracket = [(type(e).__name__, e.stage) for e in events if isinstance(e, (StageStarted, StageFinished))]
    assert bracket == [(kind, s) for s in PIPELINE_STAGES for kind in ("StageStarted", "StageFinished")]
    assert [e.index for e in events if isinstance(e, StageStarted)] == list(range(len(PIPELINE_STAGES)))
    with open_bundle(result) as bundle:
        assert any(bundle.columns("feature")["label"])
        assert np.isfinite(bundle.metrics["loss_recovered"])


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    result = _cli("train-model", "--corpus", str(tmp_path / "missing"), "--preset", "tiny", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    result = _cli("info", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_cli_info_and_eval_json(real_tiny_bundle):
    result = _cli("info", str(real_tiny_bundle))
    assert result.returncode == 0, result.stderr
    assert "loss_recovered" in result.stdout
    result = _cli("eval", str(real_tiny_bundle), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    for key in ("mse", "fvu", "l0", "dead_fraction", "ultralow_fraction", "loss_clean", "loss_sae",
                "loss_zero_ablation", "loss_recovered", "n_tokens"):
        assert key in metrics
    assert Path(real_tiny_bundle).exists()


def test_cli_run_with_a_jumprelu_architecture_recipe_end_to_end(tmp_path, capsys):
    """`superpos run --recipe matryoshka`: trained, harvested, stored with its threshold, reloaded with the
    same encode, described by `info`, exported for SAELens as a jumprelu SAE."""
    from engine.cli import main
    from engine.interop.saelens import export_saelens

    out = tmp_path / "m.h5"
    assert main(["run", "--preset", "tiny", "--tokens", "20000", "--sae-activations", "30000", "--harvest-tokens",
                 "3000", "--recipe", "matryoshka", "--k", "6", "--matryoshka-widths", "32,64,256",
                 "--out", str(out), "--quiet"]) == 0
    with open_bundle(out) as bundle:
        assert bundle.config.sae.recipe == "matryoshka" and bundle.config.sae.matryoshka_widths == (32, 64, 256)
        sae = bundle.load_sae()
        assert sae.architecture == "jumprelu" and float(sae.threshold.detach().min()) > 0
        assert 0 < bundle.metrics["l0"] < 4 * 6                  # evaluated with the stored threshold
        assert np.isfinite(bundle.metrics["loss_recovered"])
        export_saelens(bundle, tmp_path / "sl")
    assert json.loads((tmp_path / "sl" / "cfg.json").read_text())["architecture"] == "jumprelu"
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "matryoshka (k = 6, prefixes 32/64/256)" in capsys.readouterr().out


def test_a_whitespace_only_corpus_says_so_not_validation_fraction(tmp_path):
    from engine.data.sources import CorpusError

    text = tmp_path / "blank.txt"
    text.write_text(" \n\t\n" * 2000 + "a b\n", encoding="utf-8")
    cfg = preset("tiny").with_overrides(corpus={"spec": str(text), "max_chars": None}, tokenizer={"vocab_size": 300})
    with pytest.raises(CorpusError) as err:
        collect(prepare_data(cfg, tmp_path / "work"))
    assert "fraction" not in str(err.value)
    assert "empty or only whitespace" in str(err.value) or "no usable text" in str(err.value)
