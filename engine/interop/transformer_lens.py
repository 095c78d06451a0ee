"""TransformerLens one-layer checkpoints (Neel Nanda's ``gelu-1l``, ``solu-1l``, ... layout) as the
project's own ``OneLayerTransformer``.

A folder holds ``config.json`` (``d_model, n_layers, d_mlp, d_head, n_heads, n_ctx, d_vocab, act_fn,
attn_only, normalization`` or ``normalization_type``, ``shortformer_pos`` or
``positional_embedding_type``, ``tokenizer_name``) and the raw HookedTransformer state dict in
``*final.pth``, a checkpoint ``*_N.pth`` or a ``.safetensors`` file. The weights map one to one:

    embed.W_E [V, C]               -> tok_emb.weight                    pos_embed.W_pos [T, C] -> pos_emb.weight
    blocks.0.ln1.w / b             -> ln_attn.weight / bias             (LNPre: no weights -> 1 / 0)
    attn.W_Q, W_K, W_V [H, C, Dh]  -> attn.qkv.weight [3·H·Dh, C]       b_Q, b_K, b_V [H, Dh] -> attn.qkv.bias
    attn.W_O [H, Dh, C], b_O       -> attn.proj.weight [C, H·Dh], bias
    blocks.0.ln2.w / b             -> ln_mlp.weight / bias
    mlp.W_in [C, M], b_in          -> mlp.W_in.weight (transposed), bias
    mlp.ln.w / b (solu_ln)         -> mlp.ln.weight / bias              (the neurons: TL ``blocks.0.mlp.hook_post``)
    mlp.W_out [M, C], b_out        -> mlp.W_out.weight (transposed), bias
    ln_final.w / b                 -> ln_final.weight / bias            unembed.W_U [C, V], b_U -> unembed

Buffers (``attn.mask``, ``attn.IGNORE``) are ignored. Attention is scaled by 1/√Dh as TransformerLens
does by default; LayerNorm eps is 1e-5 (TL's default). Anything the project's model cannot reproduce
(attention-only, more than one layer, RMSNorm, rotary positions, gated MLPs, another eps) is refused
with one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.config import ConfigError, ModelConfig
from engine.interop.files import Fields, InteropError, check_finite, find_one, load_tensors, read_json

__all__ = ["load_tl_model", "tl_model_config", "tl_state_to_superpos", "TL_WEIGHT_PATTERNS"]

TL_WEIGHT_PATTERNS = ("*final.pth", "*.safetensors", "*final.pt", "*.pth", "*.pt")
_NORMS = {"LN": "LN", "LNPre": "LNPre", None: None, "none": None}


def tl_model_config(cfg: dict[str, Any], where: str = "config.json") -> tuple[ModelConfig, str | None]:
    """(ModelConfig, normalization "LN" / "LNPre" / None) for a TransformerLens config dict, read field
    by field (type, range, finiteness: a bad field is one line naming the file and the key)."""
    f = Fields(cfg, where)
    if f.flag("attn_only", default=False):
        raise InteropError(f"{where}: this is an attention-only model (attn_only true): it has no MLP "
                           "neurons for an SAE to decompose; superpos needs a model with an MLP layer")
    n_layers = f.integer("n_layers", default=1, low=0, high=1 << 16)
    if n_layers != 1:
        raise InteropError(f"{where}: superpos reads one-layer models; this one has n_layers = {n_layers}")
    missing = [k for k in ("d_model", "d_mlp", "n_heads", "n_ctx", "d_vocab") if k not in cfg]
    if missing:
        raise InteropError(f"{where} lacks {', '.join(missing)} (a TransformerLens config needs them)")
    d_model = f.integer("d_model", low=1, high=1 << 16)
    n_heads = f.integer("n_heads", low=1, high=1 << 10)
    d_mlp = f.integer("d_mlp", low=1, high=1 << 20)
    n_ctx = f.integer("n_ctx", low=1, high=1 << 20)
    d_vocab = f.integer("d_vocab", low=1, high=1 << 22)
    d_head = f.integer("d_head", default=d_model // n_heads, low=1, high=1 << 16)
    norm = f.choice("normalization_type", "normalization", options=tuple(_NORMS), default="LN")
    pos_type = f.choice("positional_embedding_type", options=(None, "standard", "shortformer"), default=None)
    shortformer = f.flag("shortformer_pos", default=False) or pos_type == "shortformer"
    for key, ok in (("gated_mlp", False), ("use_attn_scale", True), ("final_rms", False),
                    ("use_normalization_before_and_after", False)):
        if f.flag(key, default=ok) != ok:
            raise InteropError(f"{where}: {key} = {cfg[key]!r} is not supported by superpos's one-layer model")
    eps = f.number("eps", "ln_eps", default=1e-5, low=0.0, high=1.0)
    if abs(eps - 1e-5) > 1e-12:
        raise InteropError(f"{where}: LayerNorm eps {eps} is not supported (superpos uses 1e-5, TransformerLens's default)")
    act = cfg.get("act_fn", "relu")
    if not isinstance(act, str):
        raise InteropError(f"{where}: act_fn must be a name such as 'relu' or 'gelu', not {act!r}"[:200])
    try:
        model_cfg = ModelConfig(vocab_size=d_vocab, n_ctx=n_ctx, d_model=d_model, n_heads=n_heads, d_mlp=d_mlp,
                                act_fn=act, d_head=d_head, shortformer=shortformer, unembed_bias=True)
    except (ConfigError, TypeError, ValueError) as exc:
        raise InteropError(f"{where}: {exc}") from None
    return model_cfg, _NORMS[norm]


def tl_state_to_superpos(state: dict, cfg: ModelConfig, norm: str | None, where: str) -> dict:
    """The OneLayerTransformer state dict from a raw HookedTransformer one (shapes checked)."""
    import torch

    V, T, C, M, H, Dh = cfg.vocab_size, cfg.n_ctx, cfg.d_model, cfg.d_mlp, cfg.n_heads, cfg.head_dim

    def take(name: str, shape: tuple[int, ...]):
        if name not in state:
            raise InteropError(f"{where} lacks {name} (a TransformerLens one-layer state dict has it)")
        t = state[name]
        if tuple(t.shape) != shape:
            raise InteropError(f"{where}: {name} has shape {list(t.shape)}, config.json says {list(shape)}")
        return check_finite(t.float(), name, where)

    def ln(prefix: str, width: int):
        if norm == "LN":
            return take(f"{prefix}.w", (width,)), take(f"{prefix}.b", (width,))
        return torch.ones(width), torch.zeros(width)

    a = "blocks.0.attn."
    qkv_w = torch.cat([take(a + f"W_{n}", (H, C, Dh)).permute(0, 2, 1).reshape(H * Dh, C) for n in "QKV"])
    qkv_b = torch.cat([take(a + f"b_{n}", (H, Dh)).reshape(H * Dh) for n in "QKV"])
    out = {
        "tok_emb.weight": take("embed.W_E", (V, C)), "pos_emb.weight": take("pos_embed.W_pos", (T, C)),
        "attn.qkv.weight": qkv_w, "attn.qkv.bias": qkv_b,
        "attn.proj.weight": take(a + "W_O", (H, Dh, C)).reshape(H * Dh, C).t(), "attn.proj.bias": take(a + "b_O", (C,)),
        "mlp.W_in.weight": take("blocks.0.mlp.W_in", (C, M)).t(), "mlp.W_in.bias": take("blocks.0.mlp.b_in", (M,)),
        "mlp.W_out.weight": take("blocks.0.mlp.W_out", (M, C)).t(), "mlp.W_out.bias": take("blocks.0.mlp.b_out", (C,)),
        "unembed.weight": take("unembed.W_U", (C, V)).t(),
        "unembed.bias": take("unembed.b_U", (V,)) if "unembed.b_U" in state else torch.zeros(V),
    }
    for ours, theirs, width in (("ln_attn", "blocks.0.ln1", C), ("ln_mlp", "blocks.0.ln2", C), ("ln_final", "ln_final", C)):
        out[f"{ours}.weight"], out[f"{ours}.bias"] = ln(theirs, width)
    if cfg.act_fn == "solu_ln":
        out["mlp.ln.weight"], out["mlp.ln.bias"] = ln("blocks.0.mlp.ln", M)
    return {k: v.contiguous() for k, v in out.items()}


def _weights_and_config(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        return find_one(path, TL_WEIGHT_PATTERNS, "TransformerLens weights"), path / "config.json"
    return path, path.parent / "config.json"


def load_tl_model(path: str | Path):
    """The model at ``path`` (a folder, or its weights file with config.json beside it), eval mode, CPU."""
    from engine.model import OneLayerTransformer

    weights, cfg_path = _weights_and_config(Path(path))
    if not os.path.lexists(cfg_path):          # a dangling or looping link is read (and named) by read_json
        raise InteropError(f"{cfg_path.parent} has no config.json next to the weights (a TransformerLens "
                           "model folder holds config.json and *final.pth or .safetensors)")
    model_cfg, norm = tl_model_config(read_json(cfg_path, "model config"), str(cfg_path))
    state = tl_state_to_superpos(load_tensors(weights, "model weights"), model_cfg, norm, str(weights))
    return OneLayerTransformer.from_state_dict(model_cfg, state)
