"""``superpos``: the headless command line.

    superpos run --corpus builtin --preset demo --out demo.h5     # the whole pipeline -> bundle
    superpos train-model --corpus notes/ --preset tiny --out runs/m1
    superpos train-sae --activations acts.npy --d-sae 4096 --out sae.h5
    superpos eval BUNDLE --json
    superpos info BUNDLE

Every error a user can cause prints one line and exits with status 1 (``--debug`` shows the
traceback). Ctrl+C asks the running job to stop at its next step; it saves a checkpoint, and the
same command with ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from engine import __version__
from engine.config import SAE_RECIPES, ConfigError, RunConfig, preset, preset_description, preset_names
from engine.events import Cancelled, CancelToken, Message, Progress, StageFinished, StageStarted, TrainingDiverged

__all__ = ["main", "build_parser", "drive", "config_from_args", "user_errors"]


# ------------------------------------------------------------------------------------------ output
class ProgressPrinter:
    """Turns engine events into tqdm bars (one per stage) with ETA and the stage's live metrics."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.bar = None

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if isinstance(event, StageStarted):
            self._close()
            prefix = f"[{event.index + 1}/{event.n_stages}] " if event.n_stages > 1 else ""
            self.bar = tqdm(total=event.total or None, desc=f"{prefix}{event.stage}", unit=event.unit or "it",
                            unit_scale=True, file=self.stream, dynamic_ncols=True, leave=True,
                            mininterval=0.5)
        elif isinstance(event, Progress) and self.bar is not None:
            if event.total and self.bar.total != event.total:
                self.bar.total = event.total
            self.bar.n = event.done
            if event.metrics:
                self.bar.set_postfix({k: _fmt(v) for k, v in event.metrics.items()}, refresh=False)
            self.bar.refresh()
        elif isinstance(event, StageFinished):
            if self.bar is not None and self.bar.total:
                self.bar.n = self.bar.total
            self._close()
        elif isinstance(event, Message):
            write = tqdm.write if self.bar is not None else (lambda s, file: print(s, file=file))
            write(("warning: " if event.level == "warning" else "") + event.text, file=self.stream)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    close = _close


def _fmt(value: float) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def drive(job, cancel: CancelToken, printer: ProgressPrinter):
    """Run a generator job to the end, printing its events; Ctrl+C sets ``cancel``."""
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if cancel.cancelled:  # second Ctrl+C: stop now
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        cancel.cancel()
        print("\nstopping at the next step (Ctrl+C again to abort now)...", file=sys.stderr)

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        pass
    try:
        while True:
            try:
                printer(next(job))
            except StopIteration as stop:
                return stop.value
    finally:
        printer.close()
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass


# ------------------------------------------------------------------------------------------ config
def _add_run_options(p: argparse.ArgumentParser, with_sae: bool) -> None:
    g = p.add_argument_group("data and model")
    g.add_argument("--corpus", default="builtin", metavar="SPEC",
                   help="'builtin' (stdlib code, Python docs prose, DNA, base64, hex, other scripts), a text "
                        "file, a folder of .txt/.md/.py/.rst/.json files, a .jsonl file with a 'text' field, "
                        "or hf:NAME[:split] (needs the 'datasets' package and a network). Default: builtin")
    g.add_argument("--preset", default="demo", choices=preset_names(),
                   help="size preset: " + "; ".join(f"{n}: {preset_description(n)}" for n in preset_names()))
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to train (auto: CUDA, then Apple MPS, then CPU)")
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
        s.add_argument("--d-sae", type=int, help="dictionary size (features)")
        s.add_argument("--recipe", choices=SAE_RECIPES, help="SAE training recipe")
        s.add_argument("--k", type=int, help="topk recipe: active features per token")
        s.add_argument("--l1", type=float, help="2023 / 2024-04 recipes: sparsity penalty lambda")
        s.add_argument("--sae-activations", type=int, help="SAE training budget in activation vectors")
        s.add_argument("--harvest-tokens", type=int, help="held-out tokens scanned for feature statistics")


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
    sae = pick(d_sae=getattr(args, "d_sae", None), recipe=getattr(args, "recipe", None),
               k=getattr(args, "k", None), l1_coeff=getattr(args, "l1", None),
               n_activations=getattr(args, "sae_activations", None))
    harvest = pick(n_tokens=getattr(args, "harvest_tokens", None))
    return cfg.with_overrides(corpus=corpus, tokenizer=tokenizer, model=model, train=train, sae=sae,
                              harvest=harvest, device=args.device)


