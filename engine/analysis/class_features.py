"""The paper's hallmark features in a bundle: features whose top examples are DNA, base64 or hex.

``class_features(bundle)`` classifies the centre token of every feature's top-20 examples by the
token classes of ``engine.analysis.token_classes`` (decided from the text around each token, so
"A" inside "GATTACA" is DNA) and returns, per class, the features whose examples are at least
``min_share`` that class, best first, with their offline labels. ``benchmarks/bench_demo.py`` and the
tests use it to say whether a run found them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.analysis.token_classes import BASE64, CLASS_LABELS, DNA, HEX, TokenTable

__all__ = ["ClassFeature", "class_features", "HALLMARK_CLASSES"]

HALLMARK_CLASSES = {"dna": DNA, "base64": BASE64, "hex": HEX}


@dataclass(frozen=True)
class ClassFeature:
    feature: int
    share: float          # fraction of its live top examples whose centre token is of the class
    label: str            # the offline label of the bundle


def class_features(bundle, classes=tuple(HALLMARK_CLASSES), min_share: float = 0.8,
                   table: TokenTable | None = None) -> dict[str, list[ClassFeature]]:
    """{class key: features with >= min_share of their top examples in that class}: the highest share
    first, and among equals those labelled as the whole class (e.g. "base64", not "the token '0' in
    base64")."""
    table = table or TokenTable.from_tokenizer(bundle.tokenizer())
    wanted = {key: HALLMARK_CLASSES[key] for key in classes}
    labels = bundle.columns("feature")["label"]
    found: dict[str, list[ClassFeature]] = {key: [] for key in wanted}
    top_ids = bundle.columns("feature")["top_token_ids"]
    for i in range(bundle.n_features):
        if top_ids[i, 0] < 0:                      # never fired: no examples
            continue
        d = bundle.dashboard("feature", i)
        windows = d.top_tokens[d.top_tokens[:, d.top_center] >= 0].astype(np.int64)
        if not len(windows):
            continue
        centre = table.classify(windows)[:, d.top_center].astype(int)
        for key, cls in wanted.items():
            share = float(np.mean(centre == cls))
            if share >= min_share:
                found[key].append(ClassFeature(i, share, labels[i]))
    return {key: sorted(v, key=lambda f: (-f.share, f.label != CLASS_LABELS[wanted[key]], f.feature))
            for key, v in found.items()}
