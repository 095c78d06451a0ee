"""Script-level features of bundles: does a feature fire across many different tokens of a script?

    python benchmarks/script_features.py BUNDLE.h5 [MORE.h5 ...] [--purity 0.8] [--show 3]

For every bundle (side by side, e.g. a demo before and after a corpus change) and every token class
that its features specialise in (Arabic script, Hebrew script, CJK characters, DNA, base64, hex …):
the number of features whose example tokens (the centre tokens of the top and the interval examples)
are at least ``--purity`` of that class, and the ``--show`` of them with the most *distinct* tokens
of the class: id, stored label, distinct tokens, density. A script-level feature fires on hundreds
of different tokens of its script; a single-token feature on one or two. The examples are few
(70 per feature in the demo), so ``--probe`` (on by default) also runs each bundle's model + SAE over
fresh text of every language of the built-in corpus (seeded apart from its training text), and over
stdlib code and prose as a control, and prints for each language the feature that best separates it:
recall (share of the language's tokens it fires on), precision (share of its firings inside the
language) and the number of distinct tokens of the language it fires on. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.analysis.token_classes import LANGUAGES, SCRIPT0, TokenTable, DNA, HEX, BASE64  # noqa: E402
from engine.bundle import open_bundle  # noqa: E402


def examples(bundle, kind: str = "feature") -> tuple[np.ndarray, np.ndarray]:
    """``(tokens [N, E, W], live [N, E])``: the top and interval example windows of every unit."""
    top = bundle.column(kind, "top_tokens").astype(np.int64)                  # (N, K, W)
    interval = bundle.column(kind, "interval_tokens").astype(np.int64)        # (N, I, P, W)
    windows = np.concatenate([top, interval.reshape(interval.shape[0], -1, interval.shape[-1])], axis=1)
    return windows, windows[:, :, bundle.top_center] >= 0


def script_features(path: str, purity: float) -> tuple[TokenTable, dict[int, list[tuple[int, int, float]]]]:
    """For each class: ``(feature, distinct tokens of the class, share of the class)`` of the
    features whose live example centres are at least ``purity`` that class."""
    with open_bundle(path) as bundle:
        table = TokenTable.from_tokenizer(bundle.tokenizer())
        windows, live = examples(bundle)
        labels = bundle.column("feature", "labels")
        density = bundle.column("feature", "density")
    N, E, W = windows.shape
    classes = table.classify(windows.reshape(N * E, W))[:, bundle.top_center].reshape(N, E).astype(int)
    centres = windows[:, :, bundle.top_center]
    found: dict[int, list[tuple[int, int, float]]] = {}
    for i in range(N):
        if live[i].sum() < 5:
            continue
        cls = classes[i][live[i]]
        best = int(np.bincount(cls).argmax())
        share = float((cls == best).mean())
        if share >= purity and (best >= SCRIPT0 or best in (DNA, HEX, BASE64, *LANGUAGES)):
            distinct = len(set(centres[i][live[i]][cls == best].tolist()))
            found.setdefault(best, []).append((i, distinct, share))
    for rows in found.values():
        rows.sort(key=lambda r: -r[1])
    return table, {c: [(i, d, s, str(labels[i]), float(density[i])) for i, d, s in rows]
                   for c, rows in found.items()}


def probe_texts(n_docs: int, chars: int) -> dict[str, list[str]]:
    """Fresh text per language class (``probe`` seeds, not the corpus's) and a code/prose control."""
    import random
    from engine.data.builtin import _pydoc_topics
    from engine.data.languages import LANGUAGE_CLASSES, gen_language_text
    texts = {kind: [gen_language_text(random.Random(f"probe:{kind}:{d}"), chars, kind) for d in range(n_docs)]
             for kind in LANGUAGE_CLASSES}
    topics = _pydoc_topics()
    names = sorted(topics)[:: max(1, len(topics) // n_docs)][:n_docs]
    texts["control"] = [topics[n][:chars] for n in names] + [Path(argparse.__file__).read_text()[d * chars:(d + 1) * chars]
                                                              for d in range(n_docs)]
    return texts


def probe(path: str, n_docs: int = 6, chars: int = 1200) -> list[tuple[str, int, str, float, float, int, int]]:
    """Per language: ``(kind, feature, label, recall, precision, distinct tokens fired on, distinct
    tokens of the language)`` of the feature with the best F1 on the language's tokens."""
    from engine.analysis.lens import LensEngine
    with open_bundle(path) as bundle:
        lens = LensEngine(bundle.load_model(), bundle.load_sae(), bundle.tokenizer(), incremental=False)
        labels = bundle.column("feature", "labels")
        F = bundle.n_features
    per_kind: dict[str, tuple[np.ndarray, np.ndarray, int, set]] = {}
    for kind, docs in probe_texts(n_docs, chars).items():
        fired = np.zeros(F, dtype=np.int64)
        pairs: list[np.ndarray] = []
        n_tokens, vocab = 0, set()
        for text in docs:
            r = lens.analyze(text)
            rows = np.repeat(np.arange(r.n_tokens), np.diff(r.feat_indptr))
            fired += np.bincount(r.feat_ids, minlength=F)
            pairs.append(r.feat_ids.astype(np.int64) * 1_000_000 + r.token_ids[rows])
            n_tokens += r.n_tokens
            vocab.update(r.token_ids.tolist())
        distinct = np.bincount((np.unique(np.concatenate(pairs)) // 1_000_000), minlength=F)
        per_kind[kind] = (fired, distinct, n_tokens, vocab)
    total = sum(v[0] for v in per_kind.values())
    out = []
    for kind, (fired, distinct, n_tokens, vocab) in per_kind.items():
        if kind == "control":
            continue
        recall = fired / n_tokens
        precision = np.divide(fired, total, out=np.zeros(F), where=total > 0)
        f1 = np.divide(2 * recall * precision, recall + precision, out=np.zeros(F), where=recall + precision > 0)
        i = int(f1.argmax())
        out.append((kind, i, str(labels[i]), float(recall[i]), float(precision[i]), int(distinct[i]), len(vocab)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--purity", type=float, default=0.8)
    parser.add_argument("--show", type=int, default=3)
    parser.add_argument("--no-probe", action="store_true", help="only the stored examples")
    args = parser.parse_args()
    for path in args.bundles:
        table, found = script_features(path, args.purity)
        with open_bundle(path) as bundle:
            examples_per_unit = examples(bundle)[1].shape[1]
        print(f"\n{path}: features whose example tokens are >= {args.purity:.0%} one class "
              f"(of {examples_per_unit} examples each); the most distinct tokens first")
        for c, rows in sorted(found.items(), key=lambda kv: table.class_name(kv[0])):
            widest = rows[0][1]
            print(f"  {table.class_name(c):24s} {len(rows):4d} features; widest fires on {widest:3d} distinct tokens")
            for i, distinct, share, label, density in rows[:args.show]:
                print(f"      #{i:<5d} {distinct:3d} distinct, {share:4.0%} in class, density {density:.2e}  {label!r}")
    if args.no_probe:
        return
    for path in args.bundles:
        print(f"\n{path}: the feature that best picks out each language on fresh text "
              "(recall: its share of the language's tokens; precision: its firings inside the language)")
        for kind, i, label, recall, precision, distinct, vocab in probe(path):
            print(f"  {kind:9s} #{i:<5d} recall {recall:4.0%}  precision {precision:4.0%}  fires on {distinct:4d} "
                  f"of the {vocab:4d} distinct tokens  {label!r}")


if __name__ == "__main__":
    main()
