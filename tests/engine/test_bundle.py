"""The HDF5 bundle: round trip, validation, corruption fuzzing, atomic writes, SAE files, synthetic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import engine.bundle._all as bundle_mod
from engine.bundle import (
    SCHEMA_VERSION, BundleError, expected_model_shapes, load_sae_file, open_bundle, read_sae,
    write_bundle, write_sae_file,
)
from engine.config import HarvestConfig, ModelConfig, preset
from engine.model import OneLayerTransformer
from engine.stats import HarvestResult
from engine.testing.synthetic import _unit_chunk, synthetic_text, write_synthetic_bundle
from engine.data.tokenizer import Tokenizer

HC = HarvestConfig(top_k=4, n_intervals=3, per_interval=2, ctx_left=3, ctx_right=2, hist_bins=8,
                   n_logits=3, n_align=2, sample_tokens=50)
N_F, N_M = 40, 16


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    return Tokenizer.train([synthetic_text(0, 6000)], vocab_size=300).to_json()


@pytest.fixture(scope="module")
def parts(tokenizer_json):
    """Everything write_bundle takes, for a tiny model (V from the tokenizer, 16 neurons, 40 features)."""
    V = Tokenizer.from_json(tokenizer_json).vocab_size
    config = preset("tiny").with_overrides(
        tokenizer={"vocab_size": V}, model={"d_mlp": N_M, "d_model": 16, "n_heads": 2, "n_ctx": 8},
        sae={"d_sae": N_F, "k": 4, "aux_k": 8}, harvest=HC.to_dict())
    torch.manual_seed(0)
    model = OneLayerTransformer(config.model)
    rng = np.random.default_rng(0)
    W_dec = rng.standard_normal((N_F, N_M)).astype(np.float32)
    sae_state = {"W_enc": torch.from_numpy(W_dec.T.copy()), "b_enc": torch.randn(N_F),
                 "W_dec": torch.from_numpy(W_dec), "b_dec": torch.randn(N_M)}
    features = _unit_chunk(rng, "feature", N_F, 0, 10_000, V, N_M, HC, ["DNA: ACGT runs", "héllo ✓ עברית", ""])
    neurons = _unit_chunk(rng, "neuron", N_M, 0, 10_000, V, N_F, HC, ["polysemantic"])
    S = HC.sample_tokens
    counts = rng.integers(0, 4, size=N_F)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    harvest = HarvestResult(
        features=features, neurons=neurons, n_tokens=10_000,
        density_hist_edges=np.linspace(-8, 0, 9), density_hist_counts=rng.integers(0, 9, size=8),
        sample_token_ids=rng.integers(0, V, size=S).astype(np.int32),
        sample_neuron_acts=rng.random((S, N_M)).astype(np.float16),
        sample_feature_indptr=indptr,
        sample_feature_token=rng.integers(0, S, size=int(indptr[-1])).astype(np.int32),
        sample_feature_value=rng.random(int(indptr[-1])).astype(np.float16),
    )
    curves = {"model/train_loss": np.stack([np.arange(5.0), np.linspace(5, 3, 5)], 1),
              "sae/l0": np.stack([np.arange(3.0), [4.0, 4.0, 4.0]], 1), "flat": np.zeros((0, 2))}
    metrics = {"mse": 0.5, "l0": 4.0, "loss_recovered": float("nan"), "nested": {"a": [1, 2]},
               "n_tokens": np.int64(8000)}
    return dict(config=config, tokenizer_json=tokenizer_json, model_state=model.state_dict(),
                sae_state=sae_state, harvest=harvest, metrics=metrics, curves=curves,
                extra_info={"corpus": "builtin", "note": "ünïcode"})


@pytest.fixture(scope="module")
def written(parts, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "run.h5"
    write_bundle(path, **parts)
    return path


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


# ---------------------------------------------------------------------------------- validation
def _copy(src: Path, tmp_path: Path, name: str = "copy.h5") -> Path:
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def test_not_a_file_not_hdf5_truncated(tmp_path, written):
    with pytest.raises(BundleError, match="no such file"):
        open_bundle(tmp_path / "absent.h5")
    with pytest.raises(BundleError, match="folder"):
        open_bundle(tmp_path)
    text = tmp_path / "notes.h5"
    text.write_text("hello, not HDF5")
    with pytest.raises(BundleError, match="not an HDF5 file"):
        open_bundle(text)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(BundleError):
        open_bundle(empty)
    cut = _copy(written, tmp_path)
    with open(cut, "r+b") as fh:
        fh.truncate(cut.stat().st_size // 2)
    with pytest.raises(BundleError, match="damaged or incomplete"):
        open_bundle(cut)


def test_other_hdf5_and_wrong_format(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(BundleError, match="not a superpos bundle"):
        open_bundle(plain)
    with h5py.File(plain, "a") as f:
        f.attrs["format"] = "someone-else"
    with pytest.raises(BundleError, match="someone-else"):
        open_bundle(plain)


def test_newer_schema_says_update(tmp_path, written):
    path = _copy(written, tmp_path)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = np.int64(3)
    with pytest.raises(BundleError) as err:
        open_bundle(path)
    assert "newer superpos (schema 3)" in str(err.value) and "Update superpos" in str(err.value)
    assert f"reads up to {SCHEMA_VERSION}" in str(err.value)


@pytest.mark.parametrize("name", ["features/top_acts", "neurons/labels", "model/mlp.W_in.weight", "sae/W_dec",
                                  "config", "metrics", "tokenizer", "sample/feature_indptr", "density_hist/edges",
                                  "harvest"])
def test_missing_dataset(tmp_path, written, name):
    path = _copy(written, tmp_path)
    with h5py.File(path, "a") as f:
        del f[name]
    with pytest.raises(BundleError, match=name.split("/")[-1].replace(".", r"\.")):
        open_bundle(path)


@pytest.mark.parametrize("name,shape", [
    ("features/top_acts", (N_F, 4, 5)),             # W disagrees with top_tokens
    ("features/density", (N_F + 1,)),               # N disagrees with the other columns
    ("neurons/interval_tokens", (N_M, 3, 2, 7)),
    ("neurons/logit_hist", (N_M, 9)),               # B disagrees with the features' B
    ("sae/W_enc", (N_F, N_M)),                      # transposed
    ("model/unembed.weight", (3, 16)),
    ("sample/neuron_acts", (50, N_M + 1)),
    ("curves/model/train_loss", (5, 3)),
])
def test_misshaped_dataset(tmp_path, written, name, shape):
    path = _copy(written, tmp_path)
    with h5py.File(path, "a") as f:
        dtype = f[name].dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype)
    with pytest.raises(BundleError, match="shape"):
        open_bundle(path)


def test_bad_json_and_bad_attrs(tmp_path, written):
    path = _copy(written, tmp_path)
    with h5py.File(path, "a") as f:
        del f["config"]
        f["config"] = "{not json"
    with pytest.raises(BundleError, match="/config is not valid JSON"):
        open_bundle(path)
    path = _copy(written, tmp_path, "b.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = "one"
    with pytest.raises(BundleError, match="schema_version"):
        open_bundle(path)


def test_lazy_corruption_surfaces_as_bundle_error(tmp_path, written):
    """Damage a chunk of stored numbers: open succeeds (metadata intact), the read is a BundleError."""
    path = _copy(written, tmp_path)
    with h5py.File(path, "r") as f:
        offset = f["features/interval_acts"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 10)
        fh.write(b"\xff" * 16)
    with open_bundle(path) as b:
        with pytest.raises(BundleError, match="dashboard"):
            b.dashboard("feature", 0)
        b.columns("feature")               # other datasets still read
        b.dashboard("neuron", 0)


# ---------------------------------------------------------------------------------- fuzzing
def _read_everything(path: Path) -> None:
    with open_bundle(path) as b:
        for kind in ("feature", "neuron"):
            b.columns(kind)
            for i in (0, b.n_units(kind) // 2, b.n_units(kind) - 1):
                b.dashboard(kind, i)
        b.curves()
        b.density_histogram()
        b.sample_neurons()
        b.sample_feature(0)
        b.sample_feature(b.n_features - 1)
        b.tokenizer()
        b.load_model()
        b.load_sae()


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "base.h5"
    write_synthetic_bundle(path, n_features=96, n_neurons=32, vocab_size=300, n_tokens=5000, chunk=40,
                           harvest=HC)
    _read_everything(path)
    return path


def test_fuzz_truncation_and_corruption_only_raise_bundle_error(fuzz_base, tmp_path):
    data = fuzz_base.read_bytes()
    rng = np.random.default_rng(1234)
    outcomes = {"BundleError": 0, "read fine": 0}
    for case in range(60):
        blob = bytearray(data)
        if case % 3 == 0:
            blob = blob[: int(rng.integers(0, len(blob)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                start = int(rng.integers(0, len(blob)))
                length = int(rng.integers(1, 256))
                blob[start:start + length] = rng.integers(0, 256, size=len(blob[start:start + length]),
                                                          dtype=np.uint8).tobytes()
        path = tmp_path / f"case{case}.h5"
        path.write_bytes(bytes(blob))
        try:
            _read_everything(path)
            outcomes["read fine"] += 1
        except BundleError as exc:
            assert str(exc), "a BundleError needs a message"
            outcomes["BundleError"] += 1
        except Exception as exc:  # pragma: no cover - this is the failure being tested for
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
        path.unlink()
    assert outcomes["BundleError"] >= 30, outcomes


# ---------------------------------------------------------------------------------- atomic writes
def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_failed_write_leaves_no_file(tmp_path, parts):
    bad = dict(parts)
    h = parts["harvest"]
    bad_neurons = type(h.neurons)(**{**h.neurons.__dict__, "labels": ["too", "few"]})
    bad["harvest"] = HarvestResult(**{**h.__dict__, "neurons": bad_neurons})
    with pytest.raises(ValueError, match="labels"):
        write_bundle(tmp_path / "new.h5", **bad)
    assert not (tmp_path / "new.h5").exists()
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_the_old_bundle(tmp_path, parts, written, monkeypatch):
    target = _copy(written, tmp_path, "keep.h5")
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_mod.BundleWriter, "write_sample", boom)
    with pytest.raises(BundleError, match="No space left"):
        write_bundle(target, **parts)
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    monkeypatch.setattr(bundle_mod.os, "replace", boom)     # the very last step fails
    with pytest.raises(BundleError):
        write_bundle(target, **parts)
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


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
    assert failures == []
