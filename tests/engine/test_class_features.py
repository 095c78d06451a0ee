"""The paper's hallmark features emerge from the built-in corpus and the labeller names them.

On the real tiny run (built-in corpus, seeded): features exist whose top-20 examples are at least
80% DNA, and at least 80% base64, and whose labels say so. (Hex needs the demo's larger vocabulary:
the demo row of README's figures table counts them, `python benchmarks/bench_demo.py`.)
"""

from __future__ import annotations

import pytest

from engine.bundle import open_bundle
from engine.analysis.class_features import class_features


@pytest.mark.parametrize("key", ["dna", "base64"])
def test_class_features_exist_and_are_labelled(real_tiny_bundle, key):
    with open_bundle(real_tiny_bundle) as bundle:
        found = class_features(bundle, classes=(key,))[key]
    labelled = [f for f in found if key in f.label.lower()]
    assert labelled and labelled[0].share >= 0.8, f"no {key} feature with >= 80% {key} top examples labelled so"
