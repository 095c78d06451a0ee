"""Stored top examples are real: recomputing them with the model and SAE read back from the bundle
gives the stored activations.

The windows are as wide as the model's context (ctx_left = n_ctx - 1, nothing to the right) and the
harvest does not cut at document ends, so each window holds exactly the context the model saw for
its example; running the bundle's model + SAE on the unpadded window must give the stored value at
the last position, for every top example of every unit.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.bundle import open_bundle, write_bundle
from engine.config import HarvestConfig, ModelConfig, RunConfig, SAEConfig, TokenizerConfig
from engine.jobs import collect
from engine.analysis.harvest import harvest
from engine.model import OneLayerTransformer
from engine.sae import SparseAutoencoder
from engine.data.tokenizer import Tokenizer


def test_top_examples_recompute_from_the_bundle(tmp_path):
    text = "def f(x):\n    return x + 1\n" * 50 + "ACGT GATTACA base64 aGVsbG8= 0xdeadbeef " * 50
    tok = Tokenizer.train([text], vocab_size=300)
    V = tok.vocab_size
    model_cfg = ModelConfig(vocab_size=V, n_ctx=8, d_model=16, n_heads=2, d_mlp=32)
    sae_cfg = SAEConfig(recipe="topk", d_in=32, d_sae=48, k=4)
    hcfg = HarvestConfig(n_tokens=8 * 100, eval_tokens=100, top_k=5, n_intervals=2, per_interval=2,
                         ctx_left=7, ctx_right=0, hist_bins=8, n_logits=3, n_align=3, sample_tokens=64)
    torch.manual_seed(0)
    model = OneLayerTransformer(model_cfg).eval()
    sae = SparseAutoencoder(sae_cfg).eval()
    tokens = np.random.default_rng(0).integers(0, V, 2000).astype(np.uint16)
    stats, _ = collect(harvest(model, sae, tokens, hcfg))
    for unit_stats in (stats.features, stats.neurons):
        unit_stats.labels = [""] * len(unit_stats)
        unit_stats.scores = np.full(len(unit_stats), np.nan, dtype=np.float32)
    cfg = RunConfig(name="recompute", tokenizer=TokenizerConfig(vocab_size=V), model=model_cfg, sae=sae_cfg,
                    harvest=hcfg)
    path = tmp_path / "b.h5"
    write_bundle(path, config=cfg, tokenizer_json=tok.to_json(), model_state=model.state_dict(),
                 sae_state=sae.state_dict(), harvest=stats, metrics={}, curves={})

    with open_bundle(path) as bundle:
        model2, sae2 = bundle.load_model().eval(), bundle.load_sae().eval()
        checked = 0
        for kind, n in (("feature", bundle.n_features), ("neuron", bundle.n_neurons)):
            for unit in range(n):
                d = bundle.dashboard(kind, unit)
                assert d.top_center == model_cfg.n_ctx - 1
                for window, acts in zip(d.top_tokens, d.top_acts):
                    if window[d.top_center] < 0:
                        continue  # fewer examples than top_k
                    ids = torch.as_tensor(window[window >= 0], dtype=torch.long)[None]
                    with torch.no_grad():
                        neurons = model2.mlp_acts(ids)[0]
                        values = sae2.encode(neurons) if kind == "feature" else neurons
                    assert abs(float(values[-1, unit]) - float(acts[d.top_center])) <= 2e-3 + 2e-3 * abs(float(acts[d.top_center]))
                    checked += 1
        assert checked > 100
