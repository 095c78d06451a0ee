"""Analyse a model and SAE made elsewhere: load -> tokenize -> evaluate -> harvest -> labels -> bundle.

``analyze_job(model_path, sae_path, out_path, corpus=..., n_tokens=...)`` is ``run_pipeline`` without
the training stages: the model comes from ``engine.interop.load_model`` (a TransformerLens one-layer
folder or a bundle), its tokenizer from the ``tokenizer.json`` beside it (or ``tokenizer_path``), the
SAE from ``engine.interop.load_sae`` (SAELens, dictionary_learning, sparsify, Neel Nanda's files, a
bundle). The corpus is tokenized with the model's own tokenizer (cached, so ``resume`` reuses it);
evaluation (loss recovered vs zero-ablation, and the KL version) reads the validation split, the
harvest the training split (neither was seen by the model's training here). The result is a normal
bundle: the app opens it with every pane. Same events, cancel and error rules as ``run_pipeline``.
"""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path
from typing import Generator

from engine.config import CorpusConfig, HarvestConfig, RunConfig, TokenizerConfig
from engine.device import describe_device, resolve_device
from engine.events import CancelToken, Message
from engine.fileio import sweep_stale_partials
from engine.jobs import StageNumbers, blocking_stage, numbered
from engine.pipeline import RunContext, analyse_pair

__all__ = ["analyze_job", "ANALYZE_STAGES", "load_pair"]

ANALYZE_STAGES = ("load", "tokenize", "evaluate", "harvest", "labels", "bundle")


def load_pair(model_path, sae_path, tokenizer_path=None):
    """(model, tokenizer, sae, tokenizer_file) after checking they fit together (one-line errors)."""
    from engine.interop import InteropError, load_model, load_sae, load_tokenizer
    from engine.interop.sae_formats import check_pair

    model_path = Path(model_path)
    model = load_model(model_path)
    tok_source = Path(tokenizer_path) if tokenizer_path else (model_path if model_path.is_dir() or model_path.suffix
                                                              in (".h5", ".hdf5") else model_path.parent)
    tokenizer = load_tokenizer(tok_source, model_path=model_path)
    if tokenizer.vocab_size > model.cfg.vocab_size:
        raise InteropError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary is "
                           f"{model.cfg.vocab_size}: it is not this model's tokenizer")
    sae = load_sae(sae_path)
    check_pair(model, sae)
    return model, tokenizer, sae


def _run_config(model, tokenizer, sae, tok_file: str, corpus: CorpusConfig, n_tokens: int, eval_tokens: int,
                name: str, device: str) -> RunConfig:
    return RunConfig(name=name, corpus=corpus, model=model.cfg, sae=sae.cfg, device=device,
                     tokenizer=TokenizerConfig(vocab_size=tokenizer.vocab_size, path=tok_file),
                     harvest=HarvestConfig(n_tokens=n_tokens, eval_tokens=eval_tokens)).validate()


def analyze_job(model_path, sae_path, out_path, *, corpus: str | CorpusConfig = "builtin", n_tokens: int = 200_000,
                eval_tokens: int | None = None, tokenizer_path=None, device: str = "auto",
                cache_dir=None, cancel: CancelToken | None = None) -> Generator[object, None, Path]:
    """Analyse the pair and write the bundle to ``out_path`` (atomically); returns ``out_path``."""
    from engine.bundle import write_bundle_job
    from engine.data.sources import CorpusError
    from engine.data.token_cache import tokenize_corpus

    t_run = time.perf_counter()
    out_path = Path(out_path)
    numbers = StageNumbers(ANALYZE_STAGES)

    def stage(events):
        return (yield from numbered(events, numbers))

    corpus_cfg = corpus if isinstance(corpus, CorpusConfig) else CorpusConfig(spec=str(corpus))
    swept = [p.name for p in sweep_stale_partials(out_path.parent)] if out_path.parent.is_dir() else []
    if swept:
        yield Message(f"removed {len(swept)} temporary file(s) left by an interrupted write: {', '.join(swept)}")
    model, tokenizer, sae = yield from stage(blocking_stage("load", 0, 1, load_pair, model_path, sae_path,
                                                            tokenizer_path))
    dev = resolve_device(device)
    yield Message(f"model: {model.cfg.d_model}-wide, {model.cfg.d_mlp} neurons ({model.cfg.act_fn}), vocabulary "
                  f"{model.cfg.vocab_size}; SAE: {sae.architecture}, {sae.cfg.d_sae} features; device: "
                  f"{describe_device(dev)}")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"analyze-{Path(model_path).resolve().name}")[:64]
    tok_file = tokenizer_path or str(Path(model_path) / "tokenizer.json")
    cfg = _run_config(model, tokenizer, sae, str(tok_file), corpus_cfg, n_tokens,
                      eval_tokens or max(model.cfg.n_ctx, n_tokens // 2), name, device)
    tokens = yield from stage(tokenize_corpus(cfg.corpus, tokenizer, cache_dir=cache_dir, cancel=cancel))
    T = model.cfg.n_ctx
    for split, arr in (("validation", tokens.val), ("training", tokens.train)):
        if len(arr) < T + 2:
            raise CorpusError(f"the corpus's {split} split has {len(arr)} tokens of this model's tokenizer; "
                              f"analysing needs at least {T + 2} (one context window). Use a larger corpus")
    ctx = RunContext(device=dev, wrap=stage, cancel=cancel)
    metrics, stats = yield from analyse_pair(ctx, model, sae, tokenizer, tokens.val, tokens.train, cfg.harvest,
                                             eos_id=tokens.eos_id)
    metrics["model_val_loss"] = float(metrics["loss_clean"])
    info = {"corpus": corpus_cfg.spec, "device": describe_device(dev), "platform": platform.platform(),
            "imported_model": str(Path(model_path).resolve()), "imported_sae": sae.cfg.source,
            "stage_seconds": json.dumps({})}
    yield from stage(write_bundle_job(
        out_path, config=cfg, tokenizer_json=tokenizer.to_json(), model_state=model.state_dict(),
        sae_state=sae.state_dict(), harvest=stats, metrics=metrics, curves={}, extra_info=info,
        cancel=cancel))
    yield Message(f"wrote {out_path} in {time.perf_counter() - t_run:.0f} s")
    return out_path
