"""The one "latest request wins" runner: only the newest request reports, a burst collapses into the
newest, drop() silences everything so far, idle follows the last report, SUPERPOS_SYNC_JOBS=1 runs
jobs inline."""

from __future__ import annotations

import threading

from superpos_app.workers.latest_runner import LatestRunner


def _collect(runner):
    got = []
    runner.resultReady.connect(lambda request, result, seconds: got.append((request, result)))
    runner.failed.connect(lambda request, message: got.append((request, message)))
    return got


def test_only_the_newest_request_reports(qtbot):
    runner = LatestRunner()
    got, ran, gate = _collect(runner), [], threading.Event()

    def job(name, wait=False):
        def run(_token):
            ran.append(name)
            if wait:
                gate.wait(10)                    # ignores its token: its result comes, stale
            return name
        return run

    runner.submit(job("first", wait=True))
    runner.submit(job("second"))                 # replaced before it runs
    third = runner.submit(job("third"))
    assert runner.busy and runner.latest == third
    gate.set()
    with qtbot.waitSignal(runner.idle, timeout=10_000):
        pass
    assert got == [(third, "third")] and ran == ["first", "third"] and not runner.busy


def test_drop_makes_every_request_stale(qtbot):
    runner = LatestRunner()
    got, gate = _collect(runner), threading.Event()
    runner.submit(lambda _token: gate.wait(10) and "late")
    runner.drop()
    gate.set()
    assert runner.wait_idle(10_000)
    assert got == []


def test_a_failure_of_the_newest_request_is_reported(qtbot):
    runner = LatestRunner()
    got = _collect(runner)

    def broken(_token):
        raise ValueError("no such unit")

    request = runner.submit(broken)
    assert runner.wait_idle(10_000)
    assert len(got) == 1 and got[0][0] == request and "no such unit" in got[0][1]


def test_the_environment_switch_runs_jobs_inline(qtbot, monkeypatch):
    monkeypatch.setenv("SUPERPOS_SYNC_JOBS", "1")
    runner = LatestRunner()
    got = _collect(runner)
    idle = []
    runner.idle.connect(lambda: idle.append(True))
    request = runner.submit(lambda _token: "now")
    assert got == [(request, "now")] and idle and not runner.busy     # before submit returned
