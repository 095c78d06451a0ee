"""The ``/sae`` group (SAELens orientation, float32) and the standalone SAE file that holds only it.

    /sae/W_enc (D, F)  /sae/b_enc (F,)  /sae/W_dec (F, D)  /sae/b_dec (D,)   attr config (SAEConfig JSON)

W_dec rows and W_enc columns are features, so both are chunked along the feature axis. A bundle is
also an SAE file: ``read_sae`` and ``load_sae_file`` accept either. An SAE file's root attributes are
format="superpos-sae", schema_version, created, generator, versions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from engine.inputs import check_alloc
from engine.bundle.schema import (
    FORMAT, H5_LOCK, READ_ERRORS, SAE_FORMAT, SAE_KEYS, BundleError, as_str, create_dataset, describe,
    dumps, open_h5, root_attrs, to_numpy, float_problem,
)
from engine.bundle.h5target import guarded_h5
from engine.config import SAEConfig
from engine.fileio import atomic_path

__all__ = ["write_sae_file", "read_sae", "load_sae_file"]


# ====================================================================== the /sae group
def create_sae_group(parent: h5py.Group, cfg: Mapping[str, Any], d_in: int, d_sae: int) -> h5py.Group:
    """The empty /sae datasets (fill them with ``group[name][a:b] = ...``)."""
    group = parent.require_group("sae")
    group.attrs["config"] = dumps(dict(cfg))
    fc = max(1, min(d_sae, 256))
    create_dataset(group, "W_enc", (d_in, d_sae), np.float32, compress=False, chunks=(d_in, fc))
    create_dataset(group, "b_enc", (d_sae,), np.float32, compress=False)
    create_dataset(group, "W_dec", (d_sae, d_in), np.float32, compress=False, chunks=(fc, d_in))
    create_dataset(group, "b_dec", (d_in,), np.float32, compress=False)
    return group


def write_sae_group(parent: h5py.Group, sae_state: Mapping[str, Any], cfg: Mapping[str, Any]) -> None:
    """/sae from a state dict in SAELens names (extra tensors, e.g. a JumpReLU threshold, kept too)."""
    missing = [k for k in SAE_KEYS if k not in sae_state]
    if missing:
        raise ValueError(f"SAE state lacks {', '.join(missing)}")
    W_enc = to_numpy(sae_state["W_enc"])
    d_in, d_sae = W_enc.shape
    group = create_sae_group(parent, cfg, d_in, d_sae)
    for key, value in sae_state.items():
        arr = W_enc if key == "W_enc" else to_numpy(value)
        if key in group:
            if group[key].shape != arr.shape:
                raise ValueError(f"SAE tensor {key} has shape {arr.shape}, expected {group[key].shape}")
            group[key][...] = arr
        else:
            create_dataset(group, key, arr.shape, np.float32, compress=False)[...] = arr


def read_sae_group(group: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state of float32 torch tensors, config dict) from an open /sae group; BundleError if damaged."""
    import torch      # here, not at the top: opening a bundle to browse it does not need torch

    try:
        if not isinstance(group, h5py.Group):
            raise BundleError(f"{where} has no /sae group (no SAE stored)")
        cfg = json.loads(as_str(group.attrs["config"]))
        if not isinstance(cfg, dict):
            raise BundleError(f"{where}: the SAE config is not a JSON object")
        d_in, d_sae = int(cfg.get("d_in", -1)), int(cfg.get("d_sae", -1))
        check_alloc(2 * 4 * max(d_in, 0) * max(d_sae, 0), f"{where}: the SAE", BundleError,
                    n_items=max(d_in, d_sae))
        expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
        state = {}
        for key in group:
            ds = group[key]
            if not isinstance(ds, h5py.Dataset):
                continue
            problem = float_problem(ds, expected[key] if key in expected else ds.shape)
            if problem:
                raise BundleError(f"{where}: SAE tensor {key} {problem}")
            state[key] = torch.from_numpy(np.asarray(ds[()], dtype=np.float32))
        missing = [k for k in SAE_KEYS if k not in state]
        if missing:
            raise BundleError(f"{where}: the SAE lacks {', '.join(missing)}")
        return state, cfg
    except BundleError:
        raise
    except READ_ERRORS as exc:
        raise BundleError(f"{where}: could not read the SAE ({describe(exc)}); the file may be damaged") from exc


def sae_from_state(state: Mapping[str, Any], cfg: Mapping[str, Any], where: str):
    """An ``engine.sae.SparseAutoencoder`` (eval mode, CPU) from what ``read_sae_group`` returned."""
    from engine.sae import SparseAutoencoder

    try:
        return SparseAutoencoder.from_state_dict(SAEConfig.from_dict(dict(cfg)), state)
    except READ_ERRORS as exc:
        raise BundleError(f"{where}: the stored SAE does not load ({describe(exc)})") from exc


# ====================================================================== the standalone file
def write_sae_file(path: str | os.PathLike, sae_state: Mapping[str, Any],
                   sae_config_dict: Mapping[str, Any]) -> Path:
    """Write an SAE alone, with the same ``/sae`` layout as a bundle, atomically (``engine.fileio``)."""
    path = Path(path)
    size = sum(4 * int(np.prod(tuple(v.shape))) for v in sae_state.values())   # stored uncompressed
    with atomic_path(path, suffix=".partial", what="the SAE file", size=size) as tmp:
        with guarded_h5(tmp) as f:
            f.attrs.update(root_attrs(SAE_FORMAT))
            write_sae_group(f, sae_state, sae_config_dict)
    return path


def read_sae(path_or_group: str | os.PathLike | h5py.Group) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, config_dict) of the SAE in an SAE file, a bundle, or an open ``/sae`` h5py group.

    ``state`` maps SAELens names (W_enc, b_enc, W_dec, b_dec, plus any extras) to float32 torch tensors.
    """
    if isinstance(path_or_group, h5py.Group):
        return read_sae_group(path_or_group, "the SAE group")
    path = Path(path_or_group)
    with H5_LOCK, open_h5(path, accept=(FORMAT, SAE_FORMAT)) as f:
        return read_sae_group(f.get("sae"), str(path))


def load_sae_file(path: str | os.PathLike):
    """An ``engine.sae.SparseAutoencoder`` from an SAE file or a bundle."""
    state, cfg = read_sae(path)
    return sae_from_state(state, cfg, str(path))
