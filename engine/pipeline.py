"""The whole superpos run as one generator job: corpus -> tokenizer -> tokens -> model -> SAE ->
evaluation -> harvest -> labels -> bundle.

``run_pipeline`` yields the stage jobs' events (each ``StageStarted`` stamped with its place in the
run's stage list, ``run_stages``, so a driver can show "stage 4/8"; a family run has more stages)
and returns the bundle's path. Intermediate results live
in a work folder (by default ``engine.paths.run_workdir(cfg)``, keyed by the settings), so
``resume=True`` after a cancel or a crash picks up the tokenizer, the cached tokens and the model / SAE checkpoints
instead of starting again. The CLI (``superpos run``) and the app drive this same function.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable, Generator, Sequence

import numpy as np

from engine.config import RunConfig
from engine.device import describe_device, resolve_device
from engine.fileio import sweep_stale_partials
from engine.jobs import StageNumbers, blocking_stage, clocked, numbered, record_seconds, staged
from engine.paths import run_workdir
from engine.events import CancelToken, Message
from engine.run_clock import STAGES, RunClock, expected_run_text, run_plan

__all__ = ["run_pipeline", "prepare_data", "analyse_pair", "run_stages", "PIPELINE_STAGES", "PreparedData",
           "RunContext"]

PIPELINE_STAGES = STAGES          # a single run's stages; a family repeats some (``run_stages``)


@dataclasses.dataclass
class PreparedData:
    config: RunConfig          # with the tokenizer's real vocabulary size filled in
    tokenizer: Any             # engine.data.tokenizer.Tokenizer
    tokens: Any                # engine.data.token_cache.TokenData
    source_description: str


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every stage of one run shares: where it computes, what each stage job's events pass
    through (numbering, the run's clock and stage timing), the cancel token, and for the pipeline
    the prepared data, the work folder and whether to resume."""
    device: Any                                      # a torch.device
    wrap: Callable[[Any], Any] = lambda events: events
    cancel: CancelToken | None = None
    data: PreparedData | None = None
    workdir: Path | None = None
    resume: bool = False


def run_stages(cfg: RunConfig, sizes: Sequence[int] = (), seeds: Sequence[int] = (),
               activation_cache: bool = False) -> list[str]:
    """The stage names of a run in the order it runs them (``engine.run_clock.run_plan``'s order; the
    activation cache's stage follows the first model): a family repeats model, sae, evaluate,
    harvest and labels, so stage numbers come from here, never from literals."""
    stages = [stage for stage, _ in run_plan(cfg, sizes, seeds)]
    if activation_cache:
        stages.insert(stages.index("model") + 1, "cache")
    return stages


def analyse_pair(ctx: RunContext, model, sae, tokenizer, eval_tokens, harvest_tokens, hcfg, eos_id: int):
    """Evaluate, harvest and label one model + SAE as three consecutive stages (``superpos run`` for
    each dictionary, ``superpos analyze``), each stage's events through ``ctx.wrap``. Returns (metrics
    without arrays, incl. harvest_tokens and the label score medians; the harvested ``UnitStats``)."""
    from engine.analysis.evaluate import evaluate_job
    from engine.analysis.harvest import harvest
    from engine.analysis.labels import label_harvest, score_medians

    device, cancel = ctx.device, ctx.cancel
    model, sae = model.to(device), sae.to(device)        # trained results come back on the CPU
    metrics = yield from ctx.wrap(evaluate_job(model, sae, eval_tokens, hcfg.eval_tokens, device=str(device),
                                               cancel=cancel))
    metrics = {k: v for k, v in metrics.items() if not isinstance(v, np.ndarray)}
    stats = yield from ctx.wrap(harvest(model, sae, harvest_tokens, hcfg, device=str(device), cancel=cancel,
                                        eos_id=eos_id))
    yield from ctx.wrap(label_harvest(stats, tokenizer, seed=hcfg.seed, cancel=cancel))
    metrics.update({"harvest_tokens": float(stats.n_tokens), **score_medians(stats)})
    return metrics, stats


def prepare_data(cfg: RunConfig, workdir: Path, resume: bool = False, cancel: CancelToken | None = None,
                 n_stages: int = len(PIPELINE_STAGES)) -> Generator[object, None, PreparedData]:
    """Stages 1-2: train (or load) the tokenizer and tokenize the corpus into the token cache.
    Under torchrun rank 0 does it while the other ranks wait, then they read what it wrote."""
    from engine.train import distributed        # imports torch: not at module level (quick CLI refusals)

    if not distributed.is_writer():
        distributed.barrier()                 # rank 0 is making the tokenizer and the token cache
        resume = True
    data = yield from _prepare_data(cfg, workdir, resume, cancel, n_stages)
    if distributed.is_writer():
        distributed.barrier()
    return data


