"""Universality: a feature of model A beside its best match in model B (another training seed), and
the population histograms of best-match activation correlation for features versus neurons — the
paper's comparison (median 0.72 for features, 0.46 for neurons).

The matches are stored at build time (``superpos run --model-seeds 0,1``; engine.bundle.family):
for the shown dictionary, its counterpart of the same size in the other model; for neurons, the
other model's neurons; "correlation" is the activation correlation on the matching sample. Below,
the pair side by side (one above the other in a dock under 600 px): the selected unit's dashboard
(left) and its match's (right, a
``FeatureDetailPane`` of the other dictionary); "Open" makes the match the window's current feature
(``openFeature(dictionary, feature)``).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from engine.bundle import open_bundle
from engine.bundle.schema import BundleError
from superpos_app.faults import contain_faults
from superpos_app.panes.detail import FeatureDetailPane
from superpos_app.widgets.plots import FEATURE_COLOR, NEURON_COLOR, make_plot
from superpos_app.selection import Selection
from superpos_app.widgets.fit import ReflowRow, scrolled

__all__ = ["UniversalityPane", "best_match_histogram"]

BINS = np.linspace(-0.5, 1.0, 31)     # activation matches are >= 0; logit-weight ones go negative (below -0.5: first bin)


def best_match_histogram(values_K: np.ndarray | None) -> tuple[np.ndarray, float]:
    """(fraction per bin of BINS, median) of each unit's best-match value (NaN rows skipped)."""
    if values_K is None or not np.size(values_K):
        return np.zeros(len(BINS) - 1), float("nan")
    best = np.asarray(values_K, np.float64)[:, 0]
    best = best[np.isfinite(best)]
    if not best.size:
        return np.zeros(len(BINS) - 1), float("nan")
    counts, _ = np.histogram(np.clip(best, BINS[0], BINS[-1]), BINS)
    return counts / best.size, float(np.median(best))


