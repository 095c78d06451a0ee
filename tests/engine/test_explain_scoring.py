"""Detection, fuzzing and simulation scores through the real client and a real local server: an oracle
explanation ("the token "zq"", the unit's true trigger) against a wrong one, with exact expected values."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.labels import spearman
from engine.explain.client import ChatClient, Endpoint
from engine.explain.examples import ExampleConfig, UnitExamples, unit_examples
from engine.explain.prompts import explain_messages, parse_explanation, quantise
from engine.explain.scoring import balanced_accuracy, fuzz_marks, score_all
from engine.testing.fake_llm import FakeLLM
from explain_units import VOCAB, W, ZQ, example as _example


@pytest.fixture
def unit():
    rng = np.random.default_rng(0)
    ex = UnitExamples(kind="feature", index=5, max_act=10.0)
    ex.explain_top = [_example(rng, True) for _ in range(4)]
    ex.held_active = [_example(rng, True) for _ in range(10)]
    ex.held_silent = [_example(rng, False) for _ in range(10)]
    ex.simulation = [_example(rng, True) for _ in range(3)] + [_example(rng, False) for _ in range(2)]
    ex.promoted = np.array([1, 2])
    ex.suppressed = np.array([4])
    return ex


def test_balanced_accuracy_by_hand():
    truth = np.array([1, 1, 1, 1, 0, 0], bool)
    said = np.array([1, 1, 1, 0, 1, 0], bool)        # TPR 3/4, TNR 1/2
    assert balanced_accuracy(said, truth) == pytest.approx(0.625)
    assert np.isnan(balanced_accuracy(said, np.ones(6, bool)))


def test_oracle_scores_high_and_wrong_scores_chance(unit):
    with FakeLLM() as srv, ChatClient(Endpoint(base_url=srv.url, model="fake", backoff_s=0.01)) as client:
        oracle = score_all(client, 'the token "zq"', VOCAB, unit, batch=10)
        wrong = score_all(client, 'the token "dog"', VOCAB, unit, batch=10)
        none = score_all(client, "nothing in particular", VOCAB, unit, batch=10)
    assert oracle["detection"] == 1.0 and oracle["fuzzing"] == 1.0
    # the expected simulation score: the expected digit 7.2 on zq tokens, 0.2 elsewhere, vs the truth
    pred = np.concatenate([np.where(t == ZQ, 0.8 * 9 + 0.2 * 8, 0.2) for t, _ in unit.simulation])
    true = np.concatenate([a for _, a in unit.simulation])
    assert oracle["simulation"] == pytest.approx(spearman(pred, true)) and oracle["simulation"] > 0.8
    # "dog" appears in active and silent examples alike: detection near chance, fuzzing at chance
    # (the marked tokens of the active examples are never "dog"), simulation far below the oracle
    said_dog_active = sum(VOCAB.index(" dog") in t for t, _ in unit.held_active) / 10
    said_dog_silent = sum(VOCAB.index(" dog") in t for t, _ in unit.held_silent) / 10
    assert wrong["detection"] == pytest.approx(0.5 * (said_dog_active + 1 - said_dog_silent))
    assert wrong["fuzzing"] <= 0.5
    assert wrong["simulation"] < 0.3 < oracle["simulation"]
    assert none == {"detection": 0.5, "fuzzing": 0.5, "simulation": 0.0}


def test_detection_and_fuzzing_are_batched_and_shuffled(unit):
    with FakeLLM() as srv, ChatClient(Endpoint(base_url=srv.url, model="fake", backoff_s=0.01)) as client:
        score_all(client, 'the token "zq"', VOCAB, unit, batch=7)
        users = [r["messages"][-1]["content"] for r in srv.requests]
    # 20 examples in batches of 7 -> 3 detection + 3 fuzzing requests, then one per simulation example
    assert len(users) == 3 + 3 + 5
    first = users[0].split("\n\n")[1].splitlines()
    assert len(first) == 7 and not all(" zq" in ln for ln in first[:5])   # mixed, not active-first


def test_fuzzing_marks_true_tokens_on_active_and_as_many_random_on_silent(unit):
    rng = np.random.default_rng(1)
    examples = unit.held_active[:3] + unit.held_silent[:3]
    truth = np.array([1, 1, 1, 0, 0, 0], bool)
    marks = fuzz_marks(unit, examples, truth, rng)
    for (tokens, acts), m in zip(examples[:3], marks[:3]):
        assert (m == (quantise(acts, 10.0) > 0)).all()
    assert all(m.sum() == 2 for m in marks[3:])


def test_explain_prompt_shows_quantised_activations_and_logits(unit):
    msgs = explain_messages(VOCAB, unit.sections(), unit.max_act, unit.promoted, unit.suppressed)
    user = msgs[1]["content"]
    assert "<< zq>>" in user and "Activations: \" zq\"" in user
    assert 'promotes most: " cat", " sat"' in user and 'suppresses most: " on"' in user
    with FakeLLM() as srv, ChatClient(Endpoint(base_url=srv.url, model="fake")) as client:
        assert parse_explanation(client.chat(msgs)) == 'the token "zq"'


def test_unit_examples_hold_out_what_the_explainer_sees(real_tiny_bundle):
    from engine.bundle import open_bundle

    with open_bundle(real_tiny_bundle) as b:
        live = int(np.flatnonzero(b.columns("feature")["density"] > 1e-3)[0])
        dash = b.dashboard("feature", live)
        idx, values = b.sample_feature(live)
        tokens, _ = b.sample_neurons()
    acts = np.zeros(len(tokens), np.float32)
    acts[idx] = values
    ex = unit_examples(dash, tokens, acts, ExampleConfig())
    shown = {t.tobytes() for t, _ in ex.explain_top + ex.explain_intervals}
    assert ex.explain_top and ex.held_active
    assert not shown & {t.tobytes() for t, _ in ex.held_active + ex.simulation}
    assert all((quantise(a, ex.max_act) == 0).all() for _, a in ex.held_silent)
    assert ex.max_act == pytest.approx(float(dash.top_acts[0, dash.top_center]))