def _prepare_data(cfg: RunConfig, workdir: Path, resume: bool, cancel: CancelToken | None,
                  n_stages: int) -> Generator[object, None, PreparedData]:
    from engine.data.spec import iter_texts, open_corpus
    from engine.data.token_cache import tokenize_corpus
    from engine.data.tokenizer import Tokenizer, train_tokenizer_job
    from engine.train import distributed

    source = open_corpus(cfg.corpus)
    if distributed.is_writer():               # under torchrun the others only read
        workdir.mkdir(parents=True, exist_ok=True)
    tok_path = workdir / "tokenizer.json"
    if cfg.tokenizer.path:
        tokenizer = yield from blocking_stage("tokenizer", 0, n_stages, Tokenizer.load, cfg.tokenizer.path)
    elif resume and tok_path.exists():
        tokenizer = yield from blocking_stage("tokenizer", 0, n_stages, Tokenizer.load, tok_path)
        yield Message(f"reusing the tokenizer in {tok_path}")
    else:
        train_chars = cfg.tokenizer.train_chars
        total = min(source.estimate_chars() or train_chars, train_chars)
        job = train_tokenizer_job(cfg.tokenizer, iter_texts(source, train_chars), total, cancel)
        tokenizer = yield from staged(job, 0, n_stages)
        tokenizer.save(tok_path)
    if tokenizer.vocab_size != cfg.model.vocab_size:
        if not cfg.tokenizer.path and tokenizer.vocab_size < cfg.tokenizer.vocab_size:
            yield Message(f"the corpus supports only {tokenizer.vocab_size} tokens (asked for "
                          f"{cfg.tokenizer.vocab_size}); the model uses {tokenizer.vocab_size}", level="warning")
        cfg = cfg.with_overrides(tokenizer={"vocab_size": tokenizer.vocab_size},
                                 model={"vocab_size": tokenizer.vocab_size})
    tokens = yield from staged(tokenize_corpus(cfg.corpus, tokenizer, cancel=cancel), 1, n_stages)
    if len(tokens.val) < cfg.model.n_ctx + 2:
        from engine.data.sources import CorpusError
        total = len(tokens.train) + len(tokens.val)
        if total < 4 * (cfg.model.n_ctx + 2):     # whitespace only, or a few lines: no split could help
            raise CorpusError(f"the corpus holds only {total:,} tokens of text (is it empty or only whitespace?); "
                              f"a run needs many contexts of {cfg.model.n_ctx} tokens. Point --corpus at more text.")
        raise CorpusError(f"the corpus's validation split ({cfg.corpus.val_fraction:.0%} of its documents) has only "
                          f"{len(tokens.val):,} tokens; it needs at least {cfg.model.n_ctx + 2}. Use a larger "
                          "corpus, or one with more documents (the split holds out whole documents).")
    return PreparedData(cfg, tokenizer, tokens, source_description=repr(source))


