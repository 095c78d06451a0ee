"""`superpos cache-activations` and `superpos train-sae --activations DIR` on the real tiny bundle."""

from __future__ import annotations

import json
import os

import h5py
import pytest

from engine.cli.main import main
from engine.data.act_cache import MANIFEST, shard_name


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def cache_dir(real_tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-cache") / "acts"
    assert main(["cache-activations", "--from", str(real_tiny_bundle), "--tokens", "3000", "--out", str(out),
                 "--shard-rows", "1024", "--dtype", "bfloat16", "--verify", "--quiet"]) == 0
    return out


def test_cache_then_train_sae_from_it(cache_dir, real_tiny_bundle, tmp_path, capsys):
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    assert manifest["rows"] == 3000 and manifest["dtype"] == "bfloat16" and manifest["n_shards"] == 3
    code, text = _cli(capsys, "train-sae", "--activations", str(cache_dir), "--d-sae", "64", "--recipe", "topk",
                      "--k", "4", "--n-activations", "2048", "--batch-size", "256", "--out", str(tmp_path / "sae.h5"),
                      "--quiet")
    assert code == 0, text
    with h5py.File(tmp_path / "sae.h5") as f:
        assert f["sae/W_enc"].shape == (manifest["d_in"], 64)
    code, text = _cli(capsys, "cache-activations", "--from", str(real_tiny_bundle), "--tokens", "3000", "--out",
                      str(cache_dir), "--shard-rows", "1024", "--dtype", "bfloat16")
    assert code == 0 and "already holds this activation cache" in text


def test_cli_refusals_are_one_line(cache_dir, real_tiny_bundle, tmp_path, capsys):
    code, text = _cli(capsys, "cache-activations", "--from", str(real_tiny_bundle), "--tokens", "5000", "--out",
                      str(cache_dir), "--shard-rows", "1024", "--dtype", "bfloat16", "--quiet")
    assert code == 1 and "other rows" in text and len(text.strip().splitlines()) == 1
    (tmp_path / "plain").mkdir()
    code, text = _cli(capsys, "train-sae", "--activations", str(tmp_path / "plain"), "--out", str(tmp_path / "s.h5"))
    assert code == 1 and "not an activation cache" in text
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in cache_dir.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())          # fresh, writable files
    (broken / shard_name(1)).write_bytes((broken / shard_name(1)).read_bytes()[:500])
    code, text = _cli(capsys, "train-sae", "--activations", str(broken), "--out", str(tmp_path / "s.h5"))
    assert code == 1 and "shard-00001.npy is 500 bytes" in text and "rebuild" in text
    (broken / shard_name(1)).unlink()
    os.mkfifo(broken / shard_name(1))               # opening a FIFO would block forever: refused first
    code, text = _cli(capsys, "train-sae", "--activations", str(broken), "--out", str(tmp_path / "s.h5"))
    assert code == 1 and "FIFO" in text
    code, text = _cli(capsys, "cache-activations", "--from", str(real_tiny_bundle), "--tokens", "0", "--out",
                      str(tmp_path / "x"))
    assert code == 1 and "--tokens" in text


def test_run_with_an_activation_cache_writes_it_once_and_reuses_it(tmp_path):
    from engine.config import preset
    from engine.jobs import collect
    from engine.pipeline import run_pipeline

    cfg = preset("tiny").with_overrides(train={"tokens": 60_000}, sae={"n_activations": 20_480},
                                        harvest={"n_tokens": 4_000, "eval_tokens": 2_000})
    cache = tmp_path / "acts"
    out, evs = collect(run_pipeline(cfg, tmp_path / "a.h5", workdir=tmp_path / "work", activation_cache=cache))
    manifest = json.loads((cache / MANIFEST).read_text())
    assert out.exists() and manifest["rows"] == cfg.sae.n_activations + 4 * cfg.sae.batch_size
    started = [e for e in evs if type(e).__name__ == "StageStarted"]
    assert [e.stage for e in started][2:5] == ["model", "cache", "sae"]      # the cache is a stage of its own
    assert [e.index for e in started] == list(range(len(started))) == list(range(started[0].n_stages))
    stamp = (cache / MANIFEST).stat().st_mtime_ns
    # the same settings resumed from the same work folder: the same model, so the same cache, reused
    out, evs = collect(run_pipeline(cfg, tmp_path / "b.h5", workdir=tmp_path / "work", resume=True,
                                    activation_cache=cache))
    assert any("already holds this activation cache" in getattr(e, "text", "") for e in evs)
    assert (cache / MANIFEST).stat().st_mtime_ns == stamp and out.exists()
