"""Language-model explanations stored with a bundle: a journal beside it while a job runs, folded
into the bundle's ``/explanations`` group afterwards, without rewriting the rest of the file.

Why two places: HDF5 has no journal of its own, and a file open for reading (the app shows the
bundle while the job runs) cannot also be opened for writing in the same process. So:

1. While a job runs, each unit's record is one JSON line appended to ``<bundle>.explain-journal``
   (written, flushed and fsynced per unit: a crash loses at most the unit in flight; a torn last
   line is ignored when read). This is also what ``--resume`` reads.
2. ``fold_journal`` (the CLI after its job; the app after closing its read handle) rewrites the
   bundle the one guarded way (``engine.bundle.h5target.rewrite_h5``: a copy under a temporary
   name, changed through the write guard, fsynced and renamed over the bundle): the journal's
   records become one new dataset ``/explanations/<features|neurons>/batch_NNNNNN``, the root
   ``schema_version`` is raised to the current one, and only after the rename is the journal
   deleted. A crash before the rename leaves the bundle as it was and the journal, which is folded
   again next time; a record that is in both (a crash between the rename and the journal's removal)
   is read once. Readers ignore a ``_pending`` dataset (older versions folded in place through one).

Reads go through an open ``Bundle`` (``Bundle.explanations``: under ``H5_LOCK``, on a validated
file), which passes its own handle to ``read_explanations``.

A record: kind, unit, status ("ok" | "refused" | "failed"), explanation, detection, fuzzing,
simulation (NaN as null), model, endpoint host, prompt_version, date (ISO UTC), error, requests,
prompt_tokens, completion_tokens. ``read_explanations`` returns the latest record per unit.
No API key is ever part of a record.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from engine.bundle.h5target import rewrite_h5
from engine.bundle.schema import GROUP_OF_KIND, READ_ERRORS, SCHEMA_VERSION, BundleError, describe

__all__ = ["journal_path", "append_journal", "read_journal", "read_explanations", "fold_journal",
           "explanation_group_records", "now_iso", "SCORE_NAMES"]

GROUP = "explanations"
SCORE_NAMES = ("detection", "fuzzing", "simulation")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def journal_path(bundle_path: str | os.PathLike) -> Path:
    p = Path(bundle_path)
    return p.with_name(p.name + ".explain-journal")


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in record.items():
        if isinstance(v, (np.floating, float)):
            v = None if not math.isfinite(float(v)) else float(v)
        elif isinstance(v, np.integer):
            v = int(v)
        out[k] = v
    return out


def append_journal(bundle_path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Append records to the journal (one JSON line each), flushed and fsynced before returning."""
    lines = "".join(json.dumps(_clean(r), ensure_ascii=False, allow_nan=False) + "\n" for r in records)
    if not lines:
        return
    path = journal_path(bundle_path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())


def _parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:        # a torn last line (a crash while writing it) or junk: skipped
            continue
        if isinstance(rec, dict) and rec.get("kind") in GROUP_OF_KIND and isinstance(rec.get("unit"), int):
            out.append(rec)
    return out


def read_journal(bundle_path: str | os.PathLike) -> list[dict[str, Any]]:
    path = journal_path(bundle_path)
    if not path.exists():
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return _parse_lines(fh)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from exc


def explanation_group_records(f: h5py.File, kind: str) -> list[dict[str, Any]]:
    """Records folded into an open bundle for ``kind``, oldest batch first."""
    g = f.get(f"{GROUP}/{GROUP_OF_KIND[kind]}")
    if not isinstance(g, h5py.Group):
        return []
    out = []
    for name in sorted(n for n in g if n.startswith("batch_")):
        ds = g[name]
        if isinstance(ds, h5py.Dataset):
            out.extend(_parse_lines(ds.asstr()[()]))
    return out


def read_explanations(bundle_path: str | os.PathLike, kind: str, f: h5py.Group) -> dict[int, dict]:
    """The latest record per unit of ``kind``: folded ones (read through ``f``, the bundle as a
    ``Bundle`` holds it open: callers use ``Bundle.explanations``), then the journal's."""
    latest: dict[int, dict] = {}
    for rec in explanation_group_records(f, kind) + read_journal(bundle_path):
        if rec["kind"] == kind:
            latest[int(rec["unit"])] = rec
    return latest


def fold_journal(bundle_path: str | os.PathLike) -> int:
    """Move the journal's records into the bundle (see the module docstring); returns how many.

    A reader that holds the bundle open keeps reading the file as it was: reopen it to see the new
    records as folded (it sees them already through the journal). A read-only bundle raises
    BundleError and keeps the journal (whose records every reader still sees).
    """
    bundle_path = Path(bundle_path)
    records = read_journal(bundle_path)
    if not records:
        journal_path(bundle_path).unlink(missing_ok=True)
        return 0
    if not os.access(bundle_path, os.W_OK):
        raise BundleError(f"{bundle_path} is read-only: its {len(records)} new explanations stay in "
                          f"{journal_path(bundle_path).name} beside it (every reader sees them)")
    try:
        with rewrite_h5(bundle_path, "the bundle with its explanations") as f:
            for kind, group_name in GROUP_OF_KIND.items():
                mine = [json.dumps(_clean(r), ensure_ascii=False) for r in records if r["kind"] == kind]
                if not mine:
                    continue
                g = f.require_group(f"{GROUP}/{group_name}")
                done = [int(n[6:]) for n in g if n.startswith("batch_") and n[6:].isdigit()]
                ds = g.create_dataset(f"batch_{(max(done) + 1 if done else 0):06d}",
                                      data=np.array(mine, dtype=object), dtype=h5py.string_dtype())
                ds.attrs["written"] = now_iso()
            if int(f.attrs.get("schema_version", 1)) < SCHEMA_VERSION:
                f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
    except BundleError as exc:
        raise BundleError(f"{exc}; the explanations stay in {journal_path(bundle_path).name}") from exc
    except READ_ERRORS as exc:
        raise BundleError(f"could not write explanations into {bundle_path} ({describe(exc)}); they stay in "
                          f"{journal_path(bundle_path).name}") from exc
    journal_path(bundle_path).unlink(missing_ok=True)
    return len(records)