@contain_faults(also=("show_unit", "_open"))
class UniversalityPane(QWidget):
    PANE_FAULTS = True
    openFeature = Signal(int, int)            # (dictionary, feature)

    def __init__(self, selection, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("universality")
        self.selection = selection
        self.bundle = None
        self.other = None                     # the counterpart dictionary's Bundle
        self.other_index: int | None = None
        self.feature_matches = None
        self.neuron_matches = None
        self.match: tuple[str, int, float] | None = None

        self.note = QLabel("")
        self.note.setObjectName("universalityNote")
        self.note.setWordWrap(True)
        self.plot = make_plot("best-match correlation across seeds", "correlation with the best match",
                              "fraction of units", height=170)
        self.plot.setMaximumHeight(220)
        self.plot.addLegend(offset=(10, 5), brush=pg.mkBrush(255, 255, 255, 230), pen=pg.mkPen(200, 200, 200),
                            labelTextColor=(60, 60, 60))    # opaque: no curve runs through the names
        self.feature_curve = self.plot.plot([], [], stepMode="center", pen=pg.mkPen(FEATURE_COLOR, width=2),
                                            name="features")
        self.neuron_curve = self.plot.plot([], [], stepMode="center", pen=pg.mkPen(NEURON_COLOR, width=2),
                                           name="neurons")
        self.logit_curve = self.plot.plot([], [], stepMode="center", name="features' logit weights",
                                          pen=pg.mkPen(FEATURE_COLOR, width=1.5, style=Qt.PenStyle.DashLine))
        self.match_label = QLabel("")
        self.match_label.setObjectName("universalityMatch")
        self.match_label.setWordWrap(True)
        self.open_button = QPushButton("Open")
        self.open_button.setObjectName("universalityOpen")
        self.open_button.setToolTip("Make the best match the current feature of every pane")
        self.open_button.clicked.connect(self._open)
        self.open_button.setEnabled(False)
        self.detail = FeatureDetailPane(Selection())           # the match, in the other dictionary
        self.detail.setObjectName("universalityDetail")
        self.own = FeatureDetailPane(Selection())              # the selected unit, in this one
        self.own.setObjectName("universalityOwn")
        self.own_label = QLabel("")
        self.own_label.setObjectName("universalityOwnLabel")
        self.own_label.setWordWrap(True)

        def column(header, pane):
            box = QWidget()
            lay = QVBoxLayout(box)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addLayout(header) if isinstance(header, QHBoxLayout) else lay.addWidget(header)
            lay.addWidget(pane, 1)
            return box

        row = QHBoxLayout()
        row.addWidget(self.match_label, 1)
        row.addWidget(self.open_button)
        # side by side from 600 px; one above the other in a narrower dock (nothing cut off)
        self.pair = ReflowRow([(column(self.own_label, self.own), 1), (column(row, self.detail), 1)], min_width=300)
        self.pair.setObjectName("universalityPair")
        body = QWidget()
        inner = QVBoxLayout(body)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.note)
        inner.addWidget(self.plot)
        inner.addWidget(self.pair, 1)
        scroll = scrolled(body)           # histograms above a whole dashboard: scroll, never force the dock taller
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(scroll)
        selection.unitSelected.connect(self.show_unit)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        # no wider than the detail pane it is tabbed with: the central overview keeps its width
        return QSize(440, 520)

    def set_bundle(self, bundle) -> None:
        if self.other is not None:
            self.detail.set_bundle(None)
            self.other.close()
        self.own.set_bundle(None)
        self.own_label.setText("")
        self.bundle, self.other, self.other_index = bundle, None, None
        self.feature_matches = self.neuron_matches = self.logit = self.match = None
        self.match_label.setText("")
        self.open_button.setEnabled(False)
        self.feature_curve.setData([], [])
        self.neuron_curve.setData([], [])
        self.logit_curve.setData([], [])
        if bundle is None:
            self.note.setText("")
            return
        me = int(getattr(bundle, "dictionary", 0))
        j = bundle.family.counterpart(me)
        if j is None:
            self.note.setText("This bundle holds one model. Train two seeds — superpos run --model-seeds 0,1 "
                              "(with any --d-sae sizes) — to compare each feature with its best match in the "
                              "other model, and features with neurons.")
            return
        self.other_index = j
        self.other = open_bundle(bundle.path, j)
        self.detail.set_bundle(self.other)
        self.own.set_bundle(bundle)
        names = bundle.family.names()
        model_a = bundle.family.members[me]["model"]
        model_b = bundle.family.members[j]["model"]
        self.feature_matches = bundle.matches(me, j, "corr")
        self.neuron_matches = bundle.neuron_matches(model_a, model_b)
        self.logit = bundle.matches(me, j, "logit")       # schema 4; None in older families
        f_hist, f_med = best_match_histogram(None if self.feature_matches is None else self.feature_matches[1])
        n_hist, n_med = best_match_histogram(None if self.neuron_matches is None else self.neuron_matches[1])
        self.feature_curve.setData(BINS, f_hist)
        self.neuron_curve.setData(BINS, n_hist)
        l_hist, l_med = best_match_histogram(None if self.logit is None else self.logit[1])
        if self.logit is not None:
            self.logit_curve.setData(BINS, l_hist)
        self.medians = (f_med, n_med)
        m = bundle.metrics
        sample = (f"{int(m['match_tokens']):,} held-out tokens in random contexts; units active on fewer than "
                  f"{int(m.get('match_min_active', 0))} of them are left out" if "match_tokens" in m
                  else "the harvest's shared tokens")
        logit = (f"; the logit weights of those matches {l_med:.2f}" if self.logit is not None else
                 " (logit-weight correlation: rematch with superpos family BUNDLE --rematch)")
        self.note.setText(f"{names[me]} against {names[j]} (the other seed's dictionary of the same size), on "
                          f"{sample}. Median best-match correlation: features {f_med:.2f}, neurons {n_med:.2f} "
                          f"(the paper: 0.72 and 0.46){logit}.")
        current = self.selection.current
        if current is not None:
            self.show_unit(*current)

    def show_unit(self, kind: str, index: int) -> None:
        if self.other is None:
            return
        names = self.bundle.family.names()
        me = int(getattr(self.bundle, "dictionary", 0))
        self.own_label.setText(f"{names[me]} {kind} {index} (selected)")
        self.own.selection.select(kind, index)
        matches = self.feature_matches if kind == "feature" else self.neuron_matches
        if matches is None or not 0 <= index < len(matches[0]) or matches[0][index, 0] < 0:
            self.match = None
            self.match_label.setText(f"{kind} {index} has no match (too rare on the matching sample, or no "
                                     "positive correlation)")
            self.open_button.setEnabled(False)
            return
        j, corr = int(matches[0][index, 0]), float(matches[1][index, 0])
        if j >= self.other.n_units(kind):
            raise BundleError(f"{self.bundle.path}: the stored match of {kind} {index} is {kind} {j}, beyond "
                              f"the {self.other.n_units(kind)} of the other model; the file may be damaged")
        self.match = (kind, j, corr)
        other = self.bundle.family.names()[self.other_index]
        label = self.other.column(kind, "labels", j)
        logit = ""
        if kind == "feature" and self.logit is not None and index < len(self.logit[1]):
            logit = f", logit weights {float(self.logit[1][index, 0]):.2f}"
        self.match_label.setText(f"Best match of {kind} {index} in {other}: {kind} {j}, activation correlation "
                                 f"{corr:.2f} on the matching sample{logit} — {label}")
        self.match_label.setToolTip("activation correlation: Pearson's r of the two units' activations over the "
                                    "matching sample's tokens; logit weights: r of their direct effects on the logits")
        self.open_button.setEnabled(kind == "feature")
        self.detail.selection.select(kind, j)

    def _open(self) -> None:
        if self.match is not None and self.match[0] == "feature":
            self.openFeature.emit(int(self.other_index), self.match[1])
