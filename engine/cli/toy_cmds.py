"""``superpos toy``: toy models of superposition (Elhage et al. 2022) from the command line.

    superpos toy --features 5 --hidden 2 --sparsity 0.9 --out pentagon.npz
    superpos toy --features 5 --hidden 2 --sparsity 0.9 --sae --out pentagon.npz          # + an SAE on h
    superpos toy --features 5 --hidden 2 --sae --sweep 0,0.5,0.8,0.9,0.99 --out sweep.npz # recovery vs S
    superpos toy --phase-diagram --size 20 --out phase.npz

The .npz holds ``W`` (M × N), ``b`` (N), ``loss``, ``norms``, ``superposition``, ``dimensionality``,
``WtW`` and the settings; with ``--sae`` also ``sae_W_dec`` (F × M), ``sae_cos`` (F × N),
``sae_best_cos`` / ``sae_best_latent`` (N), ``sae_dead`` / ``sae_split`` (F) and ``sae_mmcs``; with
``--sweep`` the columns ``sweep_sparsity``, ``sweep_mmcs``, ``sweep_recovered``, ``sweep_represented``,
``sweep_dead``, ``sweep_split``. ``--phase-diagram`` writes ``importance`` (R), ``density`` (C),
``region`` (R × C: 0 not represented, 1 dedicated dimension, 2 superposition), ``norms`` (R × C × 2),
``loss``. docs/toy-models.md explains what each shows.
"""

from __future__ import annotations

import argparse

import numpy as np

from engine.cli.progress import ProgressPrinter, drive
from engine.events import CancelToken

__all__ = ["register", "cmd_toy"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "toy", help="train a toy model of superposition (or its phase diagram) and write an .npz",
        description="Train n sparse features into m hidden dimensions, x' = ReLU(WᵀW x + b) (Elhage et al. "
                    "2022), and write W, b, the loss and the paper's measures to an .npz; --sae adds an "
                    "SAE trained on the hidden layer and matched to the true features; --phase-diagram "
                    "the n=2, m=1 phase diagram for one extra feature.")
    p.add_argument("--features", type=int, metavar="N", help="n, the number of features (1-400)")
    p.add_argument("--hidden", type=int, metavar="M", help="m, the hidden dimensions (1-200)")
    p.add_argument("--sparsity", type=float, default=0.9, metavar="S",
                   help="chance each feature is zero, in [0, 1); default 0.9")
    p.add_argument("--importance-decay", type=float, default=1.0, metavar="R",
                   help="importance of feature i is R**i, R in (0, 1]; default 1 (uniform)")
    p.add_argument("--seed", type=int, default=0, metavar="K")
    p.add_argument("--steps", type=int, metavar="T", help="training steps (default 2000; phase diagram 1000)")
    p.add_argument("--sae", action="store_true", help="also train an SAE on the hidden layer and match it")
    p.add_argument("--d-sae", type=int, default=0, metavar="F", help="--sae: latents (default 2 × features)")
    p.add_argument("--sweep", metavar="S1,S2,…", help="--sae: repeat model and SAE at these sparsities")
    p.add_argument("--phase-diagram", action="store_true", help="the n=2, m=1 phase diagram instead")
    p.add_argument("--size", type=int, default=20, metavar="CELLS", help="--phase-diagram: cells a side; default 20")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the arrays")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_toy)


