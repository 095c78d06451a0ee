"""The result bundle: one HDF5 file holding a whole run — configs, tokenizer, model, SAE, statistics.

Layout (docs/bundle-format.md is the full reference; this is the map):

    /                      attrs format="superpos-bundle", schema_version, created, generator,
                           versions (JSON), extra_info (JSON)
    /config                JSON of RunConfig.to_dict()
    /tokenizer             tokenizer.json text
    /metrics               JSON of the evaluation metrics
    /model/<param>         the OneLayerTransformer state dict, float32; attr config (ModelConfig JSON)
    /sae/{W_enc,b_enc,W_dec,b_dec}   SAELens orientation, float32; attr config (SAEConfig JSON)
    /features/<column>     UnitStats columns for the N_f features   (chunked along the unit axis)
    /neurons/<column>      UnitStats columns for the N_n neurons
    /curves/<stage>/<name> (n, 2) float64 training curves (x, value)
    /density_hist/{edges,counts}
    /sample/{token_ids,neuron_acts,feature_indptr,feature_token,feature_value}
    /harvest               attrs n_tokens, top_center, config (HarvestConfig JSON)

Writing goes to a temporary file beside the target, is fsynced and renamed into place, so a crash
never leaves a half-written bundle under the real name. ``open_bundle`` reads only metadata (root
attributes, configs, metrics, dataset shapes — all of them validated) and slices everything else on
demand: one unit's dashboard is a handful of chunk reads.

Every failure to read — at open or later, because corruption can surface lazily — is a
``BundleError`` whose message a user can act on. No pickle, no eval: only numbers, strings and JSON.

Threads: h5py is not safe for concurrent use of one handle. A ``Bundle`` belongs to the thread that
uses it; a worker thread opens its own ``open_bundle(path)`` (opening is cheap) and sends back plain
numpy copies.

Shape legend: N units, K top examples, I intervals, P examples per interval, W window tokens,
B histogram bins, L logits, A alignment entries, C correlated entries, S sample tokens,
M neurons (= N_n), F features (= N_f), V vocab, D SAE input width (= M).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import h5py
import numpy as np

from engine.config import HarvestConfig, ModelConfig, RunConfig, SAEConfig
from engine.stats import ULTRALOW_DENSITY, UNIT_KINDS, Dashboard, HarvestResult, UnitStats
from engine.errors import UserError

__all__ = [
    "SCHEMA_VERSION", "FORMAT", "BundleError", "Bundle", "BundleWriter", "open_bundle", "write_bundle",
    "write_sae_file", "read_sae", "load_sae_file", "export_saelens", "saelens_config",
    "TOKEN_PAD_U16", "ULTRALOW_DENSITY",
]

FORMAT = "superpos-bundle"
SAE_FORMAT = "superpos-sae"
SCHEMA_VERSION = 1
TOKEN_PAD_U16 = 65535          # stored token id meaning "outside the text" when tokens are uint16
TOKEN_PAD_I32 = -1             # the same when tokens are int32 (vocab > 65535)
UNIT_CHUNK = 64                # at most this many units per chunk of a per-unit (N, ...) dataset
CHUNK_BYTES = 16384            # ... and about this many bytes: one dashboard read decompresses little
COLUMN_CHUNK = 16384           # elements per chunk of a 1-D column
GROUP_OF_KIND = {"feature": "features", "neuron": "neurons"}

# Per-unit columns: name -> (symbolic shape, storage). Symbols are bound by the first dataset that
# uses them and must agree everywhere (across both kinds, except N). Storage:
#   f64/f32/f16  floats of that width       count  int64 histogram counts
#   token        token ids: uint16 (pad 65535) when V <= 65535, else int32 (pad -1); attr "pad"
#   index        int32 unit indices, -1 = none          str   variable-length UTF-8
UNIT_COLUMNS: dict[str, tuple[tuple[Any, ...], str]] = {
    "density": (("N",), "f64"),
    "max_act": (("N",), "f32"),
    "mean_act": (("N",), "f32"),
    "act_hist": (("N", "B"), "count"),
    "top_tokens": (("N", "K", "W"), "token"),
    "top_acts": (("N", "K", "W"), "f16"),
    "interval_tokens": (("N", "I", "P", "W"), "token"),
    "interval_acts": (("N", "I", "P", "W"), "f16"),
    "interval_bounds": (("N", "I", 2), "f32"),
    "top_token_ids": (("N", 5), "token"),
    "logit_top_ids": (("N", "L"), "token"),
    "logit_top_values": (("N", "L"), "f32"),
    "logit_bottom_ids": (("N", "L"), "token"),
    "logit_bottom_values": (("N", "L"), "f32"),
    "logit_hist": (("N", "B"), "count"),
    "logit_range": (("N", 2), "f32"),
    "align_ids": (("N", "A"), "index"),
    "align_values": (("N", "A"), "f32"),
    "align_l1": (("N",), "f32"),
    "corr_ids": (("N", "C"), "index"),
    "corr_values": (("N", "C"), "f32"),
    "labels": (("N",), "str"),
    "scores": (("N",), "f32"),
}
_STORAGE_DTYPE = {"f64": np.float64, "f32": np.float32, "f16": np.float16, "count": np.int64,
                  "index": np.int32}
_STORAGE_KIND = {"f64": "f", "f32": "f", "f16": "f", "count": "iu", "token": "iu", "index": "iu",
                 "str": "OSU"}
SAMPLE_COLUMNS: dict[str, tuple[tuple[Any, ...], str]] = {
    "token_ids": (("S",), "index"),
    "neuron_acts": (("S", "M"), "f16"),
    "feature_indptr": (("F+1",), "count"),
    "feature_token": (("nnz",), "index"),
    "feature_value": (("nnz",), "f16"),
}
SAE_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")

# Errors that h5py, numpy and json raise on damaged files; all become BundleError when reading.
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError,
                UnicodeDecodeError, OverflowError, MemoryError, AssertionError)


class BundleError(UserError):
    """A bundle cannot be written or read; the message says which file, what is wrong, what to do."""


class _CallerError:
    """Marker: a bad argument from the calling code (not a damaged file); passes through unchanged."""


class UnitKindError(_CallerError, ValueError):
    pass


class UnitIndexError(_CallerError, IndexError):
    pass


# ====================================================================== shapes of the model state
def expected_model_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The OneLayerTransformer state dict's names and shapes, computed without importing torch.

    Used to validate ``/model`` at open (shapes are metadata, so this is free); a test checks that it
    agrees with ``OneLayerTransformer(cfg).state_dict()``.
    """
    V, T, C, M = cfg.vocab_size, cfg.n_ctx, cfg.d_model, cfg.d_mlp
    return {
        "tok_emb.weight": (V, C), "pos_emb.weight": (T, C),
        "ln_attn.weight": (C,), "ln_attn.bias": (C,),
        "attn.qkv.weight": (3 * C, C), "attn.qkv.bias": (3 * C,),
        "attn.proj.weight": (C, C), "attn.proj.bias": (C,),
        "ln_mlp.weight": (C,), "ln_mlp.bias": (C,),
        "mlp.W_in.weight": (M, C), "mlp.W_in.bias": (M,),
        "mlp.W_out.weight": (C, M), "mlp.W_out.bias": (C,),
        "ln_final.weight": (C,), "ln_final.bias": (C,),
        "unembed.weight": (V, C),
    }


