"""Small local models: structured output where the server takes it, the free-text parser where it does
not, one re-ask after a malformed answer, and each scorer kept on its own — all against a real HTTP
server on 127.0.0.1 (``FakeLLM``) that answers in JSON, in free text, and wrongly."""

from __future__ import annotations

import numpy as np
import pytest

from engine.explain.ask import Asker
from engine.explain.client import ChatClient, Endpoint
from engine.explain.examples import ExampleConfig, UnitExamples
from engine.explain.job import explain_unit
from engine.explain.prompts import simulation_messages
from engine.explain.scoring import digits_question
from engine.testing.fake_llm import FakeLLM
from explain_units import VOCAB, W, ZQ, example as _example

SCORERS = ("detection", "fuzzing", "simulation")


@pytest.fixture(scope="module")
def unit():
    rng = np.random.default_rng(0)
    ex = UnitExamples(kind="feature", index=5, max_act=10.0)
    ex.explain_top = [_example(rng, True) for _ in range(4)]
    ex.held_active = [_example(rng, True) for _ in range(6)]
    ex.held_silent = [_example(rng, False) for _ in range(6)]
    ex.simulation = [_example(rng, True) for _ in range(2)] + [_example(rng, False)]
    ex.promoted, ex.suppressed = np.array([1, 2]), np.array([4])
    return ex


def _run(unit, **server):
    with FakeLLM(**server) as srv, ChatClient(Endpoint(base_url=srv.url, model="fake", backoff_s=0.01)) as client:
        asker = Asker(client)
        rec = explain_unit(asker, VOCAB, unit, ExampleConfig(batch=12))
        return rec, srv.requests, asker


@pytest.mark.parametrize("structured", ["json", "ignore"])
def test_json_and_free_text_answers_score_the_same(unit, structured):
    rec, requests, asker = _run(unit, structured=structured)
    assert rec["status"] == "ok" and rec["error"] == "" and rec["explanation"] == 'the token "zq"'
    assert rec["detection"] == 1.0 and rec["fuzzing"] == 1.0 and rec["simulation"] > 0.8
    assert all("response_format" in r for r in requests) and asker.structured
    schema = requests[1]["response_format"]["json_schema"]["schema"]["properties"]["answers"]
    assert schema["minItems"] == schema["maxItems"] == 12         # one batch of 6 active + 6 silent


def test_json_logprobs_give_the_expected_digit(unit):
    """Simulation reads the digit tokens' alternatives inside a JSON answer, as in a text one."""
    tokens = unit.simulation[0][0]
    question = digits_question(simulation_messages('the token "zq"', VOCAB, tokens), W, 9, "simulation", True)
    expected = np.where(tokens == ZQ, 0.8 * 9 + 0.2 * 8, 0.2)
    for structured in ("json", "ignore"):
        with FakeLLM(structured=structured) as srv, ChatClient(Endpoint(base_url=srv.url, model="fake")) as c:
            assert Asker(c).ask(question) == pytest.approx(expected), structured
    with FakeLLM(logprobs=False) as srv, ChatClient(Endpoint(base_url=srv.url, model="fake")) as c:
        assert list(Asker(c).ask(question)) == list(np.where(tokens == ZQ, 9, 0))


def test_a_server_that_rejects_response_format_is_asked_in_free_text_from_then_on(unit):
    rec, requests, asker = _run(unit, structured="reject")
    assert rec["status"] == "ok" and rec["error"] == "" and rec["detection"] == 1.0
    assert "response_format" in requests[0] and not any("response_format" in r for r in requests[1:])
    assert not asker.structured


@pytest.mark.parametrize("structured", ["json", "ignore"])
@pytest.mark.parametrize("question", ("explain",) + SCORERS)
def test_one_malformed_answer_is_asked_again_with_the_error(unit, structured, question):
    rec, requests, asker = _run(unit, structured=structured, wrong={question: 1})
    assert rec["status"] == "ok" and rec["error"] == "", rec
    assert asker.reasks == 1
    reask = next(r for r in requests if len(r["messages"]) == 4)
    assert "could not be read" in reask["messages"][-1]["content"]
    assert reask["messages"][2]["role"] == "assistant"


@pytest.mark.parametrize("structured", ["json", "ignore"])
@pytest.mark.parametrize("failing", SCORERS)
def test_a_scorer_that_stays_malformed_keeps_the_others(unit, structured, failing):
    rec, _, _ = _run(unit, structured=structured, wrong={failing: 99})
    assert rec["status"] == "ok" and rec[failing] is None and rec["error"].startswith(f"{failing}: ")
    assert all(rec[name] is not None and rec[name] > 0.8 for name in SCORERS if name != failing)


def test_an_explanation_that_stays_malformed_fails_the_unit(unit):
    rec, requests, _ = _run(unit, structured="ignore", wrong={"explain": 2})
    assert rec["status"] == "failed" and len(requests) == 2 and all(rec[n] is None for n in SCORERS)


@pytest.mark.parametrize("text,n,top,want", [
    ("1\n0\n1", 3, 1, [1, 0, 1]),
    ("Here are my answers:\n1. 1\n2. 0\n3. 1\nHope this helps.", 3, 1, [1, 0, 1]),
    ("Excerpt 1: yes\nExcerpt 2: No.\nExcerpt 3: true", 3, 1, [1, 0, 1]),
    ("0, 7, 9", 3, 9, [0, 7, 9]),
])
def test_the_free_text_parser_reads_what_small_models_write(text, n, top, want):
    from engine.explain.client import Reply
    from engine.explain.prompts import parse_digits
    assert list(parse_digits(Reply(text, "stop", 0, 0), n, top=top)) == want


@pytest.mark.parametrize("text", ["1\nThe next token is probably a word.\n0", "yes\nno\nyes", "1\n0"])
def test_the_free_text_parser_refuses_what_it_cannot_read(text):
    from engine.explain.client import MalformedReply, Reply
    from engine.explain.prompts import parse_digits
    with pytest.raises(MalformedReply):
        parse_digits(Reply(text, "stop", 0, 0), 3, top=9)
