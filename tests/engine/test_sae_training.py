"""SAE training: hand-written gradients equal autograd's, recipes recover known directions,
2023 keeps unit decoder rows and resamples dead features, cancel/resume, NaN stop, sources."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from engine import events
from engine.data.activations import (ActivationFileError, ArrayActivationSource, ModelActivationSource,
                                cache_activations)
from engine.config import ModelConfig, SAEConfig
from engine.errors import TrainingDiverged
from engine.model import OneLayerTransformer
from engine.jobs import run_to_completion
from engine.config import SAE_RECIPES
from engine.train.optim import Adam
from engine.train.recipes import RECIPES, SAETrainer, make_trainer
from engine.train.recipes.topk import sampled_dot
from engine.train.sae_job import CHECKPOINT_NAME, train_sae


def synthetic(n=40_000, d=32, m=48, p=0.05, seed=0):
    """x = Σ (sparse non-negative magnitudes) · (m random unit directions) + offset."""
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((m, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    mags = rng.uniform(0.5, 2.0, (n, m)) * (rng.random((n, m)) < p)
    return (mags @ dirs + 0.5).astype(np.float32), dirs


def mean_max_cosine(dirs: np.ndarray, W_dec: torch.Tensor) -> float:
    W = W_dec.detach().numpy()
    W = W / np.linalg.norm(W, axis=1, keepdims=True)
    return float((dirs @ W.T).max(1).mean())


# ------------------------------------------------------------------ gradients
class _Heaviside(torch.autograd.Function):
    """H(pre - θ) with the JumpReLU paper's straight-through estimator for θ only (rectangle kernel)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).float()

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        window = ((pre - theta).abs() < ctx.eps / 2).float() / ctx.eps
        return None, -(window * g).sum(0), None


def _jumprelu(pre, theta, eps):
    """pre·H(pre - θ): exact gradient to pre where active, -(θ/ε)K to θ (the paper's estimator)."""
    window = ((pre - theta).abs() < eps / 2).float()
    gate = (pre > theta).float()
    # value pre·gate; d/dθ = -(θ/ε)·window, built as θ·(stop-grad part) so autograd gives exactly that
    return pre * gate + (theta - theta.detach()) * (-(theta.detach() / eps) * window)


def _reference_codes(tr: SAETrainer, pre: torch.Tensor, theta) -> torch.Tensor:
    cfg = tr.cfg
    if cfg.recipe == "topk":
        v, i = pre.topk(cfg.k, dim=1)
        return torch.zeros_like(pre).scatter(1, i, v.relu())
    if cfg.recipe in ("batchtopk", "matryoshka"):
        v, i = pre.reshape(-1).topk(cfg.k * pre.shape[0])
        return torch.zeros_like(pre).reshape(-1).scatter(0, i, v.relu()).reshape(pre.shape)
    if cfg.recipe == "jumprelu":
        return _jumprelu(pre, theta, cfg.jumprelu_bandwidth)
    return pre.relu()


