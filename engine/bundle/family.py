"""A family of dictionaries in one bundle (schema 3; docs/bundle-format.md, "Families").

Dictionary 0 is the bundle as it always was (/sae, /features, /harvest, ...), so every reader of a
one-dictionary bundle reads dictionary 0 of a family unchanged. Dictionary i > 0 lives in
/dictionaries/<i> with the same layout — its own config, metrics, curves, sae, features, harvest,
density_hist and sample — and HDF5 soft links to the shared /model, /tokenizer and /neurons, so
``read.Bundle(path, dictionary=i)`` reads it with the one reader. /family holds what spans the
members: the ``members`` attribute (JSON list of {"name", "d_sae", "group", "model", "seed"}), the matches between
members (/family/matches/<a>_<b>/{decoder,corr}_{ids,values}: the top matches in b of each feature of
a, both ways stored) and the feature map (/family/map/{xy,member,unit}, attribute ``method``).

A bundle without /family (schema <= 2, or a one-dictionary run) is a family of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator, Mapping, Sequence

import h5py
import numpy as np

from engine.bundle.schema import UNIT_COLUMNS, BundleError, as_str, create_dataset

__all__ = ["FamilyInfo", "FamilyTree", "MemberParts", "read_family", "dictionary_group", "family_writes", "read_matches",
           "read_feature_map", "read_neuron_matches", "ModelParts", "write_family_group", "link_shared", "MATCH_KINDS",
           "write_neuron_matches", "replace_matches"]

MATCH_KINDS = ("decoder", "corr", "logit")   # decoder cosine; activation correlation on shared tokens;
# the logit-weight correlation of the "corr" matches (schema 4: stored as logit_values beside corr_ids)


@dataclass(frozen=True)
class FamilyInfo:
    members: tuple[dict, ...]          # {"name", "d_sae", "group"}; member 0's group is "" (the root)
    has_map: bool = False
    map_method: str = ""

    def __len__(self) -> int:
        return len(self.members)

    def names(self) -> list[str]:
        return [str(m["name"]) for m in self.members]

    def counterpart(self, i: int) -> int | None:
        """The member of another model (seed) with the same size as member i, if any."""
        me = self.members[i]
        for j, m in enumerate(self.members):
            if m["model"] != me["model"] and m["d_sae"] == me["d_sae"]:
                return j
        return None


def read_family(f: h5py.File, path: Path) -> FamilyInfo:
    """The family of an open bundle; one member (the root) when it has no /family group."""
    if "family" not in f:
        n = int(f["sae/W_dec"].shape[0]) if "sae/W_dec" in f else 0
        return FamilyInfo(({"name": "A/0", "d_sae": n, "group": "", "model": 0, "seed": 0},))
    g = f["family"]
    try:
        members = json.loads(as_str(g.attrs["members"]))
        if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
            raise ValueError("not a list of members")
        members = tuple({"name": str(m.get("name", f"A/{i}")), "d_sae": int(m.get("d_sae", 0)),
                         "group": str(m.get("group", "")), "model": int(m.get("model", 0)),
                         "seed": int(m.get("seed", 0))} for i, m in enumerate(members))
        if members[0]["group"]:
            raise ValueError("member 0 must be the root")
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise BundleError(f"{path}: /family has no valid members attribute ({exc}); the file may be damaged") from exc
    has_map = "map" in g and all(name in g["map"] for name in ("xy", "member", "unit"))
    method = as_str(g["map"].attrs.get("method", "")) if has_map else ""
    return FamilyInfo(members, has_map, method)


def dictionary_group(f: h5py.File, family: FamilyInfo, i: int, path: Path) -> h5py.Group:
    if not 0 <= i < len(family):
        raise IndexError(f"dictionary {i} does not exist (this bundle has {len(family)})")
    name = family.members[i]["group"]
    if not name:
        return f
    if name not in f or not isinstance(f[name], h5py.Group):
        raise BundleError(f"{path}: dictionary {i}'s group /{name} is missing; the file may be damaged")
    return f[name]


def read_matches(f: h5py.File, a: int, b: int, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids int32 [Fa, k], values f32 [Fa, k]) of the best matches in member b of member a's features,
    best first (-1 / NaN padding), or None when the bundle holds none."""
    if kind not in MATCH_KINDS:
        raise ValueError(f"match kind must be one of {MATCH_KINDS}, not {kind!r}")
    key = f"family/matches/{a}_{b}"
    if key not in f or (kind != "logit" and f"{kind}_ids" not in f[key]):
        return None
    g = f[key]
    if kind == "logit":
        if "corr_ids" not in g or "logit_values" not in g:
            return None
        return _pair(g, "corr_ids", "logit_values", f.filename)
    return _pair(g, f"{kind}_ids", f"{kind}_values", f.filename)


