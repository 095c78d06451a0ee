"""``superpos train-sae`` and ``superpos eval``: the SAE commands of the command line.

    superpos train-sae --activations acts.npy --d-sae 4096 --recipe topk --k 24 --out sae.h5
    superpos train-sae --activations acts/ --d-sae 4096 --out sae.h5      # a cache-activations folder
    superpos eval demo.h5 --json
    superpos eval demo.h5 --json --recompute --corpus notes/ --n-tokens 100000

``train-sae`` trains on an [n, d_in] float array you already have (.npy, or the first 2-D float
dataset of an .h5 file, or --dataset NAME) or on a sharded cache folder made by
``superpos cache-activations`` (memory-mapped, nothing recomputed), and writes the SAE with its config into the ``/sae``
group of an HDF5 file (see docs/bundle-format.md), readable with plain h5py.
``eval`` prints the evaluation stored in a bundle, or recomputes it on a corpus's held-out split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.analysis.metrics import METRIC_KEYS, json_safe
from engine.cli.bundle_cmds import shown_metrics
from engine.cli.flags import SAE_FLAGS, add_device_arguments, validated
from engine.cli.progress import ProgressPrinter, drive
from engine.cli.recipe_args import add_recipe_arguments, recipe_changes
from engine.config import SAE_RECIPES, ConfigError, SAEConfig
from engine.events import CancelToken
from engine.numbers import readable

__all__ = ["register", "cmd_train_sae", "cmd_eval"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-sae", help="train a sparse autoencoder on an activations file (.npy / .h5)",
        description="Train a sparse autoencoder on activations you already have: an [n, d_in] float array "
                    "in a .npy file or an .h5 file. Writes the SAE and its config into the /sae group of "
                    "an HDF5 file.")
    p.add_argument("--activations", required=True, metavar="FILE_OR_DIR",
                   help="[n, d_in] float array (.npy or .h5), or a cache-activations folder")
    p.add_argument("--dataset", metavar="NAME", help=".h5 only: the dataset to read (default: the first 2-D float one)")
    p.add_argument("--out", required=True, metavar="OUT.h5", help="where to write the SAE")
    p.add_argument("--d-sae", type=int, default=4096, help="dictionary size (features); default 4096")
    add_recipe_arguments(p, default=SAE_RECIPES[0])
    p.add_argument("--aux-k", type=int, help="topk / batchtopk / matryoshka: dead latents used by the AuxK loss")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--n-activations", type=int, help="training budget in activation vectors (epochs repeat)")
    p.add_argument("--batch-size", type=int, help="activation vectors per step")
    p.add_argument("--dead-window", type=int, help="activations without firing after which a latent is dead")
    add_device_arguments(p, precision=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", metavar="DIR", help="save resumable checkpoints here")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_sae, distributed=True)

    p = subparsers.add_parser(
        "eval", help="print a bundle's SAE evaluation (loss recovered, L0, dead features, ...)",
        description="Print the SAE evaluation stored in a bundle, or recompute it on held-out text.")
    p.add_argument("bundle", metavar="BUNDLE", help="a superpos bundle (.h5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--recompute", action="store_true",
                   help="recompute on the held-out split of --corpus (default: the bundle's own corpus)")
    p.add_argument("--corpus", metavar="SPEC", help="with --recompute: builtin, a file, a folder, .jsonl or hf:NAME")
    p.add_argument("--n-tokens", type=int, help="with --recompute: held-out tokens to use")
    add_device_arguments(p, precision=False)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)


# ------------------------------------------------------------------------------------------ train-sae
def sae_config_from_args(args: argparse.Namespace, d_in: int) -> SAEConfig:
    changes = {**recipe_changes(args), "d_in": d_in, "d_sae": args.d_sae, "seed": args.seed}
    for arg, key in (("aux_k", "aux_k"), ("lr", "lr"),
                     ("n_activations", "n_activations"), ("batch_size", "batch_size"),
                     ("dead_window", "dead_window")):
        value = getattr(args, arg, None)
        if value is not None:
            changes[key] = value
    return validated(lambda: SAEConfig(**changes).validate(), SAE_FLAGS)


def _activation_source(args: argparse.Namespace):
    from engine.data.act_cache import is_activation_cache
    from engine.data.activations import ArrayActivationSource

    if Path(args.activations).is_dir():
        if args.dataset:
            raise ConfigError("--dataset names a dataset of an .h5 file; an activation cache folder has none")
        if not is_activation_cache(args.activations):
            raise ConfigError(f"--activations: {args.activations} is a folder but not an activation cache "
                              "(make one with superpos cache-activations)")
        from engine.cli.cache_cmds import open_cache

        return open_cache(args.activations, seed=args.seed)
    return ArrayActivationSource(args.activations, seed=args.seed, dataset=args.dataset)


def cmd_train_sae(args: argparse.Namespace) -> int:
    from engine.bundle import write_sae_file
    from engine.device import resolve_device
    from engine.train.distributed import is_writer
    from engine.train.sae_job import train_sae

    sae_config_from_args(args, d_in=1)            # the flags, checked before the file is read
    source = _activation_source(args)
    cfg = sae_config_from_args(args, source.d_in)
    if cfg.batch_size > source.n:
        cfg = cfg.replace(batch_size=source.n)
    device = resolve_device(args.device)
    cancel = CancelToken()
    result = drive(train_sae(cfg, source, device=str(device), checkpoint_dir=args.checkpoint_dir,
                             resume=args.resume, cancel=cancel, precision=args.precision), cancel, ProgressPrinter(quiet=args.quiet))
    if not is_writer():                   # torchrun: rank 0 writes the SAE
        return 0
    out = write_sae_file(args.out, result.sae.state_dict(), cfg.to_dict())
    final = result.final
    print(f"trained a {cfg.recipe} SAE {cfg.d_in} -> {cfg.d_sae} on {result.n_activations:,} activations in "
          f"{result.seconds:.0f} s: mse {final.get('mse', float('nan')):.4g} (training scale), "
          f"L0 {final.get('l0', float('nan')):.1f}, dead {final.get('dead_fraction', float('nan')):.1%}")
    print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------------------------ eval
def _print_metrics(metrics: dict, as_json: bool) -> None:
    """The evaluation; "dead" means never fired on any of ``dead_judged_on_tokens`` tokens (the harvest's, for
    a stored evaluation: the count the app and `superpos info` show)."""
    keys = list(METRIC_KEYS)
    keys[keys.index("dead_fraction") + 1:1 + keys.index("dead_fraction")] = [
        k for k in ("dead_judged_on_tokens", "eval_never_active_fraction") if k in metrics]
    shown = {key: metrics.get(key) for key in keys}
    if as_json:
        print(json.dumps(json_safe(shown), indent=2))
        return
    for key, value in shown.items():
        text = readable(value)
        print(f"{key:>26}  {text}")


def cmd_eval(args: argparse.Namespace) -> int:
    from engine.bundle import open_bundle

    if args.n_tokens is not None and args.n_tokens < 1:
        raise ConfigError(f"--n-tokens: the held-out tokens to evaluate on must be at least 1; got {args.n_tokens}")

    with open_bundle(args.bundle) as bundle:
        if not args.recompute:
            if args.corpus or args.n_tokens:
                raise ConfigError("--corpus and --n-tokens need --recompute")
            if not bundle.metrics:
                raise ConfigError(f"{args.bundle} stores no evaluation; use --recompute --corpus SPEC")
            metrics = shown_metrics(bundle)
        else:
            metrics = _recompute(bundle, args)
    _print_metrics(metrics, args.json)
    return 0


def _recompute(bundle, args: argparse.Namespace) -> dict:
    from engine.data.token_cache import tokenize_corpus
    from engine.device import resolve_device
    from engine.analysis.evaluate import evaluate_job

    cfg = bundle.config
    corpus_cfg = cfg.corpus.replace(spec=args.corpus) if args.corpus else cfg.corpus
    tokenizer = bundle.tokenizer()
    model = bundle.load_model()
    sae = bundle.load_sae()
    device = resolve_device(args.device)
    cancel = CancelToken()
    data = drive(tokenize_corpus(corpus_cfg, tokenizer, cancel=cancel), cancel, ProgressPrinter(quiet=args.quiet))
    n_tokens = args.n_tokens or cfg.harvest.eval_tokens
    model.to(device)
    sae.to(device)
    metrics = drive(evaluate_job(model, sae, data.val, n_tokens, device=str(device), cancel=cancel), cancel,
                    ProgressPrinter(quiet=args.quiet))
    metrics = {key: value for key, value in metrics.items() if key != "feature_density"}
    metrics["dead_judged_on_tokens"] = metrics["n_tokens"]          # dead: never fired on these tokens
    return metrics