def run_pipeline(
    cfg: RunConfig,
    out_path: str | Path,
    workdir: str | Path | None = None,
    resume: bool = False,
    cancel: CancelToken | None = None,
    family_sizes: Sequence[int] = (),
    model_seeds: Sequence[int] = (),
    activation_cache: str | Path | None = None,
) -> Generator[object, None, Path]:
    """Run every stage and write the bundle to ``out_path`` (atomically). Returns ``out_path``.

    ``family_sizes``: several dictionary sizes (e.g. 512, 4096, 16384) trained from one pass over
    the activations (``engine.train.family_job``), each evaluated, harvested and labelled, matched to
    the next size and mapped (``_family_parts``); the first is the bundle's dictionary 0.
    ``model_seeds`` (two seeds, e.g. 0, 1): the model is trained with the first (``train.seed``), a
    second model with the second, with dictionaries of the same sizes; features and neurons of the
    two are matched by activation correlation (the paper's universality comparison).
    ``activation_cache`` (a folder): the first model's activations are written there once as a sharded
    cache (``engine.data.act_cache``; a matching cache already there is reused) and the SAE stage reads it."""
    from engine.data.activations import ModelActivationSource
    from engine.bundle import write_bundle_job
    from engine.train import distributed
    from engine.train.sae_job import train_sae
    from engine.train.model_job import train_model

    sizes = tuple(int(d) for d in family_sizes)
    seeds = tuple(int(x) for x in model_seeds)
    if len(seeds) > 2 or len(set(seeds)) != len(seeds):
        from engine.config import ConfigError
        raise ConfigError(f"model seeds: give one or two different seeds (e.g. 0,1), not {list(seeds)}")
    if seeds:
        cfg = cfg.with_overrides(train={"seed": seeds[0]})
    if sizes:
        cfg = cfg.with_overrides(sae={"d_sae": sizes[0]})
    for d in sizes[1:]:
        cfg.with_overrides(sae={"d_sae": d}).validate()
    cfg.validate()              # bad settings fail here, before the tokenizer, not stages later
    if distributed.current().active and (len(sizes) > 1 or len(seeds) > 1):
        from engine.config import ConfigError
        raise ConfigError("--d-sae with several sizes and --model-seeds are not distributed yet; "
                          "run them as one process (without torchrun)")
    t_run = time.perf_counter()
    out_path = Path(out_path)
    workdir = Path(workdir) if workdir is not None else run_workdir(cfg)
    device = distributed.rank_device(resolve_device(cfg.device))
    stage_seconds: dict[str, float] = {}
    clock = RunClock(run_plan(cfg, sizes, seeds))       # a family's stages, each occurrence in run order
    numbers = StageNumbers(run_stages(cfg, sizes, seeds, activation_cache is not None))

    def timed(events):
        """Pass a stage job's events through, numbering its stage in the run, recording its duration
        and stamping the whole-run ETA."""
        return (yield from record_seconds(clocked(numbered(events, numbers), clock), stage_seconds))

    yield Message(f"work folder: {workdir}; device: {describe_device(device)}")
    swept = [p.name for folder in {out_path.parent, workdir} for p in sweep_stale_partials(folder)] \
        if distributed.is_writer() else []
    if swept:   # the leftovers of a killed run (its process is gone): provably ours and stale
        yield Message(f"removed {len(swept)} temporary file(s) left by an interrupted write: {', '.join(swept)}")
    expected = expected_run_text(cfg, sizes, seeds)
    if expected:
        yield Message(f"expected run time: {expected}")
    data = yield from timed(prepare_data(cfg, workdir, resume=resume, cancel=cancel))
    cfg = data.config
    ctx = RunContext(device=device, wrap=timed, cancel=cancel, data=data, workdir=workdir, resume=resume)

    model_result = yield from timed(train_model(
        cfg.model, cfg.train, data.tokens.train, data.tokens.val, device=cfg.device,
        checkpoint_dir=workdir, resume=resume, cancel=cancel, precision=cfg.precision, compile=cfg.compile))
    model = model_result.model.to(device)       # the activation source runs it where the SAE trains

    source = ModelActivationSource(model, data.tokens.train, n_ctx=cfg.model.n_ctx,
                                   batch_size=cfg.sae.batch_size, buffer_batches=cfg.sae.buffer_batches,
                                   seed=cfg.sae.seed, device=str(device))
    if activation_cache is not None:    # the SAE stage's stream written once (or reused), then read from disk
        from engine.data.act_cache_write import run_cache_source

        source = yield from timed(run_cache_source(activation_cache, model, data.tokens.train, cfg.sae,
                                                   device=str(device), resume=resume, cancel=cancel))
    if len(sizes) > 1:
        from engine.train.family_job import family_configs, train_sae_family

        family_results = yield from timed(train_sae_family(
            family_configs(cfg.sae, sizes), source, device=str(device), cancel=cancel))
        sae_result, family_results = family_results[0], family_results[1:]
    else:
        family_results = []
        sae_result = yield from timed(train_sae(
            cfg.sae, source, device=str(device), checkpoint_dir=workdir, resume=resume, cancel=cancel,
            precision=cfg.precision))
    sae = sae_result.sae
    if not distributed.is_writer():           # rank 0 alone evaluates, harvests and writes the bundle
        yield Message(f"rank {distributed.current().rank}: training done; rank 0 writes {out_path}")
        return out_path

    metrics, stats = yield from _analyse_member(ctx, cfg, model, sae)
    metrics.update({
        "model_val_loss": float(model_result.final_val_loss),
        "model_tokens": float(model_result.tokens_seen),
        "sae_activations": float(sae_result.n_activations),
    })
    curves = {**model_result.curves, **sae_result.curves}
    extra = None
    if family_results or len(seeds) > 1:
        extra = yield from _family_parts(ctx, cfg, model, sae, family_results, metrics, seeds,
                                         sizes or (cfg.sae.d_sae,))
    info = {
        "corpus": data.source_description,
        "device": describe_device(device),
        "platform": platform.platform(),
        "stage_seconds": json.dumps(stage_seconds),      # every stage but the bundle's own write
    }
    yield from timed(write_bundle_job(
        out_path, config=cfg, tokenizer_json=data.tokenizer.to_json(), model_state=model.state_dict(),
        sae_state=sae.state_dict(), harvest=stats, metrics=metrics, curves=curves, extra_info=info,
        cancel=cancel, extra=extra))
    yield Message(f"wrote {out_path} in {time.perf_counter() - t_run:.0f} s")
    return out_path


