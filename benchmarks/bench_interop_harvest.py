"""Harvest throughput on a gelu-1l-shaped imported model and SAE, next to a bare forward, in one run.

    python benchmarks/bench_interop_harvest.py [--tokens 16384] [--d-sae 16384] [--device cpu]

The model is Neel Nanda's gelu-1l shape (d_model 512, d_mlp 2,048, 8 heads of 64, vocabulary 48,262,
context 1,024, GELU, LayerNorm) with random weights in TransformerLens's raw state-dict names, mapped
by ``engine.interop.transformer_lens.tl_state_to_superpos`` (the same code ``load_model`` runs); the
SAE is a SAELens-style standard (ReLU) SAE of ``--d-sae`` features whose encoder biases are set so
each feature fires on ~0.3% of tokens (L0 ≈ 50, as trained gelu-1l SAEs). Tokens are random ids.
Prints tokens/s of the bare model + SAE forward and of the harvest's two passes over the tokens,
their ratio (target ≥ 0.5), then the harvest's one-off weight-only statistics (logit effects of every
feature and neuron over the 48k-token vocabulary: a fixed cost, independent of the token count) and
the whole harvest's rate with it, and the peak RSS. The default (16 windows of 1,024) runs in a couple of minutes on
two CPU cores.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures import add_json_flag, write_json  # noqa: E402

from engine.analysis.harvest import harvest  # noqa: E402
from engine.config import HarvestConfig  # noqa: E402
from engine.events import Progress  # noqa: E402
from engine.interop.sae_formats import sae_from_tensors  # noqa: E402
from engine.interop.transformer_lens import tl_model_config, tl_state_to_superpos  # noqa: E402
from engine.model import OneLayerTransformer  # noqa: E402

GELU_1L = {"d_model": 512, "n_layers": 1, "d_mlp": 2048, "d_head": 64, "n_heads": 8, "n_ctx": 1024,
           "d_vocab": 48262, "act_fn": "gelu", "normalization": "LN", "attn_only": False}


def random_tl_state(cfg: dict, gen: torch.Generator) -> dict:
    C, M, H, Dh, T, V = (cfg[k] for k in ("d_model", "d_mlp", "n_heads", "d_head", "n_ctx", "d_vocab"))

    def r(*shape, s=0.02):
        return torch.randn(*shape, generator=gen) * s

    return {"embed.W_E": r(V, C, s=0.1), "pos_embed.W_pos": r(T, C), "blocks.0.ln1.w": torch.ones(C),
            "blocks.0.ln1.b": torch.zeros(C), **{f"blocks.0.attn.W_{n}": r(H, C, Dh) for n in "QKV"},
            **{f"blocks.0.attn.b_{n}": torch.zeros(H, Dh) for n in "QKV"}, "blocks.0.attn.W_O": r(H, Dh, C),
            "blocks.0.attn.b_O": torch.zeros(C), "blocks.0.ln2.w": torch.ones(C), "blocks.0.ln2.b": torch.zeros(C),
            "blocks.0.mlp.W_in": r(C, M, s=0.05), "blocks.0.mlp.b_in": torch.zeros(M), "blocks.0.mlp.W_out": r(M, C),
            "blocks.0.mlp.b_out": torch.zeros(C), "ln_final.w": torch.ones(C), "ln_final.b": torch.zeros(C),
            "unembed.W_U": r(C, V), "unembed.b_U": torch.zeros(V)}


def sparse_random_sae(model: OneLayerTransformer, d_sae: int, gen: torch.Generator, density: float = 0.003):
    """A standard SAE whose per-feature bias puts each feature's firing rate near ``density``."""
    M = model.cfg.d_mlp
    W_dec = torch.randn(d_sae, M, generator=gen)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    b_dec = torch.zeros(M)
    with torch.inference_mode():
        idx = torch.randint(0, model.cfg.vocab_size, (2, model.cfg.n_ctx), generator=gen)
        pre = model.mlp_acts(idx).reshape(-1, M) @ W_dec.t()                 # (n, F)
        b_enc = -torch.quantile(pre[::4], 1 - density, dim=0)
    state = {"W_enc": W_dec.t().contiguous(), "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    return sae_from_tensors("relu", state, source="benchmark", where="benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16_384)
    ap.add_argument("--d-sae", type=int, default=16_384)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=4, help="sequences per chunk for the bare forward")
    add_json_flag(ap)
    args = ap.parse_args()

    gen = torch.Generator().manual_seed(0)
    model_cfg, norm = tl_model_config(GELU_1L)
    model = OneLayerTransformer.from_state_dict(model_cfg, tl_state_to_superpos(
        random_tl_state(GELU_1L, gen), model_cfg, norm, "benchmark"))
    sae = sparse_random_sae(model, args.d_sae, gen)
    model, sae = model.to(args.device).eval(), sae.to(args.device).eval()
    T = model_cfg.n_ctx
    n = max(1, args.tokens // T) * T
    tokens = np.random.default_rng(0).integers(0, model_cfg.vocab_size, n).astype(np.int32)
    print(f"gelu-1l shape: d_model {model_cfg.d_model}, d_mlp {model_cfg.d_mlp}, n_ctx {T}, vocab "
          f"{model_cfg.vocab_size}; SAE {sae.extra_repr()}; {n:,} tokens on {args.device}, "
          f"{torch.get_num_threads()} threads")

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s0 in range(0, n // T, args.batch):
                idx = torch.from_numpy(tokens[s0 * T:(s0 + args.batch) * T].astype(np.int64)).view(-1, T)
                sae.encode(model.mlp_acts(idx.to(args.device))).sum().item()
        return time.perf_counter() - t0

    t_bare = bare()
    t0 = time.perf_counter()
    job, t_streamed = harvest(model, sae, tokens, HarvestConfig(n_tokens=n, sample_tokens=1024), device=args.device), 0.0
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            result = stop.value
            break
        if isinstance(event, Progress) and event.done >= event.total:
            t_streamed = time.perf_counter() - t0          # both passes over the tokens are done
    t_harvest = time.perf_counter() - t0
    t_bare = min(t_bare, bare())            # again, so a load change on a shared machine shows
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t_fixed = t_harvest - t_streamed
    print(f"bare model+SAE forward : {n / t_bare:10,.0f} tokens/s  ({t_bare:.1f} s)")
    print(f"harvest, both passes   : {n / t_streamed:10,.0f} tokens/s  ({t_streamed:.1f} s)")
    print(f"ratio harvest / bare   : {t_bare / t_streamed:10.2f}   (target >= 0.5)")
    print(f"+ weight-only statistics (logit effects of {args.d_sae + model_cfg.d_mlp:,} directions over "
          f"{model_cfg.vocab_size:,} tokens, alignment, correlations): {t_fixed:.1f} s once, whatever the "
          f"token count; whole harvest {n / t_harvest:,.0f} tokens/s here, "
          f"{200_000 / (200_000 / (n / t_streamed) + t_fixed):,.0f} tokens/s extrapolated to 200,000 tokens")
    print(f"features live {int((result.features.density > 0).sum())}/{args.d_sae}, mean L0 "
          f"{float(result.features.density.sum()):.1f}; peak RSS {rss:,.0f} MB")
    write_json(args.json, {"tokens": n, "bare_per_s": n / t_bare, "harvest_per_s": n / t_streamed,
                           "ratio": t_bare / t_streamed, "peak_rss_mb": rss})


if __name__ == "__main__":
    main()
