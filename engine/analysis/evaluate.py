"""How good is a sparse autoencoder? The paper's measures on held-out tokens.

On contiguous windows of the model's context length from `val_tokens` (each predicting its next
token), with x the MLP activations, x̂ the SAE reconstruction and f the feature activations:

    mse               = Σ ‖x - x̂‖² / (n·D)                  mean squared error per element
    fvu               = Σ ‖x - x̂‖² / Σ ‖x - x̄‖²             fraction of variance unexplained
    l0                = mean over tokens of #{i : fᵢ > 0}
    dead_fraction     = fraction of features never active on these n tokens
    ultralow_fraction = fraction active, but with density < ultralow_threshold (1e-6): counted apart
                        from the dead ones, as the paper does (168 dead, 292 ultralow). With n < 1e6
                        tokens no live feature can be that rare, so it is 0 and "dead" means "never
                        active in n_tokens tokens" (the bundle and `superpos info` say so)
    loss_clean        = mean next-token cross-entropy (nats) of the model
    loss_sae          = the same with x̂ spliced in place of x
    loss_zero_ablation= the same with x replaced by 0
    loss_recovered    = (L_zero - L_sae) / (L_zero - L_clean)
    kl_recovered      = 1 - KL(clean ‖ sae) / KL(clean ‖ zero)    (kl_sae, kl_zero_ablation: mean nats/token)

``evaluate_job`` is the pipeline's generator job (a ``Progress`` per batch in tokens, cancellable);
``evaluate`` runs it to the end for callers that want the dict. Both return a dict with those keys
plus ``ultralow_threshold`` and ``feature_density`` (a numpy array [F], the fraction of tokens on
which each feature fires; ``json_safe`` drops it and non-finite values before serialising).

Shape legend: B windows, T positions, D MLP neurons, F features, V vocabulary.
"""

from __future__ import annotations

import time
from typing import Generator

import numpy as np
import torch
import torch.nn.functional as Fn

from engine.analysis.metrics import METRIC_KEYS, json_safe
from engine.data.sources import CorpusError
from engine.events import Cancelled, CancelToken, Progress, RateMeter, StageFinished, StageStarted
from engine.jobs import run_to_completion
from engine.stats import ULTRALOW_DENSITY

__all__ = ["evaluate", "evaluate_job", "json_safe", "METRIC_KEYS"]


def evaluate(model, sae, val_tokens: np.ndarray, n_tokens: int, device: str | torch.device = "cpu",
             n_ctx: int | None = None, batch_size: int = 16) -> dict:
    """The measures above on about n_tokens tokens (whole windows) of val_tokens."""
    return run_to_completion(evaluate_job(model, sae, val_tokens, n_tokens, device=device, n_ctx=n_ctx,
                                          batch_size=batch_size))


@torch.no_grad()            # entered on each resume of the generator, so it never leaks to the driver
def evaluate_job(model, sae, val_tokens: np.ndarray, n_tokens: int, device: str | torch.device = "cpu",
                 n_ctx: int | None = None, batch_size: int = 16,
                 cancel: CancelToken | None = None) -> Generator[object, None, dict]:
    """Generator job: ``evaluate`` with a ``StageStarted("evaluate")``, a ``Progress(unit="tokens")``
    per batch of windows and a ``StageFinished``; checks ``cancel`` before every batch (raising
    ``Cancelled``). The model and the SAE get their train/eval mode back however the job ends."""
    device = torch.device(device)
    T = int(n_ctx or model.cfg.n_ctx)
    n_windows = min(max(1, n_tokens // T), (len(val_tokens) - 1) // T)
    if n_windows < 1:
        raise CorpusError(f"need more than {T} validation tokens to evaluate; got {len(val_tokens)}")
    total = n_windows * T
    modes = (model.training, sae.training)
    model.eval()
    sae.eval()
    try:
        t0 = time.perf_counter()
        meter = RateMeter(total)
        yield StageStarted("evaluate", total=total, unit="tokens")
        D, F = sae.cfg.d_in, sae.cfg.d_sae
        sq_err = 0.0
        sum_x_D = torch.zeros(D, dtype=torch.float64)
        sum_x2 = 0.0
        l0_sum = 0.0
        count_F = torch.zeros(F, dtype=torch.float64)
        ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
        kl = {"sae": 0.0, "zero": 0.0}             # Σ KL(clean ‖ patched) over tokens, nats
        n = 0
        for w0 in range(0, n_windows, batch_size):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("evaluation cancelled")
            starts = np.arange(w0, min(n_windows, w0 + batch_size)) * T
            window = np.asarray(val_tokens[starts[:, None] + np.arange(T + 1)], dtype=np.int64)
            idx_BT = torch.from_numpy(window[:, :-1]).to(device)
            tgt = torch.from_numpy(window[:, 1:]).reshape(-1).to(device)
            resid, x_BTD = model.resid_and_acts(idx_BT)
            x_ND = x_BTD.reshape(-1, D).float()
            f_NF = sae.encode(x_ND)
            x_hat_ND = sae.decode(f_NF)
            err = x_hat_ND - x_ND
            sq_err += float(err.double().pow(2).sum())
            sum_x_D += x_ND.double().sum(0).cpu()
            sum_x2 += float(x_ND.double().pow(2).sum())
            active = f_NF > 0
            l0_sum += float(active.sum())
            count_F += active.sum(0).double().cpu()
            n += x_ND.shape[0]
            for name, acts in (("clean", x_BTD), ("sae", x_hat_ND.reshape(x_BTD.shape)),
                               ("zero", torch.zeros_like(x_BTD))):
                logits = model.logits_from_acts(resid, acts.to(resid.dtype))
                logp = Fn.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)
                ce[name] += float(Fn.nll_loss(logp, tgt, reduction="sum"))
                if name == "clean":
                    logp_clean = logp
                else:
                    kl[name] += float(Fn.kl_div(logp, logp_clean, log_target=True, reduction="sum"))
            rate, eta = meter.update(n)
            yield Progress(stage="evaluate", done=n, total=total, rate=rate, eta_s=eta, unit="tokens")
    finally:
        model.train(modes[0])
        sae.train(modes[1])
    total_var = sum_x2 - float((sum_x_D * sum_x_D).sum()) / n
    density_F = (count_F / n).numpy()
    loss_clean, loss_sae, loss_zero = ce["clean"] / n, ce["sae"] / n, ce["zero"] / n
    gap = loss_zero - loss_clean
    metrics = {
        "mse": sq_err / (n * D),
        "fvu": sq_err / total_var if total_var > 0 else float("nan"),
        "l0": l0_sum / n,
        "dead_fraction": float((count_F == 0).double().mean()),
        "ultralow_fraction": float(((density_F > 0) & (density_F < ULTRALOW_DENSITY)).mean()),
        "ultralow_threshold": ULTRALOW_DENSITY,
        "loss_clean": loss_clean,
        "loss_sae": loss_sae,
        "loss_zero_ablation": loss_zero,
        "loss_recovered": (loss_zero - loss_sae) / gap if abs(gap) > 1e-12 else float("nan"),
        "kl_sae": kl["sae"] / n,
        "kl_zero_ablation": kl["zero"] / n,
        "kl_recovered": 1 - kl["sae"] / kl["zero"] if kl["zero"] > 1e-12 else float("nan"),
        "n_tokens": int(n),
        "feature_density": density_F,
    }
    yield StageFinished("evaluate", seconds=time.perf_counter() - t0,
                        summary={key: metrics[key] for key in ("loss_recovered", "fvu", "l0")})
    return metrics
