"""A bundle's SAE as a SAELens folder: ``cfg.json``, ``sae_weights.safetensors``, ``sparsity.safetensors``.

docs/bundle-format.md ("Mapping to SAELens") documents every key. The transformer itself is not a
TransformerLens model: SAELens can load these weights, while running them needs ``Bundle.load_model()``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from engine.bundle import Bundle, BundleError
from engine.config import SAE_RECIPE_INFO
from engine.errors import WriteError
from engine.fileio import atomic_path

__all__ = ["saelens_config", "export_saelens", "SAELENS_ARCHITECTURE"]

# our SAE architecture (engine/sae.py) -> SAELens's "architecture"; the encodes are identical
# (SAELens's jumprelu is ReLU(pre)·[pre > θ], equal to ours, pre·[pre > θ], as θ ≥ 0)
SAELENS_ARCHITECTURE = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}


def saelens_config(b: Bundle) -> dict[str, Any]:
    """cfg.json for SAELens: v6 keys (``metadata``) plus the flat keys older versions read.

    Our encoder subtracts b_dec first (``apply_b_dec_to_input``) and works on raw activations
    (``normalize_activations`` "none": any training-time scaling is folded into the weights). The hook is
    the MLP's post-ReLU output of the one layer (TransformerLens name ``blocks.0.mlp.hook_post``).
    """
    sae = b.sae_config_dict
    info = SAE_RECIPE_INFO.get(str(sae.get("recipe")))
    if info is None:
        raise BundleError(f"the bundle's SAE recipe {sae.get('recipe')!r} is unknown to this version")
    arch = sae.get("architecture") or info.architecture      # an imported SAE's own encoder, else the recipe's
    topk = arch == "topk"
    meta = {
        "model_name": f"superpos-1l-{b.config.name}",
        "hook_name": "blocks.0.mlp.hook_post",
        "hook_layer": 0,
        "context_size": b.model_config.n_ctx,
        "dataset_path": b.config.corpus.spec,
        "prepend_bos": False,
        "neuronpedia_id": None,
        "sae_lens_training_version": None,
        "superpos_recipe": sae.get("recipe"),
    }
    cfg: dict[str, Any] = {
        "architecture": SAELENS_ARCHITECTURE[arch],
        "d_in": b.n_neurons,
        "d_sae": b.n_features,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": meta,
        # pre-v6 flat keys
        **{k: meta[k] for k in ("model_name", "hook_name", "hook_layer", "context_size", "dataset_path",
                                "prepend_bos", "neuronpedia_id")},
        "activation_fn_str": "topk" if topk else "relu",
        "activation_fn_kwargs": {"k": int(sae.get("k", 0))} if topk else {},
        "finetuning_scaling_factor": False,
    }
    if topk:
        cfg["k"] = int(sae.get("k", 0))
    return cfg


def export_saelens(b: Bundle, folder: str | os.PathLike) -> list[Path]:
    """Write ``cfg.json``, ``sae_weights.safetensors`` and ``sparsity.safetensors`` to ``folder``.

    sparsity.safetensors holds ``sparsity`` [d_sae] = log10(feature density + 1e-10), as SAELens
    stores it (dead features come out near -10). Each file is written atomically (``engine.fileio``).
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    state, _ = b.sae_state()
    tensors = {k: np.ascontiguousarray(v.numpy(), dtype=np.float32) for k, v in state.items()}
    if "b_gate" in tensors:                               # gated: SAELens calls the magnitude bias b_mag
        tensors["b_mag"] = tensors.pop("b_enc")
    density = b.columns("feature")["density"]
    sparsity = {"sparsity": np.log10(density + 1e-10).astype(np.float32)}
    cfg_text = json.dumps(saelens_config(b), indent=2)
    written = []
    try:
        for name, write, size in (
                ("sae_weights.safetensors", lambda p: save_file(tensors, str(p)), sum(t.nbytes for t in tensors.values())),
                ("sparsity.safetensors", lambda p: save_file(sparsity, str(p)), sparsity["sparsity"].nbytes),
                ("cfg.json", lambda p: p.write_text(cfg_text, encoding="utf-8"), len(cfg_text))):
            with atomic_path(folder / name, suffix=".partial", what="the SAELens export file", size=size) as tmp:
                write(tmp)
            written.append(folder / name)
    except WriteError:
        raise
    except OSError as exc:
        raise BundleError(f"could not write the SAELens export to {folder}: {exc.strerror or exc}") from exc
    return written
