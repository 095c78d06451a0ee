"""Foreign model and SAE files that are damaged or hostile: each is one UserError line that names the
file and what is wrong with it (the key, the tensor, the link), never a TypeError / ZeroDivisionError /
RecursionError from deep inside, and never a silently broken model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from engine.errors import UserError
from engine.interop import load_model, load_sae
from engine.testing.foreign import write_corpus, write_saelens_sae, write_tl_model


@pytest.fixture(scope="module")
def tl_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tl")
    return write_tl_model(tmp / "model", write_corpus(tmp / "c.txt", 20_000), vocab_size=280)


@pytest.fixture
def tl(tl_folder, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    for f in tl_folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


@pytest.fixture
def sae(tmp_path):
    return write_saelens_sae(tmp_path / "sae", d_in=64, d_sae=128)


def _edit(path: Path, **changes) -> None:
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes, words", [
    ({"n_heads": 0}, "n_heads must be a whole number from 1"),
    ({"d_model": "sixty-four"}, "d_model must be a whole number"),
    ({"eps": None}, "eps must be a finite number"),
    ({"normalization_type": []}, "normalization_type must be one of"),
    ({"d_mlp": 1e300}, "d_mlp must be a whole number"),
    ({"n_ctx": -4}, "n_ctx must be a whole number from 1"),
    ({"attn_only": "yes"}, "attn_only must be true or false"),
    ({"act_fn": {"x": 1}}, "act_fn must be a name"),
])
def test_a_bad_model_config_field_is_named(tl, changes, words):
    _edit(tl / "config.json", **changes)
    with pytest.raises(UserError, match=words) as err:
        load_model(tl)
    assert "config.json" in str(err.value)


@pytest.mark.parametrize("changes, words", [
    ({"architecture": "topk", "k": "abc"}, "cfg.json: k must be a whole number"),
    ({"architecture": "topk", "k": 10**9}, "cfg.json: k must be a whole number from 1 to 128"),
    ({"normalize_activations": "expected_average_only_in", "norm_scaling_factor": [1, 2]},
     "norm_scaling_factor must be a finite number"),
    ({"d_sae": "many"}, "d_sae must be a whole number"),
    ({"apply_b_dec_to_input": "no"}, "apply_b_dec_to_input must be true or false"),
    ({"architecture": ["standard"]}, "unknown SAE architecture"),
])
def test_a_bad_sae_config_field_is_named_in_the_config_not_the_weights(sae, changes, words):
    _edit(sae / "cfg.json", **changes)
    with pytest.raises(UserError, match=words):
        load_sae(sae)


def test_json_nested_deeply_is_named(tl):
    (tl / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="nests JSON too deeply"):
        load_model(tl)


def test_undecodable_bytes_are_named_as_such(tl):
    (tl / "config.json").write_bytes(b'{"d_model": "\xff\xfe"}')
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_model(tl)


def test_a_symlink_loop_is_named_as_a_loop(tl):
    (tl / "config.json").unlink()
    os.symlink(tl / "config.json", tl / "config.json")
    with pytest.raises(UserError, match="loops"):
        load_model(tl)


def test_random_bytes_are_not_called_pickled_objects(tl):
    (tl / "model_final.pth").write_bytes(os.urandom(4096))
    with pytest.raises(UserError, match="not a readable PyTorch file") as err:
        load_model(tl)
    assert "pickled Python objects" not in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_model_weights_are_refused_at_load(tl, value):
    state = torch.load(tl / "model_final.pth", weights_only=True)
    state["blocks.0.mlp.W_in"][3, 5] = value
    torch.save(state, tl / "model_final.pth")
    with pytest.raises(UserError, match=r"blocks.0.mlp.W_in holds 1 NaN or infinite value"):
        load_model(tl)


def test_a_nan_jumprelu_threshold_is_refused_not_silently_zero(sae):
    from safetensors.torch import load_file, save_file

    weights = sae / "sae_weights.safetensors"
    state = load_file(str(weights))
    state["threshold"] = torch.full((128,), float("nan"))
    save_file(state, str(weights))
    _edit(sae / "cfg.json", architecture="jumprelu")
    with pytest.raises(UserError, match="threshold holds 128 NaN"):
        load_sae(sae)
