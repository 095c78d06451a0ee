"""SAEs trained by other libraries as the project's ``SparseAutoencoder``, with encode/decode equal to
the source library's (tests/engine/test_interop_sae.py checks each against the library itself).

Every format is mapped onto the one formula of ``engine/sae.py`` by exact re-parametrisations:

- **SAELens** folder (``cfg.json`` + ``sae_weights.safetensors``): ``architecture`` standard -> relu,
  topk, jumprelu (BatchTopK SAEs are saved as jumprelu), gated (``b_mag`` -> ``b_enc``, ``b_gate``,
  ``r_mag``). ``apply_b_dec_to_input`` false is folded into the encoder bias (b_enc += b_dec·W_enc);
  ``rescale_acts_by_decoder_norm`` (topk) into the weights (W_enc, b_enc scaled by ‖W_dec,i‖, W_dec
  rows divided by it: same latents, same reconstruction); ``normalize_activations``
  ``expected_average_only_in`` with a scaling factor in cfg.json (``norm_scaling_factor`` or
  ``scaling_factor``) is folded as SAELens's ``fold_activation_norm_scaling_factor`` does (without one
  SAELens applies nothing at run time, and neither do we); per-token normalisations
  (``constant_norm_rescale``, ``layer_norm``) and whitening are refused. A jumprelu threshold below 0
  is raised to 0 (ReLU(pre)·[pre > θ] = pre·[pre > max(θ, 0)]).
- **dictionary_learning** (``ae.pt`` + ``config.json``, ``trainer.dict_class``): AutoEncoder
  (``encoder.weight``, ``encoder.bias``, ``decoder.weight``, ``bias``), AutoEncoderTopK (``k``),
  BatchTopKSAE (its scalar inference ``threshold`` -> a jumprelu threshold on every latent),
  JumpReluAutoEncoder (``W_enc`` … ``threshold``, no pre-encoder bias), GatedAutoEncoder
  (``decoder_bias``, ``gate_bias``, ``mag_bias``, ``r_mag``).
- **sparsify** (EleutherAI; ``cfg.json`` + ``sae.safetensors``: ``encoder.weight`` [F, D],
  ``encoder.bias``, ``W_dec`` [F, D], ``b_dec``): a topk SAE with ``k``; transcoders, skip
  connections and groupmax activations are refused.
- **Neel Nanda's 1L SAEs** (``NAME.pt`` + ``NAME_cfg.json``; ``W_enc, W_dec, b_enc, b_dec``): relu.
- a superpos bundle or SAE file (``.h5``).

``check_pair(model, sae)`` refuses an SAE whose width or hook does not fit the model, naming both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from engine.config import ConfigError, SAEConfig
from engine.interop.files import Fields, InteropError, check_finite, find_one, load_tensors, read_json
from engine.sae import SparseAutoencoder

__all__ = ["load_sae_any", "check_pair", "MLP_HOOKS", "sae_from_tensors"]

# TransformerLens / SAELens names of the one layer's MLP neurons (what superpos decomposes)
MLP_HOOKS = ("blocks.0.mlp.hook_post",)
# the recipe an imported SAE is filed under (its encoder is cfg.architecture; no recipe trained it)
MAX_WIDTH = 1 << 24          # the widest d_in / d_sae a config may state (16M; the field's largest SAEs are ~16M)
_RECIPE_FOR = {"relu": "2023", "topk": "topk", "jumprelu": "jumprelu", "gated": "2023"}
SAELENS_ARCHITECTURES = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated",
                         "batchtopk": "jumprelu", "matryoshka_batchtopk": "jumprelu"}


def sae_from_tensors(arch: str, state: dict[str, torch.Tensor], *, source: str, k: int | None = None,
                     hook_name: str | None = None, where: str) -> SparseAutoencoder:
    """The SAE of ``arch`` from tensors in our names and orientations (shapes checked, one line if not)."""
    W_enc = state.get("W_enc")
    if W_enc is None or W_enc.dim() != 2:
        raise InteropError(f"{where}: no 2-D encoder weight")
    d_in, d_sae = W_enc.shape
    check_finite(W_enc, "W_enc", where)
    try:
        cfg = SAEConfig(recipe=_RECIPE_FOR[arch], d_in=int(d_in), d_sae=int(d_sae),
                        k=int(k) if k is not None else min(20, int(d_sae)), architecture=arch, source=source)
    except (ConfigError, TypeError, ValueError) as exc:
        raise InteropError(f"{where}: {exc}") from None
    try:
        sae = SparseAutoencoder.from_state_dict(cfg, state)
    except ValueError as exc:
        raise InteropError(f"{where}: {exc}") from None
    sae.hook_name = hook_name
    return sae


def _shape(state: dict, name: str, shape: tuple[int, ...], where: str) -> torch.Tensor:
    if name not in state:
        raise InteropError(f"{where} lacks the tensor {name}")
    t = state[name].float()
    if tuple(t.shape) != shape:
        raise InteropError(f"{where}: {name} has shape {list(t.shape)}, expected {list(shape)}")
    return check_finite(t, name, where)


def _fold_input_bias(state: dict, arch: str) -> None:
    """pre = x·W_enc + b  ==  (x - b_dec)·W_enc + (b + b_dec·W_enc): our formula for a no-pre-bias encoder."""
    c = state["b_dec"] @ state["W_enc"]
    if arch == "gated":      # z_theirs = z_ours + c: the gate gets c, the magnitude c·exp(r_mag)
        state["b_gate"] = state["b_gate"] + c
        state["b_enc"] = state["b_enc"] + c * state["r_mag"].exp()
    else:
        state["b_enc"] = state["b_enc"] + c


# ====================================================================== SAELens
def load_saelens(folder: Path) -> SparseAutoencoder:
    cfg_path = folder / "cfg.json"
    cfg = read_json(cfg_path, "SAELens cfg.json")
    f = Fields(cfg, str(cfg_path))
    arch_name = cfg.get("architecture", "standard")
    arch = SAELENS_ARCHITECTURES.get(arch_name) if isinstance(arch_name, str) else None
    if arch is None:
        raise InteropError(f"{cfg_path}: unknown SAE architecture {arch_name!r}; superpos reads SAELens "
                           f"{', '.join(sorted(SAELENS_ARCHITECTURES))}"[:300])
    D, F = f.integer("d_in", low=1, high=MAX_WIDTH), f.integer("d_sae", low=1, high=MAX_WIDTH)
    where = str(folder / "sae_weights.safetensors")
    raw = load_tensors(folder / "sae_weights.safetensors", "SAE weights")
    state = {"W_enc": _shape(raw, "W_enc", (D, F), where), "W_dec": _shape(raw, "W_dec", (F, D), where),
             "b_dec": _shape(raw, "b_dec", (D,), where)}
    if arch == "gated":
        state.update(b_enc=_shape(raw, "b_mag", (F,), where), b_gate=_shape(raw, "b_gate", (F,), where),
                     r_mag=_shape(raw, "r_mag", (F,), where))
    else:
        state["b_enc"] = _shape(raw, "b_enc", (F,), where)
    if arch == "jumprelu":
        if "threshold" not in raw:
            raise InteropError(f"{where}: a {arch_name} SAE needs its threshold tensor (SAELens saves BatchTopK "
                               "SAEs for inference as jumprelu with one); this file has none")
        state["threshold"] = _shape(raw, "threshold", (F,), where).clamp(min=0)
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = meta.get("hook_name", cfg.get("hook_name"))
    hook = None if hook is None else str(hook)
    norm = cfg.get("normalize_activations", "none") or "none"
    if not isinstance(norm, str):
        raise InteropError(f"{cfg_path}: normalize_activations must be a name such as 'none', not {norm!r}"[:200])
    if norm == "expected_average_only_in":
        if cfg.get("norm_scaling_factor", cfg.get("scaling_factor")) is not None:
            s = f.number("norm_scaling_factor", "scaling_factor", low=1e-12, high=1e12)
            state["W_enc"], state["W_dec"], state["b_dec"] = state["W_enc"] * s, state["W_dec"] / s, state["b_dec"] / s
    elif norm != "none":
        raise InteropError(f"{cfg_path}: normalize_activations {norm!r} rescales every token by its own norm at "
                           "run time, which superpos's SAE does not do; fold it into the weights or use an SAE "
                           "trained with none or expected_average_only_in")
    if f.choice("reshape_activations", options=("none", None, "hook_z"), default="none") not in ("none", None):
        raise InteropError(f"{cfg_path}: reshape_activations {cfg['reshape_activations']!r} (attention z SAEs) is not "
                           "supported; superpos reads SAEs on the MLP neurons")
    if not f.flag("apply_b_dec_to_input", default=True):
        _fold_input_bias(state, arch)
    k = None
    if arch == "topk":
        kwargs = cfg.get("activation_fn_kwargs")
        if "k" in cfg or not isinstance(kwargs, dict):
            k = f.integer("k", low=1, high=F) if "k" in cfg else None
        else:
            k = Fields(kwargs, f"{cfg_path} activation_fn_kwargs").integer("k", low=1, high=F) if "k" in kwargs else None
        if k is None:
            raise InteropError(f"{cfg_path}: a topk SAE needs k")
        if f.flag("rescale_acts_by_decoder_norm", default=False):
            n = state["W_dec"].norm(dim=1)                          # (F,)
            state["W_enc"], state["b_enc"] = state["W_enc"] * n, state["b_enc"] * n
            state["W_dec"] = state["W_dec"] / n[:, None]
    return sae_from_tensors(arch, state, source=f"saelens:{folder}", k=k, hook_name=hook, where=where)


# ====================================================================== dictionary_learning
def _dl_linear(raw: dict, D: int, F: int, where: str, bias_name: str) -> dict:
    return {"W_enc": _shape(raw, "encoder.weight", (F, D), where).t().contiguous(),
            "W_dec": _shape(raw, "decoder.weight", (D, F), where).t().contiguous(),
            "b_dec": _shape(raw, bias_name, (D,), where)}


def load_dictionary_learning(folder: Path) -> SparseAutoencoder:
    cfg_path = folder / "config.json"
    cfg = read_json(cfg_path, "dictionary_learning config.json")
    trainer = cfg.get("trainer") if isinstance(cfg.get("trainer"), dict) else cfg
    f = Fields(trainer, f"{cfg_path} trainer")
    cls = trainer.get("dict_class", "AutoEncoder")
    if not isinstance(cls, str):
        raise InteropError(f"{cfg_path}: trainer.dict_class must be a class name, not {cls!r}"[:200])
    D, F = f.integer("activation_dim", low=1, high=MAX_WIDTH), f.integer("dict_size", low=1, high=MAX_WIDTH)
    where = str(folder / "ae.pt")
    raw = load_tensors(folder / "ae.pt", "SAE weights")
    src, k = f"dictionary_learning:{folder}", None
    if cls == "AutoEncoder":
        state, arch = _dl_linear(raw, D, F, where, "bias"), "relu"
        state["b_enc"] = _shape(raw, "encoder.bias", (F,), where)
    elif cls in ("AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        state = _dl_linear(raw, D, F, where, "b_dec")
        state["b_enc"] = _shape(raw, "encoder.bias", (F,), where)
        if cls == "AutoEncoderTopK":
            if "k" in raw:
                if raw["k"].numel() != 1:
                    raise InteropError(f"{where}: k must be one number, not a tensor of shape {list(raw['k'].shape)}")
                k = Fields({"k": float(raw["k"])}, where).integer("k", low=1, high=F)
            else:
                k = f.integer("k", low=1, high=F, default=None) if trainer.get("k") is not None else None
            arch = "topk"
        else:       # inference uses the learned scalar threshold: ReLU(pre)·[ReLU(pre) > θ]
            theta = raw.get("threshold")
            if theta is not None and theta.numel() != 1:
                raise InteropError(f"{where}: threshold must be one number, not a tensor of shape {list(theta.shape)}")
            if theta is None or float(theta) < 0:
                raise InteropError(f"{where}: this {cls} has no inference threshold yet (threshold < 0: training "
                                   "did not reach the threshold phase)")
            arch, state["threshold"] = "jumprelu", torch.full((F,), max(float(theta), 0.0))
    elif cls == "JumpReluAutoEncoder":
        state = {"W_enc": _shape(raw, "W_enc", (D, F), where), "b_enc": _shape(raw, "b_enc", (F,), where),
                 "W_dec": _shape(raw, "W_dec", (F, D), where), "b_dec": _shape(raw, "b_dec", (D,), where),
                 "threshold": _shape(raw, "threshold", (F,), where).clamp(min=0)}
        arch = "jumprelu"
        if not f.flag("apply_b_dec_to_input", default=False):
            _fold_input_bias(state, arch)
    elif cls == "GatedAutoEncoder":
        state, arch = _dl_linear(raw, D, F, where, "decoder_bias"), "gated"
        state.update(b_enc=_shape(raw, "mag_bias", (F,), where), b_gate=_shape(raw, "gate_bias", (F,), where),
                     r_mag=_shape(raw, "r_mag", (F,), where))
    else:
        raise InteropError(f"{cfg_path}: unknown dictionary_learning dict_class {cls!r}; superpos reads "
                           "AutoEncoder, AutoEncoderTopK, BatchTopKSAE, MatryoshkaBatchTopKSAE, "
                           "JumpReluAutoEncoder, GatedAutoEncoder")
    hook = trainer.get("submodule_name")
    return sae_from_tensors(arch, state, source=src, k=k, hook_name=None if hook is None else str(hook), where=where)


# ====================================================================== sparsify
def load_sparsify(folder: Path) -> SparseAutoencoder:
    cfg_path = folder / "cfg.json"
    cfg = read_json(cfg_path, "sparsify cfg.json")
    f = Fields(cfg, str(cfg_path))
    for key, bad in (("transcode", "a transcoder (it predicts the MLP's output, not its neurons)"),
                     ("skip_connection", "an SAE with a skip connection (W_skip)")):
        if cfg.get(key):
            raise InteropError(f"{cfg_path}: this is {bad}, which superpos's SAE cannot represent")
    if cfg.get("activation", "topk") != "topk":
        raise InteropError(f"{cfg_path}: activation {cfg.get('activation')!r} is not supported (topk only)")
    D = f.integer("d_in", low=1, high=MAX_WIDTH)
    if cfg.get("num_latents"):
        F = f.integer("num_latents", low=1, high=MAX_WIDTH)
    else:
        F = D * f.integer("expansion_factor", default=32, low=1, high=MAX_WIDTH // D)
    k = f.integer("k", default=32, low=1, high=F)
    where = str(folder / "sae.safetensors")
    raw = load_tensors(folder / "sae.safetensors", "SAE weights")
    state = {"W_enc": _shape(raw, "encoder.weight", (F, D), where).t().contiguous(),
             "b_enc": _shape(raw, "encoder.bias", (F,), where), "W_dec": _shape(raw, "W_dec", (F, D), where),
             "b_dec": _shape(raw, "b_dec", (D,), where)}
    return sae_from_tensors("topk", state, source=f"sparsify:{folder}", k=k, where=where)


# ====================================================================== Neel Nanda's 1L SAEs
def load_nnanda(weights: Path) -> SparseAutoencoder:
    cfg_path = weights.with_name(weights.stem + "_cfg.json")
    cfg = read_json(cfg_path, "SAE config")
    raw = load_tensors(weights, "SAE weights")
    W_enc = raw.get("W_enc")
    if W_enc is None or W_enc.dim() != 2:
        raise InteropError(f"{weights} lacks W_enc (Neel Nanda's 1L SAE files hold W_enc, W_dec, b_enc, b_dec)")
    D, F = W_enc.shape
    if "d_mlp" in cfg and Fields(cfg, str(cfg_path)).integer("d_mlp", low=1, high=MAX_WIDTH) != D:
        raise InteropError(f"{weights}: W_enc is [{D}, {F}] but its config says d_mlp = {cfg['d_mlp']}")
    state = {"W_enc": W_enc, "b_enc": _shape(raw, "b_enc", (F,), str(weights)),
             "W_dec": _shape(raw, "W_dec", (F, D), str(weights)), "b_dec": _shape(raw, "b_dec", (D,), str(weights))}
    return sae_from_tensors("relu", state, source=f"nnanda:{weights}", hook_name="blocks.0.mlp.hook_post",
                            where=str(weights))


# ====================================================================== detection
def _superpos_file(path: Path) -> SparseAutoencoder:
    from engine.bundle import load_sae_file

    return load_sae_file(path)


_FOLDER_FORMATS: tuple[tuple[tuple[str, ...], Callable[[Path], SparseAutoencoder]], ...] = (
    (("cfg.json", "sae_weights.safetensors"), load_saelens),
    (("cfg.json", "sae.safetensors"), load_sparsify),
    (("config.json", "ae.pt"), load_dictionary_learning),
)
_FILE_NAMES = {"sae_weights.safetensors": load_saelens, "sae.safetensors": load_sparsify, "ae.pt": load_dictionary_learning}
KNOWN = ("a SAELens folder (cfg.json + sae_weights.safetensors), a dictionary_learning folder (config.json + "
         "ae.pt), a sparsify folder (cfg.json + sae.safetensors), a Neel Nanda SAE (NAME.pt + NAME_cfg.json), "
         "or a superpos bundle / SAE file (.h5)")


def load_sae_any(path: Path) -> SparseAutoencoder:
    """Detect the format at ``path`` (a folder, or one of its files) and load it."""
    if path.is_dir():
        for names, loader in _FOLDER_FORMATS:
            if all((path / n).exists() for n in names):
                return loader(path)
        cfgs = sorted(path.glob("*_cfg.json"))
        if cfgs:
            weights = find_one(path, tuple(c.name[:-len("_cfg.json")] + s for c in cfgs for s in (".pt", ".pth")),
                               "SAE weights")
            return load_nnanda(weights)
        raise InteropError(f"{path} holds no SAE superpos can read; give {KNOWN}")
    if path.suffix in (".h5", ".hdf5"):
        return _superpos_file(path)
    if path.name in _FILE_NAMES:
        return _FILE_NAMES[path.name](path.parent)
    if path.suffix in (".pt", ".pth") and path.with_name(path.stem + "_cfg.json").exists():
        return load_nnanda(path)
    raise InteropError(f"{path} is not an SAE file superpos can read; give {KNOWN}")


def check_pair(model: Any, sae: SparseAutoencoder) -> None:
    """Refuse an SAE that does not read this model's MLP neurons (width or hook), naming both."""
    hook = getattr(sae, "hook_name", None)
    d_mlp = int(model.cfg.d_mlp)
    if hook is not None and hook not in MLP_HOOKS:
        raise InteropError(f"the SAE reads {hook} (d_in {sae.cfg.d_in}); superpos decomposes the model's MLP "
                           f"neurons, blocks.0.mlp.hook_post (d_mlp {d_mlp}): use an SAE trained on those")
    if sae.cfg.d_in != d_mlp:
        raise InteropError(f"the SAE's d_in is {sae.cfg.d_in} but the model's MLP has d_mlp = {d_mlp} neurons "
                           f"(blocks.0.mlp.hook_post): this SAE was not trained on this model")
