"""superpos's SAE trainers against SAELens's, recipe by recipe, in one run (issue 13, item 5).

    python benchmarks/bench_sae_vs_saelens.py [--bundle demo.h5] [--rows 1048576]
        [--recipes 2024-04,2023,topk,batchtopk,matryoshka,jumprelu] [--warmup 32]
        [--timed 6] [--threads 1] [--crossover] [--json FILE]

The bundle defaults to the demo bundle (``engine.paths.demo_bundle_path()``, made by
``superpos-app --demo``).

Needs sae-lens (``pip install -e .[bench]``). Both trainers train an SAE of d_sae 4,096 on the same
in-memory activations: ``--rows`` MLP activations (d_in 512) of the bundle's model on real text
(the Python standard library's source, part of the demo corpus, tokenised by the bundle's
tokenizer), shuffled once. Both see the same batches in the same order (batch size 4,096), in the
same process (so the same allocator, glibc malloc unless MALLOC_* / LD_PRELOAD say otherwise;
printed), with the same torch.set_num_threads, fp32, CPU.

What is timed: the median time of one step over ``--timed`` steps, after ``--warmup`` (32) untimed
warm-up steps — the same number for both trainers, on the same batches, so that both are timed at
the same point of training (the L1 recipes' L0 has fallen by then, below) and both end the run
having trained the same number of steps (warm-up + timed) for the L0 / NMSE columns. Per step:

- superpos: ``SAETrainer.step(batch)`` of the recipe (engine/train/recipes/): scaling, the
  hand-written forward and backward, the recipe's constraints, Adam, dead-latent bookkeeping and its
  metrics. Not the activation source nor the job's events; 2023's four resamplings (run at 10-40% of
  a full run) are not called.
- SAELens: ``sae_lens.SAETrainer.step(batch)`` — the activation scaler, ``TrainingSAE.
  training_forward_pass`` (its loss), dead-feature bookkeeping, ``loss.backward()``, gradient
  clipping at 1.0, ``torch.optim.Adam.step``, ``zero_grad`` and the LR / coefficient schedulers.
  Not wandb logging, evals, checkpoints or tqdm (``fit()`` adds those; logging is off anyway).

Recipe pairs (SAELens 6.x training SAEs; hyperparameters set to superpos's demo defaults):

    2024-04     StandardTrainingSAE: L1 × decoder norm, no pre-encoder bias, decoder init norm 0.1,
                inputs scaled to E‖x‖ = √D ("expected_average_only_in"), λ warm-up 5% of the run
    2023        StandardTrainingSAE with the pre-encoder bias and unit decoder rows at init, the
                closest SAELens comes: it has no unit-norm constraint (its L1 is × decoder norm,
                which equals plain L1 only while rows stay unit) and no resampling
    topk        TopKTrainingSAE, k = 20, AuxK
    batchtopk   BatchTopKTrainingSAE, k = 20, AuxK
    matryoshka  MatryoshkaBatchTopKTrainingSAE, k = 20, widths 256..4096 doubling
    jumprelu    JumpReLUTrainingSAE, θ₀ 1.5, bandwidth 0.05, L0 λ 0.5, pre-act loss 3e-4

Printed per recipe: activations/s of both and the ratio, then the L0 and the normalised MSE
(Σ‖x - x̂‖² / Σ‖x - x̄‖² on the last timed batch; the input scale does not change it) of each
after the same number of steps on the same batches, to show they trained comparably (ours: the
stored SAE, i.e. batchtopk and matryoshka
through their learned threshold; SAELens: its training forward). The L1 recipes' speed follows
their L0 (the sparse step, engine/train/recipes/dense.py, once ≤ 10% of the latents fire): on the
demo model with λ = 5 and lr 2e-3, 2023's L0 falls from ~2,000 to 451 by step 25 and to 22 by step
40 (2024-04 is sparse from step 2), so the first ~26 steps of a demo run (488 steps) take the
dense path; the printed "sparse steps" count says how many of ours did.
``--crossover`` also times the L1 step's dense and sparse paths on one batch at several densities.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.config import SAEConfig, nested_widths  # noqa: E402
from engine.train.recipes import make_trainer  # noqa: E402
from figures import add_json_flag, default_bundle, write_json  # noqa: E402

D_SAE, B, K = 4096, 4096, 20
LR, L1 = 2e-3, 5.0


def real_activations(bundle: str, rows: int) -> np.ndarray:
    """(rows, d_mlp) float32: the bundle model's MLP activations on stdlib source, shuffled."""
    from engine.bundle.read import open_bundle

    b = open_bundle(bundle)
    model, tok = b.load_model(), b.tokenizer()
    T = model.cfg.n_ctx
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    ids: list[int] = []
    for path in files:
        ids.extend(tok.encode(path.read_text(encoding="utf-8", errors="replace")))
        if len(ids) >= rows + T:
            break
    n_ctx = -(-rows // T)
    tokens = np.asarray(ids[:n_ctx * T], dtype=np.int64).reshape(n_ctx, T)
    out = np.empty((n_ctx * T, model.cfg.d_mlp), np.float32)
    with torch.no_grad():
        for i in range(0, n_ctx, 64):
            acts = model.mlp_acts(torch.from_numpy(tokens[i:i + 64])).float().numpy()
            out[i * T:(i + len(acts)) * T] = acts.reshape(-1, model.cfg.d_mlp)
    return out[np.random.default_rng(0).permutation(len(out))[:rows]]


# ------------------------------------------------------------------ superpos
def superpos_trainer(recipe: str, d_in: int, total_steps: int, sample: torch.Tensor):
    cfg = SAEConfig(recipe=recipe, d_in=d_in, d_sae=D_SAE, k=K, batch_size=B, n_activations=B * total_steps,
                    l1_coeff=L1, lr=LR)
    tr = make_trainer(cfg, torch.device("cpu"), total_steps)
    tr.initialise(sample)
    return tr


def superpos_end_metrics(tr, x: torch.Tensor) -> tuple[float, float]:
    """(L0, normalised MSE) of the trainer's SAE on raw batch x, on its scaled inputs."""
    sae = tr.to_sae()
    with torch.no_grad():
        f = sae.encode(x)
        x_hat = sae.decode(f)
    return float((f > 0).sum(1).float().mean()), float((x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


# ------------------------------------------------------------------ SAELens
def saelens_trainer(recipe: str, d_in: int, total_steps: int, data: torch.Tensor):
    from sae_lens import SAETrainer as LensTrainer
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes import (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, JumpReLUTrainingSAE,
                               JumpReLUTrainingSAEConfig, MatryoshkaBatchTopKTrainingSAE,
                               MatryoshkaBatchTopKTrainingSAEConfig, StandardTrainingSAE,
                               StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig)

    common = dict(d_in=d_in, d_sae=D_SAE, normalize_activations="expected_average_only_in")
    if recipe == "2024-04":
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(**common, apply_b_dec_to_input=False, l1_coefficient=L1,
                                                            l1_warm_up_steps=max(1, total_steps // 20),
                                                            decoder_init_norm=0.1))
    elif recipe == "2023":
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(**common, apply_b_dec_to_input=True, l1_coefficient=L1,
                                                            decoder_init_norm=1.0))
    elif recipe == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(**common, k=K, aux_loss_coefficient=1 / 32))
    elif recipe == "batchtopk":
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**common, k=K, aux_loss_coefficient=1 / 32))
    elif recipe == "matryoshka":
        widths = list(nested_widths(SAEConfig(recipe="matryoshka", d_in=d_in, d_sae=D_SAE)))
        sae = MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
            **common, k=K, aux_loss_coefficient=1 / 32, matryoshka_widths=widths))
    elif recipe == "jumprelu":
        sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**common, jumprelu_init_threshold=1.5,
                                                            jumprelu_bandwidth=0.05, l0_coefficient=0.5,
                                                            pre_act_loss_coefficient=3e-4))
    else:
        raise SystemExit(f"no SAELens counterpart for recipe {recipe!r}")
    cfg = SAETrainerConfig(total_training_samples=B * total_steps, train_batch_size_samples=B, lr=LR, lr_end=LR,
                           n_batches_for_norm_estimate=4)
    trainer = LensTrainer(cfg, sae, provider_of(data))
    with contextlib.redirect_stderr(io.StringIO()):              # its tqdm bar
        trainer.activation_scaler.estimate_scaling_factor(d_in=d_in, data_provider=provider_of(data),
                                                          n_batches_for_norm_estimate=4)
    return trainer


