"""The worker that tests/engine/test_distributed.py starts under the real torchrun (2 gloo processes).

    python -m torch.distributed.run --nproc-per-node 2 ... tests/ddp_child.py AUDIT_DIR [SPEC.json] [-- ARGS...]

- SPEC.json: trains the model, then an SAE per recipe, as the spec says
  (``engine.testing.distributed_jobs.tiny_jobs``, also the test's single-process reference), with checkpoints in the spec's folder, and stops dead after
  ``stop_model`` model steps and ``stop_sae`` SAE steps (a crash: no cancel, no final checkpoint).
- ARGS: then ``engine.cli.main.main(ARGS)``, what the ``superpos`` command runs, in-process.

On every rank but 0 an audit hook (``sys.addaudithook``) records each file opened for writing,
renamed, removed or created as a (new) folder — every Python-level way to write — and the rank reports
them in AUDIT_DIR/rank<r>.json once its job is done (the report itself written after recording
stops). The exit status is the job's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# `python tests/ddp_child.py` puts tests/ first on the path, where tests/engine would shadow the package
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_writes: list[str] = []
_recording = [False]


def _audit(event: str, args: tuple) -> None:
    if not _recording[0]:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                  (isinstance(flags, int) and flags & WRITE_FLAGS)
        if writing:
            _writes.append(f"open {path}")
    elif event == "os.mkdir":
        if not os.path.exists(args[0]):          # exist_ok=True on a folder rank 0 made changes nothing
            _writes.append(f"{event} {args[0]}")
    elif event in ("os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
        _writes.append(f"{event} {args[0]}")


def _crash(spec_path: str) -> None:
    import torch

    from engine.testing.distributed_jobs import drive_until, tiny_jobs

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    model_job, sae_job = tiny_jobs(spec)
    drive_until(model_job, spec["stop_model"])
    for recipe in spec["recipes"]:
        drive_until(sae_job(recipe), spec["stop_sae"])


def main(argv: list[str]) -> int:
    """argv: AUDIT_DIR [SPEC.json] [-- CLI ARGS...]: the crash job when a spec is given, then the command."""
    from engine.train import distributed

    audit_dir = Path(argv[0])
    split = argv.index("--") if "--" in argv else len(argv)
    specs, cli_args = argv[1:split], argv[split + 1:]
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        sys.addaudithook(_audit)
        _recording[0] = True
    rc = 0
    with distributed.session("cpu"):          # one process group for both jobs (main() joins it)
        for spec in specs:
            _crash(spec)
        if cli_args:
            from engine.cli.main import main as cli_main

            rc = cli_main(cli_args)
    _recording[0] = False
    if rank != 0:
        (audit_dir / f"rank{rank}.json").write_text(json.dumps(_writes))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
