"""Families of dictionaries: one-pass training, matching against brute force, the schema-3 bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.analysis.feature_map import embed_decoders
from engine.analysis.matching import correlation_matches, decoder_matches
from engine.bundle import open_bundle
from engine.bundle.schema import SCHEMA_VERSION
from engine.cli.main import build_parser
from engine.config import SAEConfig, preset
from engine.data.activations import ArrayActivationSource
from engine.jobs import collect
from engine.pipeline import run_pipeline
from engine.train.family_job import train_sae_family


def _brute_top(score: np.ndarray, k: int, valid_rows=None, valid_cols=None):
    score = score.astype(np.float64).copy()
    if valid_cols is not None:
        score[:, ~valid_cols] = -np.inf
    order = np.argsort(-score, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(score, order, 1)
    if valid_rows is not None:
        values[~valid_rows] = np.nan
    return order, values


def test_decoder_and_correlation_matches_equal_brute_force_in_small_chunks():
    rng = np.random.default_rng(1)
    Wa, Wb = rng.standard_normal((23, 6)), rng.standard_normal((31, 6))
    ids, cos = decoder_matches(Wa, Wb, k=4, chunk=5)
    na, nb = Wa / np.linalg.norm(Wa, axis=1, keepdims=True), Wb / np.linalg.norm(Wb, axis=1, keepdims=True)
    want_ids, want = _brute_top(na @ nb.T, 4)
    np.testing.assert_allclose(cos, want, atol=1e-5)
    assert (ids == want_ids).mean() > 0.95          # ties aside, the same units

    A = np.maximum(rng.standard_normal((200, 23)), 0) * (rng.random((200, 23)) < 0.3)
    B = np.maximum(rng.standard_normal((200, 31)), 0) * (rng.random((200, 31)) < 0.3)
    A[:, 3] = 0.0            # dead on these tokens: no matches
    B[:, 7] = 1.5            # constant: never anyone's match
    ids, corr = correlation_matches(A, B, k=3, chunk=4)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.corrcoef(A.T, B.T)[:23, 23:]
    live_a, live_b = A.std(0) > 0, B.std(0) > 0
    want_ids, want = _brute_top(np.nan_to_num(full, nan=-np.inf), 3, live_a, live_b)
    np.testing.assert_allclose(corr, want, atol=1e-4)
    assert (ids[live_a] == want_ids[live_a]).all()
    assert (ids[3] == -1).all() and np.isnan(corr[3]).all() and not (ids == 7).any()


def test_family_trains_every_size_from_one_pass_over_the_stream():
    rng = np.random.default_rng(0)
    x = (np.maximum(rng.standard_normal((3000, 16)), 0) * rng.random(16)).astype(np.float32)

    class Counting(ArrayActivationSource):
        drawn = 0

        def iter_batches(self, batch_size, start=0):
            for batch in super().iter_batches(batch_size, start):
                Counting.drawn += 1
                yield batch

    base = SAEConfig(d_in=16, d_sae=32, n_activations=12_800, batch_size=256, recipe="2023", l1_coeff=1e-3)
    cfgs = [base.replace(d_sae=d) for d in (32, 64, 128)]
    results, events = collect(train_sae_family(cfgs, Counting(x), device="cpu"))
    steps = base.n_activations // base.batch_size
    assert [r.sae.cfg.d_sae for r in results] == [32, 64, 128]
    assert all(r.steps == steps for r in results)
    # 2 init batches, then one pass: the steps plus the batches each resample collects
    assert Counting.drawn <= 2 + steps + 4 * max(1, len(results)) * 4
    assert Counting.drawn < 2 * steps            # three separate runs would draw ~3x
    for r in results:
        assert r.final["loss"] < r.curves["sae/loss"][0, 1]
        assert torch.isfinite(r.sae.W_dec).all()


def test_cli_takes_several_dictionary_sizes():
    args = build_parser().parse_args(["run", "--preset", "tiny", "--out", "x.h5", "--d-sae", "512,4096,16384"])
    assert args.d_sae == (512, 4096, 16384)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--out", "x.h5", "--d-sae", "512,abc"])
    args = build_parser().parse_args(["run", "--out", "x.h5", "--model-seeds", "0,1"])
    assert args.model_seeds == (0, 1)
    for bad in ("0,0", "0", "0,1,2", "a,b"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "--out", "x.h5", "--model-seeds", bad])


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    cfg = preset("tiny").with_overrides(train={"tokens": 20_000}, sae={"n_activations": 24_000},
                                        harvest={"n_tokens": 3_000, "eval_tokens": 1_500})
    return collect(run_pipeline(cfg, root / "fam.h5", workdir=root / "work", family_sizes=(32, 64, 128),
                                model_seeds=(0, 1)))


@pytest.mark.parametrize("device", ["cuda:1", "mps", "cpu"])
def test_family_matching_runs_on_the_runs_device_index_and_all(device, monkeypatch):
    """``--device cuda:1`` must match on cuda:1, not cuda:0 (nor mps on the CPU): the run's device
    string reaches the matching stage whole. The matcher and the map are stand-ins, so no GPU is needed."""
    import types

    import torch

    import engine.analysis.family_match as family_match
    import engine.analysis.feature_map as feature_map
    import engine.bundle.family as bundle_family
    from engine.jobs import run_to_completion
    from engine.pipeline import RunContext, _family_parts

    seen = []

    def fake_match(models, saes, tokens, *, device="cpu", **kwargs):
        seen.append(device)
        return {}, {}, {}, []
        yield

    monkeypatch.setattr(family_match, "match_family_job", fake_match)
    monkeypatch.setattr(feature_map, "embed_decoders", lambda decoders, seed=0: ([], [], [], "PCA"))
    monkeypatch.setattr(bundle_family, "family_writes", lambda *args, **kwargs: "writes")
    data = types.SimpleNamespace(tokens=types.SimpleNamespace(val=None))
    ctx = RunContext(device=torch.device(device), data=data)
    sae = types.SimpleNamespace(cfg=types.SimpleNamespace(d_sae=8))
    assert run_to_completion(_family_parts(ctx, preset("tiny"), object(), sae, [], {}, (), (8,))) == "writes"
    assert seen == [device]


def test_family_stage_numbers_follow_the_run(family_run):
    """Every stage of a family run is numbered by its place in the run: 1/N, 2/N, ... N/N in order
    (a repeated stage gets its own number; "matching" comes after both models, never "7/8" before
    "model 3/8")."""
    from engine.events import StageStarted
    from engine.pipeline import run_stages

    _, events = family_run
    started = [e for e in events if isinstance(e, StageStarted)]
    n = started[0].n_stages
    assert [e.index for e in started] == list(range(n)) and {e.n_stages for e in started} == {n}
    names = [e.stage for e in started]
    assert names == run_stages(preset("tiny"), (32, 64, 128), (0, 1))
    assert names.count("model") == 2 and names.index("matching") > max(i for i, s in enumerate(names) if s == "model")
    assert names[-1] == "bundle"


@pytest.fixture(scope="module")
def family_bundle(family_run):
    return family_run[0]


def test_the_run_clock_covers_the_whole_family_not_its_first_dictionary(family_run):
    """Both models' stages and every dictionary's analysis are in the whole-run fraction: it rises
    through the run (never jumping back when a stage repeats) and the first model ends well before
    half of it; the bundle's stage seconds sum each kind of stage over its occurrences."""
    import json

    from engine.events import Message, Progress

    out, events = family_run
    progress = [e for e in events if isinstance(e, Progress)]
    fractions = [e.run_fraction for e in progress]
    assert all(f is not None for f in fractions) and fractions == sorted(fractions) and fractions[-1] > 0.99
    first_model_end = max(e.run_fraction for e in progress[:[e.stage for e in progress].index("sae")]
                          if e.stage == "model")
    assert first_model_end < 0.45
    assert any(isinstance(e, Message) and "expected run time" in e.text for e in events)
    with open_bundle(out) as b:
        seconds = json.loads(b.info["extra_info"]["stage_seconds"])
    assert {"model", "sae", "evaluate", "harvest", "labels", "matching"} <= set(seconds)


