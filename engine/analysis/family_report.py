"""What a family bundle found, in numbers: universality across seeds and the clearest splits.

``family_report(bundle)`` reads a family bundle's stored matches (no model is run) and returns

- ``universality``: per dictionary size, the median best-match activation correlation of model A's
  features with model B's dictionary of that size, how many features it counts, and the median
  logit-weight correlation of those matches; the neurons' median (the paper's comparison: features
  0.72 vs neurons 0.46);
- ``splits``: features of one size with at least two children in the next size by the one rule
  ``SplitChildren`` (which the app's splitting tree uses too): the best decoder match in the smaller
  size is the parent, cosine >= ``min_cosine``, live (density above ``min_density``), labelled, not
  a near-identical copy (``matching.duplicate_copies``), one child per label: the paper's feature
  splitting. Ranked by how close the parent's
  ``min_children``-th closest child is (a split is at least two close children, not one close child
  and loose ones), then by the number of children; each with the parent's and children's labels and densities.

``report_lines`` prints it for ``superpos family BUNDLE``. Both read at most two columns per
dictionary, so the report is instant on a 16k-feature family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.bundle.family import FamilyTree

__all__ = ["Split", "Child", "SplitChildren", "SPLIT_RULE", "family_report", "report_lines"]


@dataclass
class Split:
    """One feature of dictionary ``member`` and its children in ``member + 1``: [(feature, cosine,
    label, density)], most similar first."""
    member: int
    feature: int
    label: str
    density: float
    children: list[tuple[int, float, str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Child:
    """A feature of the next size whose parent is the feature asked about (``FamilyTree``), with its
    decoder cosine to the parent, label and density; ``counted`` by the split rule, or ``reason`` why not."""
    feature: int
    cosine: float
    label: str
    density: float
    counted: bool
    reason: str = ""


class SplitChildren:
    """The one rule for which features are a feature's children, used by ``superpos family`` and the
    app's splitting tree alike (the paper's feature splitting, ``SPLIT_RULE``):

    a child of feature f of size d is a feature g of size d + 1 (the same model) whose best decoder
    match in size d is f (``FamilyTree``), with decoder cosine to f >= ``min_cosine`` (default 0.5),
    live (density > ``min_density``), labelled, not a near-identical copy of an earlier feature of its
    dictionary (``matching.duplicate_copies``), and the closest of the children that share its label.

    ``all(d, f)`` lists every feature whose parent is f, each marked counted or not (and why);
    ``children(d, f)`` the counted ones, most similar first. Each dictionary's labels, densities and
    decoder rows are read once, on first use."""

    def __init__(self, bundle, min_cosine: float = 0.5, min_density: float = 0.0):
        self.bundle = bundle
        self.tree = FamilyTree(bundle)
        self.min_cosine = float(min_cosine)
        self.min_density = float(min_density)
        self._columns: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._decoders: dict[int, np.ndarray] = {}
        self._all: dict[tuple[int, int], list[Child]] = {}

    def columns(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, densities) of dictionary d's features."""
        if d not in self._columns:
            cols = self._read(d, lambda m: m.columns("feature"))
            self._columns[d] = (np.asarray(cols["label"]).astype(str), np.asarray(cols["density"], np.float64))
        return self._columns[d]

    def _read(self, d: int, what):
        from engine.bundle import open_bundle

        if d == getattr(self.bundle, "dictionary", 0):
            return what(self.bundle)
        with open_bundle(self.bundle.path, d) as member:
            return what(member)

    def _copies(self, d: int, rows: list[int]) -> np.ndarray:
        from engine.analysis.matching import duplicate_copies

        if not rows:
            return np.zeros(0, bool)
        if d not in self._decoders:
            self._decoders[d] = self._read(d, lambda m: m.decoder_rows(slice(None)))
        return duplicate_copies(self._decoders[d][:max(rows) + 1], rows=rows)

    def all(self, d: int, f: int) -> list[Child]:
        key = (int(d), int(f))
        if key not in self._all:
            self._all[key] = self._judge(*key)
        return self._all[key]

    def _judge(self, d: int, f: int) -> list[Child]:
        kids = self.tree.children(d, f)
        if not kids:
            return []
        labels, density = self.columns(d + 1)
        copies = self._copies(d + 1, [g for g, _ in kids])
        out, seen = [], set()
        for (g, cos), copy in zip(kids, copies):          # most similar first: the first of a label counts
            label = str(labels[g])
            reason = (f"decoder cosine {cos:.2f} < {self.min_cosine:g}" if not cos >= self.min_cosine else
                      "dead (never fires)" if not density[g] > self.min_density else
                      "unlabelled" if not label.strip() else
                      "a near-identical copy of an earlier feature" if copy else
                      "repeats a closer child's label" if label in seen else "")
            if not reason:
                seen.add(label)
            out.append(Child(int(g), float(cos), label, float(density[g]), not reason, reason))
        return out

    def children(self, d: int, f: int) -> list[Child]:
        return [c for c in self.all(d, f) if c.counted]


SPLIT_RULE = SplitChildren.__doc__


