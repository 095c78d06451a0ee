"""SAEs written by their own libraries load as the project's SparseAutoencoder with the same encode
and decode (1e-5 relative): SAELens (built and saved with sae-lens here), sparsify (eai-sparsify),
dictionary_learning (its dictionary module, imported from the installed package file where present),
Neel Nanda's 1L SAE files, and bad inputs refused with one line."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from engine.errors import UserError
from engine.interop import load_sae
from engine.interop.sae_formats import check_pair

D, F = 16, 48


def _x(n=64, seed=3):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)) * 2


def _randomise(module, seed=0, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
            if "threshold" in name:
                p.copy_(p.abs() * 0.5)


def _rel(a, b):
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-12))


def _same(theirs_f, theirs_x, sae, x):
    f = sae.encode(x)
    assert _rel(f, theirs_f) < 1e-5
    assert _rel(sae.decode(theirs_f), theirs_x) < 1e-5
    assert (f > 0).sum() > 0                       # the comparison is not between two zero matrices


# ---------------------------------------------------------------------------- SAELens
SAELENS = [
    ("StandardSAE", "StandardSAEConfig", {}),
    ("StandardSAE", "StandardSAEConfig", {"apply_b_dec_to_input": False}),
    ("TopKSAE", "TopKSAEConfig", {"k": 5}),
    ("TopKSAE", "TopKSAEConfig", {"k": 5, "rescale_acts_by_decoder_norm": True, "apply_b_dec_to_input": False}),
    ("JumpReLUSAE", "JumpReLUSAEConfig", {}),
    ("GatedSAE", "GatedSAEConfig", {}),
    ("GatedSAE", "GatedSAEConfig", {"apply_b_dec_to_input": False}),
    ("StandardSAE", "StandardSAEConfig", {"normalize_activations": "expected_average_only_in"}),
]


def _saelens(tmp_path, cls_name, cfg_name, kwargs, seed=0):
    sae_lens = pytest.importorskip("sae_lens")
    cfg = getattr(sae_lens, cfg_name)(d_in=D, d_sae=F, **kwargs)
    cfg.metadata.hook_name = "blocks.0.mlp.hook_post"
    sae = getattr(sae_lens, cls_name)(cfg).eval()
    _randomise(sae, seed)
    folder = tmp_path / f"saelens-{cls_name}-{seed}"
    sae.save_model(folder)
    return sae, folder


@pytest.mark.parametrize("cls_name,cfg_name,kwargs", SAELENS)
def test_saelens_folders_match_saelens(tmp_path, cls_name, cfg_name, kwargs):
    theirs, folder = _saelens(tmp_path, cls_name, cfg_name, kwargs)
    ours = load_sae(folder)
    x = _x()
    with torch.no_grad():
        f = theirs.encode(x)
        _same(f, theirs.decode(f), ours, x)
    assert ours.hook_name == "blocks.0.mlp.hook_post"
    assert load_sae(folder / "sae_weights.safetensors").cfg.d_sae == F


def test_saelens_expected_average_with_factor_is_folded(tmp_path):
    """With a scaling factor in cfg.json the SAE reads raw x: SAELens's fold_activation_norm_scaling_factor."""
    theirs, folder = _saelens(tmp_path, "StandardSAE", "StandardSAEConfig",
                              {"normalize_activations": "expected_average_only_in"})
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "norm_scaling_factor": 2.5}))
    ours = load_sae(folder)
    theirs.fold_activation_norm_scaling_factor(2.5)
    x = _x()
    with torch.no_grad():
        f = theirs.encode(x)
        _same(f, theirs.decode(f), ours, x)


def test_saelens_refusals(tmp_path):
    _theirs, folder = _saelens(tmp_path, "StandardSAE", "StandardSAEConfig", {})
    cfg = json.loads((folder / "cfg.json").read_text())
    for change, match in (({"architecture": "transcoder-ish"}, "unknown SAE architecture"),
                          ({"normalize_activations": "layer_norm"}, "normalize_activations"),
                          ({"d_in": D + 1}, r"W_enc has shape \[16, 48\], expected \[17, 48\]")):
        (folder / "cfg.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(UserError, match=match):
            load_sae(folder)


# ---------------------------------------------------------------------------- sparsify
def test_sparsify_folder_matches_sparsify(tmp_path):
    sparsify = pytest.importorskip("sparsify")
    coder = sparsify.SparseCoder(D, sparsify.SparseCoderConfig(num_latents=F, k=6))
    _randomise(coder)
    coder.save_to_disk(tmp_path / "layers.0.mlp")
    ours = load_sae(tmp_path / "layers.0.mlp")
    x = _x()
    with torch.no_grad():
        enc = coder.encode(x)
        theirs_f = torch.zeros(x.shape[0], F).scatter_(1, enc.top_indices, enc.top_acts)
        _same(theirs_f, coder.decode(enc.top_acts, enc.top_indices), ours, x)
    assert ours.k == 6


def test_sparsify_transcoder_is_refused(tmp_path):
    folder = tmp_path / "tc"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"d_in": D, "num_latents": F, "k": 4, "transcode": True}))
    (folder / "sae.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="transcoder"):
        load_sae(folder)


# ---------------------------------------------------------------------------- dictionary_learning
def _dictionary_module():
    """dictionary_learning's dictionary.py by file: the package __init__ imports nnsight (not installed)."""
    spec = importlib.util.find_spec("dictionary_learning")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("dictionary-learning is not installed")
    from pathlib import Path
    base = Path(list(spec.submodule_search_locations)[0])
    mods = {}
    for name in ("dictionary",):
        s = importlib.util.spec_from_file_location(f"_dl_{name}", base / f"{name}.py")
        mods[name] = importlib.util.module_from_spec(s)
        s.loader.exec_module(mods[name])
    return mods["dictionary"]


def _dl_folder(tmp_path, ae, dict_class, **trainer):
    folder = tmp_path / f"dl-{dict_class}"
    folder.mkdir()
    torch.save(ae.state_dict(), folder / "ae.pt")
    (folder / "config.json").write_text(json.dumps(
        {"trainer": {"dict_class": dict_class, "activation_dim": D, "dict_size": F, "layer": 0,
                     "lm_name": "gelu-1l", **trainer}, "buffer": {"d_submodule": D}}))
    return folder


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "GatedAutoEncoder", "JumpReluAutoEncoder"])
def test_dictionary_learning_matches_dictionary_learning(tmp_path, dict_class):
    dl = _dictionary_module()
    ae = getattr(dl, dict_class)(D, F)
    _randomise(ae)
    ours = load_sae(_dl_folder(tmp_path, ae, dict_class))
    x = _x()
    with torch.no_grad():
        f = ae.encode(x)
        _same(f, ae.decode(f), ours, x)


