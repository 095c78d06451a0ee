"""Neuron vs feature: why a dictionary of features reads better than the neuron basis.

For a feature: its decoder direction over the neurons (sorted bar plot — a monosemantic feature
spread over many neurons, or concentrated on a few), its most correlated neurons, and a scatter of
the feature's activation against the best-correlated neuron's on the stored sample. The scatter's
title gives r on the sample next to the stored r over the whole harvest (the number the list of
correlated units shows): since schema 5 the sample is whole contexts drawn at random across the
harvest and the two agree closely; a bundle whose sample is its first tokens (schema <= 4, a few
documents) says so in one line under the plots.
For a neuron: the features that load on it, the scatter against its best-correlated feature, and its
top examples (which, for a polysemantic neuron, mix unrelated contexts).
Population view (computed once per bundle): label-score distributions of neurons vs features, and
the distribution of each feature's largest |cosine| with a neuron axis, next to the same quantity for
random directions (a feature that *is* a neuron would sit at 1). The bundle stores no decoder norms,
so max |cos| reads every decoder row (~1 s at 131k features): ``population_job`` does that on the
app's "latest request wins" runner (``superpos_app.workers.latest_runner``: another bundle stops it)
through a bundle handle of its own, only once the pane is shown, and the histogram fills in when it
returns; the GUI thread never waits for it.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from engine.analysis.weights import max_abs_cosine
from engine.bundle import open_bundle
from engine.events import Cancelled
from superpos_app.faults import contain_faults
from superpos_app.widgets.ablation_view import AblationUnderlines
from superpos_app.panes.detail import unit_name
from superpos_app.widgets.fit import ElidedLabel, ReflowRow, scrolled
from superpos_app.widgets.explanation_view import score_source_box
from superpos_app.widgets.plots import (
    FEATURE_COLOR, NEURON_COLOR, ExportButton, bar_item, link, make_plot, parse_link, set_bars,
)
from superpos_app.widgets.token_view import TokenView
from superpos_app.plain_text import plain
from superpos_app.workers.latest_runner import LatestRunner

__all__ = ["NeuronComparePane", "population_job", "scatter_title"]

_DECODER_CHUNK = 8192
_N_RANDOM = 4096


def population_job(path, chunk: int = _DECODER_CHUNK):
    """A runner job: (max |cos| of every feature [F], of 4,096 random directions [R]).

    It opens the bundle at ``path`` itself (an h5py handle never crosses threads) and reads the
    decoder ``chunk`` rows at a time, checking its CancelToken between chunks."""
    def job(cancel):
        with open_bundle(path) as bundle:
            F, M = int(bundle.n_features), int(bundle.n_neurons)
            max_cos_F = np.empty(F, np.float32)
            for a in range(0, F, chunk):
                if cancel.cancelled:
                    raise Cancelled("another bundle was opened")
                max_cos_F[a:a + chunk] = max_abs_cosine(bundle.decoder_rows(slice(a, min(F, a + chunk))))
        random_R = max_abs_cosine(np.random.default_rng(0).standard_normal((_N_RANDOM, M)).astype(np.float32))
        return max_cos_F, random_R
    return job


def scatter_title(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str, stored_r: float) -> str:
    """The scatter's title: r on the sample next to the stored r over the harvest (the list's number),
    or which of the two never fires on the sample. The numbers come first: a narrow plot elides the
    end, and the axes name the two units."""
    harvest = f"{stored_r:+.2f} over the harvest"
    if x.std() > 0 and y.std() > 0:
        r = float(np.corrcoef(x, y)[0, 1])
        return f"r = {r:+.2f} on the sample · {harvest} ({y_name} vs {x_name}, {x.size:,} sample tokens)"
    quiet = y_name if y.std() == 0 else x_name
    return f"r = {harvest}: {quiet} never fires on the {x.size:,}-token sample"


@contain_faults(also=("show_unit", "clear", "_on_population", "_on_population_failed", "_on_cos_clicked",
                      "_on_link"))
class NeuronComparePane(QWidget):
    PANE_FAULTS = True

    def __init__(self, selection, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("neuronCompare")
        self.selection = selection
        self.bundle = None
        self.dashboard = None
        self.unit: tuple[str, int] | None = None
        self._vocab: list[str] = []
        self._sample_neurons: np.ndarray | None = None      # [S, M]
        self._sample_first_tokens = False                    # the schema <= 4 sample: the first S tokens
        self.max_cos: np.ndarray | None = None               # [F]
        self._population_pending = False
        self.population_runner = LatestRunner(self)
        self.population_runner.resultReady.connect(self._on_population)
        self.population_runner.failed.connect(self._on_population_failed)
        self._score_note = ""
        self._cos_note = ""
        self.cos_edges = np.zeros(0)
        self.weights_order = np.zeros(0, np.int64)
        self.weights_values = np.zeros(0, np.float32)
        self.scatter_xy = (np.zeros(0), np.zeros(0))
        self.random_max_cos: np.ndarray | None = None        # [R]

        self.title = ElidedLabel("Select a feature or neuron")   # elides (full text on hover)
        self.title.setObjectName("compareTitle")
        f = self.title.font()
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.2)
        self.title.setFont(f)

        # --- unit plots
        self.weights_plot = make_plot("Decoder weights over the neurons (sorted)", "rank", "weight")
        self.weights_plot.setObjectName("compareWeightsPlot")
        self.weights_item = bar_item(FEATURE_COLOR, self.weights_plot)
        self.scatter_plot = make_plot("Activation on the stored sample", "", "")
        self.scatter_plot.setObjectName("compareScatterPlot")
        self.scatter_item = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(208, 116, 43, 110))
        self.scatter_plot.addItem(self.scatter_item)
        self.sample_note = QLabel("")            # one line, only for the old first-tokens sample
        self.sample_note.setObjectName("compareSampleNote")
        self.sample_note.setTextFormat(Qt.TextFormat.PlainText)
        self.sample_note.setStyleSheet("color:#8a5a00;")
        self.sample_note.setWordWrap(True)
        self.sample_note.setVisible(False)
        self.links = QLabel("")
        self.links.setObjectName("compareLinks")
        self.links.setTextFormat(Qt.TextFormat.RichText)
        self.links.setWordWrap(True)
        self.links.linkActivated.connect(self._on_link)
        self.links.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        self.examples_title = QLabel("")
        self.examples_title.setWordWrap(True)
        self.examples = TokenView(wrap=False)
        self.examples.setObjectName("compareExamples")
        self.ablation = AblationUnderlines(self.examples, self)
        scroll = scrolled(self.examples)
        scroll.setMinimumHeight(90)
        self.examples_scroll = scroll

        # --- population plots
        self.score_plot = make_plot("Label score: neurons vs features", "auto-label score", "fraction of units")
        self.score_plot.setObjectName("compareScorePlot")
        self.score_plot.getPlotItem().addLegend(offset=(5, 5), labelTextSize="8pt")
        self.score_feature_curve = self.score_plot.plot([], [], stepMode="center", fillLevel=0,
                                                        brush=pg.mkBrush(208, 116, 43, 90),
                                                        pen=pg.mkPen(FEATURE_COLOR, width=1.5), name="features")
        self.score_neuron_curve = self.score_plot.plot([], [], stepMode="center", fillLevel=0,
                                                       brush=pg.mkBrush(59, 110, 168, 70),
                                                       pen=pg.mkPen(NEURON_COLOR, width=1.5), name="neurons")
        self.score_marker = pg.InfiniteLine(angle=90, pen=pg.mkPen("#333", width=1, style=Qt.PenStyle.DashLine))
        self.score_plot.addItem(self.score_marker)
        self.cos_plot = make_plot("Largest |cosine| of each feature with a neuron axis", "max |cos|",
                                  "fraction of features")
        self.cos_plot.setObjectName("compareCosinePlot")
        self.cos_plot.setToolTip("Click a bar to open the best-labelled feature with that largest |cosine|")
        self.cos_plot.scene().sigMouseClicked.connect(self._on_cos_clicked)
        self.cos_plot.getPlotItem().addLegend(offset=(5, 5), labelTextSize="8pt")
        self.cos_feature_curve = self.cos_plot.plot([], [], stepMode="center", fillLevel=0,
                                                    brush=pg.mkBrush(208, 116, 43, 90),
                                                    pen=pg.mkPen(FEATURE_COLOR, width=1.5), name="features")
        self.cos_random_curve = self.cos_plot.plot([], [], stepMode="center",
                                                   pen=pg.mkPen("#777", width=1.2, style=Qt.PenStyle.DashLine),
                                                   name="random directions")
        self.cos_marker = pg.InfiniteLine(angle=90, pen=pg.mkPen("#333", width=1, style=Qt.PenStyle.DashLine))
        self.cos_plot.addItem(self.cos_marker)
        self.population_note = QLabel("")
        self.population_note.setTextFormat(Qt.TextFormat.PlainText)
        self.population_note.setObjectName("comparePopulationNote")
        self.population_note.setStyleSheet("color:#555;")
        self.population_note.setWordWrap(True)

        self.export_button = ExportButton({"Decoder weights": self.weights_plot, "Scatter": self.scatter_plot,
                                           "Label scores": self.score_plot, "Max cosine": self.cos_plot})
        self.export_button.setObjectName("compareExportButton")

        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.export_button)
        grid = QGridLayout()
        # plots side by side while each keeps its title and axes readable, stacked in a narrow dock
        self.unit_plots = ReflowRow([(self.weights_plot, 1), (self.scatter_plot, 1)], min_width=250)
        self.population_plots = ReflowRow([(self.score_plot, 1), (self.cos_plot, 1)], min_width=250)
        grid.addWidget(self.unit_plots, 0, 0, 1, 2)
        links_box = QVBoxLayout()                 # the old-sample note (usually hidden) above the links
        links_box.setSpacing(1)
        links_box.addWidget(self.sample_note)
        links_box.addWidget(self.links)
        grid.addLayout(links_box, 1, 0, 1, 2)
        examples_head = QWidget()                 # the title and the ablation toggle + legend
        eh = QVBoxLayout(examples_head)
        eh.setContentsMargins(0, 0, 0, 0)
        eh.setSpacing(1)
        eh.addWidget(self.examples_title)
        eh.addWidget(self.ablation.bar)
        grid.addWidget(examples_head, 2, 0, 1, 2)
        grid.addWidget(scroll, 3, 0, 1, 2)
        pop_title = QLabel("<b>Population: neurons vs features</b>")
        self.score_source = score_source_box(self._show_scores)
        # the title and the score choice side by side, one above the other in a narrow dock
        self.population_header = ReflowRow([(pop_title, 1), (self.score_source, 0)], min_width=200)
        grid.addWidget(self.population_header, 4, 0, 1, 2)
        grid.addWidget(self.population_plots, 5, 0, 1, 2)
        grid.addWidget(self.population_note, 6, 0, 1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(3, 2)
        grid.setRowStretch(5, 3)
        # everything scrolls when the dock is short, so the pane never forces the window's height
        body = QWidget()
        body.setMinimumHeight(620)
        bl = QVBoxLayout(body)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addLayout(grid, 1)
        outer = scrolled(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(header)
        layout.addWidget(outer, 1)

        selection.unitSelected.connect(self.show_unit)
        selection.cleared.connect(self.clear)

    def sizeHint(self):
        return QSize(500, 760)            # docks start from their widget's size hint (default window: 420 + 500 + overview)

    # ------------------------------------------------------------------ bundle
    def set_bundle(self, bundle) -> None:
        self.bundle = bundle
        self._sample_neurons = None
        self._sample_first_tokens = False
        self.sample_note.setVisible(False)
        self.max_cos = None
        self._population_pending = False
        self.population_runner.drop()            # a max |cos| still being computed is for the old bundle
        self._vocab = []
        self.ablation.set_bundle(bundle)
        self.clear()
        if bundle is None:
            for c in (self.score_feature_curve, self.score_neuron_curve, self.cos_feature_curve,
                      self.cos_random_curve):
                c.setData([], [])
            self.population_note.setText("")
            return
        tok = bundle.tokenizer()
        self._vocab = tok.readable_strings()          # byte tokens as ⟨0xCD⟩
        # The population view reads every decoder row (~1 s at 131k features): only when shown.
        self._population_pending = True
        if self.isVisible():
            self._compute_population()
        cur = self.selection.current
        if cur is not None:
            self.show_unit(*cur)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._population_pending and self.bundle is not None:
            self._compute_population()
            if self.unit is not None:
                self._mark_population(*self.unit)

    def _compute_population(self) -> None:
        """Label-score histograms now (stored columns); max |cos| on a worker (see the module docstring)."""
        self._population_pending = False
        b = self.bundle
        parts = self._show_scores()
        self.population_note.setText(" · ".join([*parts, "max |cos| to a neuron: computing…"]))
        self.population_runner.submit(population_job(b.path))

    def _show_scores(self) -> list[str]:
        """The score histograms of the source the box names (offline label or an LLM score)."""
        if self.bundle is None:
            return []
        key, axis = self.score_source.currentData()
        fs = np.asarray(self.bundle.columns("feature")[key], np.float64)
        ns = np.asarray(self.bundle.columns("neuron")[key], np.float64)
        lo = 0.0 if key in ("llm_detection", "llm_fuzzing") else -0.2
        edges = np.linspace(lo, 1.0, 31)
        parts = []
        for curve, s, name in ((self.score_feature_curve, fs, "features"), (self.score_neuron_curve, ns, "neurons")):
            s = s[np.isfinite(s)]
            h, _ = np.histogram(np.clip(s, edges[0], edges[-1]), bins=edges)
            curve.setData(edges, h / max(1, s.size))
            if s.size:
                parts.append(f"median {axis} {name} {np.median(s):.2f} (n={s.size:,})")
        self.score_plot.getPlotItem().setLabel("bottom", axis)
        if self.unit is not None and self.dashboard is not None:
            self._mark_population(*self.unit)
        self._score_note = " · ".join(parts) if parts else f"no {axis} yet (superpos explain)"
        if self.max_cos is not None:
            self.population_note.setText(" · ".join(p for p in (self._score_note, self._cos_note) if p))
        return parts or [self._score_note]

    def _on_population(self, _request_id: int, out: tuple, _seconds: float) -> None:
        mc, random_mc = out
        self.max_cos, self.random_max_cos = mc, random_mc
        F = mc.size
        hi = float(max(mc.max(initial=0), random_mc.max())) * 1.05 or 1.0
        edges = np.linspace(0, min(1.0, hi), 41)
        self.cos_edges = edges
        h, _ = np.histogram(mc, bins=edges)
        self.cos_feature_curve.setData(edges, h / max(1, F))
        h, _ = np.histogram(random_mc, bins=edges)
        self.cos_random_curve.setData(edges, h / random_mc.size)
        cos_note = (f"median max |cos| to a neuron: features {np.median(mc):.2f}, "
                    f"random directions {np.median(random_mc):.2f}")
        self._cos_note = cos_note
        self.population_note.setText(" · ".join(p for p in (self._score_note, cos_note) if p))
        if self.unit is not None:
            self._mark_population(*self.unit)

    def _on_population_failed(self, _request_id: int, message: str) -> None:
        self.population_note.setText(plain(" · ".join(p for p in (self._score_note, f"max |cos|: {message}") if p), 400))

    def _load_sample(self) -> np.ndarray | None:
        if self._sample_neurons is None and self.bundle is not None:
            try:
                self._sample_neurons = self.bundle.sample_neurons()[1]
                self._sample_first_tokens = self.bundle.sample_context_starts() is None
            except Exception:  # noqa: BLE001 - no sample: the scatter stays empty
                self._sample_neurons = np.zeros((0, int(self.bundle.n_neurons)), np.float32)
            S = self._sample_neurons.shape[0]
            self.sample_note.setText(f"sample: the first {S:,} harvest tokens (schema 4), correlations on it "
                                     "may differ from the stored r")
            self.sample_note.setVisible(bool(self._sample_first_tokens and S))
        return self._sample_neurons

    def sample_feature_dense(self, i: int) -> np.ndarray:
        acts = self._load_sample()
        S = acts.shape[0]
        out = np.zeros(S, np.float32)
        idx, vals = self.bundle.sample_feature(i)
        out[idx] = vals
        return out

    # ------------------------------------------------------------------ unit
    def clear(self) -> None:
        self.dashboard = None
        self.unit = None
        self.title.setText("Select a feature or neuron")
        set_bars(self.weights_item, np.zeros(0), np.zeros(0))
        self.scatter_item.setData([], [])
        self.links.setText("")
        self.examples.clear()
        self.ablation.clear()
        self.examples_title.setText("")
        self.score_marker.setVisible(False)
        self.cos_marker.setVisible(False)

    def show_unit(self, kind: str, index: int) -> None:
        if self.bundle is None:
            return
        try:
            dash = self.bundle.dashboard(kind, index)
        except Exception as exc:  # noqa: BLE001
            self.clear()
            self.title.setText(plain(f"{unit_name(kind, index)}: {exc}", 400))
            return
        self.dashboard = dash
        self.unit = (kind, int(index))
        other = "neuron" if kind == "feature" else "feature"
        label = f" — {plain(dash.label)}" if dash.label else ""
        self.title.setText(f"{unit_name(kind, index)}{label}  vs  {other}s")

        wp = self.weights_plot.getPlotItem()
        if kind == "feature":
            w = self.bundle.decoder_rows(int(index))
            w = np.asarray(w, np.float32).reshape(-1)
            order = np.argsort(-w, kind="stable")
            vals = w[order]
            self.weights_plot.set_title(f"Decoder direction over the {w.size} neurons (sorted)")
            wp.setLabel("bottom", "neurons, by weight", **{"font-size": "8pt"})
            self.weights_order = order
        else:
            ids = dash.align_ids[dash.align_ids >= 0]
            vals = np.sort(dash.align_values[dash.align_ids >= 0])[::-1]
            self.weights_plot.set_title("Decoder weights on this neuron of the features that load on it most")
            wp.setLabel("bottom", "features, by weight", **{"font-size": "8pt"})
            self.weights_order = ids
        edges = np.arange(vals.size + 1, dtype=np.float64) - 0.5
        brushes = [pg.mkBrush(FEATURE_COLOR if v >= 0 else NEURON_COLOR) for v in vals] if vals.size <= 1024 else None
        set_bars(self.weights_item, edges, vals, brushes)
        self.weights_values = vals
        wp.enableAutoRange()

        # scatter against the best-correlated unit of the other kind
        self._scatter(kind, int(index), dash)

        corr = " &nbsp; ".join(f"{link(other, int(i))}&nbsp;<span style='color:#777'>r={v:+.2f}</span>"
                               for i, v in zip(dash.corr_ids, dash.corr_values) if i >= 0)
        align = " &nbsp; ".join(f"{link(other, int(i))}&nbsp;<span style='color:#777'>{v:+.2f}</span>"
                                for i, v in zip(dash.align_ids, dash.align_values) if i >= 0)
        if kind == "feature":
            text = (f"<b>Most correlated neurons:</b> {corr or '<i>none</i>'}<br>"
                    f"<b>Largest decoder weights:</b> {align or '<i>none</i>'} "
                    f"<span style='color:#777'>({dash.align_l1:.0%} of the L1 norm)</span>")
        else:
            text = (f"<b>Features that load on this neuron:</b> {align or '<i>none</i>'}<br>"
                    f"<b>Most correlated features:</b> {corr or '<i>none</i>'}")
        self.links.setText(text)
        self._show_examples(kind, dash)
        self._mark_population(kind, int(index))

    def _scatter(self, kind: str, index: int, dash) -> None:
        sp = self.scatter_plot.getPlotItem()
        best = int(dash.corr_ids[0]) if dash.corr_ids.size and dash.corr_ids[0] >= 0 else -1
        acts = self._load_sample()
        if best < 0 or acts is None or acts.shape[0] == 0:
            self.scatter_item.setData([], [])
            self.scatter_plot.set_title("No stored sample to compare on")
            self.scatter_xy = (np.zeros(0), np.zeros(0))
            return
        if kind == "feature":
            x, y = acts[:, best], self.sample_feature_dense(index)
            xl, yl = f"neuron {best}", f"feature {index}"
        else:
            x, y = self.sample_feature_dense(best), acts[:, index]
            xl, yl = f"feature {best}", f"neuron {index}"
        self.scatter_item.setData(x, y)
        self.scatter_xy = (x, y)
        self.scatter_plot.set_title(scatter_title(x, y, xl, yl, float(dash.corr_values[0])))
        sp.setLabel("bottom", xl, **{"font-size": "8pt"})
        sp.setLabel("left", yl, **{"font-size": "8pt"})
        sp.enableAutoRange()

    def _show_examples(self, kind: str, dash) -> None:
        c = dash.top_center
        lines, values, prefixes, centers, windows = [], [], [], [], []
        for k in range(min(10, dash.top_tokens.shape[0])):
            tokens, acts = dash.top_tokens[k], dash.top_acts[k]
            if tokens[c] < 0:
                continue
            keep = tokens >= 0
            lines.append([self._vocab[int(t)] if int(t) < len(self._vocab) else "" for t in tokens[keep]])
            values.append(acts[keep])
            prefixes.append(f"{float(acts[c]):.2f}")
            centers.append(int(np.sum(keep[:c])))
            windows.append(tokens)
        what = ("its top examples (if they share no theme, this neuron is polysemantic)" if kind == "neuron"
                else "its top examples (compare with the best neuron's by clicking it)")
        self.examples_title.setText(f"<b>{html.escape(unit_name(kind, dash.index))}</b> — {what}")
        self.examples.set_lines(lines, values, max_value=max(dash.max_act, 1e-6), prefixes=prefixes, centers=centers)
        self.ablation.show(kind, dash.index, windows)

    def _mark_population(self, kind: str, index: int) -> None:
        key = self.score_source.currentData()[0]
        score = float(self.dashboard.score) if key == "score" else float(self.bundle.columns(kind)[key][index])
        self.score_marker.setVisible(bool(np.isfinite(score)))
        if np.isfinite(score):
            self.score_marker.setValue(score)
        if kind == "feature" and self.max_cos is not None and index < self.max_cos.size:
            self.cos_marker.setValue(float(self.max_cos[index]))
            self.cos_marker.setVisible(True)
        else:
            self.cos_marker.setVisible(False)

    def _on_cos_clicked(self, event) -> None:
        vb = self.cos_plot.getPlotItem().vb
        if self.max_cos is None or not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        unit = self.feature_near_cosine(float(vb.mapSceneToView(event.scenePos()).x()))
        if unit is not None:
            self.selection.select("feature", unit)

    def feature_near_cosine(self, x: float) -> int | None:
        """The best-scored feature in the histogram bin holding max |cos| = x (None: empty bin)."""
        edges = self.cos_edges
        b = int(np.searchsorted(edges, x, side="right")) - 1
        if self.max_cos is None or not 0 <= b < edges.size - 1:
            return None
        hit = np.flatnonzero((self.max_cos >= edges[b]) & (self.max_cos <= edges[b + 1]))
        if hit.size == 0:
            return None
        score = np.nan_to_num(np.asarray(self.bundle.columns("feature")["score"], np.float64)[hit], nan=-9.0)
        return int(hit[int(np.argmax(score))])

    def _on_link(self, href: str) -> None:
        target = parse_link(href)
        if target is not None:
            self.selection.select(*target)