def _family_parts(ctx: RunContext, cfg: RunConfig, model, sae0, results, metrics0: dict,
                  model_seeds: Sequence[int], sizes):
    """Evaluate, harvest and label dictionaries 1..n; with ``model_seeds`` (a, b) also train model b
    and its dictionaries of the same sizes. Match them (``engine.analysis.family_match``: each size to
    the next, each of model a's dictionaries to model b's of its size, the neurons; correlations on
    random contexts spread over the validation split, on the run's device) and embed model a's decoder
    rows; returns the ``extra`` writes of ``write_bundle_job``."""
    from engine.analysis.family_match import match_family_job, universality_line
    from engine.analysis.feature_map import embed_decoders
    from engine.bundle.family import ModelParts, family_writes
    from engine.data.activations import ModelActivationSource
    from engine.train.model_job import train_model

    data, device, timed = ctx.data, ctx.device, ctx.wrap
    members = []
    a_saes = [sae0]
    for result in results:
        parts = yield from _member_parts(ctx, cfg, model, result, model_index=0)
        members.append(parts)
        a_saes.append(result.sae)
    models, seeds, all_models, all_saes = [], [int(cfg.train.seed)], [model], [a_saes]
    names = [f"A/{i}" for i in range(len(a_saes))]
    if len(model_seeds) > 1:
        seed_b = int(model_seeds[1])
        cfg_b = cfg.with_overrides(train={"seed": seed_b})
        yield Message(f"model B: training a second model with seed {seed_b} and its dictionaries")
        model_b = (yield from timed(train_model(
            cfg_b.model, cfg_b.train, data.tokens.train, data.tokens.val, device=cfg.device,
            checkpoint_dir=ctx.workdir / f"seed{seed_b}", resume=ctx.resume, cancel=ctx.cancel,
            precision=cfg.precision, compile=cfg.compile))).model.to(device)
        source = ModelActivationSource(model_b, data.tokens.train, n_ctx=cfg.model.n_ctx,
                                       batch_size=cfg.sae.batch_size, buffer_batches=cfg.sae.buffer_batches,
                                       seed=cfg.sae.seed, device=str(device))
        from engine.train.family_job import family_configs, train_sae_family

        b_results = yield from timed(train_sae_family(
            family_configs(cfg_b.sae, sizes), source, device=str(device), cancel=ctx.cancel))
        b_saes, b_stats = [], None
        for result in b_results:
            parts = yield from _member_parts(ctx, cfg_b, model_b, result, model_index=1)
            members.append(parts)
            b_saes.append(result.sae)
            b_stats = b_stats or parts.harvest
        models.append(ModelParts(model_b.state_dict(), cfg_b.model, b_stats.neurons, seed_b))
        seeds.append(seed_b)
        names += [f"B/{i}" for i in range(len(b_saes))]
        all_models.append(model_b)
        all_saes.append(b_saes)
    matches, neuron_matches, match_metrics, map_decoders = yield from timed(match_family_job(
        all_models, all_saes, data.tokens.val, seed=cfg.harvest.seed, device=str(device), cancel=ctx.cancel))
    feature_map = yield from timed(blocking_stage("map", 0, 1, embed_decoders, map_decoders, seed=cfg.sae.seed))
    metrics0.update(match_metrics)
    if len(all_models) > 1:
        yield Message(universality_line(metrics0, [s.cfg.d_sae for s in a_saes]))
    yield Message(f"feature map: {len(feature_map[0]):,} points by {feature_map[3]}")
    return family_writes(names, members, matches, feature_map, models=models, neuron_matches=neuron_matches,
                         seeds=seeds)


def _member_parts(ctx: RunContext, cfg: RunConfig, model, result, model_index: int):
    """One further dictionary: evaluated, harvested and labelled, as ``MemberParts``."""
    from engine.bundle.family import MemberParts

    sae = result.sae
    member_cfg = cfg.with_overrides(sae={"d_sae": sae.cfg.d_sae})
    m, st = yield from _analyse_member(ctx, cfg, model, sae)
    m["sae_activations"] = float(result.n_activations)
    return MemberParts(member_cfg, sae.state_dict(), st, m, result.curves, model=model_index)


def _analyse_member(ctx: RunContext, cfg: RunConfig, model, sae):
    """A run's evaluate, harvest and labels stages for one dictionary, on the validation split."""
    data = ctx.data
    return (yield from analyse_pair(ctx, model, sae, data.tokenizer, data.tokens.val, data.tokens.val, cfg.harvest,
                                    eos_id=data.tokens.eos_id))
