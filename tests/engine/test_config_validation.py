"""Settings are checked in one place (``RunConfig.validate``) before any work: the CLI, the Train dialog
(tests/app/test_train_dialog.py) and the presets share it, and each refusal names the option and its
allowed range."""

from __future__ import annotations

import math
import time

import pytest

import engine.pipeline
from engine.cli.main import main
from engine.config import ConfigError, ModelConfig, RunConfig, SAEConfig, preset, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_passes_the_validation(name):
    assert preset(name).validate() == preset(name)


@pytest.fixture
def no_pipeline(monkeypatch):
    """Fail the test if a run gets as far as starting its pipeline."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the pipeline started on settings that should have been refused")
    monkeypatch.setattr(engine.pipeline, "run_pipeline", forbidden)


# The arguments of the issue that used to crash (ZeroDivisionError), run untrained, or fail late.
BAD_RUN_ARGS = [
    (["--n-heads", "0"], "--n-heads: model.n_heads (attention heads) must be an integer from 1 to 1,024; got 0"),
    (["--n-heads", "3"], "--n-heads: model.d_model (32) must be divisible by model.n_heads (3)"),
    (["--batch-size", "0"], "--batch-size: train.batch_size (sequences per step) must be an integer from 1"),
    (["--tokens", "0"], "--tokens: train.tokens (training budget in tokens) must be an integer from 1"),
    (["--tokens", "100"], "--tokens: train.tokens (training budget in tokens) must be at least one step, "
                          "train.batch_size x model.n_ctx = 512; got 100"),
    (["--sae-activations", "0"], "--sae-activations: sae.n_activations (training budget in activation vectors) "
                                 "must be an integer from 1"),
    (["--sae-activations", "10"], "must be at least one step, sae.batch_size = 1,024; got 10"),
    (["--recipe", "2023", "--l1", "-1"], "--l1: sae.l1_coeff (sparsity penalty lambda) must be a finite number "
                                         "greater than 0 and at most 1e+06; got -1.0"),
    (["--lr", "0"], "--lr: train.lr (peak learning rate) must be a finite number greater than 0 and at most 10"),
    (["--lr", "nan"], "--lr: train.lr (peak learning rate) must be a finite number greater than 0 and at most "
                      "10; got nan"),
    (["--lr", "inf"], "got inf"),
    (["--harvest-tokens", "0"], "--harvest-tokens: harvest.n_tokens (held-out tokens scanned for statistics) "
                                "must be an integer from 1"),
    (["--harvest-tokens", "5"], "--harvest-tokens: harvest.n_tokens must be at least one context window, "
                                "model.n_ctx = 32; got 5"),
    (["--k", "0"], "--k: sae.k must be an integer from 1 to sae.d_sae (256); got 0"),
    (["--d-sae", "-4"], "--d-sae: sae.d_sae (dictionary size) must be an integer from 1 to 16,777,216; got -4"),
    (["--vocab-size", "10"], "--vocab-size: tokenizer.vocab_size (BPE vocabulary size) must be an integer from 258"),
    (["--max-chars", "0"], "--max-chars: corpus.max_chars (characters of the corpus used) must be an integer from 1"),
    (["--seed", "-1"], "--seed: corpus.seed (random seed) must be an integer from 0 to 4,294,967,295; got -1"),
    (["--n-ctx", "1"], "--n-ctx: model.n_ctx (context length) must be an integer from 2 to 65,536; got 1"),
    (["--recipe", "jumprelu", "--l0", "-1"], "--l0: sae.l0_coeff (JumpReLU L0 penalty lambda) must be a finite "
                                             "number from 0 to 1e+06; got -1.0"),
    (["--recipe", "matryoshka", "--matryoshka-widths", "5,3"], "--matryoshka-widths: matryoshka widths [5, 3] must "
                                                               "increase strictly"),
]


@pytest.mark.parametrize("extra, expected", BAD_RUN_ARGS, ids=[" ".join(a) for a, _ in BAD_RUN_ARGS])
def test_bad_run_arguments_are_refused_at_once_with_the_option_and_its_range(extra, expected, tmp_path, capsys,
                                                                           no_pipeline):
    t0 = time.perf_counter()
    code = main(["run", "--preset", "tiny", "--out", str(tmp_path / "x.h5"), "--workdir", str(tmp_path / "w"),
                 "--quiet", *extra])
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("superpos: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert seconds < 1.0
    assert list(tmp_path.iterdir()) == []          # no work folder, no tokenizer, no bundle


def test_train_model_checks_the_same_flags(tmp_path, capsys, no_pipeline):
    assert main(["train-model", "--preset", "tiny", "--out", str(tmp_path / "m"), "--batch-size", "0"]) == 1
    assert "--batch-size: train.batch_size" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, expected", [
    (["--lr", "nan"], "--lr: sae.lr (learning rate) must be a finite number greater than 0"),
    (["--batch-size", "0"], "--batch-size: sae.batch_size (activation vectors per step) must be an integer from 1"),
    (["--n-activations", "0"], "--n-activations: sae.n_activations"),
    (["--recipe", "2024-04", "--l1", "0"], "--l1: sae.l1_coeff (sparsity penalty lambda) must be a finite number "
                                           "greater than 0"),
    (["--k", "5000"], "--k: sae.k must be an integer from 1 to sae.d_sae (4096); got 5000"),
])
def test_train_sae_flags_are_checked_before_the_activations_are_read(extra, expected, tmp_path, capsys):
    missing = tmp_path / "not-there.npy"                 # reading it would fail with another message
    assert main(["train-sae", "--activations", str(missing), "--out", str(tmp_path / "s.h5"), *extra]) == 1
    err = capsys.readouterr().err
    assert expected in err and "not-there" not in err


def test_config_objects_refuse_zero_and_wrong_types_without_crashing():
    with pytest.raises(ConfigError, match=r"model.n_heads \(attention heads\) must be an integer from 1 to 1,024; got 0") as info:
        ModelConfig(n_heads=0)                           # was ZeroDivisionError ("integer modulo by zero")
    assert info.value.field == "model.n_heads"
    with pytest.raises(ConfigError, match=r"model.d_model \(residual width\) must be an integer from 1 to 65,536; got '128'"):
        ModelConfig(d_model="128")
    with pytest.raises(ConfigError, match=r"sae.d_sae \(dictionary size\) must be an integer from 1"):
        SAEConfig(d_sae=0)
    with pytest.raises(ConfigError, match=r"train.lr \(peak learning rate\)"):
        preset("tiny").with_overrides(train={"lr": math.nan}).validate()
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda, cuda:N or mps") as info:
        RunConfig(device="tpu").validate()
    assert info.value.field == "device"


def test_run_pipeline_validates_too(tmp_path):
    """The app and scripts call run_pipeline directly: it refuses before its first stage."""
    bad = preset("tiny").with_overrides(sae={"lr": -1.0})
    job = engine.pipeline.run_pipeline(bad, tmp_path / "x.h5", workdir=tmp_path / "w")
    with pytest.raises(ConfigError, match=r"sae.lr \(learning rate\)"):
        next(job)
    assert not (tmp_path / "w").exists()


def test_eval_refuses_a_zero_token_budget(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "none.h5"), "--recompute", "--n-tokens", "0"]) == 1
    assert "--n-tokens: the held-out tokens to evaluate on must be at least 1; got 0" in capsys.readouterr().err


def test_sizes_from_numpy_shapes_are_integers():
    import numpy as np
    assert SAEConfig(d_in=np.int64(16), d_sae=np.int64(32), k=4).validate().d_in == 16


def test_each_rule_is_written_once():
    """One table: the dataclasses' __post_init__ apply RULES' invariants, validate() all of RULES, and
    neither writes a check of its own (a zero head count is refused by the one n_heads rule both use)."""
    import inspect

    import engine.config as config

    for section, rules in config.RULES.items():
        names = [(getattr(rule, "field", rule.name), rule.name) for rule in rules]
        assert len(names) == len(set(names)), f"{section}: a rule written twice in {names}"
    for cls in (config.ModelConfig, config.SAEConfig, config.RunConfig):
        for method in ("__post_init__", "validate"):
            if not hasattr(cls, method):
                continue
            source = inspect.getsource(getattr(cls, method)).split('"""')[-1]     # the code, not the docstring
            assert "raise " not in source and "ConfigError(" not in source, f"{cls.__name__}.{method} checks by hand"
    source = inspect.getsource(config)
    for phrase in ("must be divisible by", "must be an integer from 1 to sae.d_sae", "must be auto, cpu, cuda"):
        assert source.count(phrase) == 1, phrase
    # an invariant is refused the same way at construction and by validate()
    for make in (lambda: ModelConfig(n_heads=0), lambda: ModelConfig(d_model=30, n_heads=4),
                 lambda: SAEConfig(d_sae=8, k=9)):
        with pytest.raises(ConfigError) as built:
            make()
        assert built.value.field in ("model.n_heads", "sae.k")
    with pytest.raises(ConfigError, match="must be divisible by"):
        preset("tiny").with_overrides(model={"d_model": 30, "n_heads": 4}).validate()