def _autograd_loss(tr: SAETrainer, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    """The recipe's loss written plainly with autograd: the reference for the hand-written step."""
    cfg = tr.cfg
    params = [p.detach().clone().requires_grad_(True) for p in tr.params]
    W_enc, b_enc, W_dec, b_dec = params[:4]
    theta = params[4] if len(params) > 4 else None
    xs, B = x * tr.scale, x.shape[0]
    pre = (xs if cfg.recipe == "2024-04" else xs - b_dec) @ W_enc.t() + b_enc
    f = _reference_codes(tr, pre, theta)
    x_hat = f @ W_dec + b_dec
    loss = (x_hat - xs).pow(2).sum() / B
    var_sum = (xs - xs.mean(0)).pow(2).sum()
    if cfg.recipe in ("topk", "batchtopk"):               # normalised MSE
        loss = (x_hat - xs).pow(2).sum() / var_sum
    if cfg.recipe == "matryoshka":                        # the mean over the nested prefixes
        widths = tr.widths()
        loss = sum((f[:, :w] @ W_dec[:w] + b_dec - xs).pow(2).sum() for w in widths) / (len(widths) * var_sum)
    if cfg.recipe == "2023":
        loss = loss + tr.l1_at(tr.steps_done) * f.sum() / B
    if cfg.recipe == "2024-04":
        loss = loss + tr.l1_at(tr.steps_done) * (f * W_dec.norm(dim=1)).sum() / B
    dead = tr.dead_mask()
    if cfg.recipe == "jumprelu":
        loss = loss + cfg.l0_coeff * _Heaviside.apply(pre, theta, cfg.jumprelu_bandwidth).sum() / B
        loss = loss + cfg.pre_act_coeff * ((theta - pre).relu() * dead).sum() / B
    if cfg.recipe in ("topk", "batchtopk", "matryoshka"):
        n_aux = min(cfg.aux_k, int(dead.sum()))
        assert n_aux > 0
        e = (xs - x_hat).detach()
        av, ai = pre.masked_fill(~dead, -float("inf")).topk(n_aux, dim=1)
        e_hat = torch.zeros_like(pre).scatter(1, ai, av) @ W_dec
        loss = loss + cfg.aux_coeff * (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
    loss.backward()
    return loss.item(), [p.grad for p in params]


@pytest.mark.parametrize("recipe", SAE_RECIPES)
def test_hand_written_gradients_match_autograd(recipe):
    torch.manual_seed(0)
    cfg = SAEConfig(recipe=recipe, d_in=16, d_sae=64, k=4, aux_k=8, batch_size=32, l1_coeff=0.3,
                    l0_coeff=0.2, jumprelu_bandwidth=0.5, pre_act_coeff=0.1, matryoshka_widths=(8, 24, 64))
    tr = make_trainer(cfg, torch.device("cpu"), total_steps=100)
    x = torch.rand(32, 16) * 3
    tr.initialise(x)
    with torch.no_grad():
        tr.b_enc_F.normal_(0, 0.3)
        tr.b_dec_D.normal_(0, 0.1)
        tr.W_dec_FD.mul_(torch.rand(64, 1) + 0.5)        # non-unit rows exercise the 2024-04 penalty
        if recipe == "jumprelu":                          # thresholds spread over the pre-activations
            tr.theta_F.uniform_(0.0, 1.5)
    tr.n_seen = 1000
    tr.last_fired[:30] = 1000                             # latents 30.. are dead: AuxK / pre-act loss act
    tr.dead_window = 500
    ref_loss, ref_grads = _autograd_loss(tr, x)
    torch.mul(x, tr.scale, out=tr.x_BD)
    for p in tr.params:
        p.grad.zero_()
    metrics = tr.gradients_()
    assert metrics["loss"] == pytest.approx(ref_loss, rel=1e-5)
    assert len(tr.params) == len(ref_grads)
    for name, p, g in zip(tr.param_names, tr.params, ref_grads):
        assert g.abs().max() > 0, (recipe, name)          # every tensor is exercised
        assert torch.allclose(p.grad, g, atol=1e-5 * (1 + g.abs().max().item())), (recipe, name)


# ------------------------------------------------------------------ recipes
@pytest.mark.parametrize("recipe, extra, min_cos", [
    ("topk", {"k": 3}, 0.9), ("2024-04", {"l1_coeff": 3.0}, 0.9), ("2023", {"l1_coeff": 1.0}, 0.9),
    ("batchtopk", {"k": 3}, 0.95),
    ("matryoshka", {"k": 3, "matryoshka_widths": (64, 96)}, 0.95),     # the first prefix holds the 48
    ("jumprelu", {"l0_coeff": 3.0, "jumprelu_init_threshold": 0.5}, 0.95)])
def test_recovers_known_sparse_directions(recipe, extra, min_cos):
    x, dirs = synthetic()
    cfg = SAEConfig(recipe=recipe, d_in=32, d_sae=96, aux_k=16, batch_size=512, n_activations=200_000,
                    dead_window=20_000, lr=3e-3, **extra)
    progress = []
    job = train_sae(cfg, ArrayActivationSource(x, seed=0))
    while True:
        try:
            progress.append(next(job))
        except StopIteration as stop:
            result = stop.value
            break
    assert isinstance(progress[0], events.StageStarted) and isinstance(progress[-1], events.StageFinished)
    progress = [e for e in progress if isinstance(e, events.Progress)]
    assert len(progress) == result.steps == 200_000 // 512
    assert {"mse", "sparsity_loss", "l0", "dead_fraction", "lr"} <= set(progress[-1].metrics)
    assert progress[-1].unit == "activations" and progress[-1].stage == "sae"
    assert mean_max_cosine(dirs, result.sae.W_dec) >= min_cos
    assert set(result.curves) >= {"sae/mse", "sae/l0", "sae/dead_fraction", "sae/lr", "sae/loss"}
    assert result.curves["sae/mse"].shape == (result.steps, 2)
    assert result.curves["sae/mse"][-1, 1] < result.curves["sae/mse"][0, 1]
    # the returned SAE works on raw activations: its error there, rescaled, is the training error
    x_t = torch.from_numpy(x[:4096])
    with torch.no_grad():
        x_hat, _ = result.sae(x_t)
    mse_raw = ((x_hat - x_t) ** 2).mean().item()
    assert 0.7 < mse_raw * result.scale**2 / result.final["mse"] < 1.4
    fvu = ((x_hat - x_t) ** 2).sum() / ((x_t - x_t.mean(0)) ** 2).sum()
    assert fvu < (0.6 if recipe == "2024-04" else 0.2)      # the L1-type penalty shrinks magnitudes
    if recipe != "2024-04":
        norms = result.sae.W_dec.norm(dim=1) * result.scale     # unit norm in the training scale
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)


def test_sampled_dot_equals_gather_dot():
    G, W = torch.randn(6, 5), torch.randn(9, 5)
    rows, lat = torch.tensor([0, 0, 1, 3, 3, 5]), torch.tensor([2, 7, 1, 0, 8, 3])
    assert torch.allclose(sampled_dot(G, W, rows, lat), (G[rows] * W[lat]).sum(1), atol=1e-6)


def test_adam_matches_the_textbook_update():
    p = torch.tensor([1.0, -2.0, 3.0])
    p.grad = torch.tensor([0.5, 0.1, -1.0])
    ref = p.clone()
    m = torch.zeros(3)
    v = torch.zeros(3)
    opt = Adam([p])
    for t in range(1, 4):
        opt.step(0.01)
        m = 0.9 * m + 0.1 * p.grad
        v = 0.999 * v + 0.001 * p.grad**2
        ref -= 0.01 * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
        assert torch.allclose(p, ref, atol=1e-6)


def test_adam_fused_and_plain_paths_agree():
    torch.manual_seed(0)
    params = [torch.randn(8, 4), torch.randn(4)]
    twins = [p.clone() for p in params]
    fused, plain = Adam(params), Adam(twins)
    plain.fused = False
    for step in range(5):
        for p, q in zip(params, twins):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        fused.step(0.01)
        plain.step(0.01)
    for p, q in zip(params, twins):
        assert torch.allclose(p, q, atol=1e-6)
    restored = Adam([p.clone() for p in params])
    restored.load_state_dict(fused.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.exp_avg_sq, fused.exp_avg_sq))


