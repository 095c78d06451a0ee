"""The paper's hallmark features emerge from the built-in corpus and the labeller names them.

On the real tiny run (built-in corpus, seeded): features exist whose top-20 examples are at least
80% DNA, and at least 80% base64, and whose labels say so. (Hex needs the demo's larger vocabulary:
66 such hex features there; see the closing figures in docs/sae-results.md.)
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.bundle import open_bundle
from engine.analysis.token_classes import TokenTable


def _class_features(bundle, table, key):
    """(share of the top-20 centre tokens in the class, feature id) for features labelled ``key``."""
    labels = bundle.columns("feature")["label"]
    found = []
    for i, label in enumerate(labels):
        if key not in label.lower():
            continue
        d = bundle.dashboard("feature", i)
        centres = d.top_tokens[:, d.top_center]
        windows = d.top_tokens[centres >= 0].astype(np.int64)
        if not len(windows):
            continue
        classes = table.classify(windows)[:, d.top_center].astype(int)
        share = np.mean([key in table.class_name(c).lower() for c in classes])
        found.append((float(share), i))
    return sorted(found, reverse=True)


@pytest.mark.parametrize("key", ["dna", "base64"])
def test_class_features_exist_and_are_labelled(real_tiny_bundle, key):
    with open_bundle(real_tiny_bundle) as bundle:
        tok = bundle.tokenizer()
        table = TokenTable.from_strings(tok.vocab_strings())
        found = _class_features(bundle, table, key)
    assert found and found[0][0] >= 0.8, f"no {key} feature with >= 80% {key} top examples: {found[:5]}"