def cmd_toy(args: argparse.Namespace) -> int:
    from engine.toy.files import write_npz
    from engine.toy.model import ToyError                 # torch: only once a toy command runs

    if not str(args.out).endswith(".npz"):
        raise ToyError(f"--out must name an .npz file; got {args.out!r}")
    if args.steps is not None and not 1 <= args.steps <= 1_000_000:
        raise ToyError(f"--steps must be from 1 to 1000000; got {args.steps}")
    import torch

    # these tensors are too small for intra-op threads to pay; on a busy 2-core machine their
    # spin-waiting made a step ~10× slower (measured: 57 ms vs 6 ms)
    if not args.phase_diagram and (args.features is None or args.hidden is None):
        raise ToyError("give --features N and --hidden M (or --phase-diagram)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cancel, printer = CancelToken(), ProgressPrinter(quiet=args.quiet)
    try:
        arrays = _phase(args, cancel, printer) if args.phase_diagram else _model(args, cancel, printer)
    finally:
        torch.set_num_threads(threads)            # main() may be called in-process (tests)
    write_npz(args.out, arrays)
    print(f"wrote {args.out}")
    return 0


def _model(args, cancel: CancelToken, printer: ProgressPrinter) -> dict:
    from engine.toy.dictionary import DictionaryConfig, recovery_sweep, train_dictionary
    from engine.toy.measures import measure, neighbour_angles
    from engine.toy.model import ToyConfig, ToyError, train_toy

    cfg = ToyConfig(n_features=args.features, n_hidden=args.hidden, sparsity=args.sparsity,
                    importance_decay=args.importance_decay, seed=args.seed,
                    **({"steps": args.steps} if args.steps else {})).validate()
    if (args.sweep or args.d_sae) and not args.sae:
        raise ToyError("--sweep and --d-sae go with --sae")
    dict_cfg = DictionaryConfig(d_sae=args.d_sae, seed=args.seed)
    if args.sae:
        dict_cfg.sae_config(cfg.n_features, cfg.n_hidden, cfg.sparsity)      # refuses a bad --d-sae now
    sweep = _sparsities(args.sweep) if args.sweep else None
    result = drive(train_toy(cfg, cancel), cancel, printer)
    W_MN = result.W_IMN[0]
    m = measure(W_MN)
    arrays = {"W": W_MN, "b": result.b_IN[0], "loss": result.loss_I[0], "norms": m.norms_N,
              "superposition": m.superposition_N, "dimensionality": m.dimensionality_N, "WtW": m.gram_NN,
              "importance": cfg.importance_decay ** np.arange(cfg.n_features), "sparsity": cfg.sparsity,
              "seed": cfg.seed, "steps": cfg.steps}
    print(f"loss {result.loss_I[0]:.5f}; represented {int(m.represented_N.sum())} of {cfg.n_features}; "
          f"norms {_row(m.norms_N)}; dimensionality {_row(m.dimensionality_N)}")
    if cfg.n_hidden == 2:
        print(f"angles between neighbouring features: {_row(neighbour_angles(W_MN), '.1f')}°")
    if args.sae:
        rec = drive(train_dictionary(W_MN, cfg.sparsity, dict_cfg, cancel), cancel, printer)
        arrays.update(sae_W_dec=rec.W_dec_FM, sae_cos=rec.cos_FN, sae_best_cos=rec.best_cos_N,
                      sae_best_latent=rec.best_latent_N, sae_dead=rec.dead_F, sae_split=rec.split_F,
                      sae_mmcs=rec.mmcs)
        print(f"SAE ({rec.W_dec_FM.shape[0]} latents): MMCS {rec.mmcs:.3f}; best cosine per feature "
              f"{_row(rec.best_cos_N, '.3f')}; recovered {rec.n_recovered} of {cfg.n_features}; "
              f"dead {rec.n_dead}; split {rec.n_split}")
    if sweep is not None:
        points = drive(recovery_sweep(cfg, sweep, dict_cfg, cancel), cancel, printer)
        for name, key in (("sparsity", "sparsity"), ("mmcs", "mmcs"), ("recovered", "recovered_fraction"),
                          ("represented", "n_represented"), ("dead", "n_dead"), ("split", "n_split")):
            arrays[f"sweep_{name}"] = np.array([getattr(p, key) for p in points])
        print("S       represented  MMCS   recovered  dead  split")
        for p in points:
            print(f"{p.sparsity:<7g} {p.n_represented:>11d}  {p.mmcs:.3f}  {p.recovered_fraction:>9.0%}  "
                  f"{p.n_dead:>4d}  {p.n_split:>5d}")
    return arrays


def _phase(args, cancel: CancelToken, printer: ProgressPrinter) -> dict:
    from engine.toy.phase import REGION_NAMES, phase_diagram

    job = phase_diagram(size=args.size, seed=args.seed, cancel=cancel,
                        **({"steps": args.steps} if args.steps else {}))
    diagram = drive(job, cancel, printer)
    counts = np.bincount(diagram.region_RC.ravel(), minlength=3)
    print("; ".join(f"{name} {count}" for name, count in zip(REGION_NAMES, counts)) +
          f" cells ({diagram.seconds:.1f} s)")
    return {"importance": diagram.importance_R, "density": diagram.density_C, "region": diagram.region_RC,
            "norms": diagram.norms_RC2, "loss": diagram.loss_RC}


def _sparsities(text: str) -> list[float]:
    from engine.toy.model import ToyError

    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ToyError(f"--sweep takes sparsities separated by commas, e.g. 0,0.5,0.9; got {text!r}") from None
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise ToyError(f"--sweep sparsities must each be in [0, 1); got {text!r}")
    return values


def _row(values, fmt: str = ".2f") -> str:
    return " ".join(format(float(v), fmt) for v in values)
