"""How long does the GUI thread wait while an engine job runs?

A 10 ms QTimer ticks on the GUI thread while the job controller runs a job on its worker thread;
we print the gaps between ticks (max, 99th percentile, median). Target: max <= 100 ms
(the app's acceptance test allows 250 ms on CI).

The job is the real ``tiny`` pipeline (``engine.pipeline.run_pipeline``: tokenizer, model, SAE,
harvest, bundle) when the engine has it, else a representative workload: training the one-layer
transformer (engine.model) with AdamW for the same wall time.

    python benchmarks/bench_responsiveness.py [--seconds 20] [--workload auto|pipeline|model]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["SUPERPOS_SYNC_JOBS"] = "0"          # what is measured is the real worker thread
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures import add_json_flag, write_json  # noqa: E402


def model_job(seconds: float):
    import torch

    from engine.config import preset
    from engine.events import Cancelled, Progress, StageStarted
    from engine.model import OneLayerTransformer

    cfg = preset("demo")

    def job(cancel):
        torch.manual_seed(0)
        model = OneLayerTransformer(cfg.model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        B, T, V = 8, cfg.model.n_ctx, cfg.model.vocab_size
        yield StageStarted("model", total=0, unit="steps", n_stages=1)
        t_end, step = time.perf_counter() + seconds, 0
        while time.perf_counter() < t_end:
            if cancel.cancelled:
                raise Cancelled()
            idx = torch.randint(0, V, (B, T + 1))
            loss = model.loss(idx[:, :-1], idx[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            yield Progress("model", done=step, total=0, step=step, metrics={"loss": loss.item()}, unit="steps")
        return step
    return job


def pipeline_job(workdir: Path):
    from engine.config import preset
    from engine.pipeline import run_pipeline

    cfg = preset("tiny")
    return lambda cancel: run_pipeline(cfg, workdir / "tiny.h5", workdir=workdir / "work", cancel=cancel)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the model workload")
    parser.add_argument("--workload", choices=("auto", "pipeline", "model"), default="auto")
    add_json_flag(parser)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from superpos_app.workers.jobs import JobController
    from superpos_app.workers.worker import freeze_long_lived

    workload = args.workload
    if workload == "auto":
        try:
            import engine.pipeline  # noqa: F401
            workload = "pipeline"
        except ImportError:
            workload = "model"

    app = QApplication.instance() or QApplication([])
    freeze_long_lived()                    # as the app's entry point does (superpos_app.workers.worker)
    tmp = Path(tempfile.mkdtemp(prefix="superpos-bench-"))
    os.environ.setdefault("SUPERPOS_HOME", str(tmp / "home"))
    jobs = JobController()
    factory = pipeline_job(tmp) if workload == "pipeline" else model_job(args.seconds)

    gaps: list[int] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: gaps.append(clock.restart()) if clock.isValid() else clock.start())
    outcome = {}
    jobs.jobFinished.connect(lambda r: (outcome.setdefault("result", r), app.quit()))
    jobs.jobFailed.connect(lambda m, d: (outcome.setdefault("error", m), app.quit()))
    jobs.jobCancelled.connect(lambda m: (outcome.setdefault("error", m), app.quit()))
    status_updates = [0]
    jobs.statusChanged.connect(lambda s: status_updates.__setitem__(0, status_updates[0] + 1))

    timer.start()
    t0 = time.perf_counter()
    jobs.start(workload, factory)
    app.exec()
    seconds = time.perf_counter() - t0
    timer.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    if "error" in outcome:
        print(f"job failed: {outcome['error']}")
        return 1
    g = np.asarray(gaps, dtype=float)
    print(f"workload: {workload} ({seconds:.1f} s, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, {jobs.events_seen} events, {status_updates[0]} GUI status updates)")
    print(f"GUI timer (10 ms) ticks: {len(g)}; gap max {g.max():.0f} ms, p99 {np.percentile(g, 99):.0f} ms, "
          f"median {np.median(g):.0f} ms  (target max <= 100 ms)")
    write_json(args.json, {"workload": workload, "seconds": seconds, "max_ms": float(g.max()),
                           "p99_ms": float(np.percentile(g, 99)), "median_ms": float(np.median(g))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
