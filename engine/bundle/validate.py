"""Open-time validation: everything ``open_bundle`` checks before it hands back a ``Bundle``.

Only metadata is read — root attributes, the JSON configs and metrics, every dataset's shape and
dtype — so this is cheap however large the bundle. Each problem becomes a ``BundleError`` that
names the file and the part that is wrong.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NoReturn

import h5py
import numpy as np

from engine.inputs import MAX_UNITS, check_alloc
from engine.bundle.schema import (
    FORMAT, GROUP_OF_KIND, SAMPLE_COLUMNS, SAMPLE_CONTEXT_STARTS, STORAGE_KIND, UNIT_COLUMNS, BundleError,
    as_str, describe, expected_model_shapes, float_problem,
)
from engine.config import ModelConfig, RunConfig
from engine.stats import UNIT_KINDS

__all__ = ["Metadata", "read_metadata", "damaged"]


def damaged(path: Path, text: str) -> BundleError:
    return BundleError(f"{path} is damaged or incomplete: {text}. Re-create it, e.g. with `superpos run`.")


@dataclasses.dataclass
class Metadata:
    """What open-time validation learnt; ``datasets`` and ``pads`` keep open handles for fast reads."""

    schema_version: int
    config: RunConfig
    metrics: dict[str, Any]
    model_config: ModelConfig
    n_units: dict[str, int]                              # kind -> N
    dims: dict[str, int]                                 # K, W, I, P, B, L, A, C
    datasets: dict[str, dict[str, h5py.Dataset]]         # kind -> column -> open dataset
    pads: dict[int, int]                                 # id(token dataset) -> its pad value
    sae_config_dict: dict[str, Any]
    n_tokens: int
    top_center: int
    harvest_config_dict: Any
    curve_names: list[str]
    info: dict[str, Any]


class _Checker:
    def __init__(self, f: h5py.File, path: Path):
        self.f, self.path = f, path

    def fail(self, text: str) -> NoReturn:
        raise damaged(self.path, text)

    def _member(self, name: str, kind: type, what: str):
        obj = self.f.get(name)
        if obj is None:
            self.fail(f"{name} is missing")
        if not isinstance(obj, kind):
            self.fail(f"{name} is not a {what}")
        return obj

    def dataset(self, name: str) -> h5py.Dataset:
        return self._member(name, h5py.Dataset, "dataset")

    def group(self, name: str) -> h5py.Group:
        return self._member(name, h5py.Group, "group")

    def json(self, text: Any, where: str) -> Any:
        try:
            return json.loads(as_str(text))
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            self.fail(f"{where} is not valid JSON ({describe(exc)})")

    def shape(self, name: str, spec: tuple, dims: dict[str, int], kinds: str) -> h5py.Dataset:
        """The dataset ``name``, checked against a symbolic shape (binding new symbols in ``dims``)."""
        ds = self.dataset(name)
        shape = ds.shape
        if shape is None or len(shape) != len(spec):
            self.fail(f"{name} has shape {shape}, expected {len(spec)} dimensions")
        for sym, size in zip(spec, shape):
            want = sym if isinstance(sym, int) else dims.setdefault(sym, size)
            if size != want:
                expected = tuple(s if isinstance(s, int) else dims.get(s, s) for s in spec)
                self.fail(f"{name} has shape {shape}, expected {expected}")
        if ds.dtype.kind not in kinds:
            self.fail(f"{name} has dtype {ds.dtype}, expected {'a string' if 'O' in kinds else 'numbers'}")
        return ds


def _run_config(check: _Checker) -> RunConfig:
    config = check.json(check.dataset("config")[()], "/config")
    if not isinstance(config, dict):
        check.fail("/config is not a JSON object")
    try:
        train = config.get("train")
        if isinstance(train, dict) and isinstance(train.get("betas"), list):  # JSON has no tuples
            config["train"] = {**train, "betas": tuple(train["betas"])}
        return RunConfig.from_dict(config)
    except Exception as exc:  # ConfigError or a type problem from a damaged value
        check.fail(f"/config is not a valid run configuration ({describe(exc)})")


def _model_config(check: _Checker) -> ModelConfig:
    """/model's config, with every parameter present in the shape that config implies."""
    model = check.group("model")
    if "config" not in model.attrs:
        check.fail("/model has no config attribute")
    text = check.json(model.attrs["config"], "/model config")
    try:
        cfg = ModelConfig.from_dict(text)
    except Exception as exc:
        check.fail(f"/model config is invalid ({describe(exc)})")
    for name, shape in expected_model_shapes(cfg).items():
        problem = float_problem(check.dataset(f"model/{name}"), shape)
        if problem:
            check.fail(f"/model/{name} {problem}")
    return cfg


def _check_sizes(check: _Checker) -> None:
    """No dataset may need an absurd amount of memory to read (its shape is metadata: free to check).

    Sizes come from the datasets' real shapes, never from attributes; the bound is generous (see
    ``engine.inputs.MAX_READ_BYTES``), so it refuses only shapes a damaged header invents."""
    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and obj.shape:
            n = int(np.prod(obj.shape, dtype=np.float64))
            check_alloc(n * max(4, obj.dtype.itemsize), f"{check.path}: /{name}", BundleError)

    check.f.visititems(visit)