# ====================================================================== small helpers
def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):      # torch scalars without importing torch
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a bundle's JSON")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _as_str(value[()])
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def _to_numpy(value: Any, dtype=np.float32) -> np.ndarray:
    """A torch tensor or array-like as a C-contiguous numpy array of ``dtype`` (torch imported lazily)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(value), dtype=dtype)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__, "h5py": h5py.__version__,
           "hdf5": h5py.version.hdf5_version}
    for name in ("torch", "tokenizers"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "?"))
        except Exception:  # pragma: no cover - optional at read time
            out[name] = "not installed"
    return out


def _generator() -> str:
    from engine import __version__

    return f"superpos {__version__}"


def token_storage_dtype(vocab_size: int) -> tuple[np.dtype, int]:
    """(dtype, pad) used on disk for token ids of a vocabulary of ``vocab_size``."""
    if vocab_size <= TOKEN_PAD_U16:
        return np.dtype(np.uint16), TOKEN_PAD_U16
    return np.dtype(np.int32), TOKEN_PAD_I32


def _encode_tokens(ids: np.ndarray, dtype: np.dtype, pad: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size and ids.max() >= np.iinfo(dtype).max:
        raise ValueError(f"token id {int(ids.max())} does not fit the bundle's {np.dtype(dtype).name} tokens")
    out = ids.astype(dtype)
    out[ids < 0] = pad
    return out


def _decode_tokens(stored: np.ndarray, pad: int) -> np.ndarray:
    out = stored.astype(np.int32)
    out[stored == pad] = -1
    return out


def _chunks(shape: tuple[int, ...], unit_chunk: int = UNIT_CHUNK, itemsize: int = 4,
            chunk_bytes: int = CHUNK_BYTES) -> tuple[int, ...] | None:
    """Chunk shape along the first axis (None for empty datasets, which HDF5 cannot chunk)."""
    if not shape or 0 in shape:
        return None
    if len(shape) == 1:
        return (min(shape[0], COLUMN_CHUNK),)
    row_bytes = itemsize * int(np.prod(shape[1:]))
    rows = max(1, min(unit_chunk, chunk_bytes // max(1, row_bytes)))
    return (min(shape[0], rows), *shape[1:])


def _create(group: h5py.Group, name: str, shape: tuple[int, ...], dtype, *, compress: bool = True,
            unit_chunk: int = UNIT_CHUNK, chunks: tuple[int, ...] | None = None,
            chunk_bytes: int = CHUNK_BYTES) -> h5py.Dataset:
    """A dataset chunked along axis 0 with a Fletcher-32 checksum per chunk (and gzip if ``compress``).

    The checksum turns silent corruption of stored numbers into a read error (-> BundleError).
    """
    shape = tuple(int(s) for s in shape)
    if dtype == "str":
        chunk = _chunks(shape, COLUMN_CHUNK)
        return group.create_dataset(name, shape=shape, dtype=h5py.string_dtype("utf-8"), chunks=chunk)
    chunk = chunks or _chunks(shape, unit_chunk, np.dtype(dtype).itemsize, chunk_bytes)
    if chunk is None:
        return group.create_dataset(name, shape=shape, dtype=dtype)
    kwargs: dict[str, Any] = {"chunks": chunk, "fletcher32": True}
    if compress:
        kwargs.update(compression="gzip", compression_opts=1, shuffle=True)
    return group.create_dataset(name, shape=shape, dtype=dtype, **kwargs)


def _write_string(group: h5py.Group, name: str, text: str) -> None:
    group.create_dataset(name, data=text, dtype=h5py.string_dtype("utf-8"))


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_temp(folder: Path, name: str) -> Path:
    """An empty temporary file beside the target, with the permissions a normal new file gets
    (mkstemp would make it private to the owner)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError:  # pragma: no cover - e.g. filesystems without permissions
        pass
    return Path(tmp)


