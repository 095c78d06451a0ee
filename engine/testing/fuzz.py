"""Damaged and hostile variants of a valid bundle, for the fuzz suite (tests/test_fuzz_open.py) and
its longer mode (benchmarks/fuzz_open.py).

``make_variants(base, folder, n, seed)`` writes ``n`` files (or non-files) into ``folder`` and returns
a ``Variant`` for each: its path, the kind of damage and a one-line description. The same seed gives
the same variants. Kinds, in rotation so that every run covers all of them:

- ``truncate``     the file cut at a random byte
- ``bitflip``      1-8 random bits flipped, or a random byte range overwritten
- ``shape``        a dataset replaced by one of another shape (an extra row, a dimension lost, …)
- ``dtype``        a dataset replaced by one of the same shape and another type (strings, ints, floats)
- ``attribute``    an absurd attribute: negative / huge counts, wrong types, JSON configs with huge sizes
- ``huge``         a dataset whose *shape* claims terabytes (chunked, so the file stays small)
- ``strings``      labels holding invalid UTF-8, Qt markup (``<img src=…>``, ``<a href=…>``), control
                   characters and bidi overrides, 10 MB of text, encoded surrogates
- ``irregular``    not a regular file: a FIFO, a folder, a symlink loop, a link to a device, an empty file
- ``family``       a family whose members attribute, groups or links are wrong
- ``inconsistent`` well-formed HDF5 whose contents disagree: no features or one, a non-finite maximum
                   activation, correlation ids out of range, a 10 MB token in the tokenizer
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

__all__ = ["Variant", "make_variants", "KINDS", "HOSTILE_LABELS"]

KINDS = ("truncate", "bitflip", "shape", "dtype", "attribute", "huge", "strings", "irregular", "family",
         "inconsistent")

HOSTILE_LABELS: tuple[bytes, ...] = (
    b"ok \xff\xfe\xfd invalid utf-8",
    b"<img src='file:///etc/passwd' width=4000 height=4000>",
    b"<a href='https://example.com'>click</a> <b>bold</b> <script>x</script>",
    b"ctrl \x01 SOH \x1b[31m ESC \x07 BEL \x7f DEL \x08",
    "bidi \u202eevil\u202c and \u2066isolate\u2069 and \u2028sep".encode(),
    b"surrogate \xed\xa0\x80 encoded",
    b"&lt;entities&gt; &amp; <qt><h1>big</h1></qt>",
    b"\xc3",                                   # a truncated sequence
)


@dataclasses.dataclass(frozen=True)
class Variant:
    index: int
    kind: str
    path: Path
    description: str


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


def _replace(f: h5py.File, name: str, data=None, **kwargs) -> None:
    del f[name]
    if data is not None:
        f[name] = data
    else:
        f.create_dataset(name, **kwargs)


def _truncate(rng, base: bytes, path: Path) -> str:
    cut = int(rng.integers(0, len(base)))
    path.write_bytes(base[:cut])
    return f"truncated to {cut} of {len(base)} bytes"


def _bitflip(rng, base: bytes, path: Path) -> str:
    blob = bytearray(base)
    if rng.random() < 0.5:
        n = int(rng.integers(1, 9))
        for _ in range(n):
            pos = int(rng.integers(0, len(blob)))
            blob[pos] ^= 1 << int(rng.integers(0, 8))
        what = f"{n} bits flipped"
    else:
        start, length = int(rng.integers(0, len(blob))), int(rng.integers(1, 512))
        blob[start:start + length] = rng.integers(0, 256, size=len(blob[start:start + length]), dtype=np.uint8).tobytes()
        what = f"bytes {start}..{start + length} overwritten"
    path.write_bytes(bytes(blob))
    return what


def _shape(rng, f: h5py.File) -> str:
    name = str(rng.choice(_datasets(f)))
    ds = f[name]
    shape, dtype = ds.shape or (), ds.dtype
    choice = int(rng.integers(0, 4))
    if choice == 0 and shape:
        new = (shape[0] + 1, *shape[1:])
    elif choice == 1 and len(shape) > 1:
        new = shape[:-1]
    elif choice == 2:
        new = (*shape, 2)
    else:
        new = tuple(max(0, s - 1) for s in shape) or (3,)
    _replace(f, name, shape=new, dtype=dtype)
    return f"/{name} reshaped {shape} -> {new}"


def _dtype(rng, f: h5py.File) -> str:
    name = str(rng.choice(_datasets(f)))
    ds = f[name]
    shape, old = ds.shape or (), ds.dtype
    choice = int(rng.integers(0, 3))
    if choice == 0:
        data = np.full(shape, "x", dtype=object) if shape else "not what you expect"
        _replace(f, name, data=data)
        new = "strings"
    else:
        new = np.int8 if choice == 1 else np.float64
        _replace(f, name, shape=shape, dtype=new)
        new = np.dtype(new).name
    return f"/{name} retyped {old} -> {new}"


_ABSURD = (1 << 62, -1, 2**31, "many", 1e308, np.nan)


def _attribute(rng, f: h5py.File) -> str:
    value = _ABSURD[int(rng.integers(0, len(_ABSURD)))]
    if isinstance(value, float) and np.isnan(value):
        value = np.float64("nan")
    choice = int(rng.integers(0, 7))
    if choice == 0:
        f["harvest"].attrs["n_tokens"] = value
        return f"/harvest n_tokens = {value!r}"
    if choice == 1:
        f["harvest"].attrs["top_center"] = value
        return f"/harvest top_center = {value!r}"
    if choice == 2:
        name = "features/top_tokens" if rng.random() < 0.5 else "neurons/logit_top_ids"
        f[name].attrs["pad"] = value
        return f"/{name} pad = {value!r}"
    if choice == 3:
        f.attrs["schema_version"] = value
        return f"schema_version = {value!r}"
    group, key = [("sae", "d_sae"), ("sae", "d_in"), ("model", "n_ctx"), ("model", "vocab_size")][int(rng.integers(0, 4))]
    cfg = json.loads(f[group].attrs["config"])
    cfg[key] = value if not isinstance(value, float) or np.isfinite(value) else "NaN"
    if choice == 6:
        f[group].attrs["config"] = "{" * 5000      # deeply nested / unterminated JSON
        return f"/{group} config = 5000 open braces"
    f[group].attrs["config"] = json.dumps(cfg, default=str)
    return f"/{group} config {key} = {value!r}"


def _huge(rng, f: h5py.File) -> str:
    choice = int(rng.integers(0, 3))
    if choice == 0:
        name = "curves/model/train_loss" if "curves/model/train_loss" in f else "density_hist/edges"
        shape = (1 << 40, 2) if name.startswith("curves") else (1 << 40,)
    elif choice == 1:
        name, shape = "sample/neuron_acts", (1 << 34, f["sample/neuron_acts"].shape[1])
    else:
        name, shape = "features/density", (1 << 40,)
    dtype = f[name].dtype
    _replace(f, name, shape=shape, dtype=dtype, chunks=(1024,) + tuple(shape[1:]))
    return f"/{name} claims shape {shape}"


def _strings(rng, f: h5py.File) -> str:
    kind = "features" if rng.random() < 0.7 else "neurons"
    name = f"{kind}/labels"
    n = f[name].shape[0]
    choice = int(rng.integers(0, 3))
    if choice == 0:
        pool = [HOSTILE_LABELS[int(i)] for i in rng.integers(0, len(HOSTILE_LABELS), size=n)]
        what = "hostile labels (invalid UTF-8, markup, controls, bidi)"
    elif choice == 1:
        pool = [b"A" * 64] * n
        pool[0] = (b"<b>huge</b> " + b"x" * (10 << 20))
        what = "a 10 MB label"
    else:
        pool = [HOSTILE_LABELS[0]] * n
        f.attrs["generator"] = HOSTILE_LABELS[2]
        f.attrs["created"] = HOSTILE_LABELS[3]
        what = "invalid UTF-8 in every label and markup in the root attributes"
    del f[name]
    ds = f.create_dataset(name, shape=(n,), dtype=h5py.string_dtype("utf-8"))
    ds[:] = np.array(pool, dtype=object)
    return f"/{name}: {what}"


def _family(rng, f: h5py.File) -> str:
    """A family (schema 3) with a bad /family members attribute, a member group that is missing or not
    a group, or a dangling link from a member to a shared piece. A one-dictionary base gets a family."""
    choice = int(rng.integers(0, 6))
    fam = f.require_group("family")
    good = fam.attrs.get("members", json.dumps([{"name": "A/0", "d_sae": 1, "group": ""}]))
    if choice == 0:
        fam.attrs["members"] = "{" * 5000
        return "/family members = 5000 open braces"
    if choice == 1:
        fam.attrs["members"] = json.dumps([{"name": "A/0", "group": ""}, {"name": "A/1", "group": "no/such/group"}])
        return "/family members name a missing group"
    if choice == 2:
        fam.attrs["members"] = json.dumps([{"name": "A/0", "group": ""}, {"name": "A/1", "group": "sae/W_dec"}])
        return "/family members name a dataset as a group"
    if choice == 3:
        fam.attrs["members"] = json.dumps([{"group": "", "d_sae": "many", "model": None}])
        return "/family members with wrong types"
    groups = [m.get("group") for m in json.loads(good) if isinstance(m, dict) and m.get("group")]
    if choice == 4 and groups:
        g = f[groups[int(rng.integers(0, len(groups)))]]
        del g["model"]
        g["model"] = h5py.SoftLink("/no/such/model")
        return f"/{g.name} model links nowhere"
    fam.attrs["members"] = json.dumps([{"name": f"A/{i}", "group": ""} for i in range(3)] + [7, "x"])
    return "/family members hold non-objects"


def _inconsistent(rng, f: h5py.File) -> str:
    choice = int(rng.integers(0, 5))
    if choice in (0, 1):                      # every per-unit dataset of the features cut to n rows
        n = choice
        for name in _datasets(f):
            if name.startswith("features/") and f[name].shape and f[name].shape[0] > n:
                ds = f[name]
                data, dtype, attrs = ds[:n], ds.dtype, dict(ds.attrs)
                del f[name]
                f.create_dataset(name, data=data, dtype=dtype, shape=(n, *ds.shape[1:])).attrs.update(attrs)
        return f"the features cut to {n} unit{'s' if n != 1 else ''} (the SAE and the sample unchanged)"
    kind = "features" if rng.random() < 0.5 else "neurons"
    if choice == 2:
        ds = f[f"{kind}/max_act"]
        values = ds[:]
        values[int(rng.integers(0, len(values)))] = np.inf if rng.random() < 0.5 else np.nan
        ds[:] = values
        return f"/{kind}/max_act holds a non-finite value"
    if choice == 3:
        ds = f[f"{kind}/corr_ids"]
        ids = ds[:]
        ids[int(rng.integers(0, ids.shape[0])), 0] = 1_000_000
        ds[:] = ids
        return f"/{kind}/corr_ids holds an id out of range"
    tok = json.loads(f["tokenizer"][()])
    vocab, merges = tok["model"]["vocab"], tok["model"].get("merges", [])
    used = set()
    for m in merges:
        used.update(m.split(" ") if isinstance(m, str) else m)
    spare = [t for t in vocab if t not in used and len(t) == 1] or [max(vocab, key=vocab.get)]
    vocab["<b>" + "x" * (10 << 20)] = vocab.pop(spare[0])    # a byte no merge uses: the tokenizer still loads
    _replace(f, "tokenizer", data=json.dumps(tok))
    return "a 10 MB token in the tokenizer"


def _irregular(rng, folder: Path, index: int, base_path: Path) -> tuple[Path, str]:
    choice = index // len(KINDS) % 5
    path = folder / f"v{index:04d}-irregular.h5"
    if choice == 0 and hasattr(os, "mkfifo"):
        os.mkfifo(path)
        return path, "a FIFO named *.h5"
    if choice == 1:
        path.mkdir()
        return path, "a folder named *.h5"
    if choice == 2:
        other = folder / f"v{index:04d}-loop.h5"
        os.symlink(other, path)
        os.symlink(path, other)
        return path, "a symlink loop"
    if choice == 3 and Path("/dev/zero").exists():
        os.symlink("/dev/zero", path)
        return path, "a link to /dev/zero"
    path.write_bytes(b"")
    return path, "an empty file"


def make_variants(base: str | os.PathLike, folder: str | os.PathLike, n: int, seed: int = 0) -> list[Variant]:
    """``n`` damaged variants of the valid bundle ``base`` in ``folder`` (kinds in rotation)."""
    base, folder = Path(base), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = base.read_bytes()
    rng = np.random.default_rng(seed)
    out: list[Variant] = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        path = folder / f"v{i:04d}-{kind}.h5"
        if kind == "truncate":
            what = _truncate(rng, data, path)
        elif kind == "bitflip":
            what = _bitflip(rng, data, path)
        elif kind == "irregular":
            path, what = _irregular(rng, folder, i, base)
        else:
            shutil.copyfile(base, path)
            with h5py.File(path, "a") as f:
                what = {"shape": _shape, "dtype": _dtype, "attribute": _attribute, "huge": _huge,
                        "strings": _strings, "family": _family, "inconsistent": _inconsistent}[kind](rng, f)
        out.append(Variant(i, kind, path, what))
    return out
