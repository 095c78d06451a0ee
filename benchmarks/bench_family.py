"""Three SAE sizes from ONE pass over the activation stream against three separate runs.

    python benchmarks/bench_family.py [--sizes 256,1024,2048] [--activations 200000] [--preset tiny]

Trains the preset's model once (tokenizer, tokens, model: not timed), then times, in one run,
(a) ``train_sae_family`` on one ``ModelActivationSource`` — one model forward feeds every SAE — and
(b) ``train_sae`` once per size, each on a fresh source (what three ``superpos run``s would do for
their SAE stage). It prints both times, their ratio and the model forwards each way (batches drawn).

The saving is the stream's share of the cost: the model forwards and the buffer shuffle, paid once
instead of once per size. The SAE steps themselves are the same work either way.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from figures import add_json_flag, write_json  # noqa: E402

import torch

from engine.config import preset
from engine.data.activations import ModelActivationSource
from engine.jobs import collect
from engine.pipeline import prepare_data
from engine.train.family_job import family_configs, train_sae_family
from engine.train.model_job import train_model
from engine.train.sae_job import train_sae


class Counted(ModelActivationSource):
    batches = 0

    def iter_batches(self, batch_size=None, start=0):
        for b in super().iter_batches(batch_size, start):
            Counted.batches += 1
            yield b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--sizes", default="256,1024,2048")
    ap.add_argument("--activations", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=0)
    add_json_flag(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    cfg = preset(args.preset).with_overrides(sae={"n_activations": args.activations})
    with tempfile.TemporaryDirectory() as tmp:
        data, _ = collect(prepare_data(cfg, Path(tmp)))
        cfg = data.config
        model = collect(train_model(cfg.model, cfg.train, data.tokens.train, data.tokens.val, "cpu"))[0].model

    def source():
        return Counted(model, data.tokens.train, n_ctx=cfg.model.n_ctx, batch_size=cfg.sae.batch_size,
                       buffer_batches=cfg.sae.buffer_batches, seed=cfg.sae.seed, device="cpu")

    cfgs = family_configs(cfg.sae, sizes)          # what superpos run --d-sae trains (each its own seed)
    Counted.batches = 0
    t0 = time.perf_counter()
    collect(train_sae_family(cfgs, source(), device="cpu"))
    one_pass, one_pass_batches = time.perf_counter() - t0, Counted.batches
    Counted.batches = 0
    t0 = time.perf_counter()
    for c in cfgs:
        collect(train_sae(c, source(), device="cpu"))
    separate, separate_batches = time.perf_counter() - t0, Counted.batches
    print(f"sizes {sizes}, {args.activations:,} activations each, recipe {cfg.sae.recipe}, "
          f"{torch.get_num_threads()} threads")
    print(f"one pass (train_sae_family): {one_pass:7.1f} s  ({one_pass_batches} batches drawn from the model)")
    print(f"three separate train_sae:    {separate:7.1f} s  ({separate_batches} batches drawn from the model)")
    print(f"ratio separate / one pass: {separate / one_pass:.2f}x")
    write_json(args.json, {"sizes": sizes, "activations": args.activations, "one_pass_s": one_pass,
                           "separate_s": separate, "ratio": separate / one_pass})


if __name__ == "__main__":
    main()
