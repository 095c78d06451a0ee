"""Toy models of superposition: the paper's qualitative results on tiny seeded runs, the SAE that undoes
them, and ``superpos toy``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.events import CancelToken, Cancelled, Progress, StageFinished, StageStarted
from engine.jobs import collect, run_to_completion
from engine.toy.dictionary import DictionaryConfig, match_features, train_dictionary
from engine.toy.measures import measure, neighbour_angles
from engine.toy.model import ToyConfig, ToyError, loss_and_gradients, train_toy
from engine.toy.phase import DEDICATED, NOT_REPRESENTED, SUPERPOSITION, classify, phase_diagram


@pytest.fixture(scope="module")
def pentagon():
    """n = 5, m = 2, uniform importance, S = 0.9 (the paper's pentagon)."""
    return run_to_completion(train_toy(ToyConfig(n_features=5, n_hidden=2, sparsity=0.9, seed=0)))


def test_gradients_match_autograd():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 16, 5, generator=gen)
    W = torch.randn(3, 2, 5, generator=gen, requires_grad=True)
    b = torch.randn(3, 5, generator=gen, requires_grad=True)
    weight = torch.rand(3, 1, 5, generator=gen)
    loss, grad_W, grad_b = loss_and_gradients(x, W.detach(), b.detach(), weight)
    out = torch.relu(torch.bmm(torch.bmm(x, W.transpose(1, 2)), W) + b[:, None])
    expected = (weight * (out - x) ** 2).mean(dim=(1, 2))
    expected.sum().backward()
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(grad_W, W.grad)
    torch.testing.assert_close(grad_b, b.grad)


def test_pentagon_at_high_sparsity(pentagon):
    W = pentagon.W_IMN[0]
    m = measure(W)
    assert np.all(np.abs(m.norms_N - 1.0) < 0.2), m.norms_N             # all five represented, norm ≈ 1
    np.testing.assert_allclose(neighbour_angles(W), 72.0, atol=4.0)    # a regular pentagon
    np.testing.assert_allclose(m.dimensionality_N, 2 / 5, atol=0.05)   # the paper's 2/5 level
    assert np.all(m.superposition_N > 0.5)


def test_dense_features_get_orthogonal_dimensions_by_importance():
    result = run_to_completion(train_toy(ToyConfig(n_features=5, n_hidden=2, sparsity=0.0, importance_decay=0.7)))
    m = measure(result.W_IMN[0])
    assert m.represented_N.tolist() == [True, True, False, False, False]   # the m most important
    assert abs(m.gram_NN[0, 1]) < 0.1                                     # orthogonal
    np.testing.assert_allclose(m.dimensionality_N[:2], 1.0, atol=0.05)


def test_measures_of_a_hand_made_W():
    W = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])      # an antipodal pair and a dedicated feature
    m = measure(W)
    np.testing.assert_allclose(m.norms_N, [1, 1, 1])
    np.testing.assert_allclose(m.superposition_N, [1, 1, 0])
    np.testing.assert_allclose(m.dimensionality_N, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(neighbour_angles(W), [90, 90, 180])


def test_training_is_a_cancellable_job():
    _, events = collect(train_toy(ToyConfig(steps=100)))
    assert isinstance(events[0], StageStarted) and isinstance(events[-1], StageFinished)
    assert any(isinstance(e, Progress) and e.done == 100 for e in events)
    token = CancelToken()
    job = train_toy(ToyConfig(steps=10_000), token)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_completion(job)


def test_bad_settings_are_user_errors():
    for bad in (dict(sparsity=1.0), dict(n_features=0), dict(importance_decay=0.0), dict(n_hidden=1.5)):
        with pytest.raises(ToyError):
            ToyConfig(**bad).validate()


def test_phase_diagram_has_the_three_regions():
    diagram = run_to_completion(phase_diagram(size=5, seed=0))
    region = diagram.region_RC            # rows: extra feature's importance 0.1 … 10; columns: density 0.01 … 1
    assert region[0, -1] == NOT_REPRESENTED        # dense and unimportant: dropped
    assert region[-1, -1] == DEDICATED             # dense and important: takes the dimension
    assert region[2, 0] == SUPERPOSITION           # sparse, equally important: an antipodal pair
    assert set(np.unique(region)) == {NOT_REPRESENTED, DEDICATED, SUPERPOSITION}
    assert classify(np.array([1.0, 0.0])) == NOT_REPRESENTED


def test_sae_recovers_the_pentagon(pentagon):
    W = pentagon.W_IMN[0]
    rec = run_to_completion(train_dictionary(W, 0.9, DictionaryConfig(d_sae=8, steps=400)))
    assert rec.mmcs >= 0.95
    assert rec.n_recovered == 5
    assert len(set(rec.best_latent_N.tolist())) == 5       # five different latents
    assert rec.W_dec_FM.shape == (8, 2)


def test_matching_counts_dead_and_split_latents():
    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])         # feature 2 not represented
    W_dec = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.7, 0.7]])
    rec = match_features(W_dec, W, active_F=np.array([5, 3, 4, 0]))
    assert rec.best_latent_N.tolist() == [0, 2, -1]
    assert rec.split_F.tolist() == [False, True, False, False]
    assert rec.dead_F.tolist() == [False, False, False, True]
    assert rec.best_cos_N[2] == 0.0 and rec.mmcs == pytest.approx(1.0)


def test_cli_writes_npz(tmp_path, capsys):
    from engine.cli.main import main

    out = tmp_path / "pentagon.npz"
    assert main(["toy", "--features", "5", "--hidden", "2", "--sparsity", "0.9", "--steps", "300",
                 "--quiet", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["W"].shape == (2, 5) and data["b"].shape == (5,)
    for key in ("loss", "norms", "superposition", "dimensionality", "WtW"):
        assert key in data
    assert "wrote" in capsys.readouterr().out


def test_cli_sae_and_phase(tmp_path):
    from engine.cli.main import main

    out = tmp_path / "sae.npz"
    assert main(["toy", "--features", "4", "--hidden", "2", "--steps", "300", "--sae", "--d-sae", "6",
                 "--quiet", "--out", str(out)]) == 0
    assert np.load(out)["sae_cos"].shape == (6, 4)
    out = tmp_path / "phase.npz"
    assert main(["toy", "--phase-diagram", "--size", "3", "--steps", "100", "--quiet", "--out", str(out)]) == 0
    assert np.load(out)["region"].shape == (3, 3)


@pytest.mark.parametrize("argv", [
    ["--features", "5", "--hidden", "2", "--sparsity", "1.5"],
    ["--features", "0", "--hidden", "2"],
    ["--features", "5", "--hidden", "2", "--importance-decay", "2"],
    ["--features", "5"],
    ["--features", "5", "--hidden", "2", "--sae", "--d-sae", "3"],
    ["--features", "5", "--hidden", "2", "--sae", "--sweep", "0.5,x"],
])
def test_cli_bad_arguments_give_one_line(tmp_path, capsys, argv):
    from engine.cli.main import main

    out = tmp_path / "x.npz"
    assert main(["toy", *argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("superpos: error:") and "\n" not in err
    assert not out.exists()