def _fsync_path(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    try:  # persist the rename too (POSIX); not possible on Windows, harmless to skip
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


# ====================================================================== writing
class BundleWriter:
    """Builds a bundle in a temporary file beside ``path``; ``commit()`` renames it into place.

    Use as a context manager: a normal exit commits, an exception discards the temporary file and
    leaves whatever was at ``path`` untouched. ``write_bundle`` is the one-call form; the synthetic
    generator uses the pieces to write 131k-feature bundles chunk by chunk in bounded memory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = _make_temp(self.path.parent, self.path.name)
        try:
            self.file = h5py.File(self.tmp_path, "w", libver=("earliest", "v110"))
        except Exception:
            self.tmp_path.unlink(missing_ok=True)
            raise
        self._token_dtype: tuple[np.dtype, int] | None = None
        self._done = False

    # -------------------------------------------------------------- context manager
    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def commit(self) -> Path:
        if self._done:
            raise RuntimeError("bundle writer already finished")
        self._done = True
        try:
            self.file.close()
            _fsync_path(self.tmp_path)
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.tmp_path.unlink(missing_ok=True)
            raise
        return self.path

    # -------------------------------------------------------------- header, model, SAE
    def write_header(self, *, config: RunConfig, tokenizer_json: str, metrics: Mapping[str, Any],
                     curves: Mapping[str, np.ndarray], extra_info: Mapping[str, Any] | None = None) -> None:
        f = self.file
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs["generator"] = _generator()
        f.attrs["versions"] = _dumps(_versions())
        f.attrs["extra_info"] = _dumps(dict(extra_info or {}))
        _write_string(f, "config", _dumps(config.to_dict()))
        _write_string(f, "tokenizer", str(tokenizer_json))
        _write_string(f, "metrics", _dumps(dict(metrics)))
        self.write_curves(curves)

    def write_curves(self, curves: Mapping[str, np.ndarray]) -> None:
        group = self.file.require_group("curves")
        for name, values in curves.items():
            parts = [p for p in str(name).split("/") if p]
            if not parts or any(p in (".", "..") for p in parts):
                raise ValueError(f"bad curve name {name!r}")
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise ValueError(f"curve {name!r} must have shape (n, 2), found {arr.shape}")
            _create(group, "/".join(parts), arr.shape, np.float64, compress=False,
                    chunks=(max(1, min(arr.shape[0], 8192)), 2) if arr.shape[0] else None)[...] = arr

    def write_model(self, model_state: Mapping[str, Any], model_config: ModelConfig) -> None:
        group = self.file.require_group("model")
        group.attrs["config"] = _dumps(model_config.to_dict())
        expected = expected_model_shapes(model_config)
        for name, value in model_state.items():
            arr = _to_numpy(value)
            if name in expected and arr.shape != expected[name]:
                raise ValueError(f"model tensor {name} has shape {arr.shape}, expected {expected[name]}")
            _create(group, name, arr.shape, np.float32, compress=False, unit_chunk=1 << 30,
                    chunk_bytes=1 << 20)[...] = arr
        missing = sorted(set(expected) - set(model_state))
        if missing:
            raise ValueError(f"model state lacks {', '.join(missing)}")

    def create_sae(self, sae_config: Mapping[str, Any] | SAEConfig, d_in: int, d_sae: int) -> h5py.Group:
        """Create the empty /sae datasets (fill them with ``group[name][a:b] = ...``)."""
        cfg = sae_config.to_dict() if hasattr(sae_config, "to_dict") else dict(sae_config)
        return _create_sae_group(self.file, cfg, d_in, d_sae)

    def write_sae(self, sae_state: Mapping[str, Any], sae_config: Mapping[str, Any] | SAEConfig) -> None:
        cfg = sae_config.to_dict() if hasattr(sae_config, "to_dict") else dict(sae_config)
        _write_sae_group(self.file, sae_state, cfg)

    # -------------------------------------------------------------- unit statistics
    def set_vocab_size(self, vocab_size: int) -> None:
        self._token_dtype = token_storage_dtype(int(vocab_size))

    def create_units(self, kind: str, n: int, dims: Mapping[str, int]) -> h5py.Group:
        """Create empty columns for ``n`` units; dims gives K, W, I, P, B, L, A, C."""
        if self._token_dtype is None:
            raise RuntimeError("call set_vocab_size before create_units")
        group = self.file.require_group(GROUP_OF_KIND[kind])
        sizes = {"N": int(n), **{k: int(v) for k, v in dims.items()}}
        token_dtype, pad = self._token_dtype
        for name, (spec, storage) in UNIT_COLUMNS.items():
            shape = tuple(sizes[s] if isinstance(s, str) else s for s in spec)
            if storage == "str":
                _create(group, name, shape, "str")
            elif storage == "token":
                if name == "top_token_ids":   # read whole for the table: few, large chunks
                    ds = _create(group, name, shape, token_dtype, compress=False, unit_chunk=COLUMN_CHUNK,
                                 chunk_bytes=1 << 18)
                else:
                    ds = _create(group, name, shape, token_dtype)
                ds.attrs["pad"] = np.int64(pad)
            else:
                # 1-D columns are read whole for the table; gzip buys little there and costs time.
                ds = _create(group, name, shape, _STORAGE_DTYPE[storage], compress=len(shape) > 1)
                if storage == "index":
                    ds.attrs["pad"] = np.int64(-1)
        return group

    def write_units(self, kind: str, start: int, stats: UnitStats) -> None:
        """Write rows [start, start + len(stats)) of ``kind`` from a (possibly partial) UnitStats."""
        group = self.file[GROUP_OF_KIND[kind]]
        n = len(stats)
        stop = start + n
        for name, (spec, storage) in UNIT_COLUMNS.items():
            ds = group[name]
            if name == "labels":
                labels = list(stats.labels) if stats.labels else [""] * n
                if len(labels) != n:
                    raise ValueError(f"{kind} labels: {len(labels)} entries for {n} units")
                ds[start:stop] = np.array([str(s) for s in labels], dtype=object)
                continue
            if name == "scores":
                value = stats.scores if stats.scores is not None else np.full(n, np.nan, np.float32)
            else:
                value = getattr(stats, name)
            arr = np.asarray(value)
            if arr.shape != (n, *ds.shape[1:]):
                raise ValueError(f"{kind} column {name}: shape {arr.shape}, expected {(n, *ds.shape[1:])}")
            if storage == "token":
                arr = _encode_tokens(arr, ds.dtype, int(ds.attrs["pad"]))
            ds[start:stop] = arr.astype(ds.dtype, copy=False)

    def write_harvest_info(self, *, n_tokens: int, harvest_config: HarvestConfig | Mapping[str, Any],
                           top_center: int, density_hist_edges: np.ndarray,
                           density_hist_counts: np.ndarray) -> None:
        group = self.file.require_group("harvest")
        cfg = harvest_config.to_dict() if hasattr(harvest_config, "to_dict") else dict(harvest_config)
        group.attrs["n_tokens"] = np.int64(n_tokens)
        group.attrs["top_center"] = np.int64(top_center)
        group.attrs["config"] = _dumps(cfg)
        dh = self.file.require_group("density_hist")
        edges = np.asarray(density_hist_edges, np.float64)
        counts = np.asarray(density_hist_counts, np.int64)
        if edges.ndim != 1 or counts.shape != (max(edges.shape[0] - 1, 0),):
            raise ValueError(f"density histogram: {edges.shape} edges for {counts.shape} counts")
        _create(dh, "edges", edges.shape, np.float64, compress=False)[...] = edges
        _create(dh, "counts", counts.shape, np.int64, compress=False)[...] = counts

    def create_sample(self, n_sample: int, n_neurons: int, n_features: int, nnz: int) -> h5py.Group:
        group = self.file.require_group("sample")
        _create(group, "token_ids", (n_sample,), np.int32, compress=False)
        _create(group, "neuron_acts", (n_sample, n_neurons), np.float16, unit_chunk=1 << 30,
                chunk_bytes=1 << 20)
        _create(group, "feature_indptr", (n_features + 1,), np.int64, compress=False)
        _create(group, "feature_token", (nnz,), np.int32, compress=False)
        _create(group, "feature_value", (nnz,), np.float16, compress=False)
        return group

    def write_sample(self, harvest: HarvestResult) -> None:
        tok = np.asarray(harvest.sample_token_ids, np.int32)
        acts = np.asarray(harvest.sample_neuron_acts, np.float16)
        indptr = np.asarray(harvest.sample_feature_indptr, np.int64)
        ftok = np.asarray(harvest.sample_feature_token, np.int32)
        fval = np.asarray(harvest.sample_feature_value, np.float16)
        n_features = len(harvest.features)
        if acts.shape != (tok.shape[0], len(harvest.neurons)):
            raise ValueError(f"sample_neuron_acts has shape {acts.shape}, expected {(tok.shape[0], len(harvest.neurons))}")
        if indptr.shape != (n_features + 1,) or ftok.shape != fval.shape or ftok.ndim != 1:
            raise ValueError("sample feature CSR arrays are inconsistent")
        if indptr[0] != 0 or indptr[-1] != ftok.shape[0] or np.any(np.diff(indptr) < 0):
            raise ValueError("sample_feature_indptr must rise from 0 to nnz")
        group = self.create_sample(tok.shape[0], acts.shape[1], n_features, ftok.shape[0])
        for name, arr in (("token_ids", tok), ("neuron_acts", acts), ("feature_indptr", indptr),
                          ("feature_token", ftok), ("feature_value", fval)):
            if arr.size:
                group[name][...] = arr


def _create_sae_group(parent: h5py.Group, cfg: dict, d_in: int, d_sae: int) -> h5py.Group:
    group = parent.require_group("sae")
    group.attrs["config"] = _dumps(cfg)
    # W_dec rows / W_enc columns are features: chunk along the feature axis so one feature is cheap.
    fc = max(1, min(d_sae, 256))
    _create(group, "W_enc", (d_in, d_sae), np.float32, compress=False, chunks=(d_in, fc))
    _create(group, "b_enc", (d_sae,), np.float32, compress=False)
    _create(group, "W_dec", (d_sae, d_in), np.float32, compress=False, chunks=(fc, d_in))
    _create(group, "b_dec", (d_in,), np.float32, compress=False)
    return group


def _write_sae_group(parent: h5py.Group, sae_state: Mapping[str, Any], cfg: dict) -> None:
    missing = [k for k in SAE_KEYS if k not in sae_state]
    if missing:
        raise ValueError(f"SAE state lacks {', '.join(missing)}")
    W_enc = _to_numpy(sae_state["W_enc"])
    d_in, d_sae = W_enc.shape
    group = _create_sae_group(parent, cfg, d_in, d_sae)
    for key, value in sae_state.items():
        arr = W_enc if key == "W_enc" else _to_numpy(value)
        if key in group:
            if group[key].shape != arr.shape:
                raise ValueError(f"SAE tensor {key} has shape {arr.shape}, expected {group[key].shape}")
            group[key][...] = arr
        else:  # extra tensors a future recipe may add (e.g. a JumpReLU threshold)
            _create(group, key, arr.shape, np.float32, compress=False)[...] = arr


def write_bundle(
    path: str | os.PathLike,
    *,
    config: RunConfig,
    tokenizer_json: str,
    model_state: Mapping[str, Any],
    sae_state: Mapping[str, Any],
    harvest: HarvestResult,
    metrics: Mapping[str, Any],
    curves: Mapping[str, np.ndarray],
    extra_info: Mapping[str, Any] | None = None,
) -> Path:
    """Write a complete bundle atomically (temporary file + fsync + rename). Returns ``path``.

    A disk or permission problem becomes a ``BundleError``; inconsistent inputs (a programming
    error) raise ``ValueError``. Either way nothing is left at ``path`` that was not there before.
    """
    path = Path(path)
    model_cfg = config.model
    if "tok_emb.weight" in model_state:  # the stored weights are the truth about the model's sizes
        V, C = _to_numpy(model_state["tok_emb.weight"]).shape
        model_cfg = model_cfg.replace(vocab_size=int(V), d_model=int(C))
    F, M = len(harvest.features), len(harvest.neurons)
    sae_cfg = config.sae.replace(d_in=M, d_sae=F)
    if model_cfg.d_mlp != M:
        raise ValueError(f"the model has {model_cfg.d_mlp} MLP neurons but the harvest has {M}")
    if "W_enc" in sae_state and tuple(sae_state["W_enc"].shape) != (M, F):
        raise ValueError(f"SAE W_enc has shape {tuple(sae_state['W_enc'].shape)}, expected {(M, F)} "
                         "(neurons, features) to match the harvest")
    try:
        with BundleWriter(path) as w:
            w.write_header(config=config, tokenizer_json=tokenizer_json, metrics=metrics, curves=curves,
                           extra_info=extra_info)
            w.write_model(model_state, model_cfg)
            w.write_sae(sae_state, sae_cfg)
            w.set_vocab_size(model_cfg.vocab_size)
            for kind, stats in (("feature", harvest.features), ("neuron", harvest.neurons)):
                if stats.kind != kind:
                    raise ValueError(f"harvest.{GROUP_OF_KIND[kind]} has kind {stats.kind!r}")
                w.create_units(kind, len(stats), _dims_of(stats))
                w.write_units(kind, 0, stats)
            w.write_harvest_info(n_tokens=harvest.n_tokens, harvest_config=config.harvest,
                                 top_center=harvest.features.top_center,
                                 density_hist_edges=harvest.density_hist_edges,
                                 density_hist_counts=harvest.density_hist_counts)
            w.write_sample(harvest)
    except OSError as exc:
        raise BundleError(f"could not write the bundle {path}: {exc.strerror or exc}") from exc
    return path


def _dims_of(stats: UnitStats) -> dict[str, int]:
    _, K, W = stats.top_tokens.shape
    _, I, P, _ = stats.interval_tokens.shape
    return {"K": K, "W": W, "I": I, "P": P, "B": stats.act_hist.shape[1], "L": stats.logit_top_ids.shape[1],
            "A": stats.align_ids.shape[1], "C": stats.corr_ids.shape[1]}


# ====================================================================== SAE files
def write_sae_file(path: str | os.PathLike, sae_state: Mapping[str, Any],
                   sae_config_dict: Mapping[str, Any]) -> Path:
    """Write an SAE alone, with the same ``/sae`` layout as a bundle, atomically.

    Root attrs: format="superpos-sae", schema_version, created, generator.
    """
    path = Path(path)
    try:
        with BundleWriter(path) as w:
            w.file.attrs["format"] = SAE_FORMAT
            w.file.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            w.file.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            w.file.attrs["generator"] = _generator()
            w.file.attrs["versions"] = _dumps(_versions())
            _write_sae_group(w.file, sae_state, dict(sae_config_dict))
    except OSError as exc:
        raise BundleError(f"could not write the SAE file {path}: {exc.strerror or exc}") from exc
    return path


def read_sae(path_or_group: str | os.PathLike | h5py.Group) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, config_dict) of the SAE in an SAE file, a bundle, or an open ``/sae`` h5py group.

    ``state`` maps SAELens names (W_enc, b_enc, W_dec, b_dec, plus any extras) to float32 torch tensors.
    """
    import torch

    if isinstance(path_or_group, h5py.Group):
        return _read_sae_group(path_or_group, "the SAE group", torch)
    path = Path(path_or_group)
    f = _open_h5(path, accept=(FORMAT, SAE_FORMAT))
    try:
        return _read_sae_group(f.get("sae"), str(path), torch)
    finally:
        f.close()


def _read_sae_group(group, where: str, torch) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        if not isinstance(group, h5py.Group):
            raise BundleError(f"{where} has no /sae group (no SAE stored)")
        cfg = json.loads(_as_str(group.attrs["config"]))
        if not isinstance(cfg, dict):
            raise BundleError(f"{where}: the SAE config is not a JSON object")
        d_in, d_sae = int(cfg.get("d_in", -1)), int(cfg.get("d_sae", -1))
        expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
        state = {}
        for key in group:
            ds = group[key]
            if not isinstance(ds, h5py.Dataset):
                continue
            if key in expected and ds.shape != expected[key]:
                raise BundleError(f"{where}: SAE tensor {key} has shape {ds.shape}, expected {expected[key]}")
            state[key] = torch.from_numpy(np.asarray(ds[()], dtype=np.float32))
        missing = [k for k in SAE_KEYS if k not in state]
        if missing:
            raise BundleError(f"{where}: the SAE lacks {', '.join(missing)}")
        return state, cfg
    except BundleError:
        raise
    except _READ_ERRORS as exc:
        raise BundleError(f"{where}: could not read the SAE ({_describe(exc)}); the file may be damaged") from exc


def load_sae_file(path: str | os.PathLike):
    """An ``engine.sae.SparseAutoencoder`` from an SAE file or a bundle."""
    from engine.sae import SparseAutoencoder

    state, cfg = read_sae(path)
    try:
        return SparseAutoencoder.from_state_dict(SAEConfig.from_dict(cfg), state)
    except _READ_ERRORS as exc:
        raise BundleError(f"{path}: the stored SAE does not load ({_describe(exc)})") from exc


# ====================================================================== reading
def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


def _open_h5(path: Path, accept: Iterable[str] = (FORMAT,)) -> h5py.File:
    """Open ``path`` read-only after checking it is a file, HDF5, the right format and schema."""
    if not path.exists():
        raise BundleError(f"{path}: no such file")
    if path.is_dir():
        raise BundleError(f"{path} is a folder, not a bundle file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if head != b"\x89HDF\r\n\x1a\n":
        raise BundleError(f"{path} is not a superpos bundle (not an HDF5 file)")
    try:
        f = h5py.File(path, "r", locking=False)
    except _READ_ERRORS as exc:
        raise BundleError(
            f"{path} is damaged or incomplete (HDF5 could not open it: {_describe(exc)}). "
            "Re-create it, e.g. with `superpos run`.") from exc
    try:
        fmt = f.attrs.get("format")
        fmt = _as_str(fmt) if fmt is not None else None
        accept = tuple(accept)
        if fmt not in accept:
            what = "no format attribute" if fmt is None else f"format {fmt!r}"
            raise BundleError(f"{path} is an HDF5 file but not a superpos bundle ({what})")
        version = f.attrs.get("schema_version")
        if version is None or np.asarray(version).shape != () or not np.issubdtype(np.asarray(version).dtype, np.integer):
            raise BundleError(f"{path} has no valid schema_version; it is damaged or not a superpos bundle")
        version = int(version)
        if version > SCHEMA_VERSION:
            raise BundleError(
                f"{path} was written by a newer superpos (schema {version}); this version reads up to "
                f"{SCHEMA_VERSION}. Update superpos.")
        if version < 1:
            raise BundleError(f"{path} has an invalid schema_version {version}")
    except BundleError:
        f.close()
        raise
    except _READ_ERRORS as exc:
        f.close()
        raise BundleError(f"{path} is damaged (cannot read its attributes: {_describe(exc)})") from exc
    return f


def _guarded(what: str) -> Callable:
    """Decorator: any low-level read error in a Bundle method becomes a BundleError naming the file."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def inner(self: "Bundle", *args, **kwargs):
            if self._file is None:
                raise BundleError(f"{self.path}: the bundle is closed")
            try:
                return method(self, *args, **kwargs)
            except BundleError:
                raise
            except _READ_ERRORS as exc:
                if isinstance(exc, _CallerError):
                    raise
                raise BundleError(
                    f"{self.path}: could not read {what} ({_describe(exc)}); the file may be damaged. "
                    "Re-create it, e.g. with `superpos run`.") from exc

        return inner

    return wrap


class Bundle:
    """A bundle opened for reading. Metadata is read at open; everything else on demand.

    Attributes: path, schema_version, info (dict), config (RunConfig), metrics (dict), n_features,
    n_neurons, n_tokens, dims (K, W, I, P, B, L, A, C). One thread at a time (see module docstring).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file: h5py.File | None = _open_h5(self.path)
        self._columns_cache: dict[str, dict[str, Any]] = {}
        self._tokenizer = None
        try:
            self._read_metadata()
        except BundleError:
            self.close()
            raise
        except _READ_ERRORS as exc:
            self.close()
            raise BundleError(
                f"{self.path} is damaged or incomplete ({_describe(exc)}). "
                "Re-create it, e.g. with `superpos run`.") from exc

    # -------------------------------------------------------------- open-time validation
    def _fail(self, text: str) -> None:
        raise BundleError(f"{self.path} is damaged or incomplete: {text}. Re-create it, e.g. with `superpos run`.")

    def _dataset(self, name: str) -> h5py.Dataset:
        obj = self._file.get(name)
        if obj is None:
            self._fail(f"{name} is missing")
        if not isinstance(obj, h5py.Dataset):
            self._fail(f"{name} is not a dataset")
        return obj

    def _group(self, name: str) -> h5py.Group:
        obj = self._file.get(name)
        if obj is None:
            self._fail(f"{name} is missing")
        if not isinstance(obj, h5py.Group):
            self._fail(f"{name} is not a group")
        return obj

    def _json(self, text: Any, where: str) -> Any:
        try:
            return json.loads(_as_str(text))
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            self._fail(f"{where} is not valid JSON ({_describe(exc)})")

    def _check_shape(self, name: str, spec: tuple, dims: dict[str, int], kinds: str) -> h5py.Dataset:
        ds = self._dataset(name)
        shape = ds.shape
        if shape is None or len(shape) != len(spec):
            self._fail(f"{name} has shape {shape}, expected {len(spec)} dimensions")
        for sym, size in zip(spec, shape):
            want = sym if isinstance(sym, int) else dims.setdefault(sym, size)
            if size != want:
                expected = tuple(s if isinstance(s, int) else dims.get(s, s) for s in spec)
                self._fail(f"{name} has shape {shape}, expected {expected}")
        if ds.dtype.kind not in kinds:
            self._fail(f"{name} has dtype {ds.dtype}, expected {'a string' if 'O' in kinds else 'numbers'}")
        return ds

    def _read_metadata(self) -> None:
        f = self._file
        self.schema_version = int(f.attrs["schema_version"])
        versions = self._json(f.attrs.get("versions", "{}"), "the versions attribute")
        extra = self._json(f.attrs.get("extra_info", "{}"), "the extra_info attribute")
        config = self._json(self._dataset("config")[()], "/config")
        if not isinstance(config, dict):
            self._fail("/config is not a JSON object")
        try:
            train = config.get("train")
            if isinstance(train, dict) and isinstance(train.get("betas"), list):  # JSON has no tuples
                config["train"] = {**train, "betas": tuple(train["betas"])}
            self.config = RunConfig.from_dict(config)
        except Exception as exc:  # ConfigError or a type problem from a damaged value
            self._fail(f"/config is not a valid run configuration ({_describe(exc)})")
        metrics = self._json(self._dataset("metrics")[()], "/metrics")
        if not isinstance(metrics, dict):
            self._fail("/metrics is not a JSON object")
        self.metrics: dict[str, Any] = metrics
        self._dataset("tokenizer")

        # model: every parameter present with the shape its config implies
        model = self._group("model")
        try:
            self.model_config = ModelConfig.from_dict(self._json(model.attrs["config"], "/model config"))
        except KeyError:
            self._fail("/model has no config attribute")
        except Exception as exc:
            if isinstance(exc, BundleError):
                raise
            self._fail(f"/model config is invalid ({_describe(exc)})")
        for name, shape in expected_model_shapes(self.model_config).items():
            ds = self._dataset(f"model/{name}")
            if ds.shape != shape or ds.dtype.kind != "f":
                self._fail(f"/model/{name} has shape {ds.shape} {ds.dtype}, expected {shape} float32")

        # unit columns: shapes agree with each other and across kinds
        dims: dict[str, int] = {}
        self._n: dict[str, int] = {}
        # open Dataset handles and token pads, kept so a dashboard read skips h5py's name lookups
        self._ds: dict[str, dict[str, h5py.Dataset]] = {}
        self._pad: dict[int, int] = {}
        for kind in UNIT_KINDS:
            self._ds[kind] = {}
            group = GROUP_OF_KIND[kind]
            self._group(group)
            kind_dims = {k: v for k, v in dims.items() if k != "N"}
            for name, (spec, storage) in UNIT_COLUMNS.items():
                ds = self._check_shape(f"{group}/{name}", spec, kind_dims, _STORAGE_KIND[storage])
                self._ds[kind][name] = ds
                if storage == "token":
                    pad = ds.attrs.get("pad")
                    if pad is None or np.asarray(pad).shape != () or np.asarray(pad).dtype.kind not in "iu":
                        self._fail(f"/{group}/{name} has no valid pad attribute")
                    self._pad[id(ds)] = int(pad)
            self._n[kind] = kind_dims.pop("N")
            dims.update(kind_dims)
        self.dims = dims
        self.n_features = self._n["feature"]
        self.n_neurons = self._n["neuron"]
        if self.model_config.d_mlp != self.n_neurons:
            self._fail(f"the model has {self.model_config.d_mlp} neurons but /neurons has {self.n_neurons}")

        # SAE
        sae = self._group("sae")
        sae_cfg = self._json(sae.attrs.get("config", "null"), "/sae config")
        if not isinstance(sae_cfg, dict):
            self._fail("/sae has no config attribute")
        self.sae_config_dict: dict[str, Any] = sae_cfg
        D, F = self.n_neurons, self.n_features
        for name, shape in {"W_enc": (D, F), "b_enc": (F,), "W_dec": (F, D), "b_dec": (D,)}.items():
            ds = self._dataset(f"sae/{name}")
            if ds.shape != shape or ds.dtype.kind != "f":
                self._fail(f"/sae/{name} has shape {ds.shape}, expected {shape}")

        # harvest info, density histogram, sample, curves
        harvest = self._group("harvest")
        try:
            self.n_tokens = int(harvest.attrs["n_tokens"])
            self.top_center = int(harvest.attrs["top_center"])
        except (KeyError, TypeError, ValueError):
            self._fail("/harvest lacks n_tokens or top_center")
        if not 0 <= self.top_center < dims["W"]:
            self._fail(f"/harvest top_center {self.top_center} is outside the window of {dims['W']}")
        self.harvest_config_dict = self._json(harvest.attrs.get("config", "{}"), "/harvest config")
        edges = self._check_shape("density_hist/edges", ("E",), {}, "f")
        self._check_shape("density_hist/counts", (max(edges.shape[0] - 1, 0),), {}, "iu")
        sample_dims = {"M": self.n_neurons, "F+1": self.n_features + 1}
        for name, (spec, storage) in SAMPLE_COLUMNS.items():
            self._check_shape(f"sample/{name}", spec, sample_dims, _STORAGE_KIND[storage])
        self._curve_names: list[str] = []
        if "curves" in f:                               # optional: a bundle may have no curves
            self._group("curves").visititems(self._collect_curve)

        self.info: dict[str, Any] = {
            "format": FORMAT,
            "schema_version": self.schema_version,
            "created": _as_str(f.attrs.get("created", "")),
            "generator": _as_str(f.attrs.get("generator", "")),
            "versions": versions if isinstance(versions, dict) else {},
            "extra_info": extra if isinstance(extra, dict) else {},
            "file_size": self.path.stat().st_size,
            "n_features": self.n_features,
            "n_neurons": self.n_neurons,
            "n_tokens": self.n_tokens,
            "dims": dict(dims),
            "curves": list(self._curve_names),
        }

    def _collect_curve(self, name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            if len(obj.shape or ()) != 2 or obj.shape[1] != 2 or obj.dtype.kind != "f":
                self._fail(f"/curves/{name} has shape {obj.shape}, expected (n, 2)")
            self._curve_names.append(name)

    # -------------------------------------------------------------- lifecycle
    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # pragma: no cover - closing a damaged file
                pass
            self._file = None

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, features={self.n_features}, neurons={self.n_neurons})"

    @property
    def closed(self) -> bool:
        return self._file is None

    def n_units(self, kind: str) -> int:
        return self._n[self._check_kind(kind)]

    def _check_kind(self, kind: str) -> str:
        if kind not in GROUP_OF_KIND:
            raise UnitKindError(f"kind must be 'feature' or 'neuron', not {kind!r}")
        return kind

    # -------------------------------------------------------------- statistics
    def _tokens(self, ds: h5py.Dataset, sel) -> np.ndarray:
        pad = self._pad.get(id(ds))
        return _decode_tokens(ds[sel], int(ds.attrs["pad"]) if pad is None else pad)

    @_guarded("the unit table")
    def columns(self, kind: str) -> dict[str, Any]:
        """The table columns for ``kind``: 1-D arrays of length N and ``label`` (list[str]).

        density f64, max_act f32, mean_act f32, score f32 (NaN = no label score), dead (density == 0),
        ultralow (0 < density < 1e-6, the paper's "ultralow density" — dead units are not counted),
        align_l1 f32, top_token_ids int32 [N, 5] (-1 pad), label list[str]. Arrays are read-only
        (cached); copy before changing them.
        """
        kind = self._check_kind(kind)
        if kind not in self._columns_cache:
            g = self._ds[kind]
            density = np.asarray(g["density"][:], np.float64)
            cols: dict[str, Any] = {
                "density": density,
                "max_act": np.asarray(g["max_act"][:], np.float32),
                "mean_act": np.asarray(g["mean_act"][:], np.float32),
                "score": np.asarray(g["scores"][:], np.float32),
                "dead": density == 0,
                "ultralow": (density > 0) & (density < ULTRALOW_DENSITY),
                "align_l1": np.asarray(g["align_l1"][:], np.float32),
                "top_token_ids": self._tokens(g["top_token_ids"], slice(None)),
            }
            for value in cols.values():
                value.flags.writeable = False
            cols["label"] = [str(s) for s in g["labels"].asstr()[:]]
            self._columns_cache[kind] = cols
        cached = self._columns_cache[kind]
        return {**cached, "label": list(cached["label"])}

    @_guarded("a unit's dashboard")
    def dashboard(self, kind: str, i: int) -> Dashboard:
        """Everything the detail pane shows for unit ``i`` of ``kind`` (one row of every column)."""
        kind = self._check_kind(kind)
        n = self._n[kind]
        i = int(i)
        if not 0 <= i < n:
            raise UnitIndexError(f"{kind} {i} does not exist (this bundle has {n})")
        g = self._ds[kind]
        row = {name: g[name][i] for name in UNIT_COLUMNS
               if UNIT_COLUMNS[name][1] != "token" and name != "labels"}
        tokens = {name: self._tokens(g[name], i) for name, (_, st) in UNIT_COLUMNS.items() if st == "token"}
        label = g["labels"].asstr()[i]
        max_act = float(row["max_act"])
        B = row["act_hist"].shape[0]
        lo, hi = (float(v) for v in row["logit_range"])
        return Dashboard(
            kind=kind, index=i, label=str(label), score=float(row["scores"]), density=float(row["density"]),
            max_act=max_act, mean_act=float(row["mean_act"]),
            act_hist=np.asarray(row["act_hist"], np.int64),
            act_hist_edges=np.linspace(0.0, max_act, B + 1),
            top_tokens=tokens["top_tokens"], top_acts=np.asarray(row["top_acts"], np.float32),
            top_center=self.top_center,
            interval_tokens=tokens["interval_tokens"],
            interval_acts=np.asarray(row["interval_acts"], np.float32),
            interval_bounds=np.asarray(row["interval_bounds"], np.float32),
            logit_top_ids=tokens["logit_top_ids"],
            logit_top_values=np.asarray(row["logit_top_values"], np.float32),
            logit_bottom_ids=tokens["logit_bottom_ids"],
            logit_bottom_values=np.asarray(row["logit_bottom_values"], np.float32),
            logit_hist=np.asarray(row["logit_hist"], np.int64),
            logit_hist_edges=np.linspace(lo, hi, B + 1) if np.isfinite([lo, hi]).all() else np.full(B + 1, np.nan),
            align_ids=np.asarray(row["align_ids"], np.int32),
            align_values=np.asarray(row["align_values"], np.float32),
            align_l1=float(row["align_l1"]),
            corr_ids=np.asarray(row["corr_ids"], np.int32),
            corr_values=np.asarray(row["corr_values"], np.float32),
        )

    @_guarded("a column")
    def column(self, kind: str, name: str, sel: Any = slice(None)) -> np.ndarray:
        """Raw access to any per-unit column (token columns decoded to int32 with -1 padding)."""
        kind = self._check_kind(kind)
        if name not in UNIT_COLUMNS:
            raise UnitKindError(f"unknown column {name!r}")
        ds = self._ds[kind][name]
        storage = UNIT_COLUMNS[name][1]
        if storage == "token":
            return self._tokens(ds, sel)
        if storage == "str":
            return np.asarray(ds.asstr()[sel], dtype=object)
        return np.asarray(ds[sel])

    @_guarded("the training curves")
    def curves(self) -> dict[str, np.ndarray]:
        """{"model/train_loss": (n, 2) float64 array of (x, value), ...}."""
        g = self._file["curves"]
        return {name: np.asarray(g[name][()], np.float64) for name in self._curve_names}

    @_guarded("the density histogram")
    def density_histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(edges [B+1] of log10 density, counts [B] of live features)."""
        g = self._file["density_hist"]
        return np.asarray(g["edges"][()], np.float64), np.asarray(g["counts"][()], np.int64)

    @_guarded("the activation sample")
    def sample_neurons(self) -> tuple[np.ndarray, np.ndarray]:
        """(token_ids int32 [S], neuron_acts float32 [S, M]) of the paired sample."""
        g = self._file["sample"]
        return np.asarray(g["token_ids"][()], np.int32), np.asarray(g["neuron_acts"][()], np.float32)

    @_guarded("the activation sample")
    def sample_feature(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(sample indices int32 [n], values float32 [n]) where feature ``i`` is active in the sample."""
        i = int(i)
        if not 0 <= i < self.n_features:
            raise UnitIndexError(f"feature {i} does not exist (this bundle has {self.n_features})")
        g = self._file["sample"]
        a, b = (int(v) for v in g["feature_indptr"][i:i + 2])
        nnz = g["feature_token"].shape[0]
        if not 0 <= a <= b <= nnz:
            self._fail(f"/sample/feature_indptr is inconsistent at feature {i}")
        idx = np.asarray(g["feature_token"][a:b], np.int32)
        values = np.asarray(g["feature_value"][a:b], np.float32)
        S = g["token_ids"].shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= S):
            self._fail(f"/sample/feature_token holds indices outside the sample at feature {i}")
        return idx, values

    # -------------------------------------------------------------- tokenizer, model, SAE
    @_guarded("the tokenizer")
    def tokenizer_json(self) -> str:
        return _as_str(self._file["tokenizer"][()])

    def tokenizer(self):
        """The stored tokenizer as an ``engine.data.tokenizer.Tokenizer`` (cached)."""
        if self._tokenizer is None:
            from engine.data.tokenizer import Tokenizer

            text = self.tokenizer_json()
            try:
                self._tokenizer = Tokenizer.from_json(text)
            except Exception as exc:  # the tokenizers library raises its own exception types
                raise BundleError(f"{self.path}: the stored tokenizer does not load ({_describe(exc)}); "
                                  "the file may be damaged") from exc
        return self._tokenizer

    @_guarded("the model weights")
    def model_state(self) -> dict[str, np.ndarray]:
        g = self._file["model"]
        return {name: np.asarray(g[name][()], np.float32) for name in expected_model_shapes(self.model_config)}

    def load_model(self):
        """The stored one-layer transformer (``engine.model.OneLayerTransformer``, eval mode, CPU)."""
        import torch

        from engine.model import OneLayerTransformer

        state = {k: torch.from_numpy(v) for k, v in self.model_state().items()}
        try:
            return OneLayerTransformer.from_state_dict(self.model_config, state)
        except _READ_ERRORS as exc:
            raise BundleError(f"{self.path}: the stored model does not load ({_describe(exc)})") from exc

    @_guarded("the SAE weights")
    def sae_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return _read_sae_group(self._file["sae"], str(self.path), __import__("torch"))

    @_guarded("SAE decoder rows")
    def decoder_rows(self, sel: Any) -> np.ndarray:
        """W_dec[sel] (float32): feature directions in neuron space, without loading the whole SAE."""
        return np.asarray(self._file["sae/W_dec"][sel], np.float32)

    def load_sae(self):
        """The stored SAE (``engine.sae.SparseAutoencoder``, eval mode, CPU)."""
        from engine.sae import SparseAutoencoder

        state, cfg = self.sae_state()
        try:
            return SparseAutoencoder.from_state_dict(SAEConfig.from_dict(cfg), state)
        except _READ_ERRORS as exc:
            raise BundleError(f"{self.path}: the stored SAE does not load ({_describe(exc)})") from exc


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Open a bundle for reading (metadata only); raises ``BundleError`` with a readable message."""
    return Bundle(path)


# ====================================================================== SAELens export
def saelens_config(b: Bundle) -> dict[str, Any]:
    """cfg.json for SAELens: v6 keys (``metadata``) plus the flat keys older versions read.

    Our encoder subtracts b_dec first (``apply_b_dec_to_input``) and works on raw activations
    (``normalize_activations`` "none": any training-time scaling is folded into the weights). The hook is
    the MLP's post-ReLU output of the one layer (TransformerLens name ``blocks.0.mlp.hook_post``).
    """
    sae = b.sae_config_dict
    topk = sae.get("recipe") == "topk"
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
        "architecture": "topk" if topk else "standard",
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
    stores it (dead features come out near -10). Each file is written atomically.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    state, _ = b.sae_state()
    tensors = {k: np.ascontiguousarray(v.numpy(), dtype=np.float32) for k, v in state.items()}
    density = b.columns("feature")["density"]
    sparsity = {"sparsity": np.log10(density + 1e-10).astype(np.float32)}
    cfg_text = json.dumps(saelens_config(b), indent=2)
    written = []
    try:
        for name, write in (("sae_weights.safetensors", lambda p: save_file(tensors, str(p))),
                            ("sparsity.safetensors", lambda p: save_file(sparsity, str(p))),
                            ("cfg.json", lambda p: p.write_text(cfg_text, encoding="utf-8"))):
            target = folder / name
            tmp = _make_temp(folder, name)
            try:
                write(Path(tmp))
                _fsync_path(Path(tmp))
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
            written.append(target)
    except OSError as exc:
        raise BundleError(f"could not write the SAELens export to {folder}: {exc.strerror or exc}") from exc
    return written
