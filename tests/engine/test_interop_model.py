"""TransformerLens one-layer checkpoints load as the project's model and match TransformerLens's own
forward (logits and blocks.0.mlp.hook_post within 1e-4 relative) — random weights, built and saved
with transformer-lens itself in the test."""

from __future__ import annotations

import json

import pytest
import torch

transformer_lens = pytest.importorskip("transformer_lens")

from engine.errors import UserError  # noqa: E402
from engine.interop import load_model  # noqa: E402

BASE = dict(d_model=32, n_layers=1, d_mlp=64, d_head=8, n_heads=4, n_ctx=16, d_vocab=50, attn_only=False,
            tokenizer_name=None)


def _tl_model(tmp_path, *, act_fn="gelu", normalization="LN", shortformer=False, fmt="pth", seed=0, **extra):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(
        **{k: v for k, v in BASE.items() if k != "tokenizer_name"}, act_fn=act_fn, normalization_type=normalization,
        positional_embedding_type="shortformer" if shortformer else "standard", seed=seed, **extra)
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():              # TL initialises LN to 1/0 and biases to 0: randomise them too
        for name, p in model.named_parameters():
            if name.endswith((".b", ".w", "b_in", "b_out", "b_Q", "b_K", "b_V", "b_O", "b_U")):
                p.add_(torch.randn_like(p) * 0.3)
    folder = tmp_path / f"tl-{act_fn}-{normalization}-{shortformer}-{fmt}"
    folder.mkdir()
    # Neel Nanda's 1L config.json layout (flat names, "normalization", "shortformer_pos")
    (folder / "config.json").write_text(json.dumps({**BASE, "act_fn": act_fn, "normalization": normalization,
                                                    "shortformer_pos": shortformer}))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("mask", "IGNORE"))}
    if fmt == "pth":
        torch.save(model.state_dict(), folder / "model_final.pth")
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return model, folder


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("act_fn,normalization,shortformer,fmt", [
    ("gelu", "LN", False, "pth"), ("solu_ln", "LN", False, "pth"), ("relu", "LNPre", False, "safetensors"),
    ("gelu_new", "LN", True, "pth"), ("solu_ln", "LNPre", True, "safetensors")])
def test_tl_model_matches_transformer_lens(tmp_path, act_fn, normalization, shortformer, fmt):
    tl, folder = _tl_model(tmp_path, act_fn=act_fn, normalization=normalization, shortformer=shortformer, fmt=fmt)
    ours = load_model(folder)
    tokens = torch.randint(0, BASE["d_vocab"], (3, BASE["n_ctx"]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tl_logits, cache = tl.run_with_cache(tokens, names_filter="blocks.0.mlp.hook_post")
        logits = ours(tokens)
        acts = ours.mlp_acts(tokens)
        resid, acts2 = ours.resid_and_acts(tokens)
    assert _rel(logits, tl_logits) < 1e-4
    assert _rel(acts, cache["blocks.0.mlp.hook_post"]) < 1e-4
    assert torch.allclose(ours.logits_from_acts(resid, acts2), logits, atol=1e-5)
    assert ours.cfg.act_fn == act_fn and ours.cfg.shortformer is shortformer


def test_weights_file_path_loads_the_same_model(tmp_path):
    """The weights file itself is a valid path (a bundle's model loading through the same call is in
    test_analyze.py::test_analyze_writes_a_working_bundle)."""
    _tl, folder = _tl_model(tmp_path, act_fn="gelu")
    a = load_model(folder / "model_final.pth")
    b = load_model(folder)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def _folder(tmp_path, cfg: dict, state: dict | None = None, name="model_final.pth"):
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if state is not None:
        torch.save(state, folder / name)
    return folder


def test_attention_only_model_is_refused(tmp_path):
    folder = _folder(tmp_path, {**BASE, "attn_only": True, "act_fn": None}, {"embed.W_E": torch.zeros(2, 2)})
    with pytest.raises(UserError, match="attention-only"):
        load_model(folder)


def test_pickled_object_in_pth_is_refused(tmp_path):
    import fractions
    folder = _folder(tmp_path, {**BASE, "act_fn": "gelu"}, {"x": fractions.Fraction(1, 3)})
    with pytest.raises(UserError, match="pickled Python objects"):
        load_model(folder)


@pytest.mark.parametrize("change,match", [
    ({"act_fn": "swiglu"}, "act_fn"), ({"n_layers": 2}, "one-layer"), ({"normalization": "RMS"}, "normalization"),
    ({"positional_embedding_type": "rotary"}, "rotary")])
def test_unsupported_configs_are_refused(tmp_path, change, match):
    _tl, folder = _tl_model(tmp_path, act_fn="gelu")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(UserError, match=match):
        load_model(folder)


def test_wrong_shape_and_missing_files(tmp_path):
    _tl, folder = _tl_model(tmp_path, act_fn="gelu")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "d_mlp": 65}))
    with pytest.raises(UserError, match=r"blocks.0.mlp.W_in has shape \[32, 64\]"):
        load_model(folder)
    (folder / "config.json").unlink()
    with pytest.raises(UserError, match="no config.json"):
        load_model(folder)
    with pytest.raises(UserError, match="no such"):
        load_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({**BASE, "act_fn": "gelu"}))
    with pytest.raises(UserError, match="no TransformerLens weights"):
        load_model(empty)


def test_fifo_weights_are_refused(tmp_path):
    import os
    folder = _folder(tmp_path, {**BASE, "act_fn": "gelu"})
    os.mkfifo(folder / "model_final.pth")
    with pytest.raises(UserError):
        load_model(folder / "model_final.pth")