def test_every_recipe_name_has_one_trainer():
    assert tuple(RECIPES) == SAE_RECIPES
    for name, cls in RECIPES.items():
        assert issubclass(cls, SAETrainer), name
        assert sys.modules[cls.__module__].__doc__, f"{cls.__module__} should give the recipe's maths"


@pytest.mark.parametrize("recipe", SAE_RECIPES)
def test_live_metric_names_are_the_stored_curve_names(recipe):
    x, _ = synthetic(n=5000)
    cfg = SAEConfig(recipe=recipe, d_in=32, d_sae=64, k=4, aux_k=8, batch_size=256, n_activations=256 * 12,
                    dead_window=512)
    progress, result = [], None
    job = train_sae(cfg, ArrayActivationSource(x))
    while result is None:
        try:
            progress.append(next(job))
        except StopIteration as stop:
            result = stop.value
    progress = [e for e in progress if isinstance(e, events.Progress)]
    assert set(result.curves) == {f"sae/{key}" for key in progress[-1].metrics}
    for key in progress[-1].metrics:
        curve = result.curves[f"sae/{key}"]
        assert curve.shape == (len(progress), 2)
        assert curve[:, 0].tolist() == [p.done for p in progress]
        assert curve[:, 1].tolist() == pytest.approx([p.metrics[key] for p in progress])