def test_family_bundle_holds_every_dictionary_with_its_own_statistics(family_bundle):
    with open_bundle(family_bundle) as b:
        assert b.schema_version == SCHEMA_VERSION == 5
        assert [m["d_sae"] for m in b.family.members] == [32, 64, 128] * 2
        assert b.n_features == 32 and b.family.has_map
        xy, member, unit, method = b.feature_map()
        assert xy.shape == (2 * (32 + 64 + 128), 2) and np.isfinite(xy).all()     # both seeds
        assert np.bincount(member).tolist() == [32, 64, 128] * 2 and method in ("pca", "umap-cosine")
        assert "family_corr_median_0_1" in b.metrics
    labels = []
    for i, d in enumerate((32, 64, 128)):
        with open_bundle(family_bundle, i) as m:
            assert m.n_features == d and m.n_neurons == b.n_neurons
            assert m.load_sae().cfg.d_sae == d
            assert np.isfinite(m.metrics["loss_recovered"])
            assert m.dashboard("feature", d - 1).index == d - 1
            assert m.curves()["sae/loss"].shape[0] > 0
            labels.append(m.columns("feature")["label"])
    assert labels[0] != labels[1][:32]
    with open_bundle(family_bundle) as b:
        assert b.matches(0, 2, "corr") is None and b.matches(0, 1, "logit") is None
        ids, logit = b.matches(0, 3, "logit")
        assert (ids == b.matches(0, 3, "corr")[0]).all() and np.isfinite(logit[ids >= 0]).all()
        assert (np.abs(logit[ids >= 0]) <= 1 + 1e-5).all()
        for F in (32, 64, 128):
            assert 0 < b.metrics[f"universality_feature_n_{F}"] <= F
        assert b.metrics["match_tokens"] > b.harvest_config_dict["sample_tokens"]