def provider_of(data: torch.Tensor):
    return (data[i * B:(i + 1) * B] for i in range(len(data) // B))


def saelens_end_metrics(out) -> tuple[float, float]:
    x, x_hat, f = out.sae_in.detach(), out.sae_out.detach(), out.feature_acts.detach()
    if f.is_sparse:
        f = f.to_dense()
    return float((f != 0).sum(1).float().mean()), float((x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


# ------------------------------------------------------------------ timing
def timed_run(step, batches: list[torch.Tensor], warmup: int) -> tuple[float, object]:
    """Activations/s of `step` over batches[warmup:] (median of per-step times); the last output."""
    times, out = [], None
    for i, x in enumerate(batches):
        t0 = time.perf_counter()
        out = step(x)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return B / statistics.median(times), out


def crossover(d_in: int, sample: torch.Tensor) -> None:
    """The L1 step's dense and sparse paths on one batch, density set through b_enc."""
    tr = superpos_trainer("2023", d_in, 100, sample)
    torch.mul(sample[:B], tr.scale, out=tr.x_BD)
    print("L1 step, dense path vs sparse path on one batch (density = active pairs / (B·F)):")
    with torch.no_grad():
        base = tr.b_enc_F.clone()
        for shift in (-3.0, -2.0, -1.5, -1.0, -0.75, -0.5):
            tr.b_enc_F.copy_(base + shift)
            ms = []
            for max_density in (0.0, 1.0):
                tr.sparse_max_density = max_density
                tr.gradients_()
                t0 = time.perf_counter()
                m = tr.gradients_()
                ms.append((time.perf_counter() - t0) * 1e3)
            print(f"  density {m['l0'] / D_SAE:.3f}: dense {ms[0]:6.0f} ms | sparse {ms[1]:6.0f} ms | "
                  f"sparse faster by {ms[0] / ms[1]:.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="a superpos bundle: its model makes the activations (default: the demo bundle)")
    ap.add_argument("--rows", type=int, default=1 << 20, help="activations held in memory")
    ap.add_argument("--recipes", default="2024-04,2023,topk,batchtopk,matryoshka,jumprelu")
    ap.add_argument("--warmup", type=int, default=32, help="untimed steps first (both trainers)")
    ap.add_argument("--timed", type=int, default=6, help="timed steps (both trainers)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crossover", action="store_true", help="also time the L1 step's two paths")
    add_json_flag(ap)
    args = ap.parse_args(argv)
    args.bundle = default_bundle(args.bundle)
    import sae_lens

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data_np = real_activations(args.bundle, args.rows)
    data = torch.from_numpy(data_np)
    n_steps = args.warmup + args.timed
    if len(data) < B * n_steps:
        raise SystemExit(f"--rows {args.rows} holds fewer than {n_steps} batches of {B}")
    batches = [data[i * B:(i + 1) * B] for i in range(n_steps)]
    total_steps = len(data) // B                    # the run both trainers schedule for (λ warm-up, LR)
    print(f"torch {torch.__version__}, sae-lens {sae_lens.__version__}, {torch.get_num_threads()} thread(s), "
          f"CPU {torch.backends.cpu.get_cpu_capability()}, allocator env: "
          f"{ {k: v for k, v in os.environ.items() if k.startswith('MALLOC') or k == 'LD_PRELOAD'} or 'none (glibc)'}")
    print(f"data: {len(data):,} x {data.shape[1]} MLP activations of {args.bundle} on stdlib source "
          f"({(data > 0).float().mean():.1%} nonzero), made in {time.perf_counter() - t0:.0f} s; "
          f"d_sae {D_SAE}, batch {B}; {args.timed} timed steps after {args.warmup} warm-up steps (both "
          f"trainers), scheduled as a run of {total_steps} steps")
    if args.crossover:
        crossover(data.shape[1], data[:B * 2])
    print(f"{'recipe':>10} | {'superpos act/s':>14} | {'SAELens act/s':>13} | {'ratio':>5} | "
          f"superpos L0, NMSE | SAELens L0, NMSE")
    figures = {"rows": args.rows, "warmup": args.warmup, "timed": args.timed, "threads": args.threads,
               "sae_lens": sae_lens.__version__, "recipes": {}}
    for recipe in args.recipes.split(","):
        tr = superpos_trainer(recipe, data.shape[1], total_steps, data[:B * 2])
        ours, _ = timed_run(tr.step, batches, args.warmup)
        l0_ours, nmse_ours = superpos_end_metrics(tr, batches[-1])
        sparse_note = f" ({tr.sparse_steps_}/{n_steps} sparse steps)" if hasattr(tr, "sparse_steps_") else ""
        del tr
        lens = saelens_trainer(recipe, data.shape[1], total_steps, data)

        def lens_step(x, lens=lens):
            out = lens.step(x)
            lens.n_training_steps += 1
            return out

        theirs, out = timed_run(lens_step, batches, args.warmup)
        l0_lens, nmse_lens = saelens_end_metrics(out)
        del lens, out
        print(f"{recipe:>10} | {ours:14,.0f} | {theirs:13,.0f} | {ours / theirs:5.2f} | "
              f"{l0_ours:7.1f}, {nmse_ours:.3f}    | {l0_lens:7.1f}, {nmse_lens:.3f}{sparse_note}", flush=True)
        figures["recipes"][recipe] = {"superpos_per_s": ours, "saelens_per_s": theirs, "ratio": ours / theirs,
                                      "superpos_l0": l0_ours, "superpos_nmse": nmse_ours,
                                      "saelens_l0": l0_lens, "saelens_nmse": nmse_lens}
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
