"""``superpos cache-activations``: the model's MLP activations computed once into a sharded cache folder.

    superpos cache-activations --from demo.h5 --tokens 2000000 --out acts/
    superpos train-sae --activations acts/ --d-sae 4096 --recipe topk --k 24 --out sae.h5
    python benchmarks/sae_sweep.py --model demo.h5 --activations acts/

``--from`` is a bundle, a ``superpos train-model`` folder (model.safetensors, config.json,
tokenizer.json) or a TransformerLens one-layer folder (give ``--corpus``). The rows are the first N
of the SAE stage's own activation stream on the corpus's training split (docs/activation-cache.md).
Ctrl+C keeps the shards written; the same command with ``--resume`` continues at the first missing
one. A finished cache is reused as it is; ``--verify`` checks its shards' checksums.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.cli.flags import add_device_arguments
from engine.cli.progress import ProgressPrinter, drive
from engine.config import ConfigError
from engine.events import CancelToken

__all__ = ["register", "cmd_cache_activations", "load_trained_model", "open_cache"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cache-activations", help="compute a model's MLP activations once into a sharded cache folder",
        description="Run the model once over the corpus and write its MLP activations into a folder of "
                    "memory-mapped shards, so several SAEs (train-sae --activations DIR, sweeps) train "
                    "without recomputing the model.")
    p.add_argument("--from", dest="source", required=True, metavar="MODEL",
                   help="a bundle (.h5), a train-model folder, or a TransformerLens one-layer folder")
    p.add_argument("--tokens", type=int, required=True, metavar="N", help="activation vectors (token positions) to cache")
    p.add_argument("--out", required=True, metavar="DIR", help="the cache folder (new or empty)")
    p.add_argument("--corpus", metavar="SPEC", help="builtin, a file, a folder, .jsonl or hf:NAME (default: the model's)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="storage type of the shards (read back as float32); default float32")
    p.add_argument("--shard-rows", type=int, default=65_536, metavar="ROWS", help="rows per shard file; default 65536")
    p.add_argument("--seed", type=int, help="the stream's seed (default: the model's SAE seed, else 0)")
    add_device_arguments(p, precision=False)
    p.add_argument("--resume", action="store_true", help="finish an interrupted cache in --out")
    p.add_argument("--verify", action="store_true", help="afterwards, check every shard's checksum")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_cache_activations)


def load_trained_model(path: str | Path):
    """(model in eval mode, RunConfig or None, Tokenizer) from a bundle, a train-model or a TransformerLens folder."""
    from engine.inputs import regular_file
    from engine.interop import InteropError, load_model, load_tokenizer

    path = Path(path)
    if path.is_dir() and (path / "model.safetensors").exists() and (path / "config.json").exists():
        from safetensors.torch import load_file

        from engine.config import RunConfig
        from engine.data.tokenizer import Tokenizer
        from engine.model import OneLayerTransformer

        for name in ("model.safetensors", "config.json", "tokenizer.json"):
            regular_file(path / name, InteropError, name)
        cfg = RunConfig.from_dict(json.loads((path / "config.json").read_text(encoding="utf-8")))
        model = OneLayerTransformer.from_state_dict(cfg.model, load_file(str(path / "model.safetensors")))
        return model.eval(), cfg, Tokenizer.load(path / "tokenizer.json")
    if path.suffix in (".h5", ".hdf5"):
        from engine.bundle import open_bundle

        regular_file(path, InteropError, "bundle")
        with open_bundle(path) as bundle:
            return bundle.load_model().eval(), bundle.config, bundle.tokenizer()
    return load_model(path).eval(), None, load_tokenizer(path, model_path=path)


def open_cache(folder, seed: int = 0, **expect):
    """A ``ShardedActivationSource`` after checking its manifest and shards are regular files (FIFOs,
    devices and link loops are refused before anything opens them)."""
    from engine.inputs import regular_file
    from engine.data.act_cache import MANIFEST, ActivationCacheError, ShardedActivationSource, shard_name

    folder = Path(folder)
    if (folder / MANIFEST).exists() or (folder / MANIFEST).is_symlink():
        regular_file(folder / MANIFEST, ActivationCacheError, "manifest")
        for i in range(len(list(folder.glob("shard-*.npy")))):
            if (folder / shard_name(i)).exists() or (folder / shard_name(i)).is_symlink():
                regular_file(folder / shard_name(i), ActivationCacheError, "shard file")
    return ShardedActivationSource(folder, seed=seed, **expect)


def cmd_cache_activations(args: argparse.Namespace) -> int:
    from engine.config import CorpusConfig
    from engine.data.act_cache_write import write_activation_cache
    from engine.data.token_cache import tokenize_corpus
    from engine.device import resolve_device

    if args.tokens < 1:
        raise ConfigError(f"--tokens: the activations to cache must be at least 1; got {args.tokens}")
    if args.shard_rows < 1:
        raise ConfigError(f"--shard-rows: rows per shard must be at least 1; got {args.shard_rows}")
    model, cfg, tokenizer = load_trained_model(args.source)
    if cfg is None and not args.corpus:
        raise ConfigError(f"--corpus: {args.source} carries no corpus of its own; say which text to run it on")
    corpus = cfg.corpus if cfg is not None else CorpusConfig(spec=args.corpus)
    if cfg is not None and args.corpus:
        corpus = corpus.replace(spec=args.corpus)
    seed = args.seed if args.seed is not None else (cfg.sae.seed if cfg is not None else 0)
    buffer_batches = cfg.sae.buffer_batches if cfg is not None else 16
    device = resolve_device(args.device)
    cancel = CancelToken()
    printer = ProgressPrinter(quiet=args.quiet)
    data = drive(tokenize_corpus(corpus, tokenizer, cancel=cancel), cancel, printer)
    model.to(device)
    out = drive(write_activation_cache(args.out, model, data.train, args.tokens, seed=seed,
                                       buffer_batches=buffer_batches, shard_rows=args.shard_rows, dtype=args.dtype,
                                       device=str(device), resume=args.resume, cancel=cancel), cancel, printer)
    cache = open_cache(out)
    if args.verify:
        cache.verify()
    size = sum(entry["bytes"] for entry in cache.manifest["shards"])
    print(f"activation cache {out}: {cache.n:,} activations x {cache.d_in} ({cache.dtype}) in "
          f"{len(cache.manifest['shards'])} shard(s), {size / 2**20:,.1f} MiB" + ("; checksums verified" if args.verify else ""))
    print(f"train from it with:  superpos train-sae --activations {out} --out sae.h5")
    return 0
