"""A tiny TransformerLens-layout model folder and SAELens SAE folder, for tests of ``superpos analyze``
and the app's analyse flow (built with transformer-lens and sae-lens themselves when installed, else
by writing their documented layouts directly)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["write_tl_model", "write_saelens_sae", "write_corpus"]

TINY = dict(d_model=32, n_layers=1, d_mlp=64, d_head=8, n_heads=4, n_ctx=32, attn_only=False,
            act_fn="gelu", normalization="LN", shortformer_pos=False, tokenizer_name=None)


def write_corpus(path: Path, n_chars: int = 60_000, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    words = ["def", "return", "the", "cat", "sat", "on", "mat", "import", "numpy", "as", "np", "for", "i", "in",
             "range", "(", ")", ":", "=", "+", "1", "2", "print", "hello", "world", "class", "self", "x", "y"]
    lines, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        lines.append(line)
        size += len(line) + 1
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_tl_model(folder: Path, corpus: Path, vocab_size: int = 300, seed: int = 0) -> Path:
    """config.json + model_final.pth (raw HookedTransformer state dict names) + tokenizer.json."""
    from engine.data.tokenizer import Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.train([corpus.read_text(encoding="utf-8")], vocab_size=vocab_size)
    tok.save(folder / "tokenizer.json")
    cfg = {**TINY, "d_vocab": tok.vocab_size}
    C, M, H, Dh, T, V = cfg["d_model"], cfg["d_mlp"], cfg["n_heads"], cfg["d_head"], cfg["n_ctx"], cfg["d_vocab"]
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=0.2):
        return torch.randn(*shape, generator=g) * s

    state = {"embed.W_E": r(V, C, s=0.5), "pos_embed.W_pos": r(T, C), "blocks.0.ln1.w": 1 + r(C), "blocks.0.ln1.b": r(C),
             **{f"blocks.0.attn.W_{n}": r(H, C, Dh) for n in "QKV"}, **{f"blocks.0.attn.b_{n}": r(H, Dh) for n in "QKV"},
             "blocks.0.attn.W_O": r(H, Dh, C), "blocks.0.attn.b_O": r(C), "blocks.0.ln2.w": 1 + r(C),
             "blocks.0.ln2.b": r(C), "blocks.0.mlp.W_in": r(C, M, s=0.4), "blocks.0.mlp.b_in": r(M),
             "blocks.0.mlp.W_out": r(M, C), "blocks.0.mlp.b_out": r(C), "ln_final.w": 1 + r(C), "ln_final.b": r(C),
             "unembed.W_U": r(C, V, s=0.5), "unembed.b_U": r(V)}
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save(state, folder / "model_final.pth")
    return folder


def write_saelens_sae(folder: Path, d_in: int = 64, d_sae: int = 128, seed: int = 0) -> Path:
    """cfg.json + sae_weights.safetensors of a standard SAELens SAE on blocks.0.mlp.hook_post."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_sae, d_in, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    state = {"W_enc": W_dec.t().contiguous(), "b_enc": torch.full((d_sae,), -0.05), "W_dec": W_dec,
             "b_dec": torch.zeros(d_in)}
    save_file(state, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"hook_name": "blocks.0.mlp.hook_post", "model_name": "tiny-gelu-1l"}}))
    return folder