class _DLTopK(torch.nn.Module):
    """dictionary_learning's AutoEncoderTopK / BatchTopKSAE parameters and inference encode (trainers/
    top_k.py, batch_top_k.py: their modules import the trainer stack, so the documented layout is used)."""

    def __init__(self, threshold: float = -1.0, k: int = 5):
        super().__init__()
        self.register_buffer("k", torch.tensor(k, dtype=torch.int))
        self.register_buffer("threshold", torch.tensor(threshold))
        self.decoder = torch.nn.Linear(F, D, bias=False)
        self.encoder = torch.nn.Linear(D, F)
        self.b_dec = torch.nn.Parameter(torch.zeros(D))

    def encode(self, x, use_threshold):
        post = torch.relu(self.encoder(x - self.b_dec))
        if use_threshold:
            return post * (post > self.threshold)
        top = post.topk(int(self.k), dim=-1)
        return torch.zeros_like(post).scatter_(-1, top.indices, top.values)

    def decode(self, f):
        return self.decoder(f) + self.b_dec


@pytest.mark.parametrize("dict_class,threshold", [("AutoEncoderTopK", -1.0), ("BatchTopKSAE", 0.2)])
def test_dictionary_learning_topk_layouts(tmp_path, dict_class, threshold):
    ae = _DLTopK(threshold)
    _randomise(ae)
    ours = load_sae(_dl_folder(tmp_path, ae, dict_class, k=5))
    x = _x()
    with torch.no_grad():
        f = ae.encode(x, use_threshold=dict_class == "BatchTopKSAE")
        _same(f, ae.decode(f), ours, x)


# ---------------------------------------------------------------------------- Neel Nanda's 1L SAEs
def test_nnanda_sae_files(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = {"W_enc": torch.randn(D, F, generator=gen), "W_dec": torch.randn(F, D, generator=gen),
             "b_enc": torch.randn(F, generator=gen), "b_dec": torch.randn(D, generator=gen)}
    torch.save(state, tmp_path / "25.pt")
    (tmp_path / "25_cfg.json").write_text(json.dumps({"d_mlp": D, "dict_mult": 3, "l1_coeff": 3e-4, "seed": 0}))
    x = _x()
    f = torch.relu((x - state["b_dec"]) @ state["W_enc"] + state["b_enc"])      # their utils.AutoEncoder.forward
    for path in (tmp_path / "25.pt", tmp_path):
        _same(f, f @ state["W_dec"] + state["b_dec"], load_sae(path), x)


# ---------------------------------------------------------------------------- bad inputs
def test_bad_sae_inputs(tmp_path):
    with pytest.raises(UserError, match="no such"):
        load_sae(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no SAE"):
        load_sae(tmp_path / "empty")
    (tmp_path / "x.bin").write_bytes(b"1")
    with pytest.raises(UserError, match="not an SAE file"):
        load_sae(tmp_path / "x.bin")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cfg.json").write_text("{not json")
    (bad / "sae_weights.safetensors").write_bytes(b"junk")
    with pytest.raises(UserError, match="not readable JSON"):
        load_sae(bad)
    (bad / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": D, "d_sae": F}))
    with pytest.raises(UserError, match="safetensors"):
        load_sae(bad)


def test_pickled_sae_is_refused(tmp_path):
    import fractions
    torch.save({"W_enc": fractions.Fraction(1, 2)}, tmp_path / "7.pt")
    (tmp_path / "7_cfg.json").write_text("{}")
    with pytest.raises(UserError, match="pickled"):
        load_sae(tmp_path / "7.pt")


def test_check_pair_names_both(tmp_path):
    from types import SimpleNamespace
    _theirs, folder = _saelens(tmp_path, "StandardSAE", "StandardSAEConfig", {})
    sae = load_sae(folder)
    with pytest.raises(UserError, match=r"d_in is 16 but the model's MLP has d_mlp = 32"):
        check_pair(SimpleNamespace(cfg=SimpleNamespace(d_mlp=32)), sae)
    sae.hook_name = "blocks.0.hook_resid_post"
    with pytest.raises(UserError, match=r"reads blocks.0.hook_resid_post \(d_in 16\)"):
        check_pair(SimpleNamespace(cfg=SimpleNamespace(d_mlp=16)), sae)


def test_non_regular_sae_files_are_refused(tmp_path):
    import os
    folder = tmp_path / "fifo"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": D, "d_sae": F}))
    os.mkfifo(folder / "sae_weights.safetensors")
    with pytest.raises(UserError, match="not a regular file|FIFO|named pipe"):
        load_sae(folder)