def read_metadata(f: h5py.File, path: Path) -> Metadata:
    """Validate an open bundle's structure (no bulk reads); raises BundleError naming what is wrong."""
    check = _Checker(f, path)
    schema_version = int(f.attrs["schema_version"])
    versions = check.json(f.attrs.get("versions", "{}"), "the versions attribute")
    extra = check.json(f.attrs.get("extra_info", "{}"), "the extra_info attribute")
    config = _run_config(check)
    metrics = check.json(check.dataset("metrics")[()], "/metrics")
    if not isinstance(metrics, dict):
        check.fail("/metrics is not a JSON object")
    check.dataset("tokenizer")
    model_config = _model_config(check)

    # unit columns: shapes agree with each other and across kinds
    dims: dict[str, int] = {}
    n_units: dict[str, int] = {}
    datasets: dict[str, dict[str, h5py.Dataset]] = {}
    pads: dict[int, int] = {}
    for kind in UNIT_KINDS:
        datasets[kind] = {}
        group = GROUP_OF_KIND[kind]
        check.group(group)
        kind_dims = {k: v for k, v in dims.items() if k != "N"}
        for name, (spec, storage) in UNIT_COLUMNS.items():
            ds = check.shape(f"{group}/{name}", spec, kind_dims, STORAGE_KIND[storage])
            datasets[kind][name] = ds
            if storage == "token":
                pad = ds.attrs.get("pad")
                if pad is None or np.asarray(pad).shape != () or np.asarray(pad).dtype.kind not in "iu":
                    check.fail(f"/{group}/{name} has no valid pad attribute")
                pads[id(ds)] = int(pad)
        n_units[kind] = kind_dims.pop("N")
        if n_units[kind] > MAX_UNITS:
            check.fail(f"/{group} claims {n_units[kind]:,} {kind}s (at most {MAX_UNITS:,} are supported)")
        dims.update(kind_dims)
    F, D = n_units["feature"], n_units["neuron"]
    if model_config.d_mlp != D:
        check.fail(f"the model has {model_config.d_mlp} neurons but /neurons has {D}")

    sae = check.group("sae")
    sae_cfg = check.json(sae.attrs.get("config", "null"), "/sae config")
    if not isinstance(sae_cfg, dict):
        check.fail("/sae has no config attribute")
    for name, shape in {"W_enc": (D, F), "b_enc": (F,), "W_dec": (F, D), "b_dec": (D,)}.items():
        problem = float_problem(check.dataset(f"sae/{name}"), shape)
        if problem:
            check.fail(f"/sae/{name} {problem}")

    # harvest info, density histogram, sample, curves
    harvest = check.group("harvest")
    try:
        n_tokens = int(harvest.attrs["n_tokens"])
        top_center = int(harvest.attrs["top_center"])
    except (KeyError, TypeError, ValueError):
        check.fail("/harvest lacks n_tokens or top_center")
    if not 0 <= top_center < dims["W"]:
        check.fail(f"/harvest top_center {top_center} is outside the window of {dims['W']}")
    harvest_config_dict = check.json(harvest.attrs.get("config", "{}"), "/harvest config")
    edges = check.shape("density_hist/edges", ("E",), {}, "f")
    check.shape("density_hist/counts", (max(edges.shape[0] - 1, 0),), {}, "iu")
    sample_dims = {"M": D, "F+1": F + 1}
    for name, (spec, storage) in SAMPLE_COLUMNS.items():
        check.shape(f"sample/{name}", spec, sample_dims, STORAGE_KIND[storage])
    if SAMPLE_CONTEXT_STARTS in check.group("sample"):               # optional (schema 5 writes it)
        starts = check.shape(f"sample/{SAMPLE_CONTEXT_STARTS}", ("contexts",), sample_dims, "iu")
        if starts.shape[0] and sample_dims["S"] % starts.shape[0]:
            check.fail(f"/sample/{SAMPLE_CONTEXT_STARTS} has {starts.shape[0]} contexts, which do not divide "
                       f"the {sample_dims['S']} sample tokens")
    curve_names: list[str] = []

    def collect_curve(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            if len(obj.shape or ()) != 2 or obj.shape[1] != 2 or obj.dtype.kind != "f":
                check.fail(f"/curves/{name} has shape {obj.shape}, expected (n, 2)")
            curve_names.append(name)

    if "curves" in f:                               # optional: a bundle may have no curves
        check.group("curves").visititems(collect_curve)

    if n_tokens < 0:
        check.fail(f"/harvest n_tokens is negative ({n_tokens})")
    _check_sizes(check)

    info: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": schema_version,
        "created": as_str(f.attrs.get("created", "")),
        "generator": as_str(f.attrs.get("generator", "")),
        "versions": versions if isinstance(versions, dict) else {},
        "extra_info": extra if isinstance(extra, dict) else {},
        "file_size": path.stat().st_size,
        "n_features": F,
        "n_neurons": D,
        "n_tokens": n_tokens,
        "dims": dict(dims),
        "curves": list(curve_names),
    }
    return Metadata(schema_version=schema_version, config=config, metrics=metrics, model_config=model_config,
                    n_units=n_units, dims=dims, datasets=datasets, pads=pads, sae_config_dict=sae_cfg,
                    n_tokens=n_tokens, top_center=top_center, harvest_config_dict=harvest_config_dict,
                    curve_names=curve_names, info=info)
