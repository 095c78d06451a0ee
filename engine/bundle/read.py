"""Reading a bundle: ``open_bundle`` validates the metadata (engine.bundle.validate) and returns a
``Bundle`` that slices everything else on demand — one unit's dashboard is a handful of chunk reads.

Every failure to read — at open or later, because corruption can surface lazily — is a
``BundleError`` whose message a user can act on; a bad argument from the caller (an unknown kind,
an index out of range) stays a ValueError / IndexError.

Threads: h5py is not safe for concurrent use. A ``Bundle`` belongs to the thread that uses it; a
worker thread opens its own ``open_bundle(path)`` (opening is cheap) and sends back plain numpy
copies. Every read — opening, each guarded method, closing — holds ``H5_LOCK`` (one re-entrant lock
for all bundle and SAE-file readers), so reads from worker threads are serialised as h5py requires.

Strings leave the reader as valid Unicode: labels are decoded with replacement (invalid UTF-8 becomes
U+FFFD; ``engine.inputs.text``), never as raw bytes.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from engine.bundle.explanations import SCORE_NAMES, read_explanations
from engine.bundle.family import (
    dictionary_group, read_family, read_feature_map, read_matches, read_neuron_matches,
)
from engine.bundle.sae_file import read_sae_group, sae_from_state
from engine.bundle.schema import (
    GROUP_OF_KIND, H5_LOCK, READ_ERRORS, SAMPLE_CONTEXT_STARTS, UNIT_COLUMNS, BundleError, CallerError,
    UnitIndexError, UnitKindError, as_str, decode_tokens, describe, expected_model_shapes, open_h5,
)
from engine.inputs import text, texts
from engine.bundle.validate import damaged, read_metadata
from engine.stats import ULTRALOW_DENSITY, Dashboard, DeadCount, dead_count

__all__ = ["Bundle", "open_bundle", "FamilyMembers", "H5_LOCK"]


def _guarded(what: str) -> Callable:
    """Decorator: any low-level read error in a Bundle method becomes a BundleError naming the file."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def inner(self: "Bundle", *args, **kwargs):
            if self._file is None:
                raise BundleError(f"{self.path}: the bundle is closed")
            try:
                with H5_LOCK:
                    return method(self, *args, **kwargs)
            except BundleError:
                raise
            except READ_ERRORS as exc:
                if isinstance(exc, CallerError):
                    raise
                raise BundleError(
                    f"{self.path}: could not read {what} ({describe(exc)}); the file may be damaged. "
                    "Re-create it, e.g. with `superpos run`.") from exc

        return inner

    return wrap


def _other_units(prefix: str, row: dict, n_other: int) -> dict[str, np.ndarray]:
    """A unit's ids of the other kind (aligned or correlated neurons / features) and their values; an id
    a damaged file puts outside [0, n_other) reads as "none" (-1, NaN), so a pane shows the rest."""
    ids = np.asarray(row[f"{prefix}_ids"], np.int32)
    values = np.asarray(row[f"{prefix}_values"], np.float32)
    bad = (ids < 0) | (ids >= n_other)
    if bad.any():
        ids, values = np.where(bad, -1, ids).astype(np.int32), np.where(bad, np.nan, values).astype(np.float32)
    return {f"{prefix}_ids": ids, f"{prefix}_values": values}


class _CallersIndex(Exception):
    """A dictionary index the bundle does not have (re-raised as IndexError, not as damage)."""