def test_2023_decoder_rows_stay_unit_norm_every_step():
    x, _ = synthetic(n=5000)
    cfg = SAEConfig(recipe="2023", d_in=32, d_sae=64, batch_size=256, l1_coeff=1.0, lr=1e-2)
    tr = make_trainer(cfg, torch.device("cpu"), total_steps=20)
    tr.initialise(torch.from_numpy(x[:1024]))
    tr.dead_window = 10_000
    for step in range(10):
        tr.step(torch.from_numpy(x[step * 256:(step + 1) * 256]))
        norms = tr.W_dec_FD.norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_resampling_revives_dead_features():
    x, _ = synthetic(n=8000)
    data = torch.from_numpy(x)
    cfg = SAEConfig(recipe="2023", d_in=32, d_sae=64, batch_size=256, l1_coeff=1.0, lr=1e-3)
    tr = make_trainer(cfg, torch.device("cpu"), total_steps=100)
    tr.initialise(data[:1024])
    tr.dead_window = 1024
    with torch.no_grad():
        tr.b_enc_F[:16] = -1e4                                    # features 0..15 can never fire
    for step in range(8):
        tr.step(data[step * 256:(step + 1) * 256])
    dead = tr.dead_mask()
    assert dead[:16].all()
    n = tr.resample_dead_(data[4000:8000], seed=0)
    assert n == int(dead.sum()) >= 16
    for i in (0, 1, 2):                                           # W_enc rows, b_enc, W_dec rows
        assert tr.opt.exp_avg[i][:16].abs().max() == 0 and tr.opt.exp_avg_sq[i][:16].abs().max() == 0
    assert tr.opt.exp_avg[2][16:].abs().max() > 0
    assert torch.allclose(tr.W_dec_FD[:16].norm(dim=1), torch.ones(16), atol=1e-5)
    live = ~dead
    enc_norms = tr.W_enc_FD.norm(dim=1)
    assert torch.allclose(enc_norms[:16], 0.2 * enc_norms[live].mean().expand(16), rtol=1e-4)
    f = tr.to_sae().encode(data[2000:4000])
    assert (f[:, :16] > 0).any(0).all()                         # every revived feature fires again
    assert not tr.dead_mask()[:16].any()


def test_2023_run_resamples_on_schedule():
    x, _ = synthetic(n=20_000)
    cfg = SAEConfig(recipe="2023", d_in=32, d_sae=256, batch_size=256, n_activations=60_000,
                    l1_coeff=3.0, dead_window=100_000)
    result = run_to_completion(train_sae(cfg, ArrayActivationSource(x)))
    assert result.steps == 60_000 // 256
    assert result.final["dead_fraction"] < 0.5


# ------------------------------------------------------------------ cancel, resume, divergence
@pytest.mark.parametrize("recipe", ["topk", "jumprelu", "batchtopk"])   # + a threshold parameter / EMA
def test_cancel_then_resume_matches_uninterrupted_run(tmp_path, recipe):
    x, _ = synthetic(n=20_000)
    cfg = SAEConfig(recipe=recipe, d_in=32, d_sae=64, k=4, aux_k=8, batch_size=256, n_activations=40_000,
                    dead_window=2000, checkpoint_every=5, jumprelu_init_threshold=0.5)
    reference = run_to_completion(train_sae(cfg, ArrayActivationSource(x, seed=1)))

    token = events.CancelToken()
    job = train_sae(cfg, ArrayActivationSource(x, seed=1), checkpoint_dir=tmp_path, cancel=token)
    with pytest.raises(events.Cancelled) as info:
        for i, _ in enumerate(job):      # event 0 is the StageStarted, event i the i-th step
            if i == 62:
                token.cancel()
    assert info.value.checkpoint == str(tmp_path / CHECKPOINT_NAME)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["trainer"]["step"] == 62
    resumed = run_to_completion(train_sae(cfg, ArrayActivationSource(x, seed=1), checkpoint_dir=tmp_path,
                                          resume=True))
    assert resumed.steps == reference.steps
    for key in resumed.sae.state_keys:
        assert torch.allclose(getattr(resumed.sae, key), getattr(reference.sae, key), atol=1e-6), key
    assert np.allclose(resumed.curves["sae/mse"], reference.curves["sae/mse"])


