"""A synthetic family bundle (engine.bundle.family) for tests and benchmarks: dictionary 0 from
``write_synthetic_bundle``, each larger size's decoder rows noisy copies of the previous size's (so
every feature of size i has children in size i + 1 to find), the matches and a PCA map computed as
the pipeline computes them (``engine.analysis.matching.match_family``, ``feature_map.embed_decoders``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from engine.analysis.feature_map import embed_decoders
from engine.analysis.matching import correlation_matches, match_family, sae_activations
from engine.bundle.family import link_shared, write_family_group
from engine.testing.synthetic import write_synthetic_bundle

__all__ = ["write_synthetic_family"]

OWN = ("config", "metrics", "curves", "sae", "features", "harvest", "density_hist", "sample")


def write_synthetic_family(path: str | os.PathLike, sizes: Sequence[int] = (64, 256, 1024), n_neurons: int = 64,
                           vocab_size: int = 300, seed: int = 0, n_tokens: int = 20_000, *, harvest=None,
                           chunk: int = 4096, map_method: str = "pca", match_k: int = 5,
                           second_seed: bool = False) -> Path:
    """``second_seed``: also a model B (/models/1: the same weights, neurons permuted) with
    dictionaries of the same sizes (noisy copies of A's), matched to A's as the pipeline does."""
    path = Path(path)
    write_synthetic_bundle(path, sizes[0], n_neurons, vocab_size, seed, n_tokens, harvest=harvest, chunk=chunk)
    rng = np.random.default_rng(seed + 101)
    infos = [{"name": "A/0", "d_sae": int(sizes[0]), "group": ""}]
    with tempfile.TemporaryDirectory() as tmp, h5py.File(path, "a") as f:
        prev = np.asarray(f["sae/W_dec"][()], np.float32)
        for i, n in enumerate(sizes[1:], start=1):
            part = Path(tmp) / f"d{i}.h5"
            write_synthetic_bundle(part, n, n_neurons, vocab_size, seed + i, n_tokens, harvest=harvest, chunk=chunk)
            W = prev[rng.integers(0, len(prev), size=n)] + (0.6 / np.sqrt(n_neurons)) * rng.standard_normal((n, n_neurons)).astype(np.float32)
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            g = f.create_group(f"dictionaries/{i}")
            with h5py.File(part, "r") as src:
                for name in OWN:
                    src.copy(src[name], g, name=name)
                g.attrs.update(dict(src.attrs))
            g["sae/W_dec"][...] = W
            g["sae/W_enc"][...] = W.T
            link_shared(g)
            infos.append({"name": f"A/{i}", "d_sae": int(n), "group": f"dictionaries/{i}"})
            prev = W
        x = np.asarray(f["sample/neuron_acts"][()], np.float32)
    saes = [_load_member_sae(path, i, infos) for i in range(len(sizes))]
    matches = match_family(saes, x, k=match_k)
    fmap = embed_decoders([s.W_dec.detach().numpy() for s in saes], method=map_method, seed=seed)
    neuron_matches = {}
    if second_seed:
        n = len(sizes)
        perm = rng.permutation(n_neurons)
        with h5py.File(path, "a") as f:
            g = f.create_group("models/1")
            f.copy(f["model"], g, name="model")
            f.copy(f["neurons"], g, name="neurons")
            x_b = x[:, perm] + 0.3 * rng.standard_normal(x.shape).astype(np.float32)
            for i in range(n):
                src, dst = infos[i]["group"] or "/", f"dictionaries/{n + i}"
                gd = f.create_group(dst)
                for name in OWN:
                    f.copy(f[src.rstrip("/") + "/" + name if src != "/" else name], gd, name=name)
                gd.attrs.update(dict(f.attrs))
                W = np.asarray(gd["sae/W_dec"][()], np.float32)[:, perm]
                W += (0.5 / np.sqrt(n_neurons)) * rng.standard_normal(W.shape).astype(np.float32)
                gd["sae/W_dec"][...] = W
                gd["sae/W_enc"][...] = W.T
                gd["sample/neuron_acts"][...] = x_b.astype(np.float16)
                link_shared(gd, 1)
                infos.append({"name": f"B/{i}", "d_sae": int(sizes[i]), "group": dst, "model": 1, "seed": 1})
        b_saes = [_load_member_sae(path, n + i, infos) for i in range(n)]
        for (i, j), kinds in match_family(b_saes, x_b, k=match_k).items():
            matches[(n + i, n + j)] = kinds
        from engine.analysis.universality import logit_weight_correlations
        from engine.bundle import open_bundle

        with open_bundle(path) as b:
            model = b.load_model()            # B's weights are A's (only its neurons are permuted)
        for i in range(n):
            acts_a, acts_b = sae_activations(saes[i], x), sae_activations(b_saes[i], x_b)
            for (p, q), (sp, sq, ap, aq) in (((i, n + i), (saes[i], b_saes[i], acts_a, acts_b)),
                                             ((n + i, i), (b_saes[i], saes[i], acts_b, acts_a))):
                ids, corr = correlation_matches(ap, aq, k=match_k)
                logit = logit_weight_correlations(model, sp.W_dec.detach().numpy(), model,
                                                  sq.W_dec.detach().numpy(), ids)
                matches[(p, q)] = {"corr": (ids, corr), "logit": (ids, logit)}
        neuron_matches = {(0, 1): correlation_matches(x, x_b, k=match_k), (1, 0): correlation_matches(x_b, x, k=match_k)}
    with h5py.File(path, "a") as f:
        write_family_group(f, infos, matches, fmap)
        for (a, b), (ids, values) in neuron_matches.items():
            ng = f.require_group(f"family/neuron_matches/{a}_{b}")
            ng["corr_ids"], ng["corr_values"] = ids, values
    return path


def _load_member_sae(path: Path, i: int, infos):
    from engine.bundle.sae_file import read_sae_group, sae_from_state

    with h5py.File(path, "r") as f:
        group = f[infos[i]["group"]] if infos[i]["group"] else f
        state, cfg = read_sae_group(group["sae"], str(path))
    return sae_from_state(state, cfg, str(path))
