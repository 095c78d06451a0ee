"""The parent side of the fuzz suite: run batches of files through tests/fuzz_child.py in
subprocesses, so that a segfault or a hang fails one variant instead of killing the test run.

``run_child(mode, items, folder)`` returns {index: Outcome}. The child reports ``START i`` / ``DONE i``
lines; when it dies (a signal, a non-zero exit) the variant it had started is rerun alone to confirm
the crash is its own, and a fresh child continues with the rest. A variant with no ``DONE`` within
``timeout_s`` is a hang: the child is killed and the rest continue.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

CHILD = Path(__file__).with_name("fuzz_child.py")
ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Outcome:
    status: str                      # "ok" (an answer came back), "crash", "hang"
    detail: dict                     # the child's answer, or {"returncode": ..., "stderr": ...}


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _start(mode: str, items: list, folder: Path, tag: str) -> tuple[subprocess.Popen, queue.Queue, Path]:
    listing = folder / f"todo-{mode}-{tag}.json"
    listing.write_text(json.dumps(items))
    err = folder / f"stderr-{mode}-{tag}.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", str(CHILD), mode, str(listing)],
                            stdout=subprocess.PIPE, stderr=open(err, "w"), text=True, env=env, cwd=folder)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    return proc, lines, err


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def run_child(mode: str, items: list[tuple[int, str]], folder: Path, timeout_s: float = 60.0,
              confirm: bool = True) -> dict[int, Outcome]:
    """Open every (index, path) in ``items`` through ``mode`` ("cli" or "app") in child processes."""
    results: dict[int, Outcome] = {}
    todo = list(items)
    attempt = 0
    while todo:
        attempt += 1
        proc, lines, err = _start(mode, todo, folder, str(attempt))
        current = None
        while True:
            try:
                line = lines.get(timeout=timeout_s)
            except queue.Empty:                           # no progress: the current variant hangs
                proc.kill()
                proc.wait()
                if current is not None:
                    results[current] = Outcome("hang", {"stderr": _tail(err)})
                break
            if line is None:                              # the child ended
                proc.wait()
                if current is not None and current not in results:
                    detail = {"returncode": proc.returncode, "stderr": _tail(err)}
                    if confirm and len(todo) > 1:         # alone, to be sure the crash is this variant's
                        alone = run_child(mode, [(current, dict(todo)[current])], folder, timeout_s, False)
                        detail["alone"] = dataclasses.asdict(alone[current])
                    results[current] = Outcome("crash", detail)
                break
            word, _, rest = line.strip().partition(" ")
            if word == "START":
                current = int(rest)
            elif word == "DONE":
                index, _, payload = rest.partition(" ")
                results[int(index)] = Outcome("ok", json.loads(payload))
                current = None
        todo = [(i, p) for i, p in todo if i not in results]
        if attempt > len(items) + 1:                      # pragma: no cover - cannot make progress
            for i, _p in todo:
                results[i] = Outcome("crash", {"stderr": "the child made no progress"})
            break
    return results
