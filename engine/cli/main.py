"""``superpos``: the headless command line.

    superpos run --corpus builtin --preset demo --out demo.h5     # the whole pipeline -> bundle
    superpos train-model --corpus notes/ --preset tiny --out runs/m1
    superpos train-sae --activations acts.npy --d-sae 4096 --out sae.h5
    superpos cache-activations --from demo.h5 --tokens 2000000 --out acts/   # then train-sae --activations acts/
    superpos eval BUNDLE --json
    superpos info BUNDLE
    superpos explain BUNDLE --endpoint http://localhost:11434/v1 --model llama3.1

Each command lives in the module of its subject (run_cmds, sae_cmds, bundle_cmds) and raises what
goes wrong; ``main`` is the one place that turns errors into exit codes. Every error a user can
cause (``engine.errors.UserError``, or a file the system refuses: ``OSError``) prints one line and
exits with status 1 (``--debug`` shows the traceback). Ctrl+C asks the running job to stop at its
next step; it saves a checkpoint, and the same command with ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback

from engine import __version__
from engine.cli import analyze_cmds, bundle_cmds, cache_cmds, explain_cmds, run_cmds, sae_cmds, toy_cmds
from engine.cli.terminal import terminal_safe
from engine.errors import USER_ERRORS
from engine.events import Cancelled

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="superpos", description="Train a one-layer transformer and a sparse autoencoder on your text, "
                                     "and compute the statistics the superpos app explores.")
    parser.add_argument("--version", action="version", version=f"superpos {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for commands in (run_cmds, analyze_cmds, sae_cmds, cache_cmds, bundle_cmds, explain_cmds, toy_cmds):
        commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _process_group(args):
            return int(args.func(args) or 0)
    except Cancelled as exc:
        where = f" (checkpoint: {exc.checkpoint})" if exc.checkpoint else ""
        print(f"superpos: {exc}{where}; run the same command with --resume to continue", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("superpos: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if args.debug:
            traceback.print_exc()
        print(f"superpos: error: {terminal_safe(exc)}", file=sys.stderr)   # messages may quote file contents
        return 1
    except Exception as exc:  # a bug: still one line unless --debug, but say it is unexpected
        if args.debug:
            traceback.print_exc()
        print(f"superpos: unexpected error: {type(exc).__name__}: {terminal_safe(exc)} (run with --debug for details)",
              file=sys.stderr)
        return 1


@contextlib.contextmanager
def _process_group(args: argparse.Namespace):
    """Under torchrun (WORLD_SIZE > 1): join the process group for the command, rank 0 alone printing
    progress (``engine.train.distributed``, docs/distributed.md); otherwise nothing (and no torch import)."""
    if os.environ.get("WORLD_SIZE", "1").strip() in ("", "1"):
        yield
        return
    from engine.config import ConfigError
    from engine.train import distributed

    if not getattr(args, "distributed", False):
        raise ConfigError(f"superpos {args.command} does not run under torchrun; torchrun runs "
                          "superpos run, train-model and train-sae (start this command alone)")
    with distributed.session(getattr(args, "device", "auto")):
        if not distributed.is_writer():
            args.quiet = True             # one rank prints progress
        yield


if __name__ == "__main__":
    sys.exit(main())