def splits(bundle, min_cosine: float = 0.5, min_children: int = 2, limit: int = 10,
           min_density: float = 0.0, about: str = "") -> list[Split]:
    """The family's clearest splits (see module doc): parents with at least ``min_children`` children
    by ``SplitChildren``'s rule, within each model; ``about``: only parents whose label contains it
    (case-insensitive), e.g. "Arabic"."""
    fam = bundle.family
    if len(fam) < 2:
        return []
    rule = SplitChildren(bundle, min_cosine=min_cosine, min_density=min_density)
    found: list[tuple[tuple, Split]] = []
    for d in range(len(fam) - 1):
        if fam.members[d]["model"] != fam.members[d + 1]["model"]:
            continue
        m = bundle.matches(d + 1, d, "decoder")
        if m is None:
            continue
        parent_ids, parent_cos = m[0][:, 0], m[1][:, 0]
        close = (parent_ids >= 0) & (parent_cos >= min_cosine)
        counts = np.bincount(parent_ids[close], minlength=int(fam.members[d]["d_sae"]))
        candidates = np.flatnonzero(counts >= min_children)
        if not len(candidates):
            continue
        labels, density = rule.columns(d)
        for f in candidates:
            if not density[f] > min_density or (about and about.lower() not in labels[f].lower()):
                continue
            kids = rule.children(d, int(f))
            if len(kids) < min_children:
                continue
            children = [(c.feature, c.cosine, c.label, c.density) for c in kids]
            split = Split(d, int(f), str(labels[f]), float(density[f]), children)
            found.append(((-children[min_children - 1][1], -len(children), d, int(f)), split))
    found.sort(key=lambda t: t[0])
    return [s for _, s in found[:limit]]


def family_report(bundle, **split_options) -> dict:
    """{"members": [...], "universality": {...} or None, "splits": [Split, ...]} (see module doc)."""
    fam = bundle.family
    metrics = bundle.metrics
    members = [{"name": name, "d_sae": int(m["d_sae"]), "model": int(m["model"])}
               for name, m in zip(fam.names(), fam.members)]
    universality = None
    if "universality_neuron_median" in metrics:
        sizes = sorted({m["d_sae"] for m in members if m["model"] == 0})
        unique = {}
        for i, m in enumerate(members):
            other = fam.counterpart(i)
            if m["model"] != 0 or other is None or bundle.matches(i, other, "corr") is None:
                continue
            unique[m["d_sae"]] = _unique_median(bundle, i, bundle.matches(i, other, "corr")[1][:, 0])
        universality = {
            "match_tokens": int(metrics.get("match_tokens", 0)),
            "min_active": int(metrics.get("match_min_active", 0)),
            "neurons": float(metrics["universality_neuron_median"]),
            "neurons_n": int(metrics.get("universality_neuron_n", 0)),
            "features": {F: (float(metrics.get(f"universality_feature_median_{F}", math.nan)),
                             int(metrics.get(f"universality_feature_n_{F}", 0)),
                             float(metrics.get(f"universality_logit_median_{F}", math.nan))) for F in sizes},
            "unique": unique,           # {F: (median over one feature per duplicate group, n, copies left out)}
        }
    return {"members": members, "universality": universality, "splits": splits(bundle, **split_options),
            "split_limit": int(split_options.get("limit", 10))}


def _unique_median(bundle, i: int, best: np.ndarray) -> tuple[float, int, int]:
    """The median best-match correlation of dictionary i with its near-identical copies left out
    (``matching.duplicate_copies``), how many it counts, and how many copies there are."""
    from engine.analysis.matching import duplicate_copies
    from engine.bundle import open_bundle

    with open_bundle(bundle.path, i) as member:
        W = member.load_sae().W_dec.detach().cpu().numpy()
    copies = duplicate_copies(W)
    ok = np.isfinite(best) & ~copies
    return (float(np.median(best[ok])) if ok.any() else math.nan), int(ok.sum()), int(copies.sum())


def report_lines(report: dict, width: int = 60) -> list[str]:
    """The report as the lines ``superpos family BUNDLE`` prints."""
    def cut(text: str) -> str:
        return text if len(text) <= width else text[:width - 1] + "…"

    names = {i: m["name"] for i, m in enumerate(report["members"])}
    lines = ["dictionaries: " + ", ".join(f"{m['name']} ({m['d_sae']:,})" for m in report["members"])]
    u = report["universality"]
    if u is None:
        lines.append("universality: one model (train with --model-seeds 0,1 to compare two seeds)")
    else:
        lines.append(f"universality: median best-match activation correlation across the two seeds, on "
                     f"{u['match_tokens']:,} tokens, units active on >= {u['min_active']} of them")
        for F, (median, n, logit) in u["features"].items():
            line = f"  features {F:>7,}: {median:.2f}  ({n:,} matched; logit-weight corr of the matches {logit:.2f})"
            if F in u.get("unique", {}) and u["unique"][F][2]:
                um, un, copies = u["unique"][F]
                line += f"; {um:.2f} without its {copies:,} near-identical copies"
            lines.append(line)
        lines.append(f"  neurons  {'':>7}: {u['neurons']:.2f}  ({u['neurons_n']:,} matched)")
    if not report["splits"] and report.get("split_limit", 1) > 0:
        lines.append("splits: none found (a feature whose closest match is shared by >= 2 differently "
                     "labelled features of the next size)")
    for s in report["splits"]:
        lines.append(f"split {names[s.member]} #{s.feature} “{cut(s.label)}” (density {s.density:.1e}) → "
                     f"{len(s.children)} children in {names[s.member + 1]}:")
        for g, cos, label, density in s.children:
            lines.append(f"    #{g:<6} cos {cos:.2f}  density {density:.1e}  “{cut(label)}”")
    return lines