def test_rematch_recomputes_what_the_run_stored_and_rewrites_the_bundle(family_bundle, tmp_path):
    """``superpos family --rematch`` on the run's bundle gives the run's matches (same sample, same
    code); with other settings it replaces them and the medians, keeping everything else."""
    import shutil

    from engine.cli.main import main

    path = tmp_path / "fam.h5"
    shutil.copyfile(family_bundle, path)
    with open_bundle(path) as b:
        before = {(a, c, kind): b.matches(a, c, kind) for a in range(6) for c in range(6)
                  for kind in ("decoder", "corr", "logit")}
        neurons_before, metrics_before = b.neuron_matches(0, 1), dict(b.metrics)
    assert main(["family", str(path), "--rematch", "--quiet"]) == 0
    with open_bundle(path) as b:
        for (a, c, kind), want in before.items():
            got = b.matches(a, c, kind)
            assert (got is None) == (want is None)
            if want is not None:
                np.testing.assert_allclose(got[1], want[1], atol=1e-5)
        np.testing.assert_allclose(b.neuron_matches(0, 1)[1], neurons_before[1], atol=1e-5)
        assert b.metrics["universality_neuron_median"] == pytest.approx(metrics_before["universality_neuron_median"])
        assert b.feature_map() is not None and b.schema_version == SCHEMA_VERSION
    assert main(["family", str(path), "--rematch", "--quiet", "--match-tokens", "2000", "--min-active", "3"]) == 0
    with open_bundle(path) as b:
        assert b.metrics["match_tokens"] < metrics_before["match_tokens"] and b.metrics["match_min_active"] == 3
        assert b.n_features == 32 and b.columns("feature")["label"]


