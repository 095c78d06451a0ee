"""The job controller: events become throttled signals, cancel is prompt, errors are reported, and the
GUI thread stays responsive while a CPU-heavy torch job runs."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QMessageBox

from engine.events import Cancelled, Message, Progress, StageFinished, StageStarted
from superpos_app.workers.jobs import JobController, JobStatus, format_eta


def counting_job(n, metrics_every=10, sleep_every=0):
    def job(cancel):
        yield StageStarted("model", total=n, unit="steps", index=0, n_stages=2)
        for i in range(n):
            if cancel.cancelled:
                raise Cancelled("stopped", checkpoint="ckpt-here")
            if sleep_every and i % sleep_every == 0:
                time.sleep(0.001)
            metrics = {"loss": 1.0 / (i + 1)} if i % metrics_every == 0 else {}
            yield Progress("model", done=i + 1, total=n, metrics=metrics, eta_s=(n - i) * 1e-4)
        yield StageFinished("model", seconds=0.1, summary={"loss": 0.5})
        yield Message("all done")
        return "the-result"
    return job


def test_events_become_coalesced_signals(qtbot):
    jobs = JobController()
    stages, statuses, points, messages = [], [], [], []
    jobs.stageStarted.connect(lambda *a: stages.append(a))
    jobs.statusChanged.connect(lambda s: statuses.append(s.text))
    jobs.metricsReceived.connect(lambda stage, pts: points.extend(pts))
    jobs.messageReceived.connect(lambda text, level: messages.append(text))
    t0 = time.perf_counter()
    with qtbot.waitSignal(jobs.jobFinished, timeout=20000) as blocker:
        assert jobs.start("count", counting_job(100_000))
        assert not jobs.start("second", counting_job(10))          # one job at a time
    elapsed = time.perf_counter() - t0
    assert blocker.args == ["the-result"]
    assert stages == [("model", 0, 2)]
    assert messages == ["all done"]
    assert jobs.events_seen == 100_003
    # 100k events arrive as at most ~10 status updates per second (plus start/finish), not 100k
    assert len(statuses) <= elapsed * 10 + 4
    assert 1 <= len(points) <= 20_000                          # metric points arrive, thinned if bursty
    assert points[-1][0] <= 100_000 and "loss" in points[-1][1]
    assert not jobs.is_busy and jobs.last_outcome == "finished"


def test_status_text_and_eta():
    s = JobStatus(title="t", stage="sae", stage_index=1, n_stages=7, done=50, total=200, fraction=0.25, eta_s=75)
    assert s.text == "sae (2/7) · 25% · ETA 1:15"
    assert format_eta(3725) == "1:02:05" and format_eta(None) == ""
    s.cancelling = True
    assert s.text == "Cancelling…"


def test_cancel_reaches_the_job_at_its_next_step(qtbot):
    jobs = JobController()
    with qtbot.waitSignal(jobs.jobCancelled, timeout=10000) as blocker:
        jobs.start("slow", counting_job(10_000_000, sleep_every=50))
        qtbot.waitUntil(lambda: jobs.status.done > 0, timeout=5000)     # it runs
        jobs.cancel()
    assert "ckpt-here" in blocker.args[0]                  # the job's own Cancelled: it saw its token
    assert jobs.last_outcome == "cancelled" and not jobs.is_busy


def test_job_ignoring_its_token_is_stopped(qtbot):
    closed = []

    def stubborn(cancel):
        try:
            for i in range(10_000_000):
                time.sleep(0.002)
                yield Progress("model", done=i, total=10_000_000)
        finally:
            closed.append(True)                        # generator.close() lands here

    jobs = JobController()
    with qtbot.waitSignal(jobs.jobCancelled, timeout=10000) as blocker:
        jobs.start("stubborn", stubborn)
        qtbot.waitUntil(lambda: jobs.status.done > 0, timeout=5000)
        jobs.cancel()
    assert blocker.args[0].startswith("Stopped without a new checkpoint")   # the worker closed it
    assert closed == [True] and not jobs.is_busy


def test_engine_error_becomes_a_dialog_and_app_stays_usable(window, qtbot):
    from engine.config import ConfigError

    def broken(cancel):
        yield StageStarted("tokenizer", total=10)
        raise ConfigError("the corpus folder /nowhere does not exist")

    with qtbot.waitSignal(window.jobs.jobFailed, timeout=5000) as blocker:
        window.jobs.start("broken", broken)
    assert blocker.args[0] == "the corpus folder /nowhere does not exist"
    assert "Traceback" in blocker.args[1]
    box = next(w for w in window.findChildren(QMessageBox) if w.objectName() == "errorDialog")
    assert box.isVisible() and "/nowhere" in box.informativeText() and box.detailedText()
    box.accept()
    assert not window.job_box.isVisible()
    with qtbot.waitSignal(window.jobs.jobFinished, timeout=5000):   # the next job runs normally
        window.jobs.start("ok", counting_job(100))


def test_unexpected_error_is_labelled_as_such(qtbot):
    def buggy(cancel):
        yield Message("hi")
        return 1 / 0

    jobs = JobController()
    with qtbot.waitSignal(jobs.jobFailed, timeout=5000) as blocker:
        jobs.start("buggy", buggy)
    assert blocker.args[0].startswith("Unexpected error (ZeroDivisionError)")


def test_progress_bar_and_cancel_button_in_the_window(window, qtbot):
    bar, button = window.job_progress, window.cancel_button
    assert not window.job_box.isVisible()
    window.jobs.start("slow", counting_job(10_000_000, sleep_every=50))
    qtbot.waitUntil(lambda: bar.value() > 0, timeout=5000)
    assert window.job_box.isVisible() and button.isEnabled() and window.cancel_action.isEnabled()
    text = window.job_box.text
    qtbot.waitUntil(lambda: "ETA" in text.text(), timeout=5000)
    assert text.text().startswith("model (1/2)") and text.text() == window.jobs.status.text  # the dialog's text
    qtbot.waitUntil(lambda: text.width() >= text.fontMetrics().horizontalAdvance(text.text()))  # not clipped
    with qtbot.waitSignal(window.jobs.jobCancelled, timeout=3000):
        button.click()
    assert not window.job_box.isVisible() and not window.cancel_action.isEnabled()


def test_sync_mode_runs_inline(qtbot, monkeypatch):
    monkeypatch.setenv("SUPERPOS_SYNC_JOBS", "1")
    jobs = JobController()
    got = []
    jobs.jobFinished.connect(got.append)
    jobs.start("inline", counting_job(50))
    assert got == ["the-result"] and not jobs.is_busy


def torch_job(seconds: float, size: int = 384):
    """CPU-heavy: real matmuls plus the Python bookkeeping a training loop does, yielding often."""
    import torch

    def job(cancel):
        a, b = torch.randn(size, size), torch.randn(size, size)
        t_end = time.perf_counter() + seconds
        step = 0
        while time.perf_counter() < t_end:
            if cancel.cancelled:
                raise Cancelled()
            c = a @ b
            c = torch.relu(c).sum(dim=0)
            bookkeeping = sum(i * i for i in range(2000))       # pure Python: holds the GIL
            step += 1
            yield Progress("model", done=step, total=10**6, metrics={"loss": float(c[0]) + bookkeeping * 0})
        return step
    return job


@pytest.mark.slow       # a wall-clock bound: benchmarks/bench_responsiveness.py measures it properly
def test_gui_thread_stays_responsive_during_a_torch_job(qtbot):
    jobs = JobController()
    gaps, clock = [], QElapsedTimer()
    timer = QTimer()
    timer.setInterval(10)

    def tick():
        if clock.isValid():
            gaps.append(clock.restart())
        else:
            clock.start()

    timer.timeout.connect(tick)
    timer.start()
    with qtbot.waitSignal(jobs.jobFinished, timeout=20000) as blocker:
        jobs.start("torch", torch_job(1.5))
    timer.stop()
    assert blocker.args[0] > 10                  # the job really worked
    assert len(gaps) > 20
    print(f"max tick gap {max(gaps)} ms over {len(gaps)} ticks")
    assert max(gaps) < 250, f"GUI timer waited {max(gaps)} ms"


def test_this_pyside_keeps_its_references_to_true_none_false(qtbot):
    """PySide6 6.12.0 drops a reference to True (per signal emit) and to None (per void Qt call): on
    Python 3.11 the count reaches zero and the interpreter aborts after minutes of training. The
    pyproject pin keeps the 6.12 series out; this fails in a second if a leaking build is installed."""
    import sys

    from PySide6.QtGui import QColor

    jobs, color = JobController(), QColor()
    jobs.busyChanged.connect(lambda busy: None)
    before = {name: sys.getrefcount(obj) for name, obj in (("None", None), ("True", True), ("False", False))}
    for _ in range(2000):
        jobs.busyChanged.emit(True)
        jobs.busyChanged.emit(False)
        color.setRgb(1, 2, 3)
    after = {name: sys.getrefcount(obj) for name, obj in (("None", None), ("True", True), ("False", False))}
    lost = {name: before[name] - after[name] for name in before if before[name] - after[name] > 500}
    assert not lost, f"this PySide6 drops references to {lost} (the 6.12.0 bug): install another version"


def test_a_worker_runs_a_plain_function_and_reports_by_signal(qtbot):
    from superpos_app.workers.worker import Worker

    worker = Worker(lambda cancel: sum(range(1000)))
    with qtbot.waitSignal(worker.returned, timeout=5000) as blocker:
        worker.start()
    assert blocker.args == [499500]
    failing = Worker(lambda cancel: {}["missing"])
    with qtbot.waitSignal(failing.failed, timeout=5000) as blocker:
        failing.start()
    assert blocker.args[0].startswith("Unexpected error (KeyError)") and "Traceback" in blocker.args[1]


def test_the_environment_switch_runs_workers_inline(qtbot, monkeypatch):
    from superpos_app.workers.worker import Worker

    monkeypatch.setenv("SUPERPOS_SYNC_JOBS", "1")
    jobs = JobController()
    got = []
    jobs.jobFinished.connect(got.append)
    jobs.start("inline", counting_job(20))
    assert got == ["the-result"] and not jobs.is_busy
    worker = Worker(lambda cancel: "now")
    worker.returned.connect(got.append)
    worker.start()
    assert got == ["the-result", "now"]


def test_a_running_job_outlives_the_object_that_started_it(qtbot):
    """Workers belong to the application: deleting their starter never destroys a running thread."""
    from PySide6.QtCore import QObject

    owner = QObject()
    jobs = JobController(owner)
    jobs.start("slow", counting_job(400, sleep_every=1))
    worker = jobs._worker
    owner.deleteLater()
    qtbot.wait(50)                                   # the controller is gone; the job still runs
    with qtbot.waitSignal(worker.returned, timeout=10_000) as blocker:
        pass
    assert blocker.args == ["the-result"]


def test_a_long_job_leaves_the_startup_freeze_in_place(qtbot):
    """Long jobs freeze the collector per tick and unfreeze at the end; the next full collection
    freezes the survivors again, so the app's start-up freeze is never silently undone."""
    import gc

    gc.collect()              # what is frozen below is alive (earlier tests' garbage would be collected after
    sentinel = [object()]     # the unfreeze and make the count fall for a reason that is not this one)
    gc.freeze()
    frozen = gc.get_freeze_count()
    jobs = JobController()
    with qtbot.waitSignal(jobs.jobFinished, timeout=10_000):
        jobs.start("count", counting_job(2000, sleep_every=100))
    gc.collect()
    assert gc.get_freeze_count() >= 0.9 * frozen
    assert not any(o is sentinel for o in gc.get_objects())      # frozen objects are not in any generation
