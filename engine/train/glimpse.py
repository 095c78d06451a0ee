"""What a run can show while it trains: count-table baselines and the model's current predictions.

``baseline_losses`` fits a unigram table and an add-k bigram table (k = BIGRAM_K) on the training
tokens (at most ``max_tokens`` of them) and reports each one's mean cross-entropy on the validation
tokens, in nats: the same quantity as the model's validation loss, so the three can share a plot.

    unigram  −mean log p(x_t),            p from token counts (add-k as well: no −∞ for unseen tokens)
    bigram   −mean log p(x_t | x_{t−1}),  p = (c(a, b) + k) / (c(a) + k·V)

``sample_predictions`` runs the model (eval mode, no gradient) on ``n_positions`` fixed validation
windows of n_ctx tokens spread over the validation text and returns, for the token after each, the
last tokens of its context, the actual token and the model's top-``top`` guesses with probabilities. Both return ``engine.events``
``Glimpse`` objects with plain data only (token ids; whoever shows them has the tokenizer).
"""

from __future__ import annotations

import numpy as np
import torch

from engine.events import Glimpse

__all__ = ["baseline_losses", "sample_predictions", "BIGRAM_K"]

BIGRAM_K = 0.1
CONTEXT_SHOWN = 8


def baseline_losses(train_tokens: np.ndarray, val_tokens: np.ndarray, vocab_size: int,
                    max_tokens: int = 4_000_000, stage: str = "model") -> Glimpse:
    """Glimpse(kind="baselines"): the validation loss (nats) of a unigram and a bigram count table."""
    V, k = int(vocab_size), BIGRAM_K
    train = np.asarray(train_tokens[:max_tokens], np.int64)
    val = np.asarray(val_tokens[:max_tokens], np.int64)
    if train.size < 2 or val.size < 2:
        return Glimpse(stage, "baselines")
    uni = np.bincount(train, minlength=V).astype(np.float64)
    p_uni = (uni + k) / (uni.sum() + k * V)
    unigram = float(-np.log(p_uni[val]).mean())
    pairs, counts = np.unique(train[:-1] * V + train[1:], return_counts=True)       # sorted codes
    prev = np.bincount(train[:-1], minlength=V).astype(np.float64)
    code = val[:-1] * V + val[1:]
    at = np.clip(np.searchsorted(pairs, code), 0, pairs.size - 1)
    c_ab = np.where(pairs[at] == code, counts[at], 0).astype(np.float64)
    bigram = float(-np.log((c_ab + k) / (prev[val[:-1]] + k * V)).mean())
    return Glimpse(stage, "baselines", values={"unigram": unigram, "bigram": bigram})


@torch.no_grad()
def sample_predictions(model, val_tokens: np.ndarray, step: int, done: int, n_positions: int = 6,
                       top: int = 3, stage: str = "model") -> Glimpse:
    """Glimpse(kind="predictions"): the model's guess for the token after each of ``n_positions``
    validation windows of n_ctx tokens, spread evenly over the validation tokens (the same every call)."""
    T = min(int(model.cfg.n_ctx), int(len(val_tokens)) - 1)
    if T < 1:
        return Glimpse(stage, "predictions", step, done)
    ids = np.asarray(val_tokens, np.int64)
    starts = np.unique(np.linspace(0, len(ids) - T - 1, n_positions).astype(np.int64))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    windows = torch.as_tensor(np.stack([ids[s:s + T] for s in starts]), device=device)   # (n, T)
    logits = model(windows)[:, -1].float()                                             # (n, V)
    model.train(was_training)
    p_top, i_top = torch.softmax(logits, dim=-1).topk(top, dim=-1)
    rows = tuple(
        (tuple(int(t) for t in ids[max(s, s + T - CONTEXT_SHOWN):s + T]), int(ids[s + T]),
         tuple((int(i), float(p)) for i, p in zip(i_top[j].tolist(), p_top[j].tolist())))
        for j, s in enumerate(starts.tolist()))
    return Glimpse(stage, "predictions", step, done, rows=rows)
