"""Damaged and foreign files: every way a bundle can be wrong is a BundleError with a message, at open
or (for corrupted numbers) at the read that meets them; fuzzed bytes never raise anything else."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from bundle_parts import HC, N_F, N_M, copy_bundle as _copy
from engine.bundle import SCHEMA_VERSION, BundleError, open_bundle
from engine.testing.synthetic import write_synthetic_bundle


# ---------------------------------------------------------------------------------- validation
def test_not_a_file_not_hdf5_truncated(tmp_path, written):
    with pytest.raises(BundleError, match="no such file"):
        open_bundle(tmp_path / "absent.h5")
    with pytest.raises(BundleError, match="folder"):
        open_bundle(tmp_path)
    text = tmp_path / "notes.h5"
    text.write_text("hello, not HDF5")
    with pytest.raises(BundleError, match="not an HDF5 file"):
        open_bundle(text)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(BundleError):
        open_bundle(empty)
    cut = _copy(written, tmp_path)
    with open(cut, "r+b") as fh:
        fh.truncate(cut.stat().st_size // 2)
    with pytest.raises(BundleError, match="damaged or incomplete"):
        open_bundle(cut)


def test_other_hdf5_and_wrong_format(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(BundleError, match="not a superpos bundle"):
        open_bundle(plain)
    with h5py.File(plain, "a") as f:
        f.attrs["format"] = "someone-else"
    with pytest.raises(BundleError, match="someone-else"):
        open_bundle(plain)


def test_newer_schema_says_update(tmp_path, written):
    path = _copy(written, tmp_path)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION + 1)
    with pytest.raises(BundleError) as err:
        open_bundle(path)
    assert f"newer superpos (schema {SCHEMA_VERSION + 1})" in str(err.value) and "Update superpos" in str(err.value)
    assert f"reads up to {SCHEMA_VERSION}" in str(err.value)


@pytest.mark.parametrize("name", ["features/top_acts", "neurons/labels", "model/mlp.W_in.weight", "sae/W_dec",
                                  "config", "metrics", "tokenizer", "sample/feature_indptr", "density_hist/edges",
                                  "harvest"])
def test_missing_dataset(tmp_path, written, name):
    path = _copy(written, tmp_path)
    with h5py.File(path, "a") as f:
        del f[name]
    with pytest.raises(BundleError, match=name.split("/")[-1].replace(".", r"\.")):
        open_bundle(path)


@pytest.mark.parametrize("name,shape", [
    ("features/top_acts", (N_F, 4, 5)),             # W disagrees with top_tokens
    ("features/density", (N_F + 1,)),               # N disagrees with the other columns
    ("neurons/interval_tokens", (N_M, 3, 2, 7)),
    ("neurons/logit_hist", (N_M, 9)),               # B disagrees with the features' B
    ("sae/W_enc", (N_F, N_M)),                      # transposed
    ("model/unembed.weight", (3, 16)),
    ("sample/neuron_acts", (50, N_M + 1)),
    ("curves/model/train_loss", (5, 3)),
])
def test_misshaped_dataset(tmp_path, written, name, shape):
    path = _copy(written, tmp_path)
    with h5py.File(path, "a") as f:
        dtype = f[name].dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype)
    with pytest.raises(BundleError, match="shape"):
        open_bundle(path)


def test_bad_json_and_bad_attrs(tmp_path, written):
    path = _copy(written, tmp_path)
    with h5py.File(path, "a") as f:
        del f["config"]
        f["config"] = "{not json"
    with pytest.raises(BundleError, match="/config is not valid JSON"):
        open_bundle(path)
    path = _copy(written, tmp_path, "b.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = "one"
    with pytest.raises(BundleError, match="schema_version"):
        open_bundle(path)


def test_lazy_corruption_surfaces_as_bundle_error(tmp_path, written):
    """Damage a chunk of stored numbers: open succeeds (metadata intact), the read is a BundleError."""
    path = _copy(written, tmp_path)
    with h5py.File(path, "r") as f:
        offset = f["features/interval_acts"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 10)
        fh.write(b"\xff" * 16)
    with open_bundle(path) as b:
        with pytest.raises(BundleError, match="dashboard"):
            b.dashboard("feature", 0)
        b.columns("feature")               # other datasets still read
        b.dashboard("neuron", 0)


# ---------------------------------------------------------------------------------- fuzzing
def _read_everything(path: Path) -> None:
    with open_bundle(path) as b:
        for kind in ("feature", "neuron"):
            b.columns(kind)
            for i in (0, b.n_units(kind) // 2, b.n_units(kind) - 1):
                b.dashboard(kind, i)
        b.curves()
        b.density_histogram()
        b.sample_neurons()
        b.sample_feature(0)
        b.sample_feature(b.n_features - 1)
        b.tokenizer()
        b.load_model()
        b.load_sae()


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "base.h5"
    write_synthetic_bundle(path, n_features=96, n_neurons=32, vocab_size=300, n_tokens=5000, chunk=40,
                           harvest=HC)
    _read_everything(path)
    return path


def test_fuzz_truncation_and_corruption_only_raise_bundle_error(fuzz_base, tmp_path):
    data = fuzz_base.read_bytes()
    rng = np.random.default_rng(1234)
    outcomes = {"BundleError": 0, "read fine": 0}
    for case in range(60):
        blob = bytearray(data)
        if case % 3 == 0:
            blob = blob[: int(rng.integers(0, len(blob)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                start = int(rng.integers(0, len(blob)))
                length = int(rng.integers(1, 256))
                blob[start:start + length] = rng.integers(0, 256, size=len(blob[start:start + length]),
                                                          dtype=np.uint8).tobytes()
        path = tmp_path / f"case{case}.h5"
        path.write_bytes(bytes(blob))
        try:
            _read_everything(path)
            outcomes["read fine"] += 1
        except BundleError as exc:
            assert str(exc), "a BundleError needs a message"
            outcomes["BundleError"] += 1
        except Exception as exc:  # pragma: no cover - this is the failure being tested for
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
        path.unlink()
    assert outcomes["BundleError"] >= 30, outcomes



def test_hdf5_errors_while_reading_the_family_at_open_are_a_bundle_error(tmp_path, monkeypatch):
    """A damaged object header surfaces as h5py's KeyError inside ``read_family``: one BundleError line."""
    import engine.bundle.read as read_mod
    from engine.bundle import BundleError, open_bundle
    from engine.testing.synthetic import write_synthetic_bundle

    path = write_synthetic_bundle(tmp_path / "b.h5", n_features=8, n_neurons=4, vocab_size=300, n_tokens=400)

    def broken(*args, **kwargs):
        raise KeyError("Unable to synchronously open object (bad object header version number)")

    monkeypatch.setattr(read_mod, "read_family", broken)
    with pytest.raises(BundleError, match="damaged or incomplete.*bad object header"):
        open_bundle(path)


