"""The HDF5 bundle: round trip of every field, token storage, SAE files, the synthetic generator, a
bundle written from the documentation alone, the CLI, one handle per thread.

Damaged files: test_bundle_damage.py. Atomic writes, the write job's progress and cancel: test_bundle_write.py.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from bundle_parts import HC, N_F, N_M
from engine.bundle import (
    SCHEMA_VERSION, BundleError, expected_model_shapes, load_sae_file, open_bundle, read_sae,
    write_bundle, write_sae_file,
)
from engine.config import HarvestConfig, ModelConfig
from engine.model import OneLayerTransformer
from engine.testing.synthetic import write_synthetic_bundle


# ---------------------------------------------------------------------------------- round trip
def test_model_shapes_table_matches_the_model():
    cfg = ModelConfig(vocab_size=50, n_ctx=7, d_model=12, n_heads=3, d_mlp=20)
    state = OneLayerTransformer(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_model_shapes(cfg)


def test_round_trip_every_field(parts, written):
    h = parts["harvest"]
    with open_bundle(written) as b:
        assert b.schema_version == SCHEMA_VERSION
        assert b.config == parts["config"]
        assert (b.n_features, b.n_neurons, b.n_tokens) == (N_F, N_M, 10_000)
        assert b.metrics["mse"] == 0.5 and np.isnan(b.metrics["loss_recovered"])
        assert b.metrics["nested"] == {"a": [1, 2]} and b.metrics["n_tokens"] == 8000
        assert b.info["extra_info"] == parts["extra_info"]
        assert b.info["generator"].startswith("superpos ")
        assert set(b.info["versions"]) >= {"python", "torch", "numpy", "h5py", "tokenizers"}
        assert b.info["file_size"] == written.stat().st_size
        assert b.tokenizer_json() == parts["tokenizer_json"]
        assert b.tokenizer().vocab_size == parts["config"].tokenizer.vocab_size

        for kind, stats in (("feature", h.features), ("neuron", h.neurons)):
            cols = b.columns(kind)
            np.testing.assert_array_equal(cols["density"], stats.density)
            np.testing.assert_array_equal(cols["max_act"], stats.max_act)
            np.testing.assert_array_equal(cols["mean_act"], stats.mean_act)
            np.testing.assert_array_equal(cols["score"], stats.scores)
            np.testing.assert_array_equal(cols["align_l1"], stats.align_l1)
            np.testing.assert_array_equal(cols["top_token_ids"], stats.top_token_ids)
            np.testing.assert_array_equal(cols["dead"], stats.density == 0)
            np.testing.assert_array_equal(cols["ultralow"], (stats.density > 0) & (stats.density < 1e-6))
            assert cols["label"] == stats.labels
            for i in range(len(stats)):
                d = b.dashboard(kind, i)
                assert (d.kind, d.index, d.label, d.top_center) == (kind, i, stats.labels[i], stats.top_center)
                assert d.density == stats.density[i] and d.max_act == stats.max_act[i]
                assert np.isnan(d.score) if np.isnan(stats.scores[i]) else d.score == stats.scores[i]
                assert d.top_acts.dtype == np.float32 and d.interval_acts.dtype == np.float32
                for name in ("act_hist", "top_tokens", "top_acts", "interval_tokens", "interval_acts",
                             "interval_bounds", "logit_top_ids", "logit_top_values", "logit_bottom_ids",
                             "logit_bottom_values", "logit_hist", "align_ids", "align_values", "corr_ids",
                             "corr_values"):
                    np.testing.assert_array_equal(getattr(d, name), getattr(stats, name)[i], err_msg=name)
                assert d.align_l1 == stats.align_l1[i]
                np.testing.assert_allclose(d.act_hist_edges, np.linspace(0, stats.max_act[i], HC.hist_bins + 1))
                lo, hi = stats.logit_range[i]
                np.testing.assert_allclose(d.logit_hist_edges, np.linspace(float(lo), float(hi), HC.hist_bins + 1))
            assert (stats.top_tokens == -1).any(), "the test data should exercise token padding"

        curves = b.curves()
        assert set(curves) == set(parts["curves"])
        for name, values in parts["curves"].items():
            np.testing.assert_array_equal(curves[name], values)
        edges, counts = b.density_histogram()
        np.testing.assert_array_equal(edges, h.density_hist_edges)
        np.testing.assert_array_equal(counts, h.density_hist_counts)
        tok, acts = b.sample_neurons()
        np.testing.assert_array_equal(b.sample_context_starts(), h.sample_context_starts)
        np.testing.assert_array_equal(tok, h.sample_token_ids)
        np.testing.assert_array_equal(acts, h.sample_neuron_acts.astype(np.float32))
        for i in range(N_F):
            a, z = h.sample_feature_indptr[i:i + 2]
            idx, val = b.sample_feature(i)
            np.testing.assert_array_equal(idx, h.sample_feature_token[a:z])
            np.testing.assert_array_equal(val, h.sample_feature_value[a:z].astype(np.float32))

        model = b.load_model()
        for name, value in parts["model_state"].items():
            torch.testing.assert_close(model.state_dict()[name], value)
        sae = b.load_sae()
        for name, value in parts["sae_state"].items():
            torch.testing.assert_close(getattr(sae, name).detach(), value)
        assert sae.cfg.d_sae == N_F and sae.cfg.d_in == N_M
        np.testing.assert_array_equal(b.decoder_rows(slice(2, 5)), parts["sae_state"]["W_dec"][2:5].numpy())


def test_columns_are_cached_read_only_and_kinds_checked(written):
    with open_bundle(written) as b:
        cols = b.columns("feature")
        with pytest.raises(ValueError):
            cols["density"][0] = 1.0
        cols["label"].append("mine")                      # the label list is the caller's own copy
        assert len(b.columns("feature")["label"]) == N_F
        with pytest.raises(ValueError):
            b.columns("layer")
        with pytest.raises(IndexError, match="does not exist"):
            b.dashboard("feature", N_F)
        with pytest.raises(IndexError):
            b.sample_feature(-1)
    with pytest.raises(BundleError, match="closed"):
        b.columns("neuron")


def test_wide_vocab_stores_int32_tokens(parts, tmp_path):
    cfg = parts["config"].with_overrides(tokenizer={"vocab_size": 70_000}, model={"vocab_size": 70_000})
    model = OneLayerTransformer(cfg.model)
    path = write_bundle(tmp_path / "wide.h5", **{**parts, "config": cfg, "model_state": model.state_dict()})
    with h5py.File(path, "r") as f:
        assert f["features/top_tokens"].dtype == np.int32 and f["features/top_tokens"].attrs["pad"] == -1
    with open_bundle(path) as b:
        np.testing.assert_array_equal(b.dashboard("feature", 1).top_tokens, parts["harvest"].features.top_tokens[1])


def test_uint16_tokens_use_the_documented_pad(written, parts):
    with h5py.File(written, "r") as f:
        ds = f["features/top_tokens"]
        assert ds.dtype == np.uint16 and ds.attrs["pad"] == 65535
        raw = ds[...]
    np.testing.assert_array_equal(raw == 65535, parts["harvest"].features.top_tokens == -1)

# ---------------------------------------------------------------------------------- SAE files
def test_sae_file_round_trip(tmp_path, parts, written):
    cfg = parts["config"].sae.replace(d_in=N_M, d_sae=N_F).to_dict()
    path = write_sae_file(tmp_path / "sae.h5", parts["sae_state"], cfg)
    state, cfg_back = read_sae(path)
    assert cfg_back == json.loads(json.dumps(cfg))
    for name, value in parts["sae_state"].items():
        torch.testing.assert_close(state[name], value)
    sae = load_sae_file(path)
    x = torch.rand(3, N_M)
    assert sae(x)[0].shape == (3, N_M)
    state_b, _ = read_sae(written)                # a bundle is also an SAE file
    torch.testing.assert_close(state_b["W_dec"], parts["sae_state"]["W_dec"])
    with h5py.File(written, "r") as f:
        torch.testing.assert_close(read_sae(f["sae"])[0]["b_dec"], parts["sae_state"]["b_dec"])
    with pytest.raises(BundleError, match="not a superpos bundle"):
        text = tmp_path / "x.h5"
        with h5py.File(text, "w"):
            pass
        read_sae(text)


# ---------------------------------------------------------------------------------- synthetic
def test_synthetic_bundle_is_usable(tmp_path):
    path = write_synthetic_bundle(tmp_path / "syn.h5", n_features=300, n_neurons=32, vocab_size=400, seed=3,
                                  chunk=128)
    with open_bundle(path) as b:
        assert (b.n_features, b.n_neurons) == (300, 32)
        cols = b.columns("feature")
        assert cols["dead"].any() and not cols["dead"].all()
        assert any(label.startswith("DNA") for label in cols["label"])
        assert np.isnan(cols["score"][cols["dead"]]).all()
        d = b.dashboard("feature", int(np.flatnonzero(~cols["dead"])[0]))
        assert d.top_acts[0, d.top_center] == pytest.approx(d.max_act, rel=1e-2)
        assert (np.diff(d.top_acts[:, d.top_center]) <= 1e-3).all()   # top examples in descending order
        tok = b.tokenizer()
        ids = torch.tensor([tok.encode("ACGT ACGT hello")])
        model, sae = b.load_model(), b.load_sae()
        acts = model.mlp_acts(ids)
        assert sae.encode(acts).shape == (1, ids.shape[1], 300)
        assert b.sample_neurons()[1].shape == (HarvestConfig().sample_tokens, 32)
    # deterministic for a seed
    again = write_synthetic_bundle(tmp_path / "again.h5", n_features=300, n_neurons=32, vocab_size=400, seed=3,
                                   chunk=128)
    with open_bundle(path) as a, open_bundle(again) as b2:
        np.testing.assert_array_equal(a.columns("feature")["density"], b2.columns("feature")["density"])


# ---------------------------------------------------------------------------------- the documented format
def test_bundle_written_with_plain_h5py_from_the_doc_opens(tmp_path, parts):
    """docs/bundle-format.md is enough: a bundle written with bare h5py (no chunks, no filters) opens."""
    h, cfg = parts["harvest"], parts["config"]
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(format="superpos-bundle", schema_version=np.int64(1), created="2026-01-01T00:00:00+00:00",
                       generator="by hand", versions=json.dumps({}), extra_info=json.dumps({}))
        f["config"] = json.dumps(cfg.to_dict())
        f["tokenizer"] = parts["tokenizer_json"]
        f["metrics"] = json.dumps({"l0": 4.0})
        m = f.create_group("model")
        m.attrs["config"] = json.dumps(cfg.model.to_dict())
        for name, t in parts["model_state"].items():
            m[name] = t.float().numpy()
        s = f.create_group("sae")
        s.attrs["config"] = json.dumps(cfg.sae.to_dict())
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            s[name] = parts["sae_state"][name].numpy().astype(np.float32)
        for group, stats in (("features", h.features), ("neurons", h.neurons)):
            g = f.create_group(group)
            for name, value in stats.__dict__.items():
                if name in ("kind", "top_center", "labels", "scores"):
                    continue
                if name in ("top_tokens", "interval_tokens", "top_token_ids", "logit_top_ids", "logit_bottom_ids"):
                    g[name] = np.where(value < 0, 65535, value).astype(np.uint16)
                    g[name].attrs["pad"] = np.int64(65535)
                else:
                    g[name] = value
            g.create_dataset("labels", data=stats.labels, dtype=h5py.string_dtype("utf-8"))
            g["scores"] = stats.scores
        hv = f.create_group("harvest")
        hv.attrs.update(n_tokens=np.int64(h.n_tokens), top_center=np.int64(HC.ctx_left),
                        config=json.dumps(HC.to_dict()))
        f["density_hist/edges"] = h.density_hist_edges
        f["density_hist/counts"] = h.density_hist_counts
        for name in ("token_ids", "neuron_acts", "feature_indptr", "feature_token", "feature_value"):
            f[f"sample/{name}"] = getattr(h, "sample_" + name)
        f["curves/model/train_loss"] = parts["curves"]["model/train_loss"]
    with open_bundle(path) as b:
        d = b.dashboard("feature", 3)
        np.testing.assert_array_equal(d.top_tokens, h.features.top_tokens[3])
        assert b.columns("neuron")["label"] == h.neurons.labels
        assert list(b.curves()) == ["model/train_loss"]
        assert b.sample_context_starts() is None            # the first tokens (written before schema 5)
        b.load_model()
        b.load_sae()


# ---------------------------------------------------------------------------------- CLI
def test_cli_info_and_export(written, tmp_path, capsys):
    from engine.cli import main

    assert main(["info", str(written)]) == 0
    out = capsys.readouterr().out
    assert f"{N_F} features on {N_M} neurons" in out and "loss_recovered n/a" in out and "corpus" in out
    assert main(["info", str(written), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["features"]["count"] == N_F
    assert main(["info", str(tmp_path / "nope.h5")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err

    assert main(["export-saelens", str(written), str(tmp_path / "sl")]) == 0
    from safetensors.numpy import load_file

    weights = load_file(str(tmp_path / "sl" / "sae_weights.safetensors"))
    assert weights["W_enc"].shape == (N_M, N_F) and weights["W_dec"].shape == (N_F, N_M)
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["architecture"], cfg["k"]) == (N_M, N_F, "topk", 4)
    assert load_file(str(tmp_path / "sl" / "sparsity.safetensors"))["sparsity"].shape == (N_F,)


def test_saelens_export_writes_exactly_three_files(written, tmp_path):
    from engine.interop.saelens import export_saelens, saelens_config

    with open_bundle(written) as b:
        files = export_saelens(b, tmp_path / "sl")
        assert json.loads((tmp_path / "sl" / "cfg.json").read_text()) == saelens_config(b)
    names = ["cfg.json", "sae_weights.safetensors", "sparsity.safetensors"]
    assert sorted(f.name for f in files) == names
    assert sorted(p.name for p in (tmp_path / "sl").iterdir()) == names      # no temporary files left

def test_cli_registered_in_main(written, capsys):
    from engine.cli import main

    assert main(["info", str(written)]) == 0
    assert "features" in capsys.readouterr().out


def test_one_handle_per_thread(written):
    """The app reads in worker threads, each with its own handle: results match the main thread's."""
    import threading

    with open_bundle(written) as main:
        expected = [main.dashboard("feature", i).top_acts for i in range(N_F)]
    failures = []

    def work():
        try:
            with open_bundle(written) as b:
                for _ in range(3):
                    for i in range(N_F):
                        np.testing.assert_array_equal(b.dashboard("feature", i).top_acts, expected[i])
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