def test_the_family_report_reads_universality_and_splits_from_the_stored_matches(family_bundle, capsys):
    """``superpos family BUNDLE``: the stored medians per size and the neurons', and splits that are
    what the stored decoder matches say: every child's best match in the smaller size is its parent,
    its cosine at least the bar, the children's labels all different."""
    from engine.analysis.family_report import family_report
    from engine.bundle.family import FamilyTree
    from engine.cli.main import main

    with open_bundle(family_bundle) as b:
        report = family_report(b, min_cosine=0.0, limit=50)
        u = report["universality"]
        assert u["neurons"] == pytest.approx(b.metrics["universality_neuron_median"])
        assert sorted(u["features"]) == [32, 64, 128]
        assert u["features"][64][0] == pytest.approx(b.metrics["universality_feature_median_64"], nan_ok=True)
        tree = FamilyTree(b)
        assert report["splits"], "a tiny family of 32/64/128 has features shared as best match"
        for split in report["splits"]:
            assert b.family.members[split.member]["model"] == b.family.members[split.member + 1]["model"]
            labels = [label for _, _, label, _ in split.children]
            assert len(labels) >= 2 and len(set(labels)) == len(labels)
            for g, cos, _, _ in split.children:
                assert tree.parent(split.member + 1, g) == (split.feature, pytest.approx(cos))
        strict = family_report(b, min_cosine=0.99)["splits"]
        assert all(c >= 0.99 for s in strict for _, c, _, _ in s.children)
    assert main(["family", str(family_bundle)]) == 0
    out = capsys.readouterr().out
    assert "universality: median best-match" in out and "neurons" in out and "features      64" in out
    assert main(["family", str(family_bundle), "--min-active", "3"]) == 1      # needs --rematch: one line
    assert "--rematch" in capsys.readouterr().err


def test_the_report_and_the_splitting_tree_count_children_by_one_rule(family_bundle):
    """``SplitChildren`` is the rule both ``superpos family`` and the app use: a split's printed
    children are exactly the rule's counted children of its parent; every feature whose best match is
    the parent is listed by ``all`` and the ones left out say why (a weak cosine, dead, unlabelled, a
    copy, a repeated label)."""
    from engine.analysis.family_report import SplitChildren, splits
    from engine.bundle.family import FamilyTree

    with open_bundle(family_bundle) as b:
        loose = SplitChildren(b, min_cosine=0.0)         # a tiny family's children are not close
        found = splits(b, limit=50, min_cosine=0.0)
        assert found
        for split in found:
            counted = loose.children(split.member, split.feature)
            assert [(c.feature, c.cosine, c.label) for c in counted] == \
                [(g, pytest.approx(cos), label) for g, cos, label, _ in split.children]
        rule, tree = SplitChildren(b), FamilyTree(b)
        d, f = 0, max(range(32), key=lambda f: len(tree.children(0, f)))
        every = rule.all(d, f)
        assert [c.feature for c in every] == [g for g, _ in tree.children(d, f)]
        for c in every:
            assert c.counted == (c.reason == "")
            if c.cosine < 0.5:
                assert not c.counted and "cosine" in c.reason
        labels = [c.label for c in every if c.counted]
        assert len(labels) == len(set(labels))
        assert {c.feature for c in rule.children(d, f)} <= {c.feature for c in loose.children(d, f)}


def test_matching_is_a_job_with_progress_that_cancels_between_steps(family_bundle):
    """The matching stage reports each model's forwards, each dictionary's encoding and each
    comparison, so a family run's bar moves and Cancel stops it there, not after the whole stage."""
    from engine.analysis.family_match import match_family_job
    from engine.events import CancelToken, Cancelled, Progress, StageFinished, StageStarted
    from engine.rematch import _load_family

    config, _, models, saes = _load_family(family_bundle)
    tokens = np.random.default_rng(0).integers(0, config.model.vocab_size, 20_000)
    _, events = collect(match_family_job(models, saes, tokens, n_tokens=4_000, min_active=3))
    started = next(e for e in events if isinstance(e, StageStarted))
    progress = [e for e in events if isinstance(e, Progress)]
    assert started.stage == "matching" and started.total == 2 + 6 + 4 + 3 + 1
    assert [e.done for e in progress] == list(range(1, started.total + 1))
    assert isinstance(events[-1], StageFinished)
    cancel = CancelToken()
    job = match_family_job(models, saes, tokens, n_tokens=4_000, min_active=3, cancel=cancel)
    seen = 0
    with pytest.raises(Cancelled):
        for event in job:
            if isinstance(event, Progress):
                seen += 1
                cancel.cancel()
    assert seen == 1


