"""A synthetic family bundle (engine.bundle.family) for tests and benchmarks: dictionary 0 from
``write_synthetic_bundle``, each larger size's decoder rows noisy copies of the previous size's (so
every feature of size i has children in size i + 1 to find), the matches, metrics and a PCA map
computed by the pipeline's own code (``engine.analysis.family_match.match_family_job``,
``feature_map.embed_decoders``) on the bundle's paired sample, whose neuron activations stand in for
the matching sample (the synthetic neurons are invented, not the model's)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.analysis.family_match import match_family_job
from engine.analysis.feature_map import embed_decoders
from engine.analysis.universality import DEFAULT_MIN_ACTIVE
from engine.bundle.family import link_shared, replace_matches, write_family_group
from engine.bundle.h5target import rewrite_h5
from engine.bundle.schema import H5_LOCK, open_h5
from engine.jobs import run_to_completion
from engine.testing.synthetic import write_synthetic_bundle

__all__ = ["write_synthetic_family"]

OWN = ("config", "metrics", "curves", "sae", "features", "harvest", "density_hist", "sample")


def write_synthetic_family(path: str | os.PathLike, sizes: Sequence[int] = (64, 256, 1024), n_neurons: int = 64,
                           vocab_size: int = 300, seed: int = 0, n_tokens: int = 20_000, *, harvest=None,
                           chunk: int = 4096, map_method: str = "pca", match_k: int = 5,
                           second_seed: bool = False, min_active: int = DEFAULT_MIN_ACTIVE) -> Path:
    """``second_seed``: also a model B (/models/1: the same weights, neurons permuted) with
    dictionaries of the same sizes (noisy copies of A's), matched to A's as the pipeline does."""
    path = Path(path)
    write_synthetic_bundle(path, sizes[0], n_neurons, vocab_size, seed, n_tokens, harvest=harvest, chunk=chunk)
    rng = np.random.default_rng(seed + 101)
    infos = [{"name": "A/0", "d_sae": int(sizes[0]), "group": ""}]
    with tempfile.TemporaryDirectory() as tmp, rewrite_h5(path) as f:
        prev = np.asarray(f["sae/W_dec"][()], np.float32)
        for i, n in enumerate(sizes[1:], start=1):
            part = Path(tmp) / f"d{i}.h5"
            write_synthetic_bundle(part, n, n_neurons, vocab_size, seed + i, n_tokens, harvest=harvest, chunk=chunk)
            W = prev[rng.integers(0, len(prev), size=n)] + (0.6 / np.sqrt(n_neurons)) * rng.standard_normal((n, n_neurons)).astype(np.float32)
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            g = f.create_group(f"dictionaries/{i}")
            with H5_LOCK, open_h5(part) as src:
                for name in OWN:
                    src.copy(src[name], g, name=name)
                g.attrs.update(dict(src.attrs))
            g["sae/W_dec"][...] = W
            g["sae/W_enc"][...] = W.T
            link_shared(g)
            infos.append({"name": f"A/{i}", "d_sae": int(n), "group": f"dictionaries/{i}"})
            prev = W
        x = np.asarray(f["sample/neuron_acts"][()], np.float32)
    saes = [[_load_member_sae(path, i, infos) for i in range(len(sizes))]]
    acts = [x]
    if second_seed:
        n = len(sizes)
        perm = rng.permutation(n_neurons)
        with rewrite_h5(path) as f:
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
        saes.append([_load_member_sae(path, n + i, infos) for i in range(n)])
        acts.append(x_b)
    from engine.bundle import open_bundle

    with open_bundle(path) as b:
        model = b.load_model()            # B's weights are A's (only its neurons are permuted)
    matches, neuron_matches, metrics, map_decoders = run_to_completion(match_family_job(
        [model] * len(saes), saes, neuron_acts=acts, k=match_k, min_active=min_active))
    fmap = embed_decoders(map_decoders, method=map_method, seed=seed)
    with rewrite_h5(path) as f:
        write_family_group(f, infos, {}, None)       # the members; then what a rematch writes
        replace_matches(f, matches, neuron_matches, metrics, fmap)
    return path


def _load_member_sae(path: Path, i: int, infos):
    from engine.bundle.sae_file import read_sae_group, sae_from_state

    with H5_LOCK, open_h5(path) as f:
        group = f[infos[i]["group"]] if infos[i]["group"] else f
        state, cfg = read_sae_group(group["sae"], str(path))
    return sae_from_state(state, cfg, str(path))
