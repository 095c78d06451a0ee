"""One read path and one write path for bundles: every open of an HDF5 file goes through
``engine.bundle`` (the validated read under ``H5_LOCK``, the guarded write), and changing a bundle
that exists (``--rematch``, folding explanations) is atomic: a failure leaves it byte for byte as it was."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from engine.bundle import BundleError, open_bundle
from engine.bundle.explanations import append_journal, fold_journal, journal_path
from engine.bundle.h5target import rewrite_h5
from engine.errors import WriteError
from engine.testing.synthetic import write_synthetic_bundle

ROOT = Path(__file__).resolve().parents[2]
# the one read open (schema.open_h5) and the one write guard (h5target)
BUNDLE_OPENERS = {"engine/bundle/schema.py", "engine/bundle/h5target.py"}
ALLOWED = {
    "engine/testing/fuzz.py": "damages bundles on purpose, to test that readers refuse them",
    "engine/data/activations.py": "reads a user's [n, d_in] activation array, not a bundle",
}


def _h5py_file_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "File"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "h5py"]


def test_only_the_bundle_read_and_write_paths_open_hdf5_files():
    found = {}
    for folder in ("engine", "superpos_app"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = _h5py_file_calls(path)
            if lines:
                found[path.relative_to(ROOT).as_posix()] = lines
    strays = {p: lines for p, lines in found.items() if p not in BUNDLE_OPENERS | set(ALLOWED)}
    assert not strays, (f"h5py.File outside the bundle's read and write paths: {strays}; read through "
                        "engine.bundle.open_bundle (or schema.open_h5), write through engine.bundle.h5target")
    assert BUNDLE_OPENERS <= set(found)
    assert "from h5py import" not in "".join(p.read_text(encoding="utf-8") for p in (ROOT / "engine").rglob("*.py"))


@pytest.fixture()
def bundle(tmp_path):
    return write_synthetic_bundle(tmp_path / "b.h5", n_features=24, n_neurons=8, vocab_size=300, n_tokens=2000)


def _record(unit: int) -> dict:
    return {"kind": "feature", "unit": unit, "status": "ok", "explanation": f"unit {unit}", "detection": 0.5}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failed_fold_leaves_the_bundle_byte_for_byte_and_keeps_the_journal(bundle, monkeypatch):
    append_journal(bundle, [_record(1), _record(2)])
    before = bundle.read_bytes()

    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(BundleError, match="stay in b.h5.explain-journal"):
        fold_journal(bundle)
    monkeypatch.undo()
    assert bundle.read_bytes() == before and journal_path(bundle).exists()
    assert _leftovers(bundle.parent) == []
    with open_bundle(bundle) as b:                      # the journal's records are still seen
        assert sorted(b.explanations("feature")) == [1, 2]


def test_folding_replaces_the_file_so_an_open_reader_keeps_reading(bundle):
    """The app's handle (or any reader's) stays valid while the journal is folded: the fold writes a
    copy and renames it over the bundle instead of appending to the file the reader holds."""
    append_journal(bundle, [_record(3)])
    inode = os.stat(bundle).st_ino
    with open_bundle(bundle) as reader:
        assert fold_journal(bundle) == 1
        assert reader.columns("feature")["label"] and reader.dashboard("feature", 3).index == 3
    assert os.stat(bundle).st_ino != inode and not journal_path(bundle).exists()
    with open_bundle(bundle) as b:
        assert b.explanations("feature")[3]["explanation"] == "unit 3"
        assert "batch_000000" in b._h5["explanations/features"]
    append_journal(bundle, [_record(4)])
    assert fold_journal(bundle) == 1
    with open_bundle(bundle) as b:
        assert sorted(b._h5["explanations/features"]) == ["batch_000000", "batch_000001"]
        assert sorted(b.explanations("feature")) == [3, 4]


def test_rewrite_is_all_or_nothing_and_refuses_what_is_not_a_bundle(bundle, tmp_path, monkeypatch):
    before = bundle.read_bytes()
    with pytest.raises(KeyError):
        with rewrite_h5(bundle) as f:
            f.attrs["touched"] = 1
            raise KeyError("a bug in the body")
    assert bundle.read_bytes() == before and _leftovers(bundle.parent) == []

    import engine.bundle.h5target as h5target

    real_write = h5target.GuardedFile.write

    def full_disk(self, data):
        self.error = self.error or OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(h5target.GuardedFile, "write", full_disk)
    with pytest.raises(WriteError, match="No space left"):
        with rewrite_h5(bundle) as f:
            f.create_dataset("big", data=np.zeros(1000))
    monkeypatch.undo()
    assert bundle.read_bytes() == before and _leftovers(bundle.parent) == []

    with rewrite_h5(bundle) as f:
        f.attrs["touched"] = 1
    with open_bundle(bundle) as b:
        assert b._h5.attrs["touched"] == 1

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(BundleError, match="not a superpos bundle"):
        with rewrite_h5(other):
            pass


def test_the_explain_jobs_read_of_explanations_is_validated(tmp_path):
    """Resuming reads what is explained already through the one read path: an HDF5 file that is not
    a bundle is refused, not read as a bundle with no explanations."""
    from engine.explain.job import pending_units

    path = tmp_path / "not_a_bundle.h5"
    with h5py.File(path, "w") as f:
        f.create_group("explanations/features")
    with pytest.raises(BundleError, match="not a superpos bundle"):
        pending_units(path, "feature", [0, 1], "m")


def test_every_dictionary_is_written_by_the_same_sequence(parts, tmp_path):
    """Dictionary 0 (the root) and a family's dictionary 1 made of the same parts hold the same own
    pieces, dataset for dataset and value for value."""
    from engine.bundle import write_bundle
    from engine.bundle.family import MemberParts, family_writes

    member = MemberParts(parts["config"], parts["sae_state"], parts["harvest"], parts["metrics"], parts["curves"])
    path = write_bundle(tmp_path / "fam.h5", **parts, extra=family_writes(["A/0", "A/1"], [member], {}, None))

    def own(group) -> dict:
        found = {}

        def visit(name, obj):          # (returning a value would stop the visit)
            if isinstance(obj, h5py.Dataset):
                found[name] = obj

        group.visititems(visit)
        return {n: ds for n, ds in found.items() if n.split("/")[0] in
                ("config", "metrics", "curves", "sae", "features", "harvest", "density_hist", "sample")}

    with h5py.File(path, "r") as f:
        root, member_group = own(f), own(f["dictionaries/1"])
        assert root.keys() == member_group.keys() and "features/labels" in root and "sample/neuron_acts" in root
        for name, ds in root.items():
            assert ds.dtype == member_group[name].dtype, name
            np.testing.assert_array_equal(ds[()], member_group[name][()], err_msg=name)
            assert dict(ds.attrs) == dict(member_group[name].attrs), name
        for name in ("harvest", "sae"):
            assert dict(f[name].attrs) == dict(f["dictionaries/1"][name].attrs), name
        assert f.attrs["format"] == f["dictionaries/1"].attrs["format"]
