"""``superpos info BUNDLE`` and ``superpos export-saelens BUNDLE DIR``.

``register(subparsers)`` adds both commands to the ``superpos`` parser (engine/cli/main.py calls it);
errors propagate to ``engine.cli.main.main``, which prints them as one line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from engine.bundle import Bundle, open_bundle
from engine.cli.terminal import terminal_safe as safe
from engine.config import recipe_setting
from engine.interop.saelens import export_saelens
from engine.numbers import readable, seconds

__all__ = ["register", "cmd_info", "cmd_export_saelens", "summary_lines", "shown_metrics"]


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="print a summary of a result bundle",
                              description="Summarise a result bundle: sizes, corpus, recipe, metrics, "
                                          "creation time and package versions.")
    p.add_argument("bundle", metavar="BUNDLE", help="a .h5 bundle written by `superpos run`")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)

    p = subparsers.add_parser("export-saelens", help="export a bundle's SAE as a SAELens folder",
                              description="Write cfg.json, sae_weights.safetensors and sparsity.safetensors "
                                          "(log10 feature density) to DIR, in the layout SAELens loads.")
    p.add_argument("bundle", metavar="BUNDLE", help="a .h5 bundle")
    p.add_argument("out", metavar="DIR", help="output folder (created if needed)")
    p.set_defaults(func=cmd_export_saelens)


def cmd_info(args: argparse.Namespace) -> int:
    with open_bundle(args.bundle) as b:
        if args.json:
            print(json.dumps(summary_dict(b), indent=2, sort_keys=True, default=str))
        else:
            # fields are escaped where they are formatted; this pass catches any the summary adds later
            print("\n".join(safe(row) for line in summary_lines(b) for row in line.split("\n")))
    return 0


def cmd_export_saelens(args: argparse.Namespace) -> int:
    with open_bundle(args.bundle) as b:
        files = export_saelens(b, args.out)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


# ------------------------------------------------------------------------------------------ summary
def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return ""  # pragma: no cover


def _num(value: Any) -> str:
    return str(value) if value is None else readable(value)


def _extra_item(key: str, value: Any) -> str:
    """An extra_info entry; the run's stage seconds (a JSON object) as ``stage 0.21 s`` pairs."""
    if key == "stage_seconds":
        try:
            stages = json.loads(value) if isinstance(value, str) else dict(value)
            return "stage seconds: " + ", ".join(f"{k} {seconds(v)}" for k, v in stages.items())
        except (TypeError, ValueError, AttributeError):
            pass
    return f"{key} {_num(value) if isinstance(value, (int, float)) else value}"


def _unit_summary(b: Bundle, kind: str) -> dict[str, Any]:
    cols = b.columns(kind)
    density = cols["density"]
    live = density[density > 0]
    scores = cols["score"][np.isfinite(cols["score"])]
    dead = b.dead_count(kind)
    return {
        "count": b.n_units(kind),
        "dead": dead.n_dead,
        "dead_means": dead.meaning,
        "ultralow": int(cols["ultralow"].sum()),
        "median_density": float(np.median(live)) if live.size else float("nan"),
        "labelled": int(sum(1 for s in cols["label"] if s)),
        "mean_score": float(scores.mean()) if scores.size else float("nan"),
    }


def shown_metrics(b: Bundle) -> dict[str, Any]:
    """The stored metrics with "dead" in its one meaning: ``dead_fraction`` is the harvest's (never
    fired on any of ``dead_judged_on_tokens`` harvested tokens); the evaluation's own count over its fewer
    tokens is ``eval_never_active_fraction``."""
    metrics = dict(b.metrics or {})
    if "dead_fraction" in metrics:
        metrics["eval_never_active_fraction"] = metrics.pop("dead_fraction")
    dead = b.dead_count("feature")
    metrics["dead_fraction"] = dead.fraction
    metrics["dead_judged_on_tokens"] = dead.n_tokens
    return metrics


def summary_dict(b: Bundle) -> dict[str, Any]:
    return {"path": str(b.path), "info": b.info, "config": b.config.to_dict(), "metrics": shown_metrics(b),
            "features": _unit_summary(b, "feature"), "neurons": _unit_summary(b, "neuron")}


def summary_lines(b: Bundle) -> list[str]:
    """The human summary ``superpos info`` prints, as lines."""
    info, cfg, m = b.info, b.config, b.model_config
    c = cfg.corpus
    corpus = safe(c.spec) + (f", at most {c.max_chars:,} chars" if c.max_chars else "") + f", seed {c.seed}"
    sae = b.sae_config_dict
    recipe = safe(f"{b.config.sae.recipe} ({recipe_setting(b.config.sae)})")
    d = b.dims
    lines = [
        f"bundle      {safe(b.path)}",
        f"            {_size(info['file_size'])}, schema {b.schema_version}, {safe(info['generator'])}, "
        f"created {safe(info['created'])}",
        f"run         {safe(repr(cfg.name))}",
        f"corpus      {corpus}",
        f"tokenizer   byte-level BPE, {m.vocab_size:,} tokens",
        f"model       1 layer, d_model {m.d_model}, {m.n_heads} heads, {m.d_mlp} MLP neurons ({m.act_fn}), "
        f"context {m.n_ctx}; " + (f"imported from {safe((info.get('extra_info') or {}).get('imported_model', '?'))}"
                                  if cfg.sae.source else f"{cfg.train.tokens:,} training tokens"),
        f"SAE         " + (f"{cfg.sae.architecture}, {b.n_features:,} features on {b.n_neurons} neurons; imported "
                           f"from {safe(cfg.sae.source)}" if cfg.sae.source else
                           f"{recipe}, {b.n_features:,} features on {b.n_neurons} neurons; "
                           f"{int(sae.get('n_activations', 0)):,} training activations"),
        f"harvest     {b.n_tokens:,} tokens; top {d['K']} examples, {d['I']} intervals x {d['P']}, "
        f"window {d['W']} tokens",
    ]
    for kind, title in (("feature", "features"), ("neuron", "neurons")):
        s = _unit_summary(b, kind)
        lines.append(
            f"{title:<12}{s['count']:,}: {s['dead']:,} dead ({s['dead_means']}), {s['ultralow']:,} ultralow "
            f"(< 1e-6), median live density {s['median_density']:.2e}; {s['labelled']:,} labelled, mean score "
            f"{_num(s['mean_score'])}")
    if b.metrics:
        items = [f"{k} {_num(v)}" for k, v in sorted(shown_metrics(b).items()) if not isinstance(v, (dict, list))]
        lines.append("metrics     " + _wrap(items))
    if info["curves"]:
        lines.append("curves      " + _wrap(info["curves"]))
    versions = info.get("versions") or {}
    if versions:
        lines.append("versions    " + _wrap([f"{k} {v}" for k, v in sorted(versions.items())]))
    extra = info.get("extra_info") or {}
    if extra:
        lines.append("extra       " + _wrap([_extra_item(k, v) for k, v in sorted(extra.items())]))
    return lines


def _wrap(items: list[str], width: int = 88) -> str:
    """The items (bundle strings: escaped for the terminal) joined and wrapped under the column."""
    out, line = [], ""
    for item in map(safe, items):
        piece = item if not line else ", " + item
        if line and len(line) + len(piece) > width:
            out.append(line + ",")
            line = item
        else:
            line += piece
    out.append(line)
    return ("\n" + " " * 12).join(out)
