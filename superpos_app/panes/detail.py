"""Feature detail: the dashboard of one feature or neuron, as in the paper's visualizer.

Header (id, label, score, density, max activation); the activation histogram — drag the shaded
region on it to list the stored examples whose activation lies in that range; the logit-weight
histogram and the top/bottom 10 logit effects; neuron alignment and correlated units as links;
top and interval examples with each token shaded by its activation (tooltip: the value) and
underlined by the effect of ablating the unit on its log-likelihood (``ablation_view.py``).
A neuron gets the same dashboard; its links then point to features.
"""

from __future__ import annotations

import html
import json

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QGridLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout,
    QWidget,
)

from engine.interop.neuronpedia import dashboard_to_neuronpedia
from engine.stats import Dashboard
from superpos_app.faults import contain_faults
from superpos_app.widgets.ablation_view import AblationUnderlines
from superpos_app.widgets.fit import ElidedLabel, ReflowRow, scrolled
from superpos_app.widgets.explanation_view import ExplanationLabel
from superpos_app.widgets.plots import (
    ACCENT, NEURON_COLOR, ExportButton, bar_item, link, make_plot, parse_link, set_bars,
)
from superpos_app.plain_text import display_token
from superpos_app.widgets.token_view import TokenView
from superpos_app.plain_text import plain

__all__ = ["FeatureDetailPane", "unit_name"]

MAX_RANGE_EXAMPLES = 40


def unit_name(kind: str, index: int) -> str:
    return f"{'Feature' if kind == 'feature' else 'Neuron'} {int(index)}"


def _tok(s: str) -> str:
    """A token for lists: quoted so leading spaces show, newlines as ↵."""
    return "'" + display_token(s) + "'"