def test_given_neuron_activations_match_like_the_tokens_they_came_from(family_bundle):
    """One matcher: activations handed in (the synthetic families' way) are matched exactly as the
    model's own forwards on the matching sample are (the run's and --rematch's way)."""
    from engine.analysis.family_match import match_family_job
    from engine.analysis.universality import neuron_acts, spread_windows
    from engine.jobs import run_to_completion
    from engine.rematch import _load_family

    config, _, models, saes = _load_family(family_bundle)
    tokens = np.random.default_rng(0).integers(0, config.model.vocab_size, 20_000)
    options = dict(n_tokens=4_000, min_active=3, seed=5)
    by_tokens = run_to_completion(match_family_job(models, saes, tokens, **options))
    windows = spread_windows(tokens, 4_000, models[0].cfg.n_ctx, 5)
    given = run_to_completion(match_family_job(models, saes, neuron_acts=[neuron_acts(m, windows) for m in models],
                                               **options))
    (m1, n1, metrics1, maps1), (m2, n2, metrics2, maps2) = by_tokens, given
    assert metrics1 == metrics2 and m1.keys() == m2.keys() and n1.keys() == n2.keys()
    for key in m1:
        for kind in m1[key]:
            for a, b in zip(m1[key][kind], m2[key][kind]):
                np.testing.assert_array_equal(a, b)
    for a, b in zip(maps1, maps2):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        run_to_completion(match_family_job(models, saes))


def test_synthetic_families_are_matched_by_the_product_matcher(tmp_path):
    """The synthetic families the app tests use store what ``match_family_job`` computes on their
    sample: sparse feature correlation (positive matches only, rare units unmatched) and its metrics."""
    from engine.analysis.universality import feature_acts, sparse_correlation_matches
    from engine.testing.synthetic_family import write_synthetic_family

    path = write_synthetic_family(tmp_path / "f.h5", sizes=(16, 48), n_neurons=24, n_tokens=5000, second_seed=True)
    with open_bundle(path) as b:
        x = b.sample_neurons()[1]
        saes = [open_bundle(path, i).load_sae() for i in range(2)]
        want = sparse_correlation_matches(feature_acts(saes[0], x), feature_acts(saes[1], x))
        got = b.matches(0, 1, "corr")
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], atol=1e-6)
        assert "universality_feature_median_16" in b.metrics and b.metrics["match_tokens"] == len(x)
        assert b.matches(0, 2, "logit") is not None and b.neuron_matches(0, 1) is not None
        assert len(b.feature_map()[0]) == 2 * (16 + 48)        # the second seed's features are on the map


def test_old_bundles_open_as_families_of_one(written, tmp_path):
    import h5py

    from bundle_parts import copy_bundle

    old = copy_bundle(written, tmp_path)
    with h5py.File(old, "a") as f:        # a schema-2 bundle: no /family, no /dictionaries
        f.attrs["schema_version"] = np.int64(2)
    with open_bundle(old) as b:
        assert b.schema_version == 2
        assert len(b.family) == 1 and b.family.members[0]["d_sae"] == b.n_features
        assert b.feature_map() is None and b.matches(0, 1) is None
        assert b.dashboard("feature", 0).index == 0
    with pytest.raises(IndexError):
        open_bundle(old, 1)


def test_pca_map_separates_directions_and_umap_is_optional():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2, 12)) * 5
    rows = np.concatenate([centres[0] + rng.standard_normal((40, 12)), centres[1] + rng.standard_normal((40, 12))])
    xy, member, unit, method = embed_decoders([rows[:30], rows[30:]], method="pca")
    assert method == "pca" and xy.shape == (80, 2) and member.tolist() == [0] * 30 + [1] * 50
    assert unit[30] == 0
    first, second = xy[:40].mean(0), xy[40:].mean(0)
    assert np.linalg.norm(first - second) > 2 * xy[:40].std(0).max()


