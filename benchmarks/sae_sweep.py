"""A small SAE sweep (recipe × penalty / k) on one trained model, as a table of the eval figures.

    python benchmarks/sae_sweep.py --model MODEL [--corpus SPEC] [--grid GRID] [--preset demo]
                                   [--n-activations N] [--eval-tokens N] [--json OUT.json] [--markdown OUT.md]
                                   [--activations CACHE_DIR]

MODEL is a bundle (.h5) or a `superpos train-model` folder (model.safetensors, config.json,
tokenizer.json). The corpus defaults to the one in the model's config and is tokenized with the
model's tokenizer (cached), so train/validation splits are the pipeline's. Every run streams its
own activations from the model's training split (same seed, so the same data for every run) and
is evaluated with engine.analysis.evaluate.evaluate on the validation split. With --activations DIR
(a `superpos cache-activations` folder of this model; another model's is refused) every run reads
the memory-mapped cache instead, and the model runs only for the evaluation.

GRID is `recipe:param=v1,v2;recipe:param=v1,...` with param k (topk, batchtopk, matryoshka), l1
(2023, 2024-04) or l0 (jumprelu), and any other SAEConfig field as extra `name=value` items (a
tuple as `a/b/c`), e.g.
    "topk:k=8,16,20;2024-04:l1=2,5,10;2023:l1=2,5"                               (the default)
    "topk:k=16,lr=0.004"
    "jumprelu:l0=1,2;matryoshka:k=20,matryoshka_widths=512/1024/4096"
The table is printed (markdown) as runs finish; --json / --markdown also write it to files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_GRID = "topk:k=8,16,20;2024-04:l1=2,5,10;2023:l1=2,5"
COLUMNS = ("recipe", "setting", "loss_recovered", "l0", "dead_fraction", "fvu", "mse", "loss_clean", "loss_sae",
           "loss_zero_ablation", "ultralow_fraction", "n_tokens", "train_s")
PARAM_NAMES = {"k": "k", "l1": "l1_coeff", "l0": "l0_coeff"}


def parse_grid(text: str) -> list[tuple[str, dict]]:
    """'topk:k=8,16;2023:l1=2' -> [("topk", {"k": 8}), ("topk", {"k": 16}), ("2023", {"l1_coeff": 2.0})]."""
    runs = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        recipe, _, rest = part.partition(":")
        axes: list[tuple[str, list]] = []
        current: tuple[str, list] | None = None
        for chunk in rest.replace(" ", "").split(","):      # "k=8,16,lr=0.004": '=' starts an axis
            if "=" in chunk:
                name, value = chunk.split("=", 1)
                current = (PARAM_NAMES.get(name, name), [value])
                axes.append(current)
            elif current is not None and chunk:
                current[1].append(chunk)
        names = [name for name, _ in axes]
        for values in itertools.product(*[vals for _, vals in axes]) if axes else [()]:
            runs.append((recipe.strip(), {n: _number(v) for n, v in zip(names, values)}))
    return runs


def _number(text: str):
    if "/" in text:
        return tuple(int(part) for part in text.split("/"))
    try:
        return int(text)
    except ValueError:
        return float(text)


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="bundle .h5 or train-model folder")
    parser.add_argument("--corpus", help="corpus spec (default: the model's own)")
    parser.add_argument("--grid", default=DEFAULT_GRID)
    parser.add_argument("--preset", help="take the SAE defaults from this preset instead of the model's config")
    parser.add_argument("--n-activations", type=int, help="SAE training budget (default: the config's)")
    parser.add_argument("--d-sae", type=int)
    parser.add_argument("--eval-tokens", type=int, help="held-out tokens for evaluation (default: the config's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--activations", type=Path, help="train from this activation cache folder, not the model")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--markdown", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)

    import torch

    from engine.cli.cache_cmds import load_trained_model, open_cache
    from engine.data.act_cache import model_fingerprint
    from engine.data.activations import ModelActivationSource
    from engine.config import SAEConfig, preset
    from engine.data.token_cache import tokenize_corpus
    from engine.analysis.evaluate import evaluate
    from engine.jobs import run_to_completion
    from engine.train.sae_job import train_sae

    model, cfg, tokenizer = load_trained_model(args.model)
    if cfg is None:
        parser.error(f"{args.model} carries no run configuration; give a bundle or a train-model folder")
    fingerprint = model_fingerprint(model)
    model = model.to(args.device).eval()
    corpus = cfg.corpus.replace(spec=args.corpus) if args.corpus else cfg.corpus
    data = run_to_completion(tokenize_corpus(corpus, tokenizer))
    base: SAEConfig = preset(args.preset).sae if args.preset else cfg.sae
    base = base.replace(d_in=cfg.model.d_mlp)
    if args.n_activations:
        base = base.replace(n_activations=args.n_activations)
    if args.d_sae:
        base = base.replace(d_sae=args.d_sae)
    eval_tokens = args.eval_tokens or cfg.harvest.eval_tokens
    print(f"model {args.model} (d_mlp {cfg.model.d_mlp}, n_ctx {cfg.model.n_ctx}); "
          f"{len(data.train):,} train / {len(data.val):,} val tokens; SAE {base.d_in} -> {base.d_sae}, "
          f"{base.n_activations:,} activations, batch {base.batch_size}; eval on {eval_tokens:,} tokens; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    rows = []
    for recipe, changes in parse_grid(args.grid):
        sae_cfg = SAEConfig.from_dict({**base.to_dict(), "recipe": recipe, **changes})
        if args.activations:
            source = open_cache(args.activations, seed=sae_cfg.seed, expect_model=fingerprint,
                                expect_d_in=sae_cfg.d_in)
        else:
            source = ModelActivationSource(model, data.train, n_ctx=cfg.model.n_ctx, batch_size=sae_cfg.batch_size,
                                           buffer_batches=sae_cfg.buffer_batches, seed=sae_cfg.seed,
                                           device=args.device)
        t0 = time.perf_counter()
        result = run_to_completion(train_sae(sae_cfg, source, device=args.device))
        train_s = time.perf_counter() - t0
        metrics = evaluate(model, result.sae.to(args.device), data.val, eval_tokens, device=args.device)
        metrics.pop("feature_density")
        setting = ", ".join(f"{k}={v}" for k, v in changes.items())
        row = {"recipe": recipe, "setting": setting, **metrics, "train_s": round(train_s, 1),
               "config": sae_cfg.to_dict()}
        rows.append(row)
        print(f"{recipe} {setting}: loss_recovered {metrics['loss_recovered']:.4f}, L0 {metrics['l0']:.1f}, "
              f"dead {metrics['dead_fraction']:.2%}, fvu {metrics['fvu']:.4f} ({train_s:.0f} s)", flush=True)
    table = markdown(rows)
    print()
    print(table)
    command = "python benchmarks/sae_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    if args.markdown:
        args.markdown.write_text(f"Command: `{command}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
