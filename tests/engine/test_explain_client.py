"""The chat-completions client against a real HTTP server on 127.0.0.1 (engine.testing.fake_llm):
retries on 429 / 5xx / broken JSON, timeouts, refusals, clear errors, the API key never stored."""

from __future__ import annotations

import socket

import pytest

from engine.explain.client import ChatClient, Endpoint, EndpointError, MalformedReply, RefusalError
from engine.explain.prompts import parse_digits, parse_explanation
from engine.testing.fake_llm import FakeLLM

MSG = [{"role": "system", "content": "You are a meticulous researcher"}, {"role": "user", "content": "<<a>> <<a>>"}]


def endpoint(url: str, **kw) -> Endpoint:
    return Endpoint(base_url=url, model="fake", timeout_s=kw.pop("timeout_s", 5.0), backoff_s=0.01, **kw)


def test_a_plain_answer_and_the_usage():
    with FakeLLM() as srv, ChatClient(endpoint(srv.url)) as client:
        reply = client.chat(MSG)
        assert parse_explanation(reply) == 'the token "a"'
        assert client.usage.requests == 1 and client.usage.prompt_tokens > 0
        assert srv.requests[0]["model"] == "fake" and srv.requests[0]["temperature"] == 0.0


def test_429_and_5xx_and_broken_json_are_retried_then_answered():
    with FakeLLM(script=[429, 503, "broken"]) as srv, ChatClient(endpoint(srv.url)) as client:
        reply = client.chat(MSG)
        assert "Explanation" in reply.content
        assert len(srv.requests) == 4 and client.usage.retries == 3


def test_retries_run_out_with_one_clear_error():
    with FakeLLM(script=[429] * 10) as srv, ChatClient(endpoint(srv.url, max_retries=2)) as client:
        with pytest.raises(EndpointError, match=r"HTTP 429 after 3 tries"):
            client.chat(MSG)
        assert len(srv.requests) == 3


def test_a_timeout_is_retried_and_then_reported():
    with FakeLLM(script=["sleep", "sleep"], sleep_s=1.0) as srv:
        with ChatClient(endpoint(srv.url, timeout_s=0.2, max_retries=1)) as client:
            with pytest.raises(EndpointError, match=r"no answer within 0.2 s after 2 tries"):
                client.chat(MSG)
        with ChatClient(endpoint(srv.url, timeout_s=0.2, max_retries=1)) as client:
            srv.script = ["sleep"]
            assert "Explanation" in client.chat(MSG).content     # second try answers


@pytest.mark.parametrize("fault", ["refuse", "empty"])
def test_refusals_raise_refusal_error(fault):
    with FakeLLM(script=[fault]) as srv, ChatClient(endpoint(srv.url)) as client:
        with pytest.raises(RefusalError):
            client.chat(MSG)


def test_a_reply_of_the_wrong_shape_is_malformed():
    with FakeLLM(script=["nonsense"]) as srv, ChatClient(endpoint(srv.url)) as client:
        with pytest.raises(MalformedReply, match="one digit per line"):
            parse_digits(client.chat(MSG), 3)


def test_no_server_is_a_clear_endpoint_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with ChatClient(endpoint(f"http://127.0.0.1:{port}/v1")) as client:
        with pytest.raises(EndpointError, match="is the model server running"):
            client.chat(MSG)


def test_wrong_path_is_404_error_and_bad_url_is_rejected():
    with FakeLLM() as srv, ChatClient(endpoint(srv.url.replace("/v1", "/nope"))) as client:
        srv.script = []
        with pytest.raises(EndpointError):
            client.chat(MSG)
    with pytest.raises(EndpointError, match="http"):
        Endpoint(base_url="localhost:11434", model="x")


def test_api_key_from_the_environment_is_sent_but_never_in_repr(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    with FakeLLM() as srv, ChatClient(endpoint(srv.url, api_key_env="MY_KEY")) as client:
        client.chat(MSG)
        assert srv.headers[0].get("Authorization") == "Bearer sk-secret-123"
        assert "sk-secret" not in repr(client) and "sk-secret" not in repr(client.endpoint)


def test_logprobs_give_the_expected_digit():
    sim = [{"role": "system", "content": "You predict"},
           {"role": "user", "content": 'Explanation: the token "a"\n\nToken 1: " a"\nToken 2: " b"\n\nAnswer with 2 lines.'}]
    with FakeLLM() as srv, ChatClient(endpoint(srv.url)) as client:
        values = parse_digits(client.chat(sim, logprobs=True), 2)
        assert values == pytest.approx([0.8 * 9 + 0.2 * 8, 0.2 * 1])
        assert srv.requests[0]["logprobs"] is True
    with FakeLLM(logprobs=False) as srv, ChatClient(endpoint(srv.url)) as client:
        assert list(parse_digits(client.chat(sim, logprobs=True), 2)) == [9, 0]
