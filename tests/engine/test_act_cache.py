"""The sharded activation cache: round trip, determinism, resume, rank blocks, refusals, training from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import events
from engine.config import ModelConfig, SAEConfig
from engine.data.act_cache import (MANIFEST, WRITING, ActivationCacheError, ShardedActivationSource, model_fingerprint,
                                   rank_block, shard_name)
from engine.data.act_cache_write import write_activation_cache
from engine.data.activations import ModelActivationSource
from engine.jobs import collect, run_to_completion
from engine.model import OneLayerTransformer
from engine.train.sae_job import train_sae

ROWS, SHARD = 1000, 96          # 11 shards, the last one of 40 rows


def _model(seed: int = 0) -> OneLayerTransformer:
    torch.manual_seed(seed)
    return OneLayerTransformer(ModelConfig(vocab_size=50, n_ctx=16, d_model=16, n_heads=2, d_mlp=24)).eval()


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(0, 50, size=5000).astype(np.uint16)


def _write(folder, model, tokens, **kw):
    kw = {"shard_rows": SHARD, "buffer_batches": 4, **kw}
    return run_to_completion(write_activation_cache(folder, model, tokens, kw.pop("rows", ROWS), **kw))


def _stream_rows(model, tokens, n=ROWS):
    """The first n rows of the pipeline's stream, as the cache should hold them."""
    it = ModelActivationSource(model, tokens, n_ctx=16, batch_size=SHARD, buffer_batches=4, seed=0).iter_batches(SHARD)
    return np.concatenate([next(it).numpy() for _ in range(-(-n // SHARD))])[:n]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, model, tokens):
    return _write(tmp_path_factory.mktemp("cache") / "acts", model, tokens)


def test_round_trip_holds_the_stream_rows_exactly(cache, model, tokens):
    src = ShardedActivationSource(cache)
    assert (src.n, src.d_in) == (ROWS, 24)
    assert sorted(p.name for p in cache.iterdir()) == [MANIFEST] + [shard_name(i) for i in range(11)]
    np.testing.assert_array_equal(src.read(np.arange(ROWS)), _stream_rows(model, tokens))
    manifest = json.loads((cache / MANIFEST).read_text())
    assert manifest["model"]["fingerprint"] == model_fingerprint(model)
    assert manifest["hook"] == "blocks.0.mlp.hook_post" and manifest["shards"][-1]["rows"] == 40
    assert all(p.stat().st_mode & 0o222 == 0 for p in cache.iterdir())          # written once: read-only
    src.verify()


@pytest.mark.parametrize("dtype,tol", [("float16", 2e-3), ("bfloat16", 8e-3)])
def test_half_storage_is_recorded_and_read_as_float32(tmp_path, model, tokens, dtype, tol):
    src = ShardedActivationSource(_write(tmp_path / dtype, model, tokens, dtype=dtype))
    assert src.dtype == dtype and (tmp_path / dtype / shard_name(0)).stat().st_size < 96 * 24 * 4
    got = src.read(np.arange(ROWS))
    assert got.dtype == np.float32
    ref = _stream_rows(model, tokens)
    np.testing.assert_allclose(got, ref, rtol=tol, atol=1e-3)


def test_batches_are_deterministic_resumable_and_cover_each_epoch_once(cache):
    src = ShardedActivationSource(cache, seed=3, window=2)
    per_epoch = ROWS // 64
    first = [b for _, b in zip(range(2 * per_epoch + 3), src.iter_batches(64))]
    again = [b for _, b in zip(range(6), ShardedActivationSource(cache, seed=3, window=2).iter_batches(64, start=13))]
    assert all(torch.equal(a, b) for a, b in zip(first[13:19], again))
    ids = np.concatenate([src.order(0, b * 64, (b + 1) * 64) for b in range(per_epoch)])
    assert len(np.unique(ids)) == len(ids) == per_epoch * 64            # no row twice in an epoch
    assert not np.array_equal(src.order(0, 0, 64), src.order(1, 0, 64))  # each epoch reshuffled
    other = next(ShardedActivationSource(cache, seed=4, window=2).iter_batches(64))
    assert not torch.equal(other, first[0])
    assert not np.array_equal(np.sort(src.order(0, 0, ROWS - ROWS % 64)), src.order(0, 0, ROWS - ROWS % 64))


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_blocks_are_the_global_batch_split(cache, world_size):
    src = ShardedActivationSource(cache, seed=1)
    glob = [b for _, b in zip(range(20), src.iter_batches(100, start=5))]
    per_rank = [[b for _, b in zip(range(20), src.iter_batches(100, start=5, rank=r, world_size=world_size))]
                for r in range(world_size)]
    for i, g in enumerate(glob):
        torch.testing.assert_close(torch.cat([per_rank[r][i] for r in range(world_size)]), g, rtol=0, atol=0)
        for r in range(world_size):
            lo, hi = rank_block(100, r, world_size)
            assert torch.equal(per_rank[r][i], g[lo:hi])


def test_rank_reads_only_its_rows(cache):
    src = ShardedActivationSource(cache, seed=1)
    seen = []
    real_read = src.read
    src.read = lambda ids: (seen.append(ids), real_read(ids))[1]
    next(src.iter_batches(100, rank=1, world_size=4))
    assert [len(ids) for ids in seen] == [25]


class _Cancel(events.CancelToken):
    def __init__(self, after: int):
        super().__init__()
        self.after = after

    @property
    def cancelled(self) -> bool:
        self.after -= 1
        return self.after < 0


def test_interrupted_write_resumes_at_the_first_missing_shard(tmp_path, cache, model, tokens):
    folder = tmp_path / "acts"
    with pytest.raises(events.Cancelled):
        _write(folder, model, tokens, cancel=_Cancel(after=5))          # cancelled inside shard 5
    assert (folder / WRITING).exists() and not (folder / MANIFEST).exists()
    assert sorted(p.name for p in folder.glob("shard-*")) == [shard_name(i) for i in range(5)]
    with pytest.raises(ActivationCacheError, match="unfinished.*--resume"):
        ShardedActivationSource(folder)
    with pytest.raises(ActivationCacheError, match="--resume"):
        _write(folder, model, tokens)
    written_before = (folder / shard_name(0)).stat().st_mtime_ns
    out, evs = collect(write_activation_cache(folder, model, tokens, ROWS, shard_rows=SHARD, buffer_batches=4,
                                              resume=True))
    assert any(isinstance(e, events.Message) and "shard 5" in e.text for e in evs)
    assert (folder / shard_name(0)).stat().st_mtime_ns == written_before       # kept, not rewritten
    assert not (folder / WRITING).exists()
    np.testing.assert_array_equal(ShardedActivationSource(out).read(np.arange(ROWS)),
                                  ShardedActivationSource(cache).read(np.arange(ROWS)))
    ShardedActivationSource(out).verify()


def test_complete_cache_is_reused_not_rewritten_and_other_model_refused(tmp_path, model, tokens):
    folder = _write(tmp_path / "acts", model, tokens)
    stamp = (folder / MANIFEST).stat().st_mtime_ns
    _, evs = collect(write_activation_cache(folder, model, tokens, ROWS, shard_rows=SHARD, buffer_batches=4))
    assert any("reusing" in getattr(e, "text", "") for e in evs) and (folder / MANIFEST).stat().st_mtime_ns == stamp
    with pytest.raises(ActivationCacheError, match="other model weights"):
        _write(folder, _model(seed=1), tokens)
    with pytest.raises(ActivationCacheError, match="other rows"):
        _write(folder, model, tokens, rows=500)
    with pytest.raises(ActivationCacheError, match="another model"):
        ShardedActivationSource(folder, expect_model=model_fingerprint(_model(seed=1)))
    with pytest.raises(ActivationCacheError, match="width 24; expected d_in=32"):
        ShardedActivationSource(folder, expect_d_in=32)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ActivationCacheError, match="not empty"):
        _write(tmp_path / "busy", model, tokens)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def _copy(cache, tmp_path) -> Path:
    """A writable copy of a cache (a finished cache's files are read-only)."""
    folder = Path(shutil.copytree(cache, tmp_path / "copy"))
    for p in folder.iterdir():
        p.chmod(0o644)
    return folder


def test_truncated_corrupt_or_missing_shards_are_named(tmp_path, cache):
    folder = _copy(cache, tmp_path)
    shard = folder / shard_name(3)
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    with pytest.raises(ActivationCacheError, match=r"shard-00003.npy is .* bytes; the manifest says"):
        ShardedActivationSource(folder)
    flipped = bytearray(data)
    flipped[-7] ^= 0xFF
    shard.write_bytes(bytes(flipped))
    src = ShardedActivationSource(folder)                     # sizes are checked at open, checksums on verify
    with pytest.raises(ActivationCacheError, match="shard-00003.npy fails its checksum"):
        src.verify()
    shard.write_bytes(b"x" * len(data))
    with pytest.raises(ActivationCacheError, match="shard-00003.npy is not a readable .npy"):
        ShardedActivationSource(folder)
    shard.unlink()
    with pytest.raises(ActivationCacheError, match="shard-00003.npy is missing"):
        ShardedActivationSource(folder)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(ActivationCacheError, match="not a readable activation-cache manifest"):
        ShardedActivationSource(folder)
    with pytest.raises(ActivationCacheError, match="no such activation cache"):
        ShardedActivationSource(tmp_path / "nowhere")


def test_training_from_the_cache_equals_training_on_the_same_batches_in_memory(cache):
    """The SAE trained from the memmapped cache equals one trained on the same rows, in the documented
    order, from an in-memory array: the cache changes where the data lives, not what is learned."""
    cfg = SAEConfig(d_in=24, d_sae=48, recipe="topk", k=4, n_activations=64 * 30, batch_size=64, seed=0)
    src = ShardedActivationSource(cache, seed=2)
    everything = src.read(np.arange(ROWS))                  # the whole cache in memory
    per_epoch = ROWS // 64

    class InMemory:
        d_in = 24

        def iter_batches(self, batch_size, start=0):
            b = start
            while True:
                e, j = divmod(b, per_epoch)
                yield torch.from_numpy(everything[src.order(e, j * 64, (j + 1) * 64)])
                b += 1

    a = run_to_completion(train_sae(cfg, src)).sae.state_dict()
    b = run_to_completion(train_sae(cfg, InMemory())).sae.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