def test_a_second_seed_has_its_own_model_and_neurons(parts, tmp_path):
    """/models/1 holds model B; its dictionaries read B's weights and neurons through their links."""
    from engine.bundle import write_bundle
    from engine.bundle.family import MemberParts, ModelParts, family_writes

    state_b = {k: v + 1.0 for k, v in parts["model_state"].items()}
    neurons_b = parts["harvest"].neurons
    labels_b = [f"B neuron {i}" for i in range(len(neurons_b))]
    neurons_b = type(neurons_b)(**{**neurons_b.__dict__, "labels": labels_b})
    member = MemberParts(parts["config"].with_overrides(train={"seed": 1}), parts["sae_state"], parts["harvest"],
                         {"mse": 1.0}, {}, model=1)
    ids = np.tile(np.arange(3, dtype=np.int32), (len(neurons_b), 1))
    values = np.full(ids.shape, 0.5, np.float32)
    extra = family_writes(["A/0", "B/0"], [member], {}, None,
                          models=[ModelParts(state_b, parts["config"].model, neurons_b, seed=1)],
                          neuron_matches={(0, 1): (ids, values)}, seeds=(0, 1))
    path = write_bundle(tmp_path / "seeds.h5", **parts, extra=extra)
    with open_bundle(path) as a, open_bundle(path, 1) as b:
        assert b.family.members[1]["model"] == 1 and b.family.members[1]["seed"] == 1
        assert a.family.counterpart(0) == 1 and b.config.train.seed == 1
        wa, wb = a.model_state(), b.model_state()
        assert all(np.allclose(wb[k], wa[k] + 1.0) for k in wa)
        assert b.columns("neuron")["label"] == labels_b and a.columns("neuron")["label"] != labels_b
        got_ids, got_values = a.neuron_matches(0, 1)
        assert (got_ids == ids).all() and np.allclose(got_values, 0.5)
        assert a.neuron_matches(1, 0) is None


def test_family_members_start_from_their_own_initialisation():
    """A shared seed would start the wide SAE's first rows as the narrow one's (torch draws row by row),
    and matches across sizes would partly be that shared start."""
    from engine.config import SAEConfig
    from engine.sae import SparseAutoencoder
    from engine.train.family_job import family_configs

    base = SAEConfig(d_in=16, d_sae=32, seed=3)
    cfgs = family_configs(base, [32, 64, 128])
    assert [c.d_sae for c in cfgs] == [32, 64, 128] and cfgs[0] == base
    assert len({c.seed for c in cfgs}) == 3
    small, wide = SparseAutoencoder(cfgs[0]), SparseAutoencoder(cfgs[1])
    cos = (small.W_dec @ wide.W_dec[:32].t()).diagonal()
    assert float(cos.abs().max()) < 0.99
    assert family_configs(SAEConfig(d_in=16, d_sae=32, seed=2**32 - 1), [32, 64])[1].seed < 2**32


def test_the_seed_alignment_recovers_a_linear_map_and_ignores_constant_neurons():
    """The map's carry of model B's directions into model A's neuron basis: centred and ridge-
    regularised, so a (nearly) constant neuron of B gets no runaway coefficient that would send
    every carried row the same way."""
    from engine.analysis.family_match import neuron_alignment

    rng = np.random.default_rng(0)
    xb = np.maximum(rng.standard_normal((4000, 12)), 0) + 3.0
    xb[:, 5] = 2.0 + 1e-7 * rng.standard_normal(4000)          # constant but for rounding noise
    true = rng.standard_normal((12, 9))
    true[5] = 0.0
    xa = xb @ true + 0.01 * rng.standard_normal((4000, 9))
    R = neuron_alignment(xb, xa)
    np.testing.assert_allclose(np.delete(R, 5, axis=0), np.delete(true, 5, axis=0), atol=0.05)
    assert np.abs(R[5]).max() < 1.0


def test_duplicate_copies_keep_one_feature_per_group_of_near_identical_rows():
    from engine.analysis.matching import duplicate_copies

    rng = np.random.default_rng(3)
    W = rng.standard_normal((60, 16))
    W[7] = 2.0 * W[3] + 1e-3 * rng.standard_normal(16)       # a copy (any scale) of row 3
    W[40] = W[3] + 1e-3 * rng.standard_normal(16)            # and another
    W[12] = -W[5]                                            # opposite: not a copy
    copies = duplicate_copies(W, chunk=7)
    assert np.flatnonzero(copies).tolist() == [7, 40]
    assert not duplicate_copies(W[:1]).any()