def test_a_ten_megabyte_token_is_shown_bounded(tmp_path):
    import h5py
    import numpy as np

    from engine.bundle import open_bundle
    from engine.data.tokenizer import MAX_SHOWN_CHARS
    from engine.testing import fuzz
    from engine.testing.synthetic import write_synthetic_bundle

    path = write_synthetic_bundle(tmp_path / "b.h5", n_features=8, n_neurons=4, vocab_size=300, n_tokens=400)
    with h5py.File(path, "a") as f:
        rng = np.random.default_rng(0)
        while "10 MB" not in fuzz._inconsistent(rng, f):
            pass
    with open_bundle(path) as b:
        tok = b.tokenizer()
        longest = max(len(s) for s in tok.vocab_strings())
        assert longest == MAX_SHOWN_CHARS + 1 and max(len(s) for s in tok.readable_strings()) == MAX_SHOWN_CHARS + 1


def test_ids_of_the_other_kind_out_of_range_read_as_none(tmp_path):
    """A damaged /neurons/corr_ids naming feature 1,000,000 must not reach a pane as an id."""
    import h5py

    from engine.bundle import open_bundle
    from engine.testing.synthetic import write_synthetic_bundle

    path = write_synthetic_bundle(tmp_path / "b.h5", n_features=8, n_neurons=4, vocab_size=300, n_tokens=400)
    with h5py.File(path, "a") as f:
        ids = f["neurons/corr_ids"][:]
        ids[0, 0] = 1_000_000
        f["neurons/corr_ids"][:] = ids
    with open_bundle(path) as b:
        dash = b.dashboard("neuron", 0)
    assert dash.corr_ids[0] == -1 and np.isnan(dash.corr_values[0])
    assert ((dash.corr_ids == -1) | ((dash.corr_ids >= 0) & (dash.corr_ids < 8))).all()
