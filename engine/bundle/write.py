"""Writing a bundle: ``BundleWriter`` (the pieces), ``write_bundle_job`` (a generator job with progress
and a cancel point between datasets) and ``write_bundle`` (that job run to completion).

The file is built under a temporary name beside the target (``engine.fileio.AtomicWrite``): a normal
finish fsyncs it and renames it into place; an error, a cancel or a closed job removes it and leaves
whatever was at the target untouched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Generator, Mapping

import h5py
import numpy as np

from engine.bundle.h5target import create_h5, finish_h5
from engine.bundle.sae_file import create_sae_group, write_sae_group
from engine.bundle.schema import (
    COLUMN_CHUNK, FORMAT, GROUP_OF_KIND, SAMPLE_CONTEXT_STARTS, STORAGE_DTYPE, UNIT_COLUMNS,
    create_dataset, dumps, encode_tokens, expected_model_shapes, root_attrs, to_numpy,
    token_storage_dtype,
)
from engine.config import HarvestConfig, ModelConfig, RunConfig, SAEConfig
from engine.events import Cancelled, CancelToken, Progress, RateMeter, StageFinished, StageStarted
from engine.jobs import run_to_completion
from engine.fileio import AtomicWrite, write_error
from engine.stats import HarvestResult, UnitStats

__all__ = ["BundleWriter", "write_bundle", "write_bundle_job", "write_dictionary"]


class BundleWriter:
    """Builds a bundle in a temporary file beside ``path``; ``commit()`` renames it into place.

    Use as a context manager: a normal exit commits, an exception discards the temporary file and
    leaves whatever was at ``path`` untouched. ``write_bundle_job`` drives it for a whole run; the
    synthetic generator uses the pieces to write 131k-feature bundles chunk by chunk in bounded memory.
    """

    def __init__(self, path: str | os.PathLike, size: int | None = None):
        self.path = Path(path)
        self._target = AtomicWrite(self.path, suffix=".partial", what="the bundle", size=size)
        try:
            self.file, self._guard = create_h5(self._target.tmp)
        except BaseException:
            self._target.abort()
            raise
        self._token_dtype: tuple[np.dtype, int] | None = None
        self._done = False

    def within(self, group: h5py.Group) -> "BundleWriter":
        """A writer of the same file whose pieces go under ``group`` (a family's dictionary i > 0,
        ``engine.bundle.family``); committing stays with this writer."""
        sub = object.__new__(BundleWriter)
        sub.path, sub._target, sub.file, sub._guard = self.path, None, group, self._guard
        sub._token_dtype, sub._done = self._token_dtype, True
        return sub

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
            finish_h5(self.file, self._guard)
        except OSError:
            pass             # the write already failed; the temporary file goes either way
        finally:
            self._target.abort()

    def commit(self) -> Path:
        if self._done:
            raise RuntimeError("bundle writer already finished")
        self._done = True
        try:
            finish_h5(self.file, self._guard)
        except BaseException as exc:
            self._target.abort()
            if isinstance(exc, OSError):
                raise write_error(exc, self.path, "the bundle") from exc
            raise
        return self._target.commit()

    def check(self) -> None:
        """Raise (as ``WriteError``) a write failure met so far, e.g. a full disk."""
        try:
            self._guard.check()
        except OSError as exc:
            raise write_error(exc, self.path, "the bundle") from exc

    # -------------------------------------------------------------- header, model, SAE
    def write_header(self, *, config: RunConfig, metrics: Mapping[str, Any], curves: Mapping[str, np.ndarray],
                     extra_info: Mapping[str, Any] | None = None, tokenizer_json: str | None = None) -> None:
        """The format attributes, config, metrics and curves (and the tokenizer, which a family's
        dictionaries i > 0 link to instead of storing)."""
        f = self.file
        f.attrs.update(root_attrs(FORMAT))
        f.attrs["extra_info"] = dumps(dict(extra_info or {}))
        texts = [("config", dumps(config.to_dict())), ("metrics", dumps(dict(metrics)))]
        if tokenizer_json is not None:
            texts.insert(1, ("tokenizer", str(tokenizer_json)))
        for name, text in texts:
            f.create_dataset(name, data=text, dtype=h5py.string_dtype("utf-8"))
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
            create_dataset(group, "/".join(parts), arr.shape, np.float64, compress=False,
                           chunks=(max(1, min(arr.shape[0], 8192)), 2) if arr.shape[0] else None)[...] = arr

    def write_model(self, model_state: Mapping[str, Any], model_config: ModelConfig) -> None:
        group = self.file.require_group("model")
        group.attrs["config"] = dumps(model_config.to_dict())
        expected = expected_model_shapes(model_config)
        for name, value in model_state.items():
            arr = to_numpy(value)
            if name in expected and arr.shape != expected[name]:
                raise ValueError(f"model tensor {name} has shape {arr.shape}, expected {expected[name]}")
            create_dataset(group, name, arr.shape, np.float32, compress=False, unit_chunk=1 << 30,
                           chunk_bytes=1 << 20)[...] = arr
        missing = sorted(set(expected) - set(model_state))
        if missing:
            raise ValueError(f"model state lacks {', '.join(missing)}")

    def create_sae(self, sae_config: SAEConfig, d_in: int, d_sae: int) -> h5py.Group:
        """Create the empty /sae datasets (fill them with ``group[name][a:b] = ...``)."""
        return create_sae_group(self.file, sae_config.to_dict(), d_in, d_sae)

    def write_sae(self, sae_state: Mapping[str, Any], sae_config: SAEConfig) -> None:
        write_sae_group(self.file, sae_state, sae_config.to_dict())

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
                create_dataset(group, name, shape, "str")
            elif storage == "token":
                if name == "top_token_ids":   # read whole for the table: few, large chunks
                    ds = create_dataset(group, name, shape, token_dtype, compress=False,
                                        unit_chunk=COLUMN_CHUNK, chunk_bytes=1 << 18)
                else:
                    ds = create_dataset(group, name, shape, token_dtype)
                ds.attrs["pad"] = np.int64(pad)
            else:
                # 1-D columns are read whole for the table; gzip buys little there and costs time.
                ds = create_dataset(group, name, shape, STORAGE_DTYPE[storage], compress=len(shape) > 1)
                if storage == "index":
                    ds.attrs["pad"] = np.int64(-1)
        return group

    def write_units(self, kind: str, start: int, stats: UnitStats) -> None:
        """Write rows [start, start + len(stats)) of ``kind`` from a (possibly partial) UnitStats."""
        for name in UNIT_COLUMNS:
            self.write_column(kind, name, start, stats)

    def write_column(self, kind: str, name: str, start: int, stats: UnitStats) -> None:
        """Write rows [start, start + len(stats)) of one column of ``kind``."""
        ds = self.file[GROUP_OF_KIND[kind]][name]
        n = len(stats)
        stop = start + n
        if name == "labels":
            labels = list(stats.labels) if stats.labels else [""] * n
            if len(labels) != n:
                raise ValueError(f"{kind} labels: {len(labels)} entries for {n} units")
            ds[start:stop] = np.array([str(s) for s in labels], dtype=object)
            return
        if name == "scores":
            value = stats.scores if stats.scores is not None else np.full(n, np.nan, np.float32)
        else:
            value = getattr(stats, name)
        arr = np.asarray(value)
        if arr.shape != (n, *ds.shape[1:]):
            raise ValueError(f"{kind} column {name}: shape {arr.shape}, expected {(n, *ds.shape[1:])}")
        if UNIT_COLUMNS[name][1] == "token":
            arr = encode_tokens(arr, ds.dtype, int(ds.attrs["pad"]))
        ds[start:stop] = arr.astype(ds.dtype, copy=False)

    def write_harvest_info(self, *, n_tokens: int, harvest_config: HarvestConfig, top_center: int,
                           density_hist_edges: np.ndarray, density_hist_counts: np.ndarray) -> None:
        group = self.file.require_group("harvest")
        group.attrs["n_tokens"] = np.int64(n_tokens)
        group.attrs["top_center"] = np.int64(top_center)
        group.attrs["config"] = dumps(harvest_config.to_dict())
        dh = self.file.require_group("density_hist")
        edges = np.asarray(density_hist_edges, np.float64)
        counts = np.asarray(density_hist_counts, np.int64)
        if edges.ndim != 1 or counts.shape != (max(edges.shape[0] - 1, 0),):
            raise ValueError(f"density histogram: {edges.shape} edges for {counts.shape} counts")
        create_dataset(dh, "edges", edges.shape, np.float64, compress=False)[...] = edges
        create_dataset(dh, "counts", counts.shape, np.int64, compress=False)[...] = counts

    def create_sample(self, n_sample: int, n_neurons: int, n_features: int, nnz: int) -> h5py.Group:
        group = self.file.require_group("sample")
        create_dataset(group, "token_ids", (n_sample,), np.int32, compress=False)
        create_dataset(group, "neuron_acts", (n_sample, n_neurons), np.float16, unit_chunk=1 << 30,
                       chunk_bytes=1 << 20)
        create_dataset(group, "feature_indptr", (n_features + 1,), np.int64, compress=False)
        create_dataset(group, "feature_token", (nnz,), np.int32, compress=False)
        create_dataset(group, "feature_value", (nnz,), np.float16, compress=False)
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
        starts = np.asarray(harvest.sample_context_starts, np.int64)
        if starts.size:
            if starts.ndim != 1 or tok.shape[0] % starts.size:
                raise ValueError(f"{starts.size} sample contexts do not divide the {tok.shape[0]} sample tokens")
            create_dataset(group, SAMPLE_CONTEXT_STARTS, starts.shape, np.int64, compress=False)[...] = starts


# ====================================================================== the whole bundle as a job
def write_bundle_job(
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
    cancel: CancelToken | None = None,
    extra: Callable[[BundleWriter], Generator[object, None, None]] | None = None,
) -> Generator[object, None, Path]:
    """Write a complete bundle atomically, yielding ``Progress`` (unit "B": bytes of array data) after
    the model, the SAE, each per-unit column and the sample. Returns ``path``.

    ``cancel`` is checked before each of those datasets: a cancel raises ``Cancelled`` and, like any
    failure, leaves ``path`` as it was with no temporary file behind. A disk or permission problem
    becomes a one-line ``WriteError`` (``engine.fileio``); inconsistent inputs (a programming error) raise ``ValueError``.
    ``extra(writer)``: a generator of more writes into the same file before it is committed (a
    family's other dictionaries, ``engine.bundle.family.family_writes``).
    """
    path = Path(path)
    model_cfg = config.model
    if "tok_emb.weight" in model_state:  # the stored weights are the truth about the model's sizes
        V, C = tuple(model_state["tok_emb.weight"].shape)
        model_cfg = model_cfg.replace(vocab_size=int(V), d_model=int(C))
    F, M = len(harvest.features), len(harvest.neurons)
    if model_cfg.d_mlp != M:
        raise ValueError(f"the model has {model_cfg.d_mlp} MLP neurons but the harvest has {M}")
    if "W_enc" in sae_state and tuple(sae_state["W_enc"].shape) != (M, F):
        raise ValueError(f"SAE W_enc has shape {tuple(sae_state['W_enc'].shape)}, expected {(M, F)} "
                         "(neurons, features) to match the harvest")
    units = (("feature", harvest.features), ("neuron", harvest.neurons))
    for kind, stats in units:
        if stats.kind != kind:
            raise ValueError(f"harvest.{GROUP_OF_KIND[kind]} has kind {stats.kind!r}")
    total = (_tensor_bytes(model_state) + _tensor_bytes(sae_state) + _sample_bytes(harvest)
             + sum(_column_bytes(stats, name) for _, stats in units for name in UNIT_COLUMNS))
    meter = RateMeter(total)
    done = 0
    t0 = time.perf_counter()

    def step(n_bytes: int) -> Progress:
        nonlocal done
        done += n_bytes
        rate, eta = meter.update(done)
        return Progress("bundle", done=done, total=total, rate=rate, eta_s=eta, unit="B")

    def check_cancel() -> None:
        w.check()
        if cancel is not None and cancel.cancelled:
            raise Cancelled(f"writing the bundle cancelled; {path} is unchanged")

    yield StageStarted("bundle", total=total, unit="B")
    try:
        # the weights are stored uncompressed: the file needs at least their bytes (checked up front)
        with BundleWriter(path, size=_tensor_bytes(model_state) + _tensor_bytes(sae_state)) as w:
            w.set_vocab_size(model_cfg.vocab_size)
            yield from _dictionary_writes(w, config=config, metrics=metrics, curves=curves, sae_state=sae_state,
                                          harvest=harvest, extra_info=extra_info, tokenizer_json=tokenizer_json,
                                          step=step, check=check_cancel)
            check_cancel()
            w.write_model(model_state, model_cfg)
            yield step(_tensor_bytes(model_state))
            w.create_units("neuron", M, _dims_of(harvest.neurons))
            for name in UNIT_COLUMNS:
                check_cancel()
                w.write_column("neuron", name, 0, harvest.neurons)
                yield step(_column_bytes(harvest.neurons, name))
            if extra is not None:
                check_cancel()
                yield from extra(w)
    except OSError as exc:
        raise write_error(exc, path, "the bundle") from exc
    yield StageFinished("bundle", seconds=time.perf_counter() - t0,
                        summary={"file_bytes": float(path.stat().st_size)})
    return path


def _dictionary_writes(w: BundleWriter, *, config: RunConfig, metrics: Mapping[str, Any],
                       curves: Mapping[str, np.ndarray], sae_state: Mapping[str, Any], harvest: HarvestResult,
                       step: Callable[[int], Any], check: Callable[[], None],
                       extra_info: Mapping[str, Any] | None = None, tokenizer_json: str | None = None):
    """One dictionary's own pieces through ``w``, the one sequence every dictionary is written by
    (dictionary 0 at the root by ``write_bundle_job``, with the tokenizer; dictionary i > 0 of a
    family under /dictionaries/<i> by ``write_dictionary``): the header, the SAE, the feature
    columns, the harvest's attributes and density histogram, the sample. ``check()`` runs before
    each dataset; after each, this yields ``step(bytes written)``."""
    F, M = len(harvest.features), len(harvest.neurons)
    w.write_header(config=config, metrics=metrics, curves=curves, extra_info=extra_info, tokenizer_json=tokenizer_json)
    check()
    w.write_sae(sae_state, config.sae.replace(d_in=M, d_sae=F))
    yield step(_tensor_bytes(sae_state))
    w.create_units("feature", F, _dims_of(harvest.features))
    for name in UNIT_COLUMNS:
        check()
        w.write_column("feature", name, 0, harvest.features)
        yield step(_column_bytes(harvest.features, name))
    check()
    w.write_harvest_info(n_tokens=harvest.n_tokens, harvest_config=config.harvest,
                         top_center=harvest.features.top_center, density_hist_edges=harvest.density_hist_edges,
                         density_hist_counts=harvest.density_hist_counts)
    w.write_sample(harvest)
    yield step(_sample_bytes(harvest))


def write_dictionary(w: BundleWriter, parts) -> None:
    """Write one dictionary's own pieces (``engine.bundle.family.MemberParts``) through ``w`` (a
    ``BundleWriter.within`` a family group), as dictionary 0's are written (``_dictionary_writes``).
    Shared pieces (model, tokenizer, neurons) are links."""
    run_to_completion(_dictionary_writes(w, config=parts.config, metrics=parts.metrics, curves=parts.curves,
                                         sae_state=parts.sae_state, harvest=parts.harvest,
                                         step=lambda n_bytes: None, check=w.check))
    w.check()


def write_bundle(path: str | os.PathLike, **parts: Any) -> Path:
    """``write_bundle_job`` (same keyword arguments, less ``cancel``) run to completion: the same
    bundle, the same errors, no events."""
    return run_to_completion(write_bundle_job(path, **parts))


def _tensor_bytes(state: Mapping[str, Any]) -> int:
    """Bytes of a state dict stored as float32 (from the shapes alone: nothing is converted)."""
    return sum(4 * int(np.prod(tuple(v.shape))) for v in state.values())


def _sample_bytes(harvest: HarvestResult) -> int:
    return sum(np.asarray(getattr(harvest, f"sample_{name}")).nbytes for name in
               ("token_ids", "neuron_acts", "feature_indptr", "feature_token", "feature_value"))


def _column_bytes(stats: UnitStats, name: str) -> int:
    if name == "labels":
        return sum(len(str(s).encode("utf-8")) for s in (stats.labels or ()))
    if name == "scores" and stats.scores is None:
        return 4 * len(stats)
    return np.asarray(getattr(stats, name)).nbytes


def _dims_of(stats: UnitStats) -> dict[str, int]:
    _, K, W = stats.top_tokens.shape
    _, I, P, _ = stats.interval_tokens.shape
    return {"K": K, "W": W, "I": I, "P": P, "B": stats.act_hist.shape[1], "L": stats.logit_top_ids.shape[1],
            "A": stats.align_ids.shape[1], "C": stats.corr_ids.shape[1]}