class Bundle:
    """A bundle opened for reading. Metadata is read at open; everything else on demand.

    Attributes: path, schema_version, info (dict), config (RunConfig), model_config, metrics (dict),
    sae_config_dict, harvest_config_dict, n_features, n_neurons, n_tokens, top_center, dims (K, W, I,
    P, B, L, A, C). One thread at a time (see module docstring).
    """

    def __init__(self, path: str | os.PathLike, dictionary: int = 0):
        self.path = Path(path)
        self._h5: h5py.File | None = open_h5(self.path)
        self._file: h5py.Group | None = self._h5
        # dictionary i > 0 of a family (schema 3): the same layout under /dictionaries/<i>
        self.dictionary = int(dictionary)
        self.family = None
        self._columns_cache: dict[str, dict[str, Any]] = {}
        self._tokenizer = None
        try:
            with H5_LOCK:
                self.family = read_family(self._h5, self.path)
                if self.dictionary:
                    try:
                        self._file = dictionary_group(self._h5, self.family, self.dictionary, self.path)
                    except IndexError as exc:          # the caller's index, not the file's damage
                        raise _CallersIndex(str(exc)) from None
                meta = read_metadata(self._file, self.path)
        except _CallersIndex as exc:
            self.close()
            raise IndexError(str(exc)) from None
        except BundleError:
            self.close()
            raise
        except READ_ERRORS as exc:          # HDF5's own errors (a damaged object header, heap, ...)
            self.close()
            if isinstance(exc, CallerError):
                raise
            raise BundleError(
                f"{self.path} is damaged or incomplete ({describe(exc)}). "
                "Re-create it, e.g. with `superpos run`.") from exc
        except BaseException:
            self.close()
            raise
        self.schema_version, self.info = meta.schema_version, meta.info
        self.config, self.model_config, self.metrics = meta.config, meta.model_config, meta.metrics
        self.sae_config_dict, self.harvest_config_dict = meta.sae_config_dict, meta.harvest_config_dict
        self.n_features, self.n_neurons = meta.n_units["feature"], meta.n_units["neuron"]
        self.n_tokens, self.top_center, self.dims = meta.n_tokens, meta.top_center, meta.dims
        self._n = meta.n_units
        # open Dataset handles and token pads, kept so a dashboard read skips h5py's name lookups
        self._ds, self._pad = meta.datasets, meta.pads
        self._curve_names = meta.curve_names

    # -------------------------------------------------------------- lifecycle
    def close(self) -> None:
        if self._h5 is not None:
            try:
                with H5_LOCK:
                    self._h5.close()
            except Exception:  # pragma: no cover - closing a damaged file
                pass
            self._h5 = None
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
        which = f", dictionary={self.dictionary}" if self.dictionary else ""
        return f"Bundle({str(self.path)!r}{which}, features={self.n_features}, neurons={self.n_neurons})"

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
        return decode_tokens(ds[sel], int(ds.attrs["pad"]) if pad is None else pad)

    def dead_count(self, kind: str) -> DeadCount:
        """How many ``kind`` units are dead: never fired on any of the harvested tokens (the one
        meaning every view shows; see ``engine.stats.DeadCount``)."""
        return dead_count(kind, self.columns(kind)["density"], int(self.n_tokens))

    @_guarded("the unit table")
    def columns(self, kind: str) -> dict[str, Any]:
        """The table columns for ``kind``: 1-D arrays of length N and ``label`` (list[str]).

        density f64, max_act f32, mean_act f32, score f32 (NaN = no label score), dead (density == 0),
        ultralow (0 < density < 1e-6, the paper's "ultralow density" — dead units are not counted),
        align_l1 f32, top_token_ids int32 [N, 5] (-1 pad), label list[str]; from the language-model
        explanations (engine.bundle.explanations, as stored when the bundle was opened): explanation
        list[str] ("" if none), llm_detection / llm_fuzzing / llm_simulation f32 (NaN if none).
        Arrays are read-only (cached); copy before changing them.
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
            explained = self.explanations(kind)
            for name in SCORE_NAMES:
                v = np.full(len(density), np.nan, np.float32)
                for u, rec in explained.items():
                    if 0 <= u < len(v) and rec.get(name) is not None:
                        v[u] = rec[name]
                cols[f"llm_{name}"] = v
            for value in cols.values():
                value.flags.writeable = False
            cols["label"] = texts(g["labels"][:])
            cols["explanation"] = [""] * len(density)
            for u, rec in explained.items():
                if 0 <= u < len(density):
                    cols["explanation"][u] = str(rec.get("explanation") or "")
            self._columns_cache[kind] = cols
        cached = self._columns_cache[kind]
        return {**cached, "label": list(cached["label"]), "explanation": list(cached["explanation"])}

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
        label = text(g["labels"][i])
        max_act = float(row["max_act"])
        B = row["act_hist"].shape[0]
        lo, hi = (float(v) for v in row["logit_range"])
        return Dashboard(
            kind=kind, index=i, label=label, score=float(row["scores"]), density=float(row["density"]),
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
            **_other_units("align", row, self._n["neuron" if kind == "feature" else "feature"]),
            align_l1=float(row["align_l1"]),
            **_other_units("corr", row, self._n["neuron" if kind == "feature" else "feature"]),
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
            raw = ds[sel]
            if isinstance(raw, np.ndarray):
                return np.array(texts(raw), dtype=object).reshape(raw.shape)
            return np.asarray(text(raw), dtype=object)
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
    def sample_context_starts(self) -> np.ndarray | None:
        """int64 [W]: the harvest position of each sample context's first token (sample rows
        w*T ... w*T+T-1 with T = S / W), the contexts drawn at random across the harvest (schema 5);
        None for a bundle without them, whose sample is the first S harvested tokens (schema <= 4: a
        few documents, so correlations on it may differ from the stored r)."""
        g = self._file["sample"]
        if SAMPLE_CONTEXT_STARTS not in g:
            return None
        return np.asarray(g[SAMPLE_CONTEXT_STARTS][()], np.int64)

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
            raise damaged(self.path, f"/sample/feature_indptr is inconsistent at feature {i}")
        idx = np.asarray(g["feature_token"][a:b], np.int32)
        values = np.asarray(g["feature_value"][a:b], np.float32)
        S = g["token_ids"].shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= S):
            raise damaged(self.path, f"/sample/feature_token holds indices outside the sample at feature {i}")
        return idx, values

    @_guarded("the explanations")
    def explanations(self, kind: str) -> dict[int, dict]:
        """Language-model explanations of ``kind``: unit -> latest record (engine.bundle.explanations),
        the folded ones and any still in the journal beside the file. Read afresh on every call."""
        kind = self._check_kind(kind)
        if self.dictionary:       # the explanations' journal and group belong to dictionary 0
            return {}
        return read_explanations(self.path, kind, self._file)

    # -------------------------------------------------------------- tokenizer, model, SAE
    @_guarded("the tokenizer")
    def tokenizer_json(self) -> str:
        return as_str(self._file["tokenizer"][()])

    def tokenizer(self):
        """The stored tokenizer as an ``engine.data.tokenizer.Tokenizer`` (cached)."""
        if self._tokenizer is None:
            from engine.data.tokenizer import Tokenizer

            text = self.tokenizer_json()
            try:
                self._tokenizer = Tokenizer.from_json(text)
            except Exception as exc:  # the tokenizers library raises its own exception types
                raise BundleError(f"{self.path}: the stored tokenizer does not load ({describe(exc)}); "
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
        except READ_ERRORS as exc:
            raise BundleError(f"{self.path}: the stored model does not load ({describe(exc)})") from exc

    @_guarded("the SAE weights")
    def sae_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return read_sae_group(self._file["sae"], str(self.path))

    @_guarded("SAE decoder rows")
    def decoder_rows(self, sel: Any) -> np.ndarray:
        """W_dec[sel] (float32): feature directions in neuron space, without loading the whole SAE."""
        return np.asarray(self._file["sae/W_dec"][sel], np.float32)

    # -------------------------------------------------------------- the family (engine.bundle.family)
    @_guarded("the family's matches")
    def matches(self, a: int, b: int, kind: str = "decoder") -> tuple[np.ndarray, np.ndarray] | None:
        """(ids [F_a, k], values [F_a, k]) of the best matches in dictionary b of dictionary a's
        features, by ``kind`` "decoder" (cosine) or "corr" (activation correlation); None if not stored."""
        return read_matches(self._h5, int(a), int(b), kind)

    @_guarded("the family's neuron matches")
    def neuron_matches(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids [M, k], correlations [M, k]) of model b's neurons best correlated with model a's (seeds)."""
        return read_neuron_matches(self._h5, int(a), int(b))

    @_guarded("the feature map")
    def feature_map(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, str] | None:
        """(xy [n, 2], dictionary [n], feature [n], method) of every decoder row, or None."""
        return read_feature_map(self._h5)

    def load_sae(self):
        """The stored SAE (``engine.sae.SparseAutoencoder``, eval mode, CPU)."""
        state, cfg = self.sae_state()
        return sae_from_state(state, cfg, str(self.path))


def open_bundle(path: str | os.PathLike, dictionary: int = 0) -> Bundle:
    """Open a bundle for reading (metadata only); raises ``BundleError`` with a readable message.
    ``dictionary``: which dictionary of a family (``Bundle.family``; 0, the default, is /sae + /features)."""
    return Bundle(path, dictionary)


class FamilyMembers:
    """The dictionaries of ``bundle``'s family, each opened at most once on first use: ``get(d)`` is
    ``bundle`` itself for its own dictionary, else ``open_bundle(bundle.path, d)`` (kept). For views
    that read a few labels of any member; ``close()`` closes the ones it opened (not ``bundle``).
    The thread rule of ``Bundle`` holds for all of them."""

    def __init__(self, bundle: Bundle | None = None):
        self.bundle = bundle
        self._opened: dict[int, Bundle] = {}

    def get(self, d: int) -> Bundle:
        d = int(d)
        if d == getattr(self.bundle, "dictionary", 0):
            return self.bundle
        if d not in self._opened:
            self._opened[d] = open_bundle(self.bundle.path, d)
        return self._opened[d]

    def close(self) -> None:
        for member in self._opened.values():
            member.close()
        self._opened = {}
