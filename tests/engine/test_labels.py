"""Offline labels on constructed statistics whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.labels import HeldOutSample, RuleLabeller, label_harvest, label_units, spearman
from engine.analysis.token_classes import TokenRule, TokenTable, class_share
from engine.stats import UnitStats

POOLS = {
    "dna": ["ACGT", "GAT", "TTA", "A", "C", "G", "T", "AC", "GG", "CCTA", "TGCA", "\n"],
    "base64": ["Zk", "qL3", "+/", "Hj", "aB9", "xY", "Q0", "w7", "Mz", "pK", "bad", "Ab", "=="],
    "hex": ["3f", "a0", "ff", "e4b", "00", "1c", "0x", "de", " ", "9d", "b2", "7e"],
    "prose": [" the", " of", " and", " is", " a", " model", " word", ".", ",", " self", " text"],
    "code": ["def", " self", "(", ")", ":", "\n", "    ", "return", " import", "if", " x", "=", "1"],
    "arabic": ["ال", "مر", "كتاب", " ", "في", "من", "\\xd8"],
}
VOCAB = sorted({t for pool in POOLS.values() for t in pool})
ID = {t: i for i, t in enumerate(VOCAB)}
T, K, I, P, LEFT, RIGHT = 64, 20, 5, 5, 6, 3


class FakeTokenizer:
    vocab_size = len(VOCAB)

    def token_str(self, i: int) -> str:
        return VOCAB[i]

    def vocab_strings(self) -> tuple[str, ...]:
        return tuple(VOCAB)

    def readable_strings(self) -> tuple[str, ...]:
        return tuple(t.replace("\\xd8", "⟨0xD8⟩") for t in VOCAB)


def _stream(rng, n=24_000):
    tokens, kinds = [], []
    names = list(POOLS)
    while len(tokens) < n:
        kind = names[rng.integers(len(names))]
        length = int(rng.integers(20, 60))
        pool = POOLS[kind]
        tokens += [ID[pool[j]] for j in rng.integers(0, len(pool), length)]
        kinds += [kind] * length
    return np.array(tokens[:n]), np.array(kinds[:n])


def _stats(tokens, acts_NU, seed=0) -> UnitStats:
    """Brute-force UnitStats (top and interval windows) of activations over a token stream."""
    rng = np.random.default_rng(seed)
    N, U = acts_NU.shape
    W = LEFT + 1 + RIGHT

    def window(u, p):
        off = np.arange(-LEFT, RIGHT + 1)
        q = p + off
        ok = (q // T == p // T) & (q >= 0) & (q < N)
        qc = np.clip(q, 0, N - 1)
        return np.where(ok, tokens[qc], -1), np.where(ok, acts_NU[qc, u], 0.0)

    top_t = np.full((U, K, W), -1, np.int32)
    top_a = np.zeros((U, K, W), np.float16)
    int_t = np.full((U, I, P, W), -1, np.int32)
    int_a = np.zeros((U, I, P, W), np.float16)
    mx = acts_NU.max(0)
    for u in range(U):
        order = np.argsort(-acts_NU[:, u], kind="stable")[:K]
        for k, p in enumerate(order[acts_NU[order, u] > 0]):
            top_t[u, k], top_a[u, k] = window(u, p)
        if mx[u] <= 0:
            continue
        j_of = np.clip(np.ceil(acts_NU[:, u] / mx[u] * I) - 1, 0, I - 1)
        for j in range(I):
            members = np.nonzero((acts_NU[:, u] > 0) & (j_of == j))[0]
            for e, p in enumerate(rng.permutation(members)[:P]):
                int_t[u, j, e], int_a[u, j, e] = window(u, p)
    z = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    return UnitStats(kind="feature", density=(acts_NU > 0).mean(0), max_act=mx.astype(np.float32),
                     mean_act=z(U), act_hist=np.zeros((U, 4), np.int64), top_tokens=top_t, top_acts=top_a,
                     top_center=LEFT, interval_tokens=int_t, interval_acts=int_a,
                     interval_bounds=z(U, I, 2), top_token_ids=np.full((U, 5), -1, np.int32),
                     logit_top_ids=np.zeros((U, 3), np.int32), logit_top_values=z(U, 3),
                     logit_bottom_ids=np.zeros((U, 3), np.int32), logit_bottom_values=z(U, 3),
                     logit_hist=np.zeros((U, 4), np.int64), logit_range=z(U, 2),
                     align_ids=np.zeros((U, 2), np.int32), align_values=z(U, 2), align_l1=z(U),
                     corr_ids=np.zeros((U, 2), np.int32), corr_values=z(U, 2))


@pytest.fixture(scope="module")
def labelled():
    rng = np.random.default_rng(0)
    tokens, kinds = _stream(rng)
    N = len(tokens)
    act = lambda mask: np.where(mask, rng.uniform(1.0, 3.0, N), 0.0)  # noqa: E731
    is_ = lambda *names: np.isin(tokens, [ID[t] for t in names])  # noqa: E731
    units = {
        "dna": act((kinds == "dna") & ~is_("\n")),
        "base64": act((kinds == "base64") & ~is_("==")),
        "hex": act((kinds == "hex") & ~is_(" ")),
        "arabic": act((kinds == "arabic") & ~is_(" ")),
        "self": act(is_(" self")),
        "def": act(is_("def")),
        "random": act(rng.random(N) < 0.05),
        "dead": np.zeros(N),
        "polysemantic": act(((kinds == "dna") & ~is_("\n")) | is_("(")) * np.where(is_("("), 1.5, 0.6),
        "dna_newline": act((kinds == "dna") & is_("\n")),          # line breaks of DNA, not of code
        "two_tokens": act(is_(" self", "return")),
        "top_differs": act((kinds == "dna") & ~is_("\n")) + 5.0 * np.isin(np.arange(N), np.flatnonzero(is_("("))[:4]),
    }
    names = list(units)
    acts = np.stack([units[n] for n in names], axis=1)
    stats = _stats(tokens, acts)
    S = 4096
    held = HeldOutSample(token_ids=tokens[:S].astype(np.int32), acts_of=lambda u: acts[:S, u].astype(np.float32),
                         positions=np.sort(rng.choice(S, 20, replace=False)))
    labels, scores = label_units(stats, FakeTokenizer(), held_out=held, seed=0)
    return dict(names=names, labels=dict(zip(names, labels)), scores=dict(zip(names, scores)), stats=stats)


@pytest.mark.parametrize("name,expected", [("dna", "DNA"), ("base64", "base64"), ("hex", "hex"),
                                           ("arabic", "Arabic script"), ("self", "the token ' self'"),
                                           ("def", "Python keyword 'def'")])
def test_known_units_get_their_label_and_a_high_score(labelled, name, expected):
    assert expected in labelled["labels"][name]
    assert labelled["scores"][name] > 0.6, (name, labelled["scores"][name])


def test_context_and_token_sets(labelled):
    """The newline of DNA text is told from the newline of code; two tokens are named together."""
    assert labelled["labels"]["dna_newline"] in ("DNA: '↵'", "whitespace / indentation in DNA")
    assert labelled["scores"]["dna_newline"] > 0.6
    assert labelled["labels"]["two_tokens"] in ("the tokens ' self', 'return'", "the tokens 'return', ' self'")
    assert labelled["scores"]["two_tokens"] > 0.6


def test_a_poor_fit_says_so(labelled):
    assert labelled["labels"]["random"].endswith("(loose fit)")
    assert not any(labelled["labels"][n].endswith("(loose fit)") for n in ("dna", "self", "hex", "two_tokens"))


def test_random_and_dead_units(labelled):
    assert abs(labelled["scores"]["random"]) < 0.3
    assert labelled["scores"]["random"] < min(labelled["scores"][n] for n in ("dna", "base64", "hex", "self"))
    assert labelled["labels"]["dead"] == "" and np.isnan(labelled["scores"]["dead"])
    assert labelled["stats"].labels == [labelled["labels"][n] for n in labelled["names"]]


def test_polysemantic_unit_scores_below_the_monosemantic_one(labelled):
    assert labelled["scores"]["polysemantic"] < labelled["scores"]["dna"]


def test_class_share_of_top_examples(labelled):
    table = TokenTable.from_tokenizer(FakeTokenizer())
    stats, names = labelled["stats"], labelled["names"]
    for name, cls in (("dna", "DNA"), ("base64", "base64"), ("hex", "hex")):
        label, share = class_share(stats, table, names.index(name), k=20)
        assert cls in label and share >= 0.8, (name, label, share)


def test_token_classes_use_context():
    table = TokenTable.from_tokenizer(FakeTokenizer())
    win = np.array([[ID[t] for t in ("ACGT", "A", "GG", "TTA", "C", "GAT")],       # 'A', 'GG' are DNA here
                    [ID[t] for t in (" the", " a", " model", " is", " a", " word")],  # ' a' is a word here
                    [ID[t] for t in ("3f", "ff", "00", "de", "a0", "1c")],           # 'ff', 'de', '00' hex
                    [ID[t] for t in ("Zk", "qL3", "bad", "Hj", "aB9", "xY")]])       # 'bad' base64 here
    c = table.classify(win)
    names = [[table.class_name(int(x)) for x in row] for row in c]
    assert all("DNA" in n for n in names[0])
    assert names[1][1] == "words"
    assert all("hex" in n for n in names[2])
    assert names[3][2] == "base64" and names[3][1] == "base64"


def test_spearman_conventions():
    assert spearman(np.ones(10), np.arange(10)) == 0.0
    assert spearman(np.arange(10), np.arange(10)) == pytest.approx(1.0)
    assert spearman(np.arange(10), -np.arange(10.0) ** 3) == pytest.approx(-1.0)


def test_labeller_is_replaceable(labelled):
    class Always:
        table = None

        def label(self, unit):
            return "custom", TokenRule(frozenset([ID["ACGT"]]))

    stats = labelled["stats"]
    labels, scores = label_units(stats, FakeTokenizer(), labeller=Always(), units=[0, 6])
    assert labels[0] == "custom" and labels[6] == "custom"
    assert scores[0] > 0 and np.isfinite(scores[6])


def test_label_harvest_on_a_real_harvest():

    from engine.config import HarvestConfig, ModelConfig, SAEConfig
    from engine.events import Progress, StageFinished, StageStarted
    from engine.analysis.harvest import harvest
    from engine.model import OneLayerTransformer
    from engine.sae import SparseAutoencoder

    model = OneLayerTransformer(ModelConfig(vocab_size=len(VOCAB), n_ctx=16, d_model=16, n_heads=2, d_mlp=24))
    sae = SparseAutoencoder(SAEConfig(recipe="topk", d_in=24, d_sae=40, k=4))
    tokens, _ = _stream(np.random.default_rng(1), n=16 * 40)
    gen = harvest(model, sae, tokens, HarvestConfig(n_tokens=len(tokens), sample_tokens=200), device="cpu")
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result = stop.value
            break
    gen = label_harvest(result, FakeTokenizer(), seed=0)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            assert stop.value is result
            break
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].done == progress[-1].total == 64
    assert isinstance(events[0], StageStarted) and isinstance(events[-1], StageFinished)
    for stats in (result.features, result.neurons):
        assert len(stats.labels) == len(stats) and stats.scores.shape == (len(stats),)
        live = stats.density > 0
        assert all(stats.labels[i] for i in np.nonzero(live)[0])
        assert np.isfinite(stats.scores[live]).all() and np.isnan(stats.scores[~live]).all()
    assert isinstance(RuleLabeller(FakeTokenizer()).table, TokenTable)


def test_classes_survive_a_tokenizer_that_splits_into_letters():
    letters = list("ACGTacgt0123456789bdefxyzBDEFXYZ+/ ,:") + [" a", " cat", " the", " is", "\n"]
    table = TokenTable.from_strings(letters)
    ids = {t: i for i, t in enumerate(letters)}

    def classes(seq):
        return [table.class_name(int(c)) for c in table.classify(np.array([[ids[t] for t in seq]]))[0]]

    assert all("DNA" in c for c in classes(list("GATTACAGGCATTAGC")))
    assert all(c == "base64" for c in classes(list("Zb9x+Y3/dEa7FzXc")))
    assert set(classes(list("3fa0") + [" "] + list("9d1c") + [" "] + list("e4b0") + [" "] + list("00ff"))) \
        <= {"hex", "whitespace / indentation"}
    prose = classes([" the", " cat", " is", " a", " cat", "\n", " the", " a"])
    assert not any(c in ("DNA (ACGT runs)", "hex digits", "base64") for c in prose)


def test_label_harvest_cancels_between_chunks_and_matches_label_units(labelled):
    import copy

    from engine.events import CancelToken, Cancelled, Progress, StageStarted
    from engine.jobs import collect
    from engine.stats import HarvestResult

    def result_of(stats):
        empty = np.zeros(0, np.int32)                # no paired sample: no random held-out windows
        return HarvestResult(features=stats, neurons=copy.deepcopy(stats), n_tokens=0,
                             density_hist_edges=np.zeros(2), density_hist_counts=np.zeros(1, np.int64),
                             sample_token_ids=empty, sample_neuron_acts=np.zeros((0, len(stats)), np.float16),
                             sample_feature_indptr=np.zeros(len(stats) + 1, np.int64),
                             sample_feature_token=empty, sample_feature_value=np.zeros(0, np.float16))

    cancel = CancelToken()
    job = label_harvest(result_of(copy.deepcopy(labelled["stats"])), FakeTokenizer(), cancel=cancel, chunk=2)
    assert isinstance(next(job), StageStarted)
    first = next(job)
    assert isinstance(first, Progress) and first.unit == "units" and first.done == 2
    cancel.cancel()
    with pytest.raises(Cancelled):
        next(job)

    labels, scores = label_units(copy.deepcopy(labelled["stats"]), FakeTokenizer())
    out, _ = collect(label_harvest(result_of(copy.deepcopy(labelled["stats"])), FakeTokenizer(), chunk=3))
    for stats in (out.features, out.neurons):
        assert stats.labels == labels
        np.testing.assert_array_equal(stats.scores, scores)


def test_windows_of_a_sample_of_whole_contexts_stay_in_their_context():
    """The paired sample is whole contexts from different places: a window never joins two of them."""
    from engine.explain.examples import sample_windows

    tokens = np.arange(12, dtype=np.int32)                       # 3 contexts of 4 tokens
    acts = np.arange(12, dtype=np.float32) + 1
    pos = np.array([4, 7])                                      # the first and last token of context 1
    held = HeldOutSample(token_ids=tokens, acts_of=lambda u: acts, positions=pos, context=4)
    toks, idx = held.windows(2, 2)
    assert toks.tolist() == [[-1, -1, 4, 5, 6], [5, 6, 7, -1, -1]]
    assert idx.tolist() == [[-1, -1, 4, 5, 6], [5, 6, 7, -1, -1]]
    (t0, a0), (t1, a1) = sample_windows(tokens, acts, pos, 2, 2, context=4)
    assert t0.tolist() == [-1, -1, 4, 5, 6] and a0.tolist() == [0, 0, 5, 6, 7]
    assert t1.tolist() == [5, 6, 7, -1, -1]
    (t2, _), = sample_windows(tokens, acts, pos[:1], 2, 2)      # one stretch (schema <= 4): no cut
    assert t2.tolist() == [2, 3, 4, 5, 6]


def test_labels_show_bytes_as_the_app_does_and_say_when_the_top_examples_differ(labelled):
    assert not any("\\x" in lab for lab in labelled["labels"].values())
    assert labelled["labels"]["top_differs"] == "DNA (top: '(')"          # the top examples are "(", the bulk DNA
    assert "(top:" not in labelled["labels"]["dna"]


def test_languages_are_named_from_their_words_and_scripts():
    vocab = [" pour", " dans", " le", " monde", " toujours", " the", " of", " and", " und", " nicht", " jeweils",
             " der", " было", " это", " від", " він", "的", "是", "の", "は", "日", " ", "\n", "def", "#", " x", "'"]
    table = TokenTable.from_strings(vocab)
    ids = {t.strip() or t: i for i, t in enumerate(vocab)}

    def classes(words):
        return [table.class_name(c) for c in table.classify(np.array([[ids[w] for w in words]]))[0]]

    assert set(classes(["pour", "dans", "le", "monde", "toujours"])) == {"French text"}
    assert set(classes(["und", "nicht", "jeweils", "der"])) == {"German text"}
    assert set(classes(["the", "of", "the", "le", "of"])) == {"words"}             # English stays words
    assert set(classes(["было", "это", "было"])) == {"Russian text"}
    assert set(classes(["від", "він", "від"])) == {"Ukrainian text"}
    assert set(classes(["的", "是", "的"])) == {"Chinese text"}
    assert set(classes(["日", "の", "は"])) == {"Japanese text"}


def test_code_contexts_from_the_window():
    from engine.analysis.token_classes import code_contexts
    vocab = ["#", " note", " here", "\n", "x", " =", " '", "abc", "'", "\n    ", "return"]
    table = TokenTable.from_strings(vocab)
    where = code_contexts(table, np.arange(len(vocab))[None])
    assert list(np.flatnonzero(where["in comments"][0])) == [0, 1, 2, 3]
    assert list(np.flatnonzero(where["in string literals"][0])) == [7, 8]
    assert list(np.flatnonzero(where["after indentation"][0])) == [10]
    assert list(np.flatnonzero(where["at line start"][0])) == [4]


def test_tokens_in_text_of_a_class_read_class_first():
    from engine.analysis.labels import in_text_of
    assert in_text_of("the token '⟨0xD8⟩'", "Arabic script") == "Arabic script: '⟨0xD8⟩'"
    assert in_text_of("the tokens '7', '1'", "base64") == "base64: '7', '1'"
    assert in_text_of("whitespace / indentation", "DNA") == "whitespace / indentation in DNA"
