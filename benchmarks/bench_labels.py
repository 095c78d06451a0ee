"""Offline labels on a real bundle: the labeller's median held-out score and its label mix, before/after.

    python benchmarks/bench_labels.py                        # SUPERPOS_BENCH_BUNDLE, else the demo bundle
    python benchmarks/bench_labels.py --bundle my.h5

"Before" is what the bundle stores (the labeller that wrote it); "after" relabels every unit with
this checkout's ``RuleLabeller`` on the same examples and the same held-out windows (the paired
sample's random windows, seed 0, as the pipeline draws them). Printed per kind, side by side: the
median held-out Spearman score; the share of labels that are bare token lists ("the token ' self'",
"brackets '(', '['": tokens with no "… in …" / "… after …" / "base64: …" context), of all "the token(s) …" labels, of
the bare label "words", of labels naming a language, of bare class labels ("base64", "DNA", "hex"),
of code contexts ("in comments", "after indentation", …), of the polysemantic marker "(top: …)", of
"(loose fit)", and of labels with escaped bytes ("\\xd8"). Nothing is written.
"""

from __future__ import annotations

import argparse
import re
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.analysis.labels import HeldOutSample, RuleLabeller, label_units  # noqa: E402
from engine.bundle import open_bundle  # noqa: E402
from engine.stats import UnitStats  # noqa: E402
from figures import add_json_flag, default_bundle, write_json  # noqa: E402



def stats_of(bundle, kind: str) -> UnitStats:
    """The columns the labeller reads, as a UnitStats (the others are left empty)."""
    col = bundle.column
    N = bundle.n_units(kind)
    empty = np.zeros((N, 0))
    return UnitStats(
        kind=kind, density=col(kind, "density"), max_act=col(kind, "max_act"), mean_act=col(kind, "mean_act"),
        act_hist=empty, top_tokens=col(kind, "top_tokens"), top_acts=col(kind, "top_acts"),
        top_center=bundle.top_center, interval_tokens=col(kind, "interval_tokens"),
        interval_acts=col(kind, "interval_acts"), interval_bounds=col(kind, "interval_bounds"),
        top_token_ids=col(kind, "top_token_ids"), logit_top_ids=col(kind, "logit_top_ids"),
        logit_top_values=empty, logit_bottom_ids=empty, logit_bottom_values=empty, logit_hist=empty,
        logit_range=empty, align_ids=empty, align_values=empty, align_l1=np.zeros(N), corr_ids=empty,
        corr_values=empty)


def held_out_of(bundle, kind: str, seed: int = 0) -> HeldOutSample:
    tokens, neuron_acts = bundle.sample_neurons()
    S = len(tokens)
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(S, size=min(20, S), replace=False)) if S else np.zeros(0, np.int64)
    if kind == "neuron":
        def acts_of(i):
            return neuron_acts[:, i].astype(np.float32)
    else:
        def acts_of(i):
            idx, values = bundle.sample_feature(i)
            out = np.zeros(S, np.float32)
            out[idx] = values
            return out
    return HeldOutSample(tokens, acts_of, positions)


LANGUAGE_NAMES = ("French", "German", "Spanish", "Chinese", "Japanese", "Korean", "Russian", "Ukrainian",
                  "Bulgarian", "Greek", "Arabic", "Hebrew", "Cyrillic")
_RESERVATION = re.compile(r" \((?:top: .*|loose fit)\)$")


def _core(label: str) -> str:
    """The label less its reservations ("(top: …)", "(loose fit)")."""
    while _RESERVATION.search(label):
        label = _RESERVATION.sub("", label)
    return label


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _token_list(label: str) -> bool:
    """Tokens with no context: "the token ' self'", "the tokens '7', '1'", "brackets '(', '['", "Python
    keyword 'def'" (not "base64: '7'", "… in comments", "… after '('")."""
    label = _core(label)
    bare = _QUOTED.sub("''", label)
    return bare != label and not any(w in bare for w in (" in ", " after ", " amid ", ": "))


def mix(labels: list[str], scores: np.ndarray) -> dict[str, float]:
    live = [i for i, lab in enumerate(labels) if lab]
    n = max(len(live), 1)
    s = np.asarray(scores, np.float64)[live]
    s = s[np.isfinite(s)]
    return {
        "median score": float(np.median(s)) if s.size else float("nan"),
        "token lists": sum(_token_list(labels[i]) for i in live) / n,
        "'the token(s)…'": sum(_core(labels[i]).startswith("the token") for i in live) / n,
        "'words'": sum(_core(labels[i]) == "words" for i in live) / n,
        "names a language": sum(any(w in labels[i] for w in LANGUAGE_NAMES) for i in live) / n,
        "a class, bare": sum(_core(labels[i]) in ("DNA", "base64", "hex", "DNA (ACGT runs)", "hex digits")
                             for i in live) / n,
        "code context": sum(any(w in labels[i] for w in (" in comments", " in string literals", "after indentation",
                                                         "at line start")) for i in live) / n,
        "(top: …)": sum("(top: " in labels[i] for i in live) / n,
        "loose fit": sum("loose fit" in labels[i] for i in live) / n,
        "escaped bytes": sum("\\x" in labels[i] for i in live) / n,
        "labelled": len(live),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=os.environ.get("SUPERPOS_BENCH_BUNDLE"),
                    help="default: $SUPERPOS_BENCH_BUNDLE, else the demo bundle (engine.paths.demo_bundle_path())")
    add_json_flag(ap)
    args = ap.parse_args(argv)
    args.bundle = default_bundle(args.bundle)
    figures = {}
    with open_bundle(args.bundle) as bundle:
        table_owner = RuleLabeller(bundle.tokenizer())
        print(f"{args.bundle}: {bundle.n_features:,} features, {bundle.n_neurons:,} neurons")
        for kind in ("feature", "neuron"):
            stats = stats_of(bundle, kind)
            before = mix([str(s) for s in bundle.column(kind, "labels")], bundle.column(kind, "scores"))
            t0 = time.perf_counter()
            labels, scores = label_units(stats, labeller=table_owner, held_out=held_out_of(bundle, kind))
            seconds = time.perf_counter() - t0
            after = mix(labels, scores)
            figures[kind] = {when: {"median_score": m["median score"], "token_lists": m["token lists"],
                                    "the_token": m["'the token(s)…'"], "language": m["names a language"],
                                    "code_context": m["code context"], "escaped_bytes": m["escaped bytes"],
                                    "loose_fit": m["loose fit"]}
                             for when, m in (("before", before), ("after", after))}
            print(f"\n{kind}s ({after['labelled']:,} labelled; relabelled in {seconds:.1f} s)")
            print(f"  {'':18}{'before':>10}{'after':>10}")
            for key in [k for k in after if k != "labelled"]:
                fmt = "{:>10.3f}" if key == "median score" else "{:>10.1%}"
                print(f"  {key:18}" + fmt.format(before[key]) + fmt.format(after[key]))
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
