"""``superpos run`` (the whole pipeline -> one bundle) and ``superpos train-model``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.cli.flags import RUN_FLAGS, add_device_arguments, validated
from engine.cli.progress import ProgressPrinter, drive
from engine.cli.recipe_args import add_recipe_arguments, recipe_changes
from engine.config import (ConfigError, RunConfig, parse_seeds, parse_sizes, preset, preset_description,
                           preset_family, preset_names)
from engine.events import CancelToken

__all__ = ["register", "config_from_args", "cmd_run", "cmd_train_model"]


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="the whole pipeline: tokenizer, model, SAE, evaluation, statistics -> bundle",
                       description="Run the whole pipeline and write one HDF5 result bundle.")
    _add_run_options(p, with_sae=True)
    p.add_argument("--out", required=True, metavar="BUNDLE.h5", help="where to write the bundle")
    p.add_argument("--workdir", metavar="DIR", help="folder for checkpoints and the tokenizer "
                                                     "(default: a folder in the user cache keyed by the settings)")
    p.add_argument("--resume", action="store_true", help="continue a cancelled or crashed run with the same settings")
    p.add_argument("--activation-cache", metavar="DIR",
                   help="write the SAE stage's activations once into this cache folder (or reuse the one there) "
                        "and train from it; see docs/activation-cache.md")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run, distributed=True)

    p = subparsers.add_parser("train-model", help="train only the tokenizer and the one-layer transformer",
                       description="Train a byte-level BPE tokenizer and the one-layer transformer. Writes "
                                   "tokenizer.json, model.safetensors, config.json and a resumable checkpoint to --out.")
    _add_run_options(p, with_sae=False)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_model, distributed=True)


def _add_run_options(p: argparse.ArgumentParser, with_sae: bool) -> None:
    g = p.add_argument_group("data and model")
    g.add_argument("--corpus", default="builtin", metavar="SPEC",
                   help="'builtin' (stdlib code, Python docs prose, DNA, base64, hex, real words of ten "
                        "languages), a text file, a folder of .txt/.md/.py/.rst/.json files, a .jsonl file "
                        "with a 'text' field, or hf:NAME[:split] (needs the 'datasets' package and a network). Default: builtin")
    g.add_argument("--preset", default="demo", choices=preset_names(),
                   help="size preset (default demo). " + " ".join(f"{n}: {preset_description(n)}"
                                                                  for n in preset_names()))
    add_device_arguments(g, precision=True, compile=True)
    g.add_argument("--max-chars", type=int, help="use at most this many characters of the corpus")
    g.add_argument("--tokenizer", metavar="TOKENIZER.json", help="use this tokenizer instead of training one")
    g.add_argument("--vocab-size", type=int, help="BPE vocabulary size")
    g.add_argument("--n-ctx", type=int, help="context length in tokens")
    g.add_argument("--d-model", type=int, help="residual stream width")
    g.add_argument("--d-mlp", type=int, help="MLP neurons")
    g.add_argument("--n-heads", type=int, help="attention heads")
    g.add_argument("--tokens", type=int, help="model training budget in tokens")
    g.add_argument("--batch-size", type=int, help="model training batch, in sequences")
    g.add_argument("--lr", type=float, help="model peak learning rate")
    g.add_argument("--seed", type=int, help="seed for the corpus split and the model")
    if with_sae:
        s = p.add_argument_group("sparse autoencoder and statistics")
        s.add_argument("--d-sae", type=_sizes, metavar="F[,F...]",
                       help="dictionary size (features); several, e.g. 512,4096,16384, train a family of "
                            "SAEs from one pass over the activations into one bundle")
        s.add_argument("--model-seeds", type=_seeds, metavar="S,S",
                       help="two model seeds, e.g. 0,1: also train a second model and its dictionaries of the "
                            "same sizes, and match features and neurons across the two (universality)")
        add_recipe_arguments(s)
        s.add_argument("--sae-activations", type=int, help="SAE training budget in activation vectors")
        s.add_argument("--harvest-tokens", type=int, help="held-out tokens scanned for feature statistics")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return parse_sizes(text)             # each is checked by RunConfig.validate (config_from_args)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return parse_seeds(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = preset(args.preset)
    corpus: dict[str, Any] = {"spec": args.corpus}
    if args.max_chars is not None:
        corpus["max_chars"] = args.max_chars
    pick = lambda **kw: {k: v for k, v in kw.items() if v is not None}  # noqa: E731
    tokenizer = pick(path=args.tokenizer, vocab_size=args.vocab_size)
    model = pick(n_ctx=args.n_ctx, d_model=args.d_model, d_mlp=args.d_mlp, n_heads=args.n_heads)
    if args.vocab_size is not None:
        model["vocab_size"] = args.vocab_size
    train = pick(tokens=args.tokens, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    if args.seed is not None:
        corpus["seed"] = args.seed
    sizes = getattr(args, "d_sae", None) or ()
    sae = {**pick(d_sae=sizes[0] if sizes else None, n_activations=getattr(args, "sae_activations", None)),
           **recipe_changes(args)}
    harvest = pick(n_tokens=getattr(args, "harvest_tokens", None))
    # every setting checked here, before the tokenizer or anything slow starts
    for d in sizes[1:]:     # a family's further sizes: the same rules as the first
        validated(lambda d=d: cfg.with_overrides(sae={"d_sae": d}).validate(), RUN_FLAGS)
    return validated(lambda: cfg.with_overrides(corpus=corpus, tokenizer=tokenizer, model=model, train=train,
                                                sae=sae, harvest=harvest, device=args.device,
                                                precision=args.precision, compile=args.compile).validate(),
                     RUN_FLAGS)


def cmd_run(args: argparse.Namespace) -> int:
    from engine.pipeline import run_pipeline

    cfg = config_from_args(args)
    cancel = CancelToken()
    preset_sizes, preset_seeds = preset_family(args.preset)     # demo-family: its sizes and seeds unless given
    sizes = tuple(args.d_sae or preset_sizes)
    sizes = sizes if len(sizes) > 1 else ()
    out = drive(run_pipeline(cfg, args.out, workdir=args.workdir, resume=args.resume, cancel=cancel,
                             family_sizes=sizes, model_seeds=args.model_seeds or preset_seeds,
                             activation_cache=args.activation_cache),
                cancel, ProgressPrinter(quiet=args.quiet))
    from engine.train.distributed import is_writer

    if not is_writer():                   # torchrun: rank 0 writes and reports the bundle
        return 0
    print(f"bundle written: {out}")
    print(f"explore it with:  superpos-app {out}")
    return 0


def cmd_train_model(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from engine.fileio import atomic_path
    from engine.jobs import StageNumbers, numbered
    from engine.pipeline import prepare_data
    from engine.train.distributed import is_writer
    from engine.train.model_job import train_model, unigram_entropy

    cfg = config_from_args(args)
    out = Path(args.out)
    cancel = CancelToken()
    printer = ProgressPrinter(quiet=args.quiet)

    numbers = StageNumbers(("tokenizer", "tokenize", "model"))

    def job():
        data = yield from numbered(prepare_data(cfg, out, resume=args.resume, cancel=cancel), numbers)
        result = yield from numbered(train_model(
            data.config.model, data.config.train, data.tokens.train, data.tokens.val,
            device=cfg.device, checkpoint_dir=out, resume=args.resume, cancel=cancel,
            precision=cfg.precision, compile=cfg.compile), numbers)
        return data, result

    data, result = drive(job(), cancel, printer)
    if not is_writer():                   # torchrun: rank 0 writes the model
        return 0
    with atomic_path(out / "model.safetensors", what="the model") as tmp:
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(tmp))
    with atomic_path(out / "config.json", what="the run configuration") as tmp:
        tmp.write_text(data.config.to_json(), encoding="utf-8")
    unigram = unigram_entropy(data.tokens.val, data.config.model.vocab_size)
    print(f"validation loss {result.final_val_loss:.3f} nats/token (unigram entropy {unigram:.3f}); "
          f"{result.tokens_seen:,} tokens in {result.seconds:.0f} s")
    print(f"wrote {out / 'model.safetensors'}, {out / 'config.json'} and {out / 'tokenizer.json'}")
    return 0