@contain_faults(also=("show_unit", "clear", "_on_link", "_on_region_changed", "copy_json"))
class FeatureDetailPane(QWidget):
    PANE_FAULTS = True

    def __init__(self, selection, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("featureDetail")
        self.selection = selection
        self.bundle = None
        self.dashboard: Dashboard | None = None
        self._vocab: list[str] = []
        self._raw_vocab: tuple[str, ...] = ()
        self._region_full = True

        # --- header
        self.title = ElidedLabel("Select a feature")     # elides (full text on hover), never wraps per word
        self.title.setObjectName("detailTitle")
        f = self.title.font()
        f.setPointSizeF(f.pointSizeF() * 1.35)
        f.setBold(True)
        self.title.setFont(f)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.title.setTextFormat(Qt.TextFormat.PlainText)         # labels come from files: never markup
        self.stats = QLabel("")
        self.stats.setTextFormat(Qt.TextFormat.PlainText)
        self.stats.setObjectName("detailStats")
        self.stats.setStyleSheet("color: #555;")
        self.stats.setWordWrap(True)
        self.copy_button = QPushButton("Copy as JSON")
        self.copy_button.setObjectName("copyJsonButton")
        self.copy_button.setToolTip("Copy this dashboard as Neuronpedia-style JSON")
        self.copy_button.clicked.connect(self.copy_json)

        # --- plots (created once; updates only set data)
        self.act_plot = make_plot("Activation histogram", "activation", "tokens")
        self.act_plot.setObjectName("actHistPlot")
        self.act_plot.setToolTip("Drag the shaded band (or its edges) to list the stored examples whose "
                                 "activation lies in that range")
        self.act_hist_item = bar_item(ACCENT, self.act_plot)
        self.region = pg.LinearRegionItem(values=(0, 1), brush=pg.mkBrush(59, 110, 168, 22),
                                          pen=pg.mkPen(NEURON_COLOR, width=1.5))
        self.region.setZValue(10)
        self.act_plot.addItem(self.region)
        self.region.sigRegionChanged.connect(self._on_region_changed)
        self.logit_plot = make_plot("Logit weights", "logit weight", "tokens")
        self.logit_plot.setToolTip("The unit's direct effect on every token's logit (through W_out and the "
                                   "unembedding); red: suppressed, blue: promoted")
        self.logit_plot.setObjectName("logitHistPlot")
        self.logit_hist_item = bar_item("#888888", self.logit_plot)
        self.export_button = ExportButton({"Activation histogram": self.act_plot,
                                           "Logit histogram": self.logit_plot})
        self.export_button.setObjectName("detailExportButton")

        # the title has the whole width; the buttons sit by the stats, or under them in a narrow dock
        header = QVBoxLayout()
        header.setSpacing(2)
        header.addWidget(self.title)
        buttons = QWidget()
        bl = QHBoxLayout(buttons)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addStretch(1)
        bl.addWidget(self.copy_button)
        bl.addWidget(self.export_button)
        buttons.setFixedWidth(bl.sizeHint().width())
        self.header_row = ReflowRow([(self.stats, 1), (buttons, 0)], min_width=240)
        header.addWidget(self.header_row)

        # --- logit lists and links
        self.pos_label = _rich_label("detailPositiveLogits")
        self.neg_label = _rich_label("detailNegativeLogits")
        self.align_label = _rich_label("detailAlignment")
        self.corr_label = _rich_label("detailCorrelated")
        for lab in (self.align_label, self.corr_label):
            lab.linkActivated.connect(self._on_link)
            lab.setWordWrap(True)

        self._logits_box = QWidget()
        logits = QHBoxLayout(self._logits_box)
        logits.setContentsMargins(0, 0, 0, 0)
        logits.addWidget(self.pos_label, 1)
        logits.addWidget(self.neg_label, 1)

        # One page that scrolls, like a web dashboard: header and buttons stay on top; plots,
        # logit lists, links and every example follow (the examples view is as tall as its text).
        content = QWidget()
        tl = QVBoxLayout(content)
        tl.setContentsMargins(0, 0, 4, 0)
        self.explanation = ExplanationLabel()
        tl.addWidget(self.explanation)
        # side by side while each plot keeps its title and axis numbers, stacked in a narrow dock
        self.plots_row = ReflowRow([(self.act_plot, 3), (self.logit_plot, 2)], min_width=210, row_height=165)
        tl.addWidget(self.plots_row)
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.addWidget(self._logits_box, 0, 0, 2, 1)
        grid.addWidget(self.align_label, 0, 1)
        grid.addWidget(self.corr_label, 1, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        self._grid = grid
        self._narrow = False
        tl.addLayout(grid)

        # --- examples
        self.examples_title = QLabel("Examples")
        self.examples_title.setObjectName("examplesTitle")
        self.examples_title.setWordWrap(True)
        self.examples = TokenView(wrap=False)
        self.examples.setObjectName("detailExamples")
        self.examples.placeholder = "Select a feature or neuron to see the texts it fires on."
        self.ablation = AblationUnderlines(self.examples, self)
        tl.addSpacing(6)
        tl.addWidget(self.examples_title)
        tl.addWidget(self.ablation.bar)
        tl.addWidget(self.examples)
        tl.addStretch(1)
        scroll = scrolled(content)
        self.examples_scroll = scroll

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(header)
        layout.addWidget(scroll, 1)

        selection.unitSelected.connect(self.show_unit)
        selection.cleared.connect(self.clear)
        self.clear()

    def sizeHint(self) -> QSize:
        return QSize(500, 760)            # docks start from their widget's size hint (default window: 420 + 500 + overview)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange(event.size().width())

    def _arrange(self, width: int) -> None:
        """Two columns (logit lists | links) when wide, one when the dock is narrow."""
        narrow = width < 640
        if narrow == self._narrow:
            return
        self._narrow = narrow
        g = self._grid
        for w in (self._logits_box, self.align_label, self.corr_label):
            g.removeWidget(w)
        if narrow:
            g.addWidget(self._logits_box, 0, 0)
            g.addWidget(self.align_label, 1, 0)
            g.addWidget(self.corr_label, 2, 0)
            g.setColumnStretch(1, 0)
        else:
            g.addWidget(self._logits_box, 0, 0, 2, 1)
            g.addWidget(self.align_label, 0, 1)
            g.addWidget(self.corr_label, 1, 1)
            g.setColumnStretch(1, 1)

    # ------------------------------------------------------------------ bundle / unit
    def set_bundle(self, bundle) -> None:
        self.bundle = bundle
        self._vocab = []
        self._raw_vocab = ()
        self.explanation.set_bundle(bundle)
        self.ablation.set_bundle(bundle)
        if bundle is not None:
            tok = bundle.tokenizer()
            self._vocab = tok.readable_strings()          # shown: byte tokens as ⟨0xCD⟩
            self._raw_vocab = tok.vocab_strings()         # exported: the engine's token strings
        self.clear()
        cur = self.selection.current
        if bundle is not None and cur is not None:
            self.show_unit(*cur)

    def token_str(self, i: int) -> str:
        return self._vocab[i] if 0 <= i < len(self._vocab) else ""

    def clear(self) -> None:
        self.dashboard = None
        self.title.setText("Select a feature or neuron")
        self.stats.setText("Search for a feature, or click one in the lens.")
        self.explanation.show_unit(None, None)
        for item in (self.act_hist_item, self.logit_hist_item):
            set_bars(item, np.zeros(0), np.zeros(0))
        for lab in (self.pos_label, self.neg_label, self.align_label, self.corr_label):
            lab.setText("")
        self.examples.clear()
        self.ablation.clear()
        self.examples_title.setText("Examples")
        self.copy_button.setEnabled(False)

    def show_unit(self, kind: str, index: int) -> None:
        if self.bundle is None:
            return
        try:
            dash = self.bundle.dashboard(kind, index)
        except Exception as exc:  # noqa: BLE001 - a damaged row: say so in the pane
            self.clear()
            self.title.setText(unit_name(kind, index))
            self.stats.setText(plain(f"Could not read this unit: {exc}", 400))
            return
        self.dashboard = dash
        self.copy_button.setEnabled(True)
        other = "neuron" if kind == "feature" else "feature"

        label = dash.label or "(no label)"
        self.title.setText(f"{unit_name(kind, index)} — {plain(label)}")
        score = "—" if not np.isfinite(dash.score) else f"{dash.score:.2f}"
        dens = f"{dash.density:.3g}" + (f" (log10 {np.log10(dash.density):.2f})" if dash.density > 0 else " — dead")
        self.stats.setText(f"score {score}  ·  density {dens}  ·  max act {dash.max_act:.3g}  ·  "
                           f"mean act {dash.mean_act:.3g}")
        self.explanation.show_unit(kind, index)

        for plot in (self.act_plot, self.logit_plot):
            plot.reset_button.reset()                # a new unit starts from its whole plot, not the last zoom
        set_bars(self.act_hist_item, dash.act_hist_edges, dash.act_hist)
        hi = float(dash.act_hist_edges[-1]) if dash.act_hist_edges.size else 1.0
        self.act_plot.getPlotItem().setXRange(0, hi or 1.0, padding=0.02)
        self.act_plot.getPlotItem().enableAutoRange(axis="y")
        self._set_region_full()

        edges = dash.logit_hist_edges
        brushes = None
        if edges.size > 1 and np.isfinite(edges).all():
            mids = (edges[:-1] + edges[1:]) / 2
            brushes = [pg.mkBrush("#c0504d") if m < 0 else pg.mkBrush("#4f81bd") for m in mids]
        set_bars(self.logit_hist_item, edges, dash.logit_hist, brushes)
        self.logit_plot.getPlotItem().enableAutoRange()

        self.pos_label.setText(self._logit_html("Promoted tokens", dash.logit_top_ids, dash.logit_top_values, "#2f6bb3"))
        self.neg_label.setText(self._logit_html("Suppressed tokens", dash.logit_bottom_ids, dash.logit_bottom_values,
                                                "#b33b2f"))
        if kind == "feature":
            align_title = f"Neuron alignment (largest decoder weights; {dash.align_l1:.0%} of L1)"
            corr_title = "Most correlated neurons (Pearson r)"
        else:
            align_title = f"Features that load on this neuron (decoder weight; {dash.align_l1:.0%} of L1)"
            corr_title = "Most correlated features (Pearson r)"
        self.align_label.setText(self._links_html(align_title, other, dash.align_ids, dash.align_values))
        self.corr_label.setText(self._links_html(corr_title, other, dash.corr_ids, dash.corr_values))
        self._show_all_examples()

    # ------------------------------------------------------------------ pieces
    def _logit_html(self, title, ids, values, color) -> str:
        rows = "".join(
            f"<tr><td style='color:{color}; padding-right:8px' align='right'>{v:+.3f}</td>"
            f"<td><code>{html.escape(_tok(self.token_str(int(i))))}</code></td></tr>"
            for i, v in zip(ids, values) if int(i) >= 0)
        return f"<b>{title}</b><table cellspacing='0' cellpadding='0'>{rows}</table>"

    def _links_html(self, title, kind, ids, values) -> str:
        parts = [f"{link(kind, int(i))}&nbsp;<span style='color:#777'>{v:+.2f}</span>"
                 for i, v in zip(ids, values) if int(i) >= 0]
        return f"<b>{title}</b><br>" + (" &nbsp; ".join(parts) if parts else "<i>none</i>")

    def _on_link(self, href: str) -> None:
        target = parse_link(href)
        if target is not None:
            self.selection.select(*target)

    def _show_examples(self, items: list) -> None:
        """One line per item: a heading (str) or an example window (tokens [W], acts [W])."""
        dash = self.dashboard
        c = dash.top_center
        lines, values, prefixes, centers, windows = [], [], [], [], []
        for item in items:
            if isinstance(item, str):
                lines.append([]); values.append(np.zeros(0)); prefixes.append(item); centers.append(-1)
                windows.append(None)
                continue
            tokens, acts = item
            toks, vals, center = dash.trim(tokens, acts)
            lines.append([self.token_str(int(t)) for t in toks]); values.append(vals)
            prefixes.append(f"{float(acts[c]):.2f}"); centers.append(center); windows.append(tokens)
        self.examples.set_lines(lines, values, max_value=max(dash.max_act, 1e-6), prefixes=prefixes,
                                centers=centers)
        self.ablation.show(dash.kind, dash.index, windows)        # underlines arrive from a worker

    def _show_all_examples(self) -> None:
        dash = self.dashboard
        items = ["Top activations", *dash.top_examples()]
        for i, lo, hi, found in dash.interval_examples():
            items += [f"Subsample interval {i}: activation in ({lo:.2f}, {hi:.2f}]", *found]
        n = sum(1 for item in items if not isinstance(item, str))
        self.examples_title.setText(f"Examples ({n}): background = activation, framed = the example's token")
        self.examples_title.setToolTip("Drag the band on the activation histogram to list only the examples "
                                       "whose activation lies in that range")
        self._show_examples(items)
        self.examples_scroll.verticalScrollBar().setValue(0)

    def _set_region_full(self) -> None:
        hi = float(self.dashboard.max_act) if self.dashboard is not None else 1.0
        self.region.blockSignals(True)
        self.region.setBounds((0, max(hi, 1e-6)))
        self.region.setRegion((0, max(hi, 1e-6)))
        self.region.blockSignals(False)
        self._region_full = True

    def set_region(self, lo: float, hi: float) -> None:
        """Select an activation range (as dragging the band does)."""
        self.region.setRegion((lo, hi))

    def _on_region_changed(self) -> None:
        dash = self.dashboard
        if dash is None:
            return
        lo, hi = self.region.getRegion()
        full = lo <= 1e-9 and hi >= dash.max_act * (1 - 1e-6)
        if full:
            if not self._region_full:
                self._region_full = True
                self._show_all_examples()
            return
        self._region_full = False
        found = dash.examples_in_range(lo, hi)
        more = f", first {MAX_RANGE_EXAMPLES}" if len(found) > MAX_RANGE_EXAMPLES else ""
        self.examples_title.setText(f"Stored examples with activation in ({lo:.2f}, {hi:.2f}]: {len(found)}{more}"
                                    "  — drag the band to the full range to see all")
        self._show_examples(found[:MAX_RANGE_EXAMPLES])

    # ------------------------------------------------------------------ export
    def dashboard_json(self) -> dict | None:
        if self.dashboard is None:
            return None
        raw = self._raw_vocab
        return dashboard_to_neuronpedia(self.dashboard, lambda i: raw[i] if 0 <= i < len(raw) else "", model_id=f"superpos:{self.bundle.path.stem}")

    def copy_json(self) -> str:
        data = self.dashboard_json()
        if data is None:
            return ""
        text = json.dumps(data, indent=1)
        QGuiApplication.clipboard().setText(text)
        return text


def _rich_label(name: str) -> QLabel:
    lab = QLabel()
    lab.setObjectName(name)
    lab.setTextFormat(Qt.TextFormat.RichText)
    lab.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    lab.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    return lab
