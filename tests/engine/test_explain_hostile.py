"""The chat client against hostile servers on 127.0.0.1 (engine.testing.hostile_llm): every fault ends in
one clear EndpointError naming the endpoint, within timeout × (retries + 1) plus a second; a cancel
stops a request that streams forever within a second; bad settings are refused with their range."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time

import pytest

from engine.events import Cancelled, CancelToken
from engine.explain.client import ChatClient, Endpoint, EndpointError, MalformedReply
from engine.testing.hostile_llm import HostileLLM

MSG = [{"role": "user", "content": "hello"}]
TIMEOUT, RETRIES = 1.0, 1
BOUND = TIMEOUT * (RETRIES + 1) + 1.0


def endpoint(url: str, **kw) -> Endpoint:
    return Endpoint(base_url=url, model="m", timeout_s=kw.pop("timeout_s", TIMEOUT),
                    max_retries=kw.pop("max_retries", RETRIES), backoff_s=0.05, **kw)


@pytest.mark.parametrize("mode, message", [
    ("endless-body", "no complete answer within 1 s"),
    ("endless-sse", "no complete answer within 1 s"),
    ("drip-headers", "no complete answer within 1 s"),
    ("silent", "no answer within 1 s"),
    ("huge-body", "exceeded 4 MiB"),
    ("gzip-bomb", "exceeded 4 MiB"),
    ("deep-json", "nested too deeply"),
])
def test_a_server_fault_ends_in_one_clear_line_within_the_bound(mode, message):
    with HostileLLM(mode) as srv, ChatClient(endpoint(srv.url)) as client:
        t0 = time.monotonic()
        with pytest.raises(EndpointError) as err:
            client.chat(MSG)
        took = time.monotonic() - t0
    text = str(err.value)
    assert "127.0.0.1" in text and message in text and "\n" not in text
    assert took < BOUND, f"{mode}: {took:.1f} s"


def test_a_redirect_is_named_not_followed():
    with HostileLLM("redirect-self") as srv, ChatClient(endpoint(srv.url)) as client:
        with pytest.raises(EndpointError, match="redirect .*HTTP 307"):
            client.chat(MSG)
        assert srv.requests == 1


@pytest.mark.parametrize("mode", ["usage-words", "usage-huge"])
def test_nonsense_usage_counts_as_zero_tokens(mode):
    with HostileLLM(mode) as srv, ChatClient(endpoint(srv.url)) as client:
        reply = client.chat(MSG)
    assert reply.content.startswith("Explanation") and reply.prompt_tokens == 0


def test_impossible_logprobs_are_dropped_not_used():
    with HostileLLM("logprobs-huge") as srv, ChatClient(endpoint(srv.url)) as client:
        reply = client.chat(MSG, logprobs=True)
    assert reply.logprobs is None


def test_cancel_stops_an_endless_stream_within_a_second():
    with HostileLLM("endless-body") as srv, ChatClient(endpoint(srv.url, timeout_s=60.0)) as client:
        client.cancel = CancelToken()
        threading.Timer(0.5, client.cancel.cancel).start()
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            client.chat(MSG)
        assert time.monotonic() - t0 < 1.5


@pytest.mark.parametrize("changes, words", [
    ({"timeout_s": math.nan}, "timeout"), ({"timeout_s": math.inf}, "timeout"), ({"timeout_s": 1e300}, "timeout"),
    ({"timeout_s": 0}, "timeout"), ({"max_retries": -1}, "retries"), ({"max_retries": 10**6}, "retries"),
    ({"concurrency": 0}, "concurrency"), ({"base_url": "http://[::1/v1"}, "not a valid URL"),
    ({"base_url": "ftp://x"}, "must start with http"),
])
def test_settings_out_of_range_are_refused_with_the_range(changes, words):
    base = dict(base_url="http://127.0.0.1:9/v1", model="m")
    base.update(changes)
    with pytest.raises(EndpointError, match=words):
        Endpoint(**base)


def test_the_cli_prints_one_line_for_a_bad_timeout(tmp_path):
    out = subprocess.run([sys.executable, "-m", "engine.cli", "explain", str(tmp_path / "x.h5"), "--model", "m",
                          "--endpoint", "http://127.0.0.1:9/v1", "--timeout", "nan"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "unexpected" not in out.stderr
    assert "timeout" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_explanations_print_model_text_terminal_safe(tmp_path, capsys):
    from engine.cli.explain_cmds import cmd_explanations
    import argparse

    class FakeBundle:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def explanations(self, kind):
            return {0: {"status": "ok", "explanation": "x\x1b]0;PWNED\x07\x1b[2J \u202eevil", "detection": 0.5}}

    import engine.bundle as bundle_mod
    orig = bundle_mod.open_bundle
    bundle_mod.open_bundle = lambda path: FakeBundle()
    try:
        for as_json in (False, True):
            cmd_explanations(argparse.Namespace(bundle="b.h5", units="features", json=as_json))
    finally:
        bundle_mod.open_bundle = orig
    text = capsys.readouterr().out
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    line = text.strip().splitlines()[-1]
    assert json.loads(line)["explanation"].startswith("x\x1b]0;PWNED")       # the JSON still round-trips


def test_cancelling_the_job_stops_requests_that_stream_forever(real_tiny_bundle, tmp_path):
    import shutil

    from engine.bundle import open_bundle
    from engine.events import Progress
    from engine.explain.job import explain_job, select_units

    path = tmp_path / "b.h5"
    shutil.copy(real_tiny_bundle, path)
    with open_bundle(path) as b:
        units = select_units("density>=1e-3,first:3", b.columns("feature")["density"])
    cancel = CancelToken()
    with HostileLLM("endless-sse") as srv:
        job = explain_job(path, "feature", units, endpoint(srv.url, timeout_s=60.0, concurrency=2), cancel=cancel)
        threading.Timer(0.5, cancel.cancel).start()
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            for event in job:
                assert not isinstance(event, Progress) or event.done == 0
        assert time.monotonic() - t0 < 2.0
