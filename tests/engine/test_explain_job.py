"""The explain job on a real tiny bundle against a local chat-completions server: records per unit in
the journal, folded into the bundle without rewriting it, resume, cancel, refusals, the CLI."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from engine.bundle import open_bundle
from engine.bundle.explanations import fold_journal, journal_path, read_journal
from engine.cli.main import main
from engine.events import Cancelled, CancelToken, Progress, StageFinished
from engine.jobs import collect
from engine.explain.client import Endpoint, EndpointError
from engine.explain.job import SelectionError, explain_job, select_units
from engine.explain.prompts import PROMPT_VERSION
from engine.testing.fake_llm import FakeLLM


@pytest.fixture
def bundle(real_tiny_bundle, tmp_path):
    path = tmp_path / "b.h5"
    shutil.copy(real_tiny_bundle, path)
    return path


@pytest.fixture
def srv():
    with FakeLLM() as s:
        yield s


def _live(path, kind="feature", n=4):
    """The first n units dense enough to have held-out active examples and sparse enough to have silent
    windows, so detection and fuzzing have both kinds to score (rarer or denser ones score None)."""
    with open_bundle(path) as b:
        return select_units(f"density>=1e-3,density<=0.03,first:{n}", b.columns(kind)["density"])


def test_select_units():
    density = np.array([0.0, 1e-2, 1e-5, 3e-3, 0.0, 1e-4])
    assert select_units("all", density) == [1, 2, 3, 5]
    assert select_units("0-3", density) == [1, 2, 3]
    assert select_units("density>=1e-4", density) == [1, 3, 5]
    assert select_units("density>=1e-4,first:2", density) == [1, 3]
    assert select_units("5,1", density) == [1, 5]
    for bad in ("0", "zz", "9"):
        with pytest.raises(SelectionError):
            select_units(bad, density)


def test_job_records_every_unit_then_folds_into_the_bundle(bundle, srv):
    units = _live(bundle)
    ep = Endpoint(base_url=srv.url, model="fake", concurrency=2, backoff_s=0.01)
    summary, events = collect(explain_job(bundle, "feature", units, ep))
    progress = [e for e in events if isinstance(e, Progress)]
    done = [p.done for p in progress]
    assert done == sorted(set(done)) and done[-1] == progress[-1].total == len(units)
    assert isinstance(events[-1], StageFinished) and summary["explained"] == len(units)
    recs = read_journal(bundle)
    assert sorted(r["unit"] for r in recs) == units
    r = recs[0]
    assert r["status"] == "ok" and r["explanation"].startswith('the token "') and r["model"] == "fake"
    assert r["prompt_version"] == PROMPT_VERSION and r["date"].endswith("+00:00")
    assert 0 <= r["detection"] <= 1 and 0 <= r["fuzzing"] <= 1 and -1 <= r["simulation"] <= 1
    # folding appends one dataset and leaves everything else as it was
    with h5py.File(bundle, "r") as f:
        before = {k: f["features"][k].id.get_offset() for k in f["features"]}
    assert fold_journal(bundle) == len(units) and not journal_path(bundle).exists()
    with h5py.File(bundle, "r") as f:
        assert list(f["explanations/features"]) == ["batch_000000"]
        assert {k: f["features"][k].id.get_offset() for k in f["features"]} == before
    with open_bundle(bundle) as b:
        assert b.schema_version >= 2
        assert sorted(b.explanations("feature")) == units and b.explanations("neuron") == {}


def test_resume_skips_units_already_explained_and_force_redoes_them(bundle, srv):
    units = _live(bundle)
    ep = Endpoint(base_url=srv.url, model="fake", backoff_s=0.01)
    collect(explain_job(bundle, "feature", units[:2], ep))
    fold_journal(bundle)
    n = len(srv.requests)
    summary, events = collect(explain_job(bundle, "feature", units, ep))
    assert summary["explained"] == len(units) - 2
    assert any("already explained" in getattr(e, "text", "") for e in events)
    assert collect(explain_job(bundle, "feature", units, ep))[0]["explained"] == 0
    collect(explain_job(bundle, "feature", units[:1], ep, force=True))
    assert len(read_journal(bundle)) == len(units) - 2 + 1 and len(srv.requests) > n


def test_cancel_stops_and_keeps_what_finished(bundle, srv):
    units = _live(bundle, n=6)
    cancel = CancelToken()
    job = explain_job(bundle, "feature", units, Endpoint(base_url=srv.url, model="fake", concurrency=1), cancel=cancel)
    with pytest.raises(Cancelled, match="resume"):
        for ev in job:
            if isinstance(ev, Progress) and ev.done == 2:
                cancel.cancel()
    assert 2 <= len(read_journal(bundle)) < len(units)


def test_a_refusal_fails_one_unit_and_a_dead_endpoint_stops_the_job(bundle, srv):
    units = _live(bundle, n=3)
    srv.script = ["refuse"]
    summary, _ = collect(explain_job(bundle, "feature", units, Endpoint(base_url=srv.url, model="fake", concurrency=1)))
    recs = {r["unit"]: r for r in read_journal(bundle)}
    assert recs[units[0]]["status"] == "refused" and "declined" in recs[units[0]]["error"]
    assert summary["failed"] == 1 and summary["explained"] == 2
    srv.script = [500] * 20
    with pytest.raises(EndpointError):
        collect(explain_job(bundle, "neuron", [0], Endpoint(base_url=srv.url, model="fake", max_retries=1,
                                                            backoff_s=0.01)))


def test_neurons_go_through_the_same_procedure(bundle, srv):
    units = _live(bundle, "neuron", n=2)
    summary, _ = collect(explain_job(bundle, "neuron", units, Endpoint(base_url=srv.url, model="fake")))
    assert summary["explained"] == 2 and {r["kind"] for r in read_journal(bundle)} == {"neuron"}


def test_cli_estimate_then_explain_then_list(bundle, srv, capsys):
    args = ["explain", str(bundle), "--endpoint", srv.url, "--model", "fake", "--select", "first:2"]
    assert main(args + ["--estimate-only"]) == 0
    err = capsys.readouterr().err
    assert "estimate: 2 units: up to 22 requests (44 if every answer had to be asked again), about" in err
    assert "at the measured rate" in err
    assert not journal_path(bundle).exists()
    assert main(args + ["--quiet"]) == 0
    out = capsys.readouterr()
    assert "explained 2 features" in out.out and "wrote 2 explanations into" in out.err
    assert main(["explanations", str(bundle)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all('the token "' in ln for ln in lines)
    assert main(["explain", str(bundle), "--endpoint", "ftp://x", "--model", "m"]) == 1


def test_journal_survives_a_torn_line_and_a_read_only_bundle_keeps_it(bundle, srv, monkeypatch):
    import engine.bundle.explanations as store
    from engine.bundle import BundleError

    units = _live(bundle, n=2)
    collect(explain_job(bundle, "feature", units, Endpoint(base_url=srv.url, model="fake")))
    with open(journal_path(bundle), "a", encoding="utf-8") as fh:
        fh.write('{"kind": "feature", "unit": 99, "explan')          # a crash while writing a line
    assert sorted(r["unit"] for r in read_journal(bundle)) == units
    with open_bundle(bundle) as b:                                   # readers see the journal's records
        assert sorted(b.explanations("feature")) == units
        assert b.columns("feature")["explanation"][units[0]].startswith("the token")
    monkeypatch.setattr(store.os, "access", lambda *a: False)         # as if the file were read-only
    with pytest.raises(BundleError, match="read-only.*stay in b.h5.explain-journal"):
        fold_journal(bundle)
    assert journal_path(bundle).exists()
    monkeypatch.undo()
    assert fold_journal(bundle) == 2 and not journal_path(bundle).exists()


def test_a_crashed_runs_journal_is_folded_by_a_rerun_with_nothing_left_to_do(bundle, srv, capsys):
    units = _live(bundle, n=2)
    collect(explain_job(bundle, "feature", units, Endpoint(base_url=srv.url, model="fake")))   # no fold: a "crash"
    assert journal_path(bundle).exists()
    select = ",".join(map(str, units))
    assert main(["explain", str(bundle), "--endpoint", srv.url, "--model", "fake", "--select", select]) == 0
    err = capsys.readouterr().err
    assert "0 to do" in err and "wrote 2 explanations" in err and not journal_path(bundle).exists()
    with open_bundle(bundle) as b:
        assert sorted(b.explanations("feature")) == sorted(units)


def test_an_empty_answer_to_the_estimate_probe_does_not_abort(bundle, srv, capsys):
    srv.script = ["empty"]
    args = ["explain", str(bundle), "--endpoint", srv.url, "--model", "fake", "--select", "first:1", "--estimate-only"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "the timed request gave no usable answer" in err and "estimate: 1 units" in err