# ------------------------------------------------------------------------------------------ commands
def cmd_run(args: argparse.Namespace) -> int:
    from engine.pipeline import run_pipeline

    cfg = config_from_args(args)
    cancel = CancelToken()
    out = drive(run_pipeline(cfg, args.out, workdir=args.workdir, resume=args.resume, cancel=cancel),
                cancel, ProgressPrinter(quiet=args.quiet))
    print(f"bundle written: {out}")
    print(f"explore it with:  superpos-app {out}")
    return 0


def cmd_train_model(args: argparse.Namespace) -> int:
    from engine.pipeline import prepare_data, staged
    from engine.training import train_model, unigram_entropy

    cfg = config_from_args(args)
    out = Path(args.out)
    cancel = CancelToken()
    printer = ProgressPrinter(quiet=args.quiet)

    def job():
        data = yield from prepare_data(cfg, out, resume=args.resume, cancel=cancel, n_stages=3)
        result = yield from staged(train_model(
            data.config.model, data.config.train, data.tokens.train, data.tokens.val,
            device=cfg.device, checkpoint_dir=out, resume=args.resume, cancel=cancel), 2, 3)
        return data, result

    data, result = drive(job(), cancel, printer)
    from safetensors.torch import save_file

    from engine.fileio import atomic_path
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(tmp))
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(data.config.to_json(), encoding="utf-8")
    unigram = unigram_entropy(data.tokens.val, data.config.model.vocab_size)
    print(f"validation loss {result.final_val_loss:.3f} nats/token (unigram entropy {unigram:.3f}); "
          f"{result.tokens_seen:,} tokens in {result.seconds:.0f} s")
    print(f"wrote {out / 'model.safetensors'}, {out / 'config.json'} and {out / 'tokenizer.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="superpos", description="Train a one-layer transformer and a sparse autoencoder on your text, "
                                     "and compute the statistics the superpos app explores.")
    parser.add_argument("--version", action="version", version=f"superpos {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="the whole pipeline: tokenizer, model, SAE, evaluation, statistics -> bundle",
                       description="Run the whole pipeline and write one HDF5 result bundle.")
    _add_run_options(p, with_sae=True)
    p.add_argument("--out", required=True, metavar="BUNDLE.h5", help="where to write the bundle")
    p.add_argument("--workdir", metavar="DIR", help="folder for checkpoints and the tokenizer "
                                                     "(default: a folder in the user cache keyed by the settings)")
    p.add_argument("--resume", action="store_true", help="continue a cancelled or crashed run with the same settings")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train-model", help="train only the tokenizer and the one-layer transformer",
                       description="Train a byte-level BPE tokenizer and the one-layer transformer. Writes "
                                   "tokenizer.json, model.safetensors, config.json and a resumable checkpoint to --out.")
    _add_run_options(p, with_sae=False)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_model)

    for module in ("engine.cli_sae", "engine.cli_bundle"):
        try:
            register = __import__(module, fromlist=["register"]).register
        except ImportError:
            continue
        register(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user (printed as one line, no traceback)."""
    errors: list[type[BaseException]] = [ConfigError, TrainingDiverged, ValueError, OSError]
    for module, name in (("engine.corpus", "CorpusError"), ("engine.tokenizer", "TokenizerError"),
                         ("engine.bundle", "BundleError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Cancelled as exc:
        where = f" (checkpoint: {exc.checkpoint})" if exc.checkpoint else ""
        print(f"superpos: {exc}{where}; run the same command with --resume to continue", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("superpos: interrupted", file=sys.stderr)
        return 130
    except user_errors() as exc:
        if args.debug:
            traceback.print_exc()
        print(f"superpos: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line unless --debug, but say it is unexpected
        if args.debug:
            traceback.print_exc()
        print(f"superpos: unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
