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
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "(gelu)" in info and "imported from saelens:" in info and "training activations" not in info


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


def test_export_neuronpedia_batches(pair, tmp_path, capsys):
    out = tmp_path / "b.h5"
    assert _analyze(pair, out) == 0
    assert main(["export-neuronpedia", str(out), "--out", str(tmp_path / "np"), "--batch-size", "50", "--quiet"]) == 0
    files = sorted((tmp_path / "np").glob("batch-*.json"))
    assert [f.name for f in files] == ["batch-0.json", "batch-1.json", "batch-2.json"]      # 128 features / 50
    batches = [json.loads(f.read_text()) for f in files]
    assert [len(b["features"]) for b in batches] == [50, 50, 28]
    assert {b["model_id"] for b in batches} == {"superpos-1l-analyze-gelu-1l"} and batches[0]["layer"] == 0
    feats = [f for b in batches for f in b["features"]]
    assert [f["feature_index"] for f in feats] == list(range(128))
    f = next(f for f in feats if f["activations"])
    for key in ("neuron_alignment_indices", "neuron_alignment_values", "correlated_neurons_indices",
                "correlated_neurons_pearson", "pos_str", "pos_values", "neg_str", "neg_values", "frac_nonzero",
                "freq_hist_data_bar_values", "freq_hist_data_bar_heights", "logits_hist_data_bar_values",
                "logits_hist_data_bar_heights", "n_prompts_total", "n_tokens_in_prompt", "dataset"):
        assert key in f, key
    act = f["activations"][0]
    assert set(act) >= {"tokens", "values", "bin_min", "bin_max", "bin_contains", "qualifying_token_index"}
    assert len(act["tokens"]) == len(act["values"]) and act["bin_max"] == f["max_act"]
    assert main(["export-neuronpedia", str(out), "--out", str(tmp_path / "np"), "--batch-size", "0"]) == 1


def test_saelens_export_of_an_analysed_bundle(pair, tmp_path):
    """The imported SAE goes back out as SAELens with sparsity.safetensors (log10 density) and metadata."""
    from safetensors.numpy import load_file

    from engine.bundle import open_bundle
    from engine.interop import load_sae
    from engine.interop.saelens import export_saelens

    out = tmp_path / "b.h5"
    assert _analyze(pair, out) == 0
    with open_bundle(out) as b:
        export_saelens(b, tmp_path / "sl")
        density = b.columns("feature")["density"]
        ours = b.load_sae()
    sparsity = load_file(str(tmp_path / "sl" / "sparsity.safetensors"))["sparsity"]
    assert np.allclose(sparsity, np.log10(density + 1e-10), atol=1e-6)
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert cfg["architecture"] == "standard" and cfg["metadata"]["hook_name"] == "blocks.0.mlp.hook_post"
    x = torch.randn(32, 64)
    assert torch.equal(load_sae(tmp_path / "sl").encode(x), ours.encode(x))


def test_cancel_leaves_no_bundle_and_resume_reuses_the_tokens(pair, tmp_path):
    from engine.analyze import analyze_job
    from engine.events import Cancelled, CancelToken, Progress, StageStarted

    cancel, out, stages = CancelToken(), tmp_path / "c.h5", []
    job = analyze_job(pair["model"], pair["sae"], out, corpus=str(pair["corpus"]), n_tokens=3000,
                      cache_dir=tmp_path / "cache", cancel=cancel)
    with pytest.raises(Cancelled):
        for event in job:
            if isinstance(event, StageStarted):
                stages.append(event.stage)
                if event.stage == "harvest":
                    cancel.cancel()
    assert stages == ["load", "tokenize", "evaluate", "harvest"] and not out.exists()
    events = list(_drain(analyze_job(pair["model"], pair["sae"], out, corpus=str(pair["corpus"]), n_tokens=3000,
                                     cache_dir=tmp_path / "cache")))
    assert out.exists()
    assert any(isinstance(e, Progress) and e.stage == "tokenize" and e.metrics.get("cached") for e in events)


def _drain(job):
    while True:
        try:
            yield next(job)
        except StopIteration:
            return


def test_harvest_of_gelu_neurons_counts_only_positive_activations(pair):
    """GELU neurons go negative: the histogram holds exactly the positive activations of each neuron
    (a negative one once landed in the previous neuron's bins, or crashed bincount for neuron 0)."""
    from engine.analysis.harvest import harvest
    from engine.config import HarvestConfig
    from engine.jobs import run_to_completion
    from engine.interop import load_model, load_sae

    model, sae = load_model(pair["model"]), load_sae(pair["sae"])
    T = model.cfg.n_ctx
    tokens = np.random.default_rng(0).integers(0, model.cfg.vocab_size, 8 * T).astype(np.int32)
    result = run_to_completion(harvest(model, sae, tokens, HarvestConfig(n_tokens=8 * T, sample_tokens=64)))
    with torch.no_grad():
        h = model.mlp_acts(torch.from_numpy(tokens.astype(np.int64)).view(-1, T)).reshape(-1, model.cfg.d_mlp)
    assert (h < 0).any()
    assert np.array_equal(result.neurons.act_hist.sum(1), (h > 0).sum(0).numpy())
    pos_mean = (h.clamp_min(0).sum(0) / (h > 0).sum(0)).numpy()
    assert np.allclose(result.neurons.mean_act, pos_mean, rtol=1e-4)        # mean when active: a > 0 only
