"""Corpus + tokenizer throughput for a preset: build the built-in corpus, train the BPE, tokenize.

    python benchmarks/bench_corpus.py [--preset demo] [--cache DIR]

Prints seconds and characters/second for each stage (a fresh cache folder, so nothing is reused;
the built-in corpus's word lists are read first, once per process, and timed on their own line),
the BPE training again as the pipeline runs it (``train_tokenizer_job``: a worker thread with
progress and a cancel point; it must give the same tokenizer), then a second, cached tokenize call.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from engine.jobs import run_to_completion
from engine.config import preset
from engine.data.languages import LANGUAGE_CLASSES, language
from engine.data.spec import iter_texts, open_corpus
from engine.data.token_cache import tokenize_corpus
from engine.data.tokenizer import Tokenizer, train_tokenizer_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--cache", default=None, help="token cache folder (default: a fresh temp folder)")
    args = parser.parse_args()
    cfg = preset(args.preset)
    cache = args.cache or tempfile.mkdtemp(prefix="superpos-bench-")

    t0 = time.perf_counter()
    source = open_corpus(cfg.corpus)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    for codes, style in LANGUAGE_CLASSES.values():
        for code, _ in codes:
            language(code, style.script)
    t_lists = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_chars = sum(len(text) for _, text in source.iter_documents())
    t_iter = time.perf_counter() - t0
    print(f"preset {args.preset}: corpus {cfg.corpus.spec!r}, {n_chars:,} chars")
    print(f"  open_corpus        {t_open:7.2f} s")
    print(f"  read word lists    {t_lists:7.2f} s  (wordfreq, {sum(len(c) for c, _ in LANGUAGE_CLASSES.values())} "
          "languages, once per process)")
    print(f"  read all documents {t_iter:7.2f} s  ({n_chars / t_iter / 1e6:.2f} M chars/s)")

    t0 = time.perf_counter()
    tok = Tokenizer.train(iter_texts(source, cfg.tokenizer.train_chars), cfg.tokenizer.vocab_size)
    t_train = time.perf_counter() - t0
    train_chars = min(cfg.tokenizer.train_chars, n_chars)
    print(f"  train BPE (vocab {tok.vocab_size}) on {train_chars:,} chars: {t_train:.2f} s "
          f"({train_chars / t_train / 1e6:.2f} M chars/s)")
    t0 = time.perf_counter()
    job_tok = run_to_completion(train_tokenizer_job(cfg.tokenizer, iter_texts(source, cfg.tokenizer.train_chars),
                                                    train_chars))
    t_job = time.perf_counter() - t0
    print(f"  train BPE as a job {t_job:7.2f} s  (same tokenizer: {job_tok.hash() == tok.hash()})")

    t0 = time.perf_counter()
    data = run_to_completion(tokenize_corpus(cfg.corpus, tok, cache_dir=cache))
    t_tok = time.perf_counter() - t0
    n_tokens = len(data.train) + len(data.val)
    print(f"  tokenize + write   {t_tok:7.2f} s  ({n_chars / t_tok / 1e6:.2f} M chars/s); "
          f"{n_tokens:,} tokens ({n_chars / n_tokens:.2f} chars/token), train {len(data.train):,}, "
          f"val {len(data.val):,}, dtype {data.train.dtype}")
    t0 = time.perf_counter()
    run_to_completion(tokenize_corpus(cfg.corpus, tok, cache_dir=cache))
    print(f"  cached tokenize    {time.perf_counter() - t0:7.2f} s")


if __name__ == "__main__":
    main()