def read_neuron_matches(f: h5py.File, a: int, b: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids [M, k], correlations [M, k]) of model b's neurons best correlated with each of model a's."""
    key = f"family/neuron_matches/{a}_{b}"
    if key not in f:
        return None
    return _pair(f[key], "corr_ids", "corr_values", f.filename)


def _pair(g: h5py.Group, ids_name: str, values_name: str, path) -> tuple[np.ndarray, np.ndarray]:
    """A stored (ids, values) pair of matches, checked: both 2-D of one shape, ids in range -1..."""
    ids, values = g[ids_name], g[values_name]
    if ids.ndim != 2 or ids.shape != values.shape or ids.dtype.kind not in "iu" or values.dtype.kind != "f":
        raise BundleError(f"{path}: {g.name} holds matches of shapes {ids.shape} / {values.shape} "
                          f"({ids.dtype} / {values.dtype}); the file may be damaged")
    ids_arr = np.asarray(ids[()], np.int64)
    if ids_arr.size and ids_arr.min() < -1:
        raise BundleError(f"{path}: {g.name} holds negative unit ids; the file may be damaged")
    return ids_arr.astype(np.int32), np.asarray(values[()], np.float32)


def read_feature_map(f: h5py.File) -> tuple[np.ndarray, np.ndarray, np.ndarray, str] | None:
    """(xy f32 [n, 2], member int16 [n], unit int32 [n], method) or None."""
    if "family/map/xy" not in f:
        return None
    g = f["family/map"]
    xy, member, unit = g["xy"], g["member"], g["unit"]
    n = xy.shape[0] if xy.ndim == 2 else -1
    if xy.ndim != 2 or xy.shape[1] != 2 or member.shape != (n,) or unit.shape != (n,) or \
            xy.dtype.kind != "f" or member.dtype.kind not in "iu" or unit.dtype.kind not in "iu":
        raise BundleError(f"{f.filename}: /family/map is inconsistent (xy {xy.shape}, member {member.shape}, "
                          f"unit {unit.shape}); the file may be damaged")
    xy_arr = np.asarray(xy[()], np.float32)
    member_arr, unit_arr = np.asarray(member[()], np.int64), np.asarray(unit[()], np.int64)
    if n and (member_arr.min() < 0 or unit_arr.min() < 0 or not np.isfinite(xy_arr).all()):
        raise BundleError(f"{f.filename}: /family/map holds negative indices or non-finite points; "
                          "the file may be damaged")
    return xy_arr, member_arr.astype(np.int16), unit_arr.astype(np.int32), as_str(g.attrs.get("method", ""))


class FamilyTree:
    """Feature splitting as a tree: the parent of feature g of dictionary d + 1 is its best decoder
    match in dictionary d (``/family/matches/<d+1>_<d>``), so each feature has at most one parent
    and the children of f are the features of the next size whose parent is f. Built from a
    ``Bundle`` (any of its dictionaries) in a few array reads."""

    def __init__(self, bundle):
        n = len(bundle.family)
        self.names = bundle.family.names()
        self._parent: dict[int, tuple[np.ndarray, np.ndarray]] = {}     # d+1 -> (parent ids, cosines)
        for d in range(n - 1):
            if bundle.family.members[d]["model"] != bundle.family.members[d + 1]["model"]:
                continue
            m = bundle.matches(d + 1, d, "decoder")
            if m is not None:
                self._parent[d + 1] = (m[0][:, 0], m[1][:, 0])

    def __len__(self) -> int:
        return len(self.names)

    def parent(self, d: int, f: int) -> tuple[int, float] | None:
        """(feature in dictionary d - 1, cosine) or None."""
        if d not in self._parent or not 0 <= f < len(self._parent[d][0]):
            return None
        ids, cos = self._parent[d]
        return (int(ids[f]), float(cos[f])) if ids[f] >= 0 else None

    def children(self, d: int, f: int) -> list[tuple[int, float]]:
        """[(feature in dictionary d + 1, cosine)], most similar first."""
        if d + 1 not in self._parent:
            return []
        ids, cos = self._parent[d + 1]
        kids = np.flatnonzero(ids == f)
        order = np.argsort(-cos[kids], kind="stable")
        return [(int(kids[i]), float(cos[kids[i]])) for i in order]


# ====================================================================== writing
@dataclass
class MemberParts:
    """What dictionary i > 0 adds: its run config (sae.d_sae its size), SAE state, harvest, metrics, curves."""
    config: Any                     # engine.config.RunConfig
    sae_state: Mapping[str, Any]
    harvest: Any                    # engine.stats.HarvestResult
    metrics: Mapping[str, Any]
    curves: Mapping[str, np.ndarray]
    model: int = 0                  # which model of the bundle it encodes: 0 the root's, k /models/<k>


@dataclass
class ModelParts:
    """A further model (another training seed): its weights, config and neuron statistics."""
    model_state: Mapping[str, Any]
    model_config: Any               # engine.config.ModelConfig
    neurons: Any                    # engine.stats.UnitStats of kind "neuron"
    seed: int = 0


def family_writes(names: Sequence[str], members: Sequence[MemberParts],
                  matches: Mapping[tuple[int, int], Mapping[str, tuple[np.ndarray, np.ndarray]]],
                  feature_map: tuple[np.ndarray, np.ndarray, np.ndarray, str] | None,
                  models: Sequence[ModelParts] = (),
                  neuron_matches: Mapping[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = None,
                  seeds: Sequence[int] = (0,),
                  ) -> Callable[[Any], Generator[object, None, None]]:
    """The extra writes of a family for ``write_bundle_job(..., extra=...)``: models 1.. (another
    seed's weights and neurons in /models/<k>), dictionaries 1..n, the matches and the map, written
    into the same temporary file before it is committed."""

    def write(w) -> Generator[object, None, None]:
        from engine.bundle.write import write_dictionary, _dims_of   # write.py does not import this module

        f = w.file
        infos = [{"name": names[0], "d_sae": int(len(_features_of(w))), "group": "", "model": 0,
                  "seed": int(seeds[0])}]
        for k, m in enumerate(models, start=1):
            g = f.require_group(f"models/{k}")
            sub = w.within(g)
            sub.write_model(m.model_state, m.model_config)
            sub.create_units("neuron", len(m.neurons), _dims_of(m.neurons))
            for name in UNIT_COLUMNS:
                sub.write_column("neuron", name, 0, m.neurons)
        for i, parts in enumerate(members, start=1):
            group_name = f"dictionaries/{i}"
            g = f.require_group(group_name)
            link_shared(g, parts.model)
            write_dictionary(w.within(g), parts)
            infos.append({"name": names[i], "d_sae": int(len(parts.harvest.features)), "group": group_name,
                          "model": int(parts.model), "seed": int(seeds[parts.model])})
        write_family_group(f, infos, matches, feature_map)
        write_neuron_matches(f, neuron_matches or {})
        w.check()
        yield from ()

    return write


def write_family_group(f: h5py.File, infos: Sequence[dict],
                       matches: Mapping[tuple[int, int], Mapping[str, tuple[np.ndarray, np.ndarray]]],
                       feature_map: tuple[np.ndarray, np.ndarray, np.ndarray, str] | None) -> None:
    """/family: the members attribute, the matches and the map (the members' groups are written already)."""
    fam = f.require_group("family")
    fam.attrs["members"] = json.dumps(list(infos))
    for (a, b), kinds in matches.items():
        mg = fam.require_group(f"matches/{a}_{b}")
        for kind, (ids, values) in kinds.items():
            if kind not in MATCH_KINDS:
                raise ValueError(f"unknown match kind {kind!r}")
            ids, values = np.asarray(ids, np.int32), np.asarray(values, np.float32)
            if kind != "logit":       # the logit values are of the corr matches: their ids are corr_ids
                create_dataset(mg, f"{kind}_ids", ids.shape, np.int32, compress=False)[...] = ids
            create_dataset(mg, f"{kind}_values", values.shape, np.float32, compress=False)[...] = values
    if feature_map is not None:
        xy, member, unit, method = feature_map
        mp = fam.require_group("map")
        mp.attrs["method"] = str(method)
        for name, arr, dtype in (("xy", xy, np.float32), ("member", member, np.int16), ("unit", unit, np.int32)):
            arr = np.asarray(arr, dtype)
            create_dataset(mp, name, arr.shape, dtype, compress=False)[...] = arr


def write_neuron_matches(f: h5py.File, neuron_matches: Mapping[tuple[int, int], tuple[np.ndarray, np.ndarray]]) -> None:
    """/family/neuron_matches/<a>_<b>/corr_{ids,values}: model b's neurons best correlated with model a's."""
    for (a, b), (ids, values) in neuron_matches.items():
        ng = f.require_group(f"family/neuron_matches/{a}_{b}")
        for name, arr, dtype in (("corr_ids", ids, np.int32), ("corr_values", values, np.float32)):
            arr = np.asarray(arr, dtype)
            create_dataset(ng, name, arr.shape, dtype, compress=False)[...] = arr


def replace_matches(f: h5py.File, matches, neuron_matches, metrics: Mapping[str, Any], feature_map=None) -> None:
    """In an open family file: drop every stored match and write these instead (``superpos family
    --rematch``), and fold ``metrics`` into the root's metrics."""
    from engine.bundle.schema import SCHEMA_VERSION, dumps

    infos = json.loads(as_str(f["family"].attrs["members"]))
    for name in ("matches", "neuron_matches") + (("map",) if feature_map is not None else ()):
        if name in f["family"]:
            del f["family"][name]
    write_family_group(f, infos, matches, feature_map)
    write_neuron_matches(f, neuron_matches)
    merged = {**json.loads(as_str(f["metrics"][()])), **dict(metrics)}
    del f["metrics"]
    f.create_dataset("metrics", data=dumps(merged), dtype=h5py.string_dtype("utf-8"))
    f.attrs["schema_version"] = np.int64(max(int(f.attrs.get("schema_version", 0)), SCHEMA_VERSION))


def link_shared(g: h5py.Group, model: int = 0) -> None:
    """Soft links from a member's group to the pieces it shares: the tokenizer, and its model's
    weights and neurons (the root's, or /models/<model>'s for another seed's model)."""
    base = "/" if model == 0 else f"/models/{int(model)}/"
    g["tokenizer"] = h5py.SoftLink("/tokenizer")
    g["model"] = h5py.SoftLink(base + "model")
    g["neurons"] = h5py.SoftLink(base + "neurons")


def _features_of(w) -> h5py.Dataset:
    return w.file["features/density"]
