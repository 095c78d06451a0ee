"""What a bundle is on disk: format names, SCHEMA_VERSION, the column tables, chunking, token storage,
the errors, and the guarded open every reader goes through.

Per-unit columns (``UNIT_COLUMNS``) map a name to a symbolic shape and a storage kind. Symbols are
bound by the first dataset that uses them and must agree everywhere (across both kinds, except N):
N units, K top examples, I intervals, P examples per interval, W window tokens, B histogram bins,
L logits, A alignment entries, C correlated entries; the sample (``SAMPLE_COLUMNS``) has S tokens,
M neurons, F features and nnz stored activations.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import threading
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from engine import __version__
from engine.config import ModelConfig
from engine.inputs import regular_file, text
from engine.errors import UserError
from engine.fileio import is_partial

__all__ = [
    "FORMAT", "SAE_FORMAT", "SCHEMA_VERSION", "TOKEN_PAD_U16", "TOKEN_PAD_I32", "UNIT_COLUMNS",
    "SAMPLE_COLUMNS", "SAMPLE_CONTEXT_STARTS", "SAE_KEYS", "GROUP_OF_KIND", "BundleError", "UnitKindError", "UnitIndexError",
    "expected_model_shapes", "token_storage_dtype", "encode_tokens", "decode_tokens", "create_dataset",
    "open_h5", "H5_LOCK",
]

FORMAT = "superpos-bundle"
SAE_FORMAT = "superpos-sae"
SCHEMA_VERSION = 5             # 5: /sample is whole contexts at random across the harvest (was its first tokens), /sample/context_starts; 4: the logit-weight correlation of the family's seed matches; 2: the /explanations group (engine.bundle.explanations); 3: imported models and SAEs (act_fn, gated, ...) and families (engine.bundle.family)
TOKEN_PAD_U16 = 65535          # stored token id meaning "outside the text" when tokens are uint16
TOKEN_PAD_I32 = -1             # the same when tokens are int32 (vocab > 65535)
UNIT_CHUNK = 64                # at most this many units per chunk of a per-unit (N, ...) dataset
CHUNK_BYTES = 16384            # ... and about this many bytes: one dashboard read decompresses little
COLUMN_CHUNK = 16384           # elements per chunk of a 1-D column
GROUP_OF_KIND = {"feature": "features", "neuron": "neurons"}

# Per-unit columns: name -> (symbolic shape, storage). Storage:
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
STORAGE_DTYPE = {"f64": np.float64, "f32": np.float32, "f16": np.float16, "count": np.int64,
                 "index": np.int32}
STORAGE_KIND = {"f64": "f", "f32": "f", "f16": "f", "count": "iu", "token": "iu", "index": "iu",
                "str": "OSU"}
SAMPLE_COLUMNS: dict[str, tuple[tuple[Any, ...], str]] = {
    "token_ids": (("S",), "index"),
    "neuron_acts": (("S", "M"), "f16"),
    "feature_indptr": (("F+1",), "count"),
    "feature_token": (("nnz",), "index"),
    "feature_value": (("nnz",), "f16"),
}
# Optional in /sample: the harvest position of each sample context's first token, int64 [W], S = W * T.
# Schema 5 writes it; without it (schema <= 4) /sample is the first S harvested tokens. Its presence,
# not schema_version, tells the two apart: adding explanations or a family raises an old file's version.
SAMPLE_CONTEXT_STARTS = "context_starts"
SAE_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")

# Errors that h5py, numpy and json raise on damaged files; all become BundleError when reading.
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError,
               UnicodeDecodeError, OverflowError, MemoryError, AssertionError)


class BundleError(UserError):
    """A bundle cannot be written or read; the message says which file, what is wrong, what to do."""


class CallerError:
    """Marker: a bad argument from the calling code (not a damaged file); passes through unchanged."""


class UnitKindError(CallerError, ValueError):
    pass


class UnitIndexError(CallerError, IndexError):
    pass


# ====================================================================== shapes of the model state
def expected_model_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The OneLayerTransformer state dict's names and shapes, computed without importing torch.

    Used to validate ``/model`` at open (shapes are metadata, so this is free); a test checks that it
    agrees with ``OneLayerTransformer(cfg).state_dict()``.
    """
    V, T, C, M = cfg.vocab_size, cfg.n_ctx, cfg.d_model, cfg.d_mlp
    HD = cfg.n_heads * (cfg.d_head or C // cfg.n_heads)
    optional = {}
    if cfg.act_fn == "solu_ln":
        optional.update({"mlp.ln.weight": (M,), "mlp.ln.bias": (M,)})
    if cfg.unembed_bias:
        optional["unembed.bias"] = (V,)
    return {
        "tok_emb.weight": (V, C), "pos_emb.weight": (T, C),
        "ln_attn.weight": (C,), "ln_attn.bias": (C,),
        "attn.qkv.weight": (3 * HD, C), "attn.qkv.bias": (3 * HD,),
        "attn.proj.weight": (C, HD), "attn.proj.bias": (C,),
        "ln_mlp.weight": (C,), "ln_mlp.bias": (C,),
        "mlp.W_in.weight": (M, C), "mlp.W_in.bias": (M,),
        "mlp.W_out.weight": (C, M), "mlp.W_out.bias": (C,),
        "ln_final.weight": (C,), "ln_final.bias": (C,),
        "unembed.weight": (V, C),
        **optional,
    }


# ====================================================================== text and JSON
def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if callable(getattr(value, "item", None)):      # torch scalars, without importing torch
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a bundle's JSON")


def dumps(value: Any) -> str:
    """JSON for an attribute or string dataset (numpy and torch scalars become plain numbers)."""
    return json.dumps(value, default=_json_default, sort_keys=True)


def as_str(value: Any) -> str:
    """A stored string (bytes, str or a 0-d array of either) as valid str (invalid UTF-8 replaced)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if not isinstance(value, (str, bytes, np.bytes_)):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return text(value)


def describe(exc: BaseException) -> str:
    """An exception as a short phrase for a BundleError message."""
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


# ====================================================================== what every written file carries
def root_attrs(fmt: str) -> dict[str, Any]:
    """The root attributes every superpos file starts with: format, schema, when, by what, versions."""
    return {"format": fmt, "schema_version": np.int64(SCHEMA_VERSION),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "generator": f"superpos {__version__}", "versions": dumps(_versions())}


def _versions() -> dict[str, str]:
    from importlib import metadata     # only when writing: keeps ``import engine.bundle`` light for readers

    out = {"python": platform.python_version(), "numpy": np.__version__, "h5py": h5py.__version__,
           "hdf5": h5py.version.hdf5_version}
    for name in ("torch", "tokenizers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - optional at read time
            out[name] = "not installed"
    return out


def to_numpy(value: Any, dtype=np.float32) -> np.ndarray:
    """A torch tensor or array-like as a C-contiguous numpy array of ``dtype`` (torch not imported)."""
    if hasattr(value, "detach"):                     # a torch tensor (bundles also take numpy arrays)
        value = value.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(value), dtype=dtype)


# ====================================================================== token storage
def token_storage_dtype(vocab_size: int) -> tuple[np.dtype, int]:
    """(dtype, pad) used on disk for token ids of a vocabulary of ``vocab_size``."""
    if vocab_size <= TOKEN_PAD_U16:
        return np.dtype(np.uint16), TOKEN_PAD_U16
    return np.dtype(np.int32), TOKEN_PAD_I32


def encode_tokens(ids: np.ndarray, dtype: np.dtype, pad: int) -> np.ndarray:
    """Token ids (-1 = outside the text) as stored: ``dtype`` with ``pad`` for -1."""
    ids = np.asarray(ids)
    if ids.size and ids.max() >= np.iinfo(dtype).max:
        raise ValueError(f"token id {int(ids.max())} does not fit the bundle's {np.dtype(dtype).name} tokens")
    out = ids.astype(dtype)
    out[ids < 0] = pad
    return out


def decode_tokens(stored: np.ndarray, pad: int) -> np.ndarray:
    """Stored token ids back to int32 with -1 for ``pad``."""
    out = stored.astype(np.int32)
    out[stored == pad] = -1
    return out


# ====================================================================== chunked datasets
H5_LIBVER = ("earliest", "v110")     # files readable by HDF5 1.10 and later


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


def create_dataset(group: h5py.Group, name: str, shape: tuple[int, ...], dtype, *, compress: bool = True,
                   unit_chunk: int = UNIT_CHUNK, chunks: tuple[int, ...] | None = None,
                   chunk_bytes: int = CHUNK_BYTES) -> h5py.Dataset:
    """A dataset chunked along axis 0 with a Fletcher-32 checksum per chunk (and gzip if ``compress``).

    ``dtype`` "str" makes a variable-length UTF-8 column. The checksum turns silent corruption of
    stored numbers into a read error (-> BundleError).
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


def float_problem(ds: h5py.Dataset, shape: tuple[int, ...]) -> str | None:
    """What is wrong with a tensor dataset that must be floats of ``shape`` (None: nothing), said
    as what differs: the shape, or the type when the shape is right (strings, integers)."""
    if ds.shape != shape:
        return f"has shape {ds.shape}, expected {shape}"
    if ds.dtype.kind != "f":
        kind = "strings" if ds.dtype.kind in "OSU" or h5py.check_string_dtype(ds.dtype) else f"dtype {ds.dtype}"
        return f"holds {kind}, expected floating-point numbers"
    return None



# ====================================================================== the guarded open
# h5py is not safe for concurrent use from several threads: every read of a bundle or SAE file —
# the GUI thread's lazy reads and the workers' own handles alike — holds this one lock (re-entrant).
H5_LOCK = threading.RLock()


def open_h5(path: Path, accept: Iterable[str] = (FORMAT,)) -> h5py.File:
    """Open ``path`` read-only after checking it is a regular file (not a link loop, FIFO, device or
    folder), not one of our temporary files, HDF5, the right format and schema."""
    path = regular_file(path, BundleError, "bundle file")
    if is_partial(path):
        raise BundleError(f"{path} is the temporary file of an unfinished or interrupted write, not a bundle; "
                          "open the file without the leading dot and random part (the next write into this "
                          "folder removes it once its writer is gone)")
    with H5_LOCK:
        return _open_h5(path, tuple(accept))


def _open_h5(path: Path, accept: tuple[str, ...]) -> h5py.File:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if head != b"\x89HDF\r\n\x1a\n":
        raise BundleError(f"{path} is not a superpos bundle (not an HDF5 file)")
    try:
        f = h5py.File(path, "r", locking=False)
    except READ_ERRORS as exc:
        raise BundleError(
            f"{path} is damaged or incomplete (HDF5 could not open it: {describe(exc)}). "
            "Re-create it, e.g. with `superpos run`.") from exc
    try:
        fmt = f.attrs.get("format")
        fmt = as_str(fmt) if fmt is not None else None
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
    except READ_ERRORS as exc:
        f.close()
        raise BundleError(f"{path} is damaged (cannot read its attributes: {describe(exc)})") from exc
    return f