def _prefix_fvu(sae, x: torch.Tensor, width: int) -> float:
    with torch.no_grad():
        f = sae.encode(x)
        x_hat = f[:, :width] @ sae.W_dec[:width] + sae.b_dec
    return float(((x_hat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_matryoshka_prefixes_reconstruct_on_their_own():
    """The first 16 latents of a matryoshka SAE explain the data far better than the first 16 of a
    BatchTopK SAE trained alike (whose latents are in no particular order); the full SAEs are close."""
    x, _ = synthetic()
    base = dict(d_in=32, d_sae=96, k=3, aux_k=16, batch_size=512, n_activations=100_000, dead_window=20_000, lr=3e-3)
    nested = run_to_completion(train_sae(SAEConfig(recipe="matryoshka", matryoshka_widths=(16, 48, 96), **base),
                                         ArrayActivationSource(x, seed=0))).sae
    flat = run_to_completion(train_sae(SAEConfig(recipe="batchtopk", **base), ArrayActivationSource(x, seed=0))).sae
    x_t = torch.from_numpy(x[:4096])
    assert _prefix_fvu(nested, x_t, 16) < 0.75 * _prefix_fvu(flat, x_t, 16)
    assert _prefix_fvu(nested, x_t, 96) < 0.35


def test_batchtopk_stores_its_learned_threshold_as_jumprelu():
    """Saved as SAELens saves BatchTopK: one θ for every latent, the EMA of the batches' smallest kept
    activation; at inference pre > θ gives about k active latents per row on the training data."""
    x, _ = synthetic(n=20_000)
    cfg = SAEConfig(recipe="batchtopk", d_in=32, d_sae=96, k=3, aux_k=16, batch_size=512, n_activations=60_000,
                    dead_window=20_000, lr=3e-3)
    result = run_to_completion(train_sae(cfg, ArrayActivationSource(x, seed=0)))
    sae = result.sae
    assert sae.architecture == "jumprelu"
    theta = sae.threshold.detach()
    assert torch.all(theta == theta[0]) and theta[0] > 0
    assert theta[0].item() == pytest.approx(result.final["threshold"])
    with torch.no_grad():
        l0 = (sae.encode(torch.from_numpy(x[:8192])) > 0).sum(1).float().mean().item()
    assert 0.7 * cfg.k < l0 < 1.4 * cfg.k


def test_resume_refuses_a_different_config(tmp_path):
    x, _ = synthetic(n=5000)
    cfg = SAEConfig(recipe="topk", d_in=32, d_sae=64, k=4, batch_size=256, n_activations=2560)
    run_to_completion(train_sae(cfg, ArrayActivationSource(x), checkpoint_dir=tmp_path))
    with pytest.raises(ValueError, match="different SAE configuration"):
        run_to_completion(train_sae(cfg.replace(k=5), ArrayActivationSource(x), checkpoint_dir=tmp_path,
                                    resume=True))


class _PoisonedSource:
    """Finite batches, then NaN from batch `bad` on."""

    d_in = 32

    def __init__(self, bad: int):
        self.bad = bad
        self.data = torch.from_numpy(synthetic(n=4096)[0])

    def iter_batches(self, batch_size, start=0):
        i = start
        while True:
            batch = self.data[(i * batch_size) % 4096:][:batch_size].clone()
            if i >= self.bad:
                batch[0, 0] = float("nan")
            yield batch
            i += 1


def test_nan_stops_with_training_diverged_and_keeps_checkpoint(tmp_path):
    cfg = SAEConfig(recipe="topk", d_in=32, d_sae=64, k=4, batch_size=256, n_activations=256 * 20,
                    checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match="nan"):
        run_to_completion(train_sae(cfg, _PoisonedSource(bad=7), checkpoint_dir=tmp_path))
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["trainer"]["step"] == 6
    assert torch.isfinite(state["trainer"]["params"]["W_dec_FD"]).all()


# ------------------------------------------------------------------ sources
def test_array_source_is_deterministic_and_resumable(tmp_path):
    x = np.arange(1000 * 4, dtype=np.float32).reshape(1000, 4)
    src = ArrayActivationSource(x, seed=3)
    it = src.iter_batches(64)
    first = [next(it) for _ in range(20)]                      # crosses an epoch boundary (15 per epoch)
    again = list(zip(range(5), src.iter_batches(64, start=13)))
    for j, batch in again:
        assert torch.equal(batch, first[13 + j])
    rows = torch.cat(first[:15])[:, 0].numpy() / 4
    assert len(np.unique(rows)) == 15 * 64                     # no row repeats within an epoch


def test_array_source_files_and_errors(tmp_path):
    import h5py

    x = np.random.default_rng(0).random((300, 8), dtype=np.float32)
    np.save(tmp_path / "acts.npy", x)
    with h5py.File(tmp_path / "acts.h5", "w") as h5:
        h5["meta/ids"] = np.arange(5)
        h5["acts"] = x
    for name in ("acts.npy", "acts.h5"):
        src = ArrayActivationSource(tmp_path / name)
        assert src.d_in == 8 and next(src.iter_batches(100)).shape == (100, 8)
    np.save(tmp_path / "flat.npy", x.reshape(-1))
    np.save(tmp_path / "ints.npy", (x * 10).astype(np.int64))
    (tmp_path / "acts.txt").write_text("1 2 3")
    for name, match in [("flat.npy", "2-D"), ("ints.npy", "dtype"), ("acts.txt", ".npy or .h5"),
                        ("missing.npy", "does not exist")]:
        with pytest.raises(ActivationFileError, match=match):
            ArrayActivationSource(tmp_path / name)


def _tiny_model():
    torch.manual_seed(0)
    return OneLayerTransformer(ModelConfig(vocab_size=50, n_ctx=16, d_model=16, n_heads=2, d_mlp=24)).eval()


def test_model_source_streams_deterministic_shuffled_batches(tmp_path):
    model = _tiny_model()
    tokens = np.random.default_rng(0).integers(0, 50, size=5000).astype(np.uint16)
    src = ModelActivationSource(model, tokens, n_ctx=16, batch_size=32, buffer_batches=4, seed=0)
    it = src.iter_batches(32)
    first = [next(it) for _ in range(7)]
    assert all(b.shape == (32, 24) and b.dtype == torch.float32 for b in first)
    assert all((b >= 0).all() for b in first)                   # post-ReLU activations
    resumed = src.iter_batches(32, start=5)
    assert torch.equal(next(resumed), first[5]) and torch.equal(next(resumed), first[6])
    # the activations are the model's: every row appears among the model's outputs on its windows
    with torch.no_grad():
        windows = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int64), 16)
        all_acts = model.mlp_acts(torch.from_numpy(np.ascontiguousarray(windows))).reshape(-1, 24)
    row = first[0][0]
    assert torch.isclose(all_acts, row, atol=1e-5).all(1).any()

    path = cache_activations(src, 100, tmp_path / "cache.npy", batch_size=32)
    cached = np.load(path)
    assert cached.shape == (100, 24)
    assert np.allclose(cached[:32], first[0].numpy())
    mtime = path.stat().st_mtime_ns
    assert cache_activations(src, 100, path, batch_size=32) == path and path.stat().st_mtime_ns == mtime


def test_cli_train_sae_writes_an_sae_file(tmp_path, capsys):
    import h5py

    from engine.cli import main

    x, _ = synthetic(n=3000)
    np.save(tmp_path / "acts.npy", x)
    out = tmp_path / "sae.h5"
    code = main(["train-sae", "--activations", str(tmp_path / "acts.npy"), "--d-sae", "64", "--k", "4",
                 "--n-activations", "5120", "--batch-size", "512", "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0 and "wrote" in capsys.readouterr().out
    with h5py.File(out, "r") as h5:
        assert h5["sae/W_enc"].shape == (32, 64) and h5["sae/W_dec"].shape == (64, 32)
        assert '"recipe": "topk"' in h5["sae"].attrs["config"]
    code = main(["train-sae", "--activations", str(tmp_path / "missing.npy"), "--out", str(out)])
    assert code == 1 and "does not exist" in capsys.readouterr().err


def test_cli_resume_with_other_settings_is_a_user_error(tmp_path, capsys):
    """A checkpoint made with other settings is the user's mix-up: one 'error:' line, not 'unexpected'."""
    from engine.cli import main

    x, _ = synthetic(n=3000)
    np.save(tmp_path / "acts.npy", x)
    common = ["train-sae", "--activations", str(tmp_path / "acts.npy"), "--k", "4", "--n-activations", "5120",
              "--batch-size", "512", "--device", "cpu", "--quiet", "--checkpoint-dir", str(tmp_path / "ck")]
    assert main([*common, "--d-sae", "64", "--out", str(tmp_path / "a.h5")]) == 0
    capsys.readouterr()
    assert main([*common, "--d-sae", "96", "--resume", "--out", str(tmp_path / "b.h5")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("superpos: error:") and "different SAE configuration" in err, err
    assert not (tmp_path / "b.h5").exists()
