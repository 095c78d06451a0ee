"""The overview pane: a bundle's headline numbers, its feature-density histogram and training curves.

Metric values are QLabels named ``metric_<key>`` (e.g. ``metric_loss_recovered``) so tests and
screenshots can find them. Numbers come straight from ``Bundle.metrics`` / ``Bundle.config``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QBoxLayout, QFrame, QGridLayout, QLabel, QScrollArea, QSizePolicy,
                               QVBoxLayout, QWidget)

from engine.config import recipe_setting
from engine.stats import ULTRALOW_DENSITY
from superpos_app.widgets.curves import CurvePanel, configure_pyqtgraph
from superpos_app.widgets.plots import make_plot
from superpos_app.faults import contain_faults
from superpos_app.plain_text import plain

__all__ = ["OverviewPane", "METRICS", "format_metric"]

# key, caption, kind (pct | float | int), tooltip
METRICS: list[tuple[str, str, str, str]] = [
    ("loss_recovered", "Loss recovered", "pct",
     "Share of the loss gap between zero-ablating the MLP and the clean model that the SAE's "
     "reconstruction recovers: (L_zero - L_sae) / (L_zero - L_clean)."),
    ("mse", "MSE (raw activations)", "float",
     "Mean squared error per element of the SAE reconstruction of the MLP activations, in their own units, on "
     "held-out tokens. The training curve's 'normalised MSE' divides by the activations' mean squared size "
     "(the scale the SAE trains at), so it is a larger number for the same error."),
    ("fvu", "Fraction of variance unexplained", "pct", "MSE divided by the variance of the activations."),
    ("l0", "L0 (features / token)", "float", "Average number of active features per token."),
    ("dead_fraction", "Dead features", "pct", "Features that never fired on any of the harvested tokens."),
    ("ultralow_fraction", "Ultralow-density features", "pct", f"Features that fire, but on fewer than {ULTRALOW_DENSITY:g} of tokens (dead ones are counted apart)."),
    ("loss_clean", "Model loss (clean)", "float", "Next-token loss of the transformer on held-out text."),
    ("loss_sae", "Model loss (SAE spliced in)", "float", "Loss with the MLP activations replaced by the SAE's reconstruction."),
]


def format_metric(value, kind: str) -> str:
    if value is None:
        return "—"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not np.isfinite(value):
        return "—"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return f"{int(round(value)):,}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}"


class _MetricCard(QFrame):
    def __init__(self, key: str, caption: str, tooltip: str) -> None:
        super().__init__()
        self.setObjectName("metricCard")
        self.setToolTip(tooltip)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(2)
        self.value = QLabel("—")
        self.value.setObjectName(f"metric_{key}")
        self.value.setProperty("role", "metricValue")
        self.caption = QLabel(caption)
        self.caption.setProperty("role", "metricCaption")
        self.caption.setWordWrap(True)
        layout.addWidget(self.value)
        layout.addWidget(self.caption)


def _section(title: str) -> QLabel:
    label = QLabel(title)
    label.setProperty("role", "sectionTitle")
    return label


@contain_faults(also=("set_bundle",))
class OverviewPane(QWidget):
    PANE_FAULTS = True                    # a read error shows at the top of the overview (faults.py)

    """Shows one bundle (``set_bundle(bundle)``; ``None`` clears it)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.setObjectName("overviewPane")
        self.bundle = None

        # In a scroll area so the pane never forces a minimum size on the window (panes dock beside it).
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        body = QWidget()
        body.setObjectName("overviewBody")
        scroll.setWidget(body)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(24, 16, 24, 16)
        layout.setSpacing(10)

        self.title = QLabel("")
        self.title.setObjectName("overviewTitle")
        self.title.setProperty("role", "pageTitle")
        self.subtitle = QLabel("")
        self.subtitle.setObjectName("overviewSubtitle")
        self.subtitle.setProperty("role", "muted")
        self.subtitle.setWordWrap(True)
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)

        grid = self.card_grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(10)
        self.cards: dict[str, _MetricCard] = {}
        for i, (key, caption, _kind, tip) in enumerate(METRICS):
            card = _MetricCard(key, caption, tip)
            self.cards[key] = card
            grid.addWidget(card, i // 4, i % 4)
        layout.addLayout(grid)

        layout.addWidget(_section("Run"))
        self.facts = QGridLayout()
        self.facts.setHorizontalSpacing(18)
        self.facts.setVerticalSpacing(4)
        self.fact_labels: dict[str, QLabel] = {}
        self._fact_pairs: list[tuple[QLabel, QLabel]] = []
        facts = [("features", "Features"), ("neurons", "MLP neurons"), ("model", "Model"),
                 ("tokens", "Training tokens"), ("recipe", "SAE recipe"), ("sae_acts", "SAE activations"),
                 ("corpus", "Corpus"), ("harvest", "Harvested tokens")]
        for i, (key, caption) in enumerate(facts):
            cap = QLabel(caption)
            cap.setProperty("role", "factCaption")
            val = QLabel("—")
            val.setObjectName(f"fact_{key}")
            val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            val.setWordWrap(True)
            self.fact_labels[key] = val
            self._fact_pairs.append((cap, val))
        self._fact_columns = 0
        self._place_facts(2)
        layout.addLayout(self.facts)

        plots = self.plots_row = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        plots.setSpacing(14)
        left = QVBoxLayout()
        left.addWidget(_section("Feature density"))
        self.density_plot = make_plot("", "log10(feature density)", "features", height=160)
        self.density_plot.setObjectName("densityHistogram")
        self.density_plot.setMenuEnabled(False)
        # Ignored: the plots take what height is left instead of asking for their (large) size hint,
        # so the page fits the window without scrolling whenever it can.
        self.density_plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.density_plot.showGrid(x=True, y=True, alpha=0.15)
        self.density_bars = pg.BarGraphItem(x=[0.0], height=[0.0], width=0.1, brush="#3b6ea8", pen=pg.mkPen("#2d5784"))
        self.density_plot.addItem(self.density_bars)
        self.density_note = QLabel("")
        self.density_note.setProperty("role", "muted")
        self.density_note.setWordWrap(True)
        left.addWidget(self.density_plot, 1)
        left.addWidget(self.density_note)
        right = QVBoxLayout()
        right.addWidget(_section("Training curves"))
        self.curves = CurvePanel(x_label="")
        self.curves.setObjectName("overviewCurves")
        self.curves.setMinimumHeight(220)
        self.curves.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        right.addWidget(self.curves, 1)
        plots.addLayout(left, 2)
        plots.addLayout(right, 3)
        layout.addLayout(plots, 1)
        self._columns = 4
        self.density_counts = np.zeros(0)
        for lab in (self.title, self.subtitle, *self.fact_labels.values()):
            lab.setTextFormat(Qt.TextFormat.PlainText)     # names and paths come from files: never markup

    # --- layout ----------------------------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self._reflow(event.size().width())

    def _reflow(self, width: int) -> None:
        """Four metric cards a row and plots side by side when wide; two a row, stacked, when narrow;
        one card a row in a narrow central area (the default window with its docks)."""
        columns = 4 if width >= 900 else 2 if width >= 460 else 1
        if columns != self._columns:
            self._columns = columns
            for i, (key, *_rest) in enumerate(METRICS):
                card = self.cards[key]
                self.card_grid.removeWidget(card)
                self.card_grid.addWidget(card, i // columns, i % columns)
        self._place_facts(2 if width >= 560 else 1)
        direction = QBoxLayout.Direction.LeftToRight if width >= 900 else QBoxLayout.Direction.TopToBottom
        if self.plots_row.direction() != direction:
            self.plots_row.setDirection(direction)

    def _place_facts(self, pairs_per_row: int) -> None:
        """The run's facts as caption/value pairs, two a row, or one a row when narrow."""
        if pairs_per_row == self._fact_columns:
            return
        self._fact_columns = pairs_per_row
        for i, (cap, val) in enumerate(self._fact_pairs):
            self.facts.removeWidget(cap)
            self.facts.removeWidget(val)
            row, col = i // pairs_per_row, (i % pairs_per_row) * 2
            self.facts.addWidget(cap, row, col, Qt.AlignmentFlag.AlignTop)
            self.facts.addWidget(val, row, col + 1, Qt.AlignmentFlag.AlignTop)
        self.facts.setColumnStretch(1, 1)
        self.facts.setColumnStretch(3, 1 if pairs_per_row > 1 else 0)

    # --- data ------------------------------------------------------------------------------------
    def set_bundle(self, bundle) -> None:
        self.bundle = bundle
        if bundle is None:
            self.title.setText("")
            self.subtitle.setText("")
            for card in self.cards.values():
                card.value.setText("—")
            for label in self.fact_labels.values():
                label.setText("—")
            self.density_bars.setOpts(x=[0.0], height=[0.0], width=0.1)
            self.density_counts = np.zeros(0)
            self.curves.clear_data()
            return
        metrics = bundle.metrics
        cfg = bundle.config
        path = Path(bundle.path)
        self.title.setText(plain(path.name, 120))
        info = bundle.info
        bits = [plain(str(path.parent), 200)]
        if info.get("created"):
            bits.append(f"created {str(info['created'])[:16].replace('T', ' ')}")
        if info.get("extra_info", {}).get("synthetic") or metrics.get("synthetic"):
            bits.append("synthetic statistics (for testing)")
        bits.append(f"format v{bundle.schema_version}")
        self.subtitle.setText(" · ".join(bits))
        for key, _caption, kind, _tip in METRICS:
            self.cards[key].value.setText(format_metric(metrics.get(key), kind))
        self._show_dead(bundle, metrics)

        facts = self.fact_labels
        facts["features"].setText(f"{int(bundle.n_features):,}")
        facts["neurons"].setText(f"{int(bundle.n_neurons):,}")
        m, s = cfg.model, cfg.sae
        facts["model"].setText(f"1 layer · d_model {m.d_model} · {m.n_heads} heads · d_mlp {m.d_mlp} · "
                               f"vocab {m.vocab_size:,} · context {m.n_ctx}")
        facts["tokens"].setText(f"{cfg.train.tokens:,}")
        detail = recipe_setting(s)
        facts["recipe"].setText(plain(f"{s.recipe} ({detail}) · {s.d_sae:,} features" if detail else s.recipe))
        facts["sae_acts"].setText(f"{s.n_activations:,}")
        facts["corpus"].setText(plain(_corpus_text(cfg.corpus.spec), 300))
        facts["harvest"].setText(f"{int(info.get('n_tokens') or cfg.harvest.n_tokens):,}")
        self._show_density(bundle)
        self._show_curves(bundle)

    def _show_dead(self, bundle, metrics) -> None:
        """"Dead" in its one meaning (engine.stats.DeadCount): never fired on the harvested tokens, the
        count the search filter, `superpos info` and `superpos eval` show; the token count on hover."""
        card = self.cards["dead_fraction"]
        try:
            dead = bundle.dead_count("feature")
        except Exception:  # noqa: BLE001 - an unreadable table: the evaluation's figure stays
            return
        card.value.setText(format_metric(dead.fraction, "pct"))
        tip = dead.sentence() + "."
        evaluated = metrics.get("dead_fraction")
        if isinstance(evaluated, (int, float)) and metrics.get("n_tokens"):
            tip += (f"\nThe evaluation's {int(metrics['n_tokens']):,} tokens, fewer, leave "
                    f"{format_metric(evaluated, 'pct')} of features never active on them.")
        card.setToolTip(tip)

    def _show_density(self, bundle) -> None:
        self.density_plot.reset_button.reset()       # a new bundle starts from the whole plot
        try:
            edges, counts = bundle.density_histogram()
        except Exception:  # noqa: BLE001 - an older bundle without one: leave the plot empty
            edges, counts = np.array([0.0, 1.0]), np.zeros(1)
        edges = np.asarray(edges, dtype=float)
        counts = np.asarray(counts, dtype=float)
        self.density_counts = counts
        if len(counts):
            centers = (edges[:-1] + edges[1:]) / 2
            self.density_bars.setOpts(x=centers, height=counts, width=float(np.min(np.diff(edges))) * 0.92)
            self.density_plot.enableAutoRange()
        n_live = int(counts.sum())
        n_dead = max(0, int(bundle.n_features) - n_live)
        self.density_note.setText(
            f"{n_live:,} live features by the fraction of tokens they fire on (log scale, as in the paper); "
            f"{n_dead:,} dead (never fired on any of the {int(bundle.n_tokens):,} harvested tokens)." if n_dead else
            f"{n_live:,} features by the fraction of tokens they fire on (log scale, as in the paper).")

    def _show_curves(self, bundle) -> None:
        self.curves.clear_data()
        try:
            curves = bundle.curves() or {}
        except Exception:  # noqa: BLE001
            curves = {}
        for name, xy in curves.items():
            self.curves.set_curve(name, np.asarray(xy))


def _corpus_text(spec: str) -> str:
    if spec == "builtin":
        return "built-in demo corpus"
    if spec.startswith("hf:"):
        return f"Hugging Face dataset {spec[3:]}"
    return spec
