"""``superpos analyze`` on a TransformerLens-layout model and a SAELens SAE writes a bundle whose model,
SAE, statistics and lens work; bad pairs fail with one line (exit 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.cli.main import main
from engine.testing.foreign import write_corpus, write_saelens_sae, write_tl_model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("foreign")
    corpus = write_corpus(d / "corpus.txt")
    return {"corpus": corpus, "model": write_tl_model(d / "gelu-1l", corpus), "sae": write_saelens_sae(d / "sae"),
            "dir": d}


def _analyze(pair, out, *extra):
    return main(["analyze", "--model", str(pair["model"]), "--sae", str(pair["sae"]), "--corpus", str(pair["corpus"]),
                 "--tokens", "3000", "--quiet", "--out", str(out), *extra])


def test_analyze_writes_a_working_bundle(pair, tmp_path, capsys):
    from engine.analysis.lens import LensEngine
    from engine.bundle import open_bundle
    from engine.interop import load_model

    out = tmp_path / "b.h5"
    assert _analyze(pair, out) == 0
    assert "bundle written" in capsys.readouterr().out
    with open_bundle(out) as b:
        for key in ("loss_recovered", "kl_recovered", "kl_sae", "kl_zero_ablation", "l0", "fvu"):
            assert np.isfinite(b.metrics[key]), key
        assert b.model_config.act_fn == "gelu" and b.model_config.unembed_bias
        assert b.config.sae.source.startswith("saelens:")
        assert b.n_features == 128 and b.n_neurons == 64
        model, sae, tok = b.load_model(), b.load_sae(), b.tokenizer()
        assert b.dashboard("feature", 0) is not None
    ref = load_model(pair["model"])
    idx = torch.arange(20).reshape(1, 20) % ref.cfg.vocab_size
    with torch.no_grad():
        assert torch.equal(model(idx), ref(idx))
    result = LensEngine(model, sae, tok).analyze("def f(x): return x")    # the lens pane's engine
    assert result is not None
    assert load_model(out).cfg == ref.cfg                               # bundles load through the same call


def test_analyze_refuses_bad_pairs(pair, tmp_path, capsys):
    wrong = write_saelens_sae(tmp_path / "wide", d_in=48)
    assert main(["analyze", "--model", str(pair["model"]), "--sae", str(wrong), "--quiet",
                 "--out", str(tmp_path / "x.h5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "d_in is 48" in err[0] and "d_mlp = 64" in err[0]
    wrong = write_saelens_sae(tmp_path / "resid")
    cfg = json.loads((wrong / "cfg.json").read_text())
    (wrong / "cfg.json").write_text(json.dumps({**cfg, "metadata": {"hook_name": "blocks.0.hook_resid_pre"}}))
    assert main(["analyze", "--model", str(pair["model"]), "--sae", str(wrong), "--quiet", "--out", str(tmp_path / "x.h5")]) == 1
    no_tok = tmp_path / "no-tok"
    no_tok.mkdir()
    for name in ("config.json", "model_final.pth"):
        (no_tok / name).write_bytes((pair["model"] / name).read_bytes())
    assert main(["analyze", "--model", str(no_tok), "--sae", str(pair["sae"]), "--quiet", "--out", str(tmp_path / "x.h5")]) == 1
    err = capsys.readouterr().err
    assert "blocks.0.hook_resid_pre" in err and "no tokenizer.json" in err and "--tokenizer" in err
    assert not (tmp_path / "x.h5").exists()
