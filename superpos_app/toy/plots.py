"""The Toy Models window's pyqtgraph views. Each creates its items once (a pool of lines sized for
the largest model the sliders allow) and later only calls ``setData`` / ``setOpts`` / ``setImage``.

Every plot zooms with Ctrl+wheel; a plain wheel goes on to the scroll area around the plots, so
scrolling the window never zooms a plot by accident."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from engine.toy.measures import DIMENSIONALITY_LEVELS
from engine.toy.phase import REGION_NAMES

__all__ = ["ZoomPlot", "GeometryPlot", "GramPlot", "BarsPlot", "DimensionalityPlot", "PhasePlot",
           "RecoveryPlot", "MAX_LINES", "REGION_COLOURS"]

MAX_LINES = 96                               # line items pooled per geometry plot
IMPORTANCE_MAP = pg.colormap.get("viridis")
SUPERPOSITION_MAP = pg.colormap.get("inferno")
INTERFERENCE_MAP = pg.ColorMap([0.0, 0.5, 1.0], [(49, 99, 170), (255, 255, 255), (190, 50, 40)])
REGION_COLOURS = ((235, 235, 235), (59, 110, 168), (200, 70, 55))   # not represented, dedicated, superposition
TRUE_COLOUR = (120, 120, 120)
LATENT_COLOUR = "#d0742b"


class ZoomPlot(pg.PlotWidget):
    """A plot that zooms only with Ctrl+wheel (a plain wheel scrolls whatever holds it)."""

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent, background="w")
        self.setMenuEnabled(False)
        self.setMinimumHeight(260)
        self.getPlotItem().setTitle(title, size="9pt", color="#30343a")
        self.showGrid(x=True, y=True, alpha=0.15)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(420, 300)               # pyqtgraph asks 640 × 480: the grid would not fit the window

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt name
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(event)
        else:
            event.ignore()                   # the scroll area (the parent) scrolls instead


def _colour(cmap: pg.ColorMap, value: float):
    return cmap.map(float(np.clip(value, 0.0, 1.0)), mode="qcolor")


def _line_pool(plot: ZoomPlot, n: int, width: float, style=Qt.PenStyle.SolidLine) -> list[pg.PlotDataItem]:
    items = []
    for _ in range(n):
        item = pg.PlotDataItem(pen=pg.mkPen("#888", width=width, style=style))
        plot.addItem(item)
        items.append(item)
    return items


def _hidden_xy(vectors_KM: np.ndarray) -> np.ndarray:
    """(K, 2): the first two hidden coordinates (a zero second one when m = 1)."""
    out = np.zeros((vectors_KM.shape[0], 2))
    out[:, :min(2, vectors_KM.shape[1])] = vectors_KM[:, :2]
    return out


class GeometryPlot(ZoomPlot):
    """Each feature's column Wᵢ as a line from the origin, coloured by its importance (the paper's
    m = 2 picture; for m ≠ 2 the first two hidden dimensions)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Features in the hidden space (Wᵢ, colour = importance)", parent)
        self.setAspectLocked(True)
        self.lines = _line_pool(self, MAX_LINES, 3.0)
        self.tips = pg.ScatterPlotItem(size=8, pen=None)
        self.addItem(self.tips)
        self.setRange(xRange=(-1.3, 1.3), yRange=(-1.3, 1.3), padding=0)
        self.n_shown = 0

    def set_model(self, W_MN: np.ndarray, importance_N: np.ndarray) -> None:
        xy = _hidden_xy(W_MN.T)
        n = min(len(xy), MAX_LINES)
        rel = importance_N / max(float(importance_N.max()), 1e-12)
        brushes = []
        for i, line in enumerate(self.lines):
            if i < n:
                colour = _colour(IMPORTANCE_MAP, 0.05 + 0.75 * rel[i])   # viridis' top yellow is too pale on white
                line.setData([0.0, xy[i, 0]], [0.0, xy[i, 1]])
                line.setPen(pg.mkPen(colour, width=3))
                brushes.append(pg.mkBrush(colour))
            elif i < self.n_shown:
                line.setData([], [])
        self.tips.setData(xy[:n, 0], xy[:n, 1], brush=brushes)
        self.n_shown = n
        m = W_MN.shape[0]
        self.getPlotItem().setTitle("Features in the hidden space (Wᵢ, colour = importance)" if m == 2 else
                                    f"Features in the first two of m = {m} hidden dimensions", size="9pt",
                                    color="#30343a")


class GramPlot(ZoomPlot):
    """WᵀW as a heat map, blue −1 … white 0 … red +1 (row i, column j: Wᵢ·Wⱼ)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("WᵀW (interference between features)", parent)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(INTERFERENCE_MAP.getLookupTable(nPts=256))
        self.addItem(self.image)
        self.getPlotItem().invertY(True)
        self.setAspectLocked(True)
        self.showGrid(x=False, y=False)

    def set_gram(self, gram_NN: np.ndarray) -> None:
        self.image.setImage(gram_NN, levels=(-1.0, 1.0), autoLevels=False)
        self.image.setRect(QRectF(-0.5, -0.5, gram_NN.shape[1], gram_NN.shape[0]))
        ticks = [[(float(i), str(i)) for i in _index_ticks(gram_NN.shape[0])]]
        self.getAxis("left").setTicks(ticks)
        self.getAxis("bottom").setTicks(ticks)
        self.setRange(xRange=(-0.5, gram_NN.shape[1] - 0.5), yRange=(-0.5, gram_NN.shape[0] - 0.5), padding=0.02)


class BarsPlot(ZoomPlot):
    """‖Wᵢ‖ per feature as horizontal bars; bar colour = superposition Σ_{j≠i}(Ŵᵢ·Wⱼ)² (black none,
    yellow ≥ 1), as the paper colours them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("‖Wᵢ‖ per feature (colour = superposition)", parent)
        self.bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.75, brushes=[])
        self.addItem(self.bars)
        self.getPlotItem().invertY(True)
        self.setLabel("left", "feature i", **{"font-size": "8pt"})
        self.setLabel("bottom", "‖Wᵢ‖", **{"font-size": "8pt"})

    def set_measures(self, norms_N: np.ndarray, superposition_N: np.ndarray) -> None:
        n = len(norms_N)
        brushes = [pg.mkBrush(_colour(SUPERPOSITION_MAP, 0.05 + 0.9 * min(1.0, s))) for s in superposition_N]
        self.bars.setOpts(x0=np.zeros(n), y=np.arange(n), width=norms_N, height=0.75, brushes=brushes,
                          pens=[pg.mkPen(None)] * n)
        self.setRange(xRange=(0, max(1.2, float(norms_N.max()) * 1.05)), yRange=(-0.6, n - 0.4), padding=0)
        self.getAxis("left").setTicks([[(float(i), str(i)) for i in _index_ticks(n)]])


class DimensionalityPlot(ZoomPlot):
    """Feature dimensionality Dᵢ against 1/(1 − S) (log), the paper's fractional levels marked: grey,
    the sparsity sweep; orange, the current model."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Feature dimensionality Dᵢ vs 1/(1−S)", parent)
        # x is drawn as log10(1/(1−S)) by hand: pyqtgraph's log mode does not reach a bare ScatterPlotItem
        self.getAxis("bottom").setTicks([[(float(np.log10(v)), f"{v:g}") for v in (1, 3, 10, 30, 100, 300, 1000)]])
        for level in DIMENSIONALITY_LEVELS:
            self.addItem(pg.InfiniteLine(pos=float(level), angle=0, pen=pg.mkPen("#b0b6bf", width=1,
                                                                                style=Qt.PenStyle.DashLine)))
            label = pg.TextItem(_fraction(level), color="#6b717a", anchor=(1, 0.5))
            label.setPos(-0.03, float(level))          # in a margin left of the densest column (x = 1)
            self.addItem(label)
        self.sweep = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(90, 90, 90, 140))
        self.current = pg.ScatterPlotItem(size=10, pen=pg.mkPen("w"), brush=pg.mkBrush(LATENT_COLOUR))
        self.addItem(self.sweep)
        self.addItem(self.current)
        self.setYRange(0.0, 1.1, padding=0)
        self.setXRange(-0.3, 2.6, padding=0)
        self.setLabel("bottom", "1 / (1 − S)", **{"font-size": "8pt"})
        self.setLabel("left", "Dᵢ", **{"font-size": "8pt"})

    def set_current(self, sparsity: float, dimensionality_N: np.ndarray) -> None:
        x = np.full(len(dimensionality_N), -np.log10(max(1e-6, 1.0 - sparsity)))
        self.current.setData(x, dimensionality_N)

    def set_sweep(self, sparsity_I: np.ndarray, dimensionality_IN: np.ndarray) -> None:
        x = np.repeat(-np.log10(np.maximum(1e-6, 1.0 - sparsity_I)), dimensionality_IN.shape[1])
        self.sweep.setData(x, dimensionality_IN.ravel())


def _index_ticks(n: int) -> range:
    """Feature indices to label on an axis of n features: all of them up to 12, else every k-th."""
    return range(0, n, max(1, -(-n // 12)))


def _fraction(level: Fraction) -> str:
    return str(level.numerator) if level.denominator == 1 else f"{level.numerator}/{level.denominator}"


class PhasePlot(ZoomPlot):
    """The phase diagram for one extra feature: x feature density 1 − S, y the extra feature's relative
    importance (both log); grey not represented, blue dedicated dimension, red superposition."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Phase diagram: one extra feature (n = 2, m = 1)", parent)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(np.array(REGION_COLOURS, dtype=np.ubyte))
        self.addItem(self.image)
        self.showGrid(x=False, y=False)
        self.setLabel("bottom", "feature density 1 − S", **{"font-size": "8pt"})
        self.setLabel("left", "extra feature's importance", **{"font-size": "8pt"})
        for axis, values in (("bottom", (0.01, 0.03, 0.1, 0.3, 1.0)), ("left", (0.1, 0.3, 1.0, 3.0, 10.0))):
            self.getAxis(axis).setTicks([[(float(np.log10(v)), f"{v:g}") for v in values]])
        legend = self.addLegend(offset=(-6, 6), labelTextSize="8pt", labelTextColor="#30343a",
                                brush=pg.mkBrush(255, 255, 255, 230))
        for name, colour in zip(REGION_NAMES, REGION_COLOURS):
            swatch = pg.ScatterPlotItem(symbol="s", size=10, brush=pg.mkBrush(*colour), pen=pg.mkPen("#888"))
            legend.addItem(swatch, name)
        self.setRange(xRange=(-2.05, 0.05), yRange=(-1.05, 1.05), padding=0)
        self.has_data = False

    def set_diagram(self, diagram) -> None:
        lx, ly = np.log10(diagram.density_C), np.log10(diagram.importance_R)
        dx, dy = (lx[-1] - lx[0]) / (len(lx) - 1), (ly[-1] - ly[0]) / (len(ly) - 1)
        self.image.setImage(diagram.region_RC.astype(np.ubyte), levels=(0, 2), autoLevels=False)
        self.image.setRect(QRectF(lx[0] - dx / 2, ly[0] - dy / 2, dx * len(lx), dy * len(ly)))
        self.setRange(xRange=(lx[0] - dx / 2, lx[-1] + dx / 2), yRange=(ly[0] - dy / 2, ly[-1] + dy / 2), padding=0)
        self.has_data = True


class RecoveryPlot(QWidget):
    """The SAE beside the truth: true directions Wᵢ (grey) and each feature's matched decoder row
    (orange, dashed; drawn at its feature's length), MMCS, dead and split latents; and recovery
    against sparsity once a sweep has run."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.geometry = ZoomPlot("SAE latents (orange) matched to the true features (grey)")
        self.geometry.setAspectLocked(True)
        self.true_lines = _line_pool(self.geometry, MAX_LINES, 5.0)
        self.latent_lines = _line_pool(self.geometry, MAX_LINES, 2.0, Qt.PenStyle.DashLine)
        for line in self.latent_lines:
            line.setPen(pg.mkPen(LATENT_COLOUR, width=2, style=Qt.PenStyle.DashLine))
        for line in self.true_lines:
            line.setPen(pg.mkPen(TRUE_COLOUR, width=6))
        self.geometry.setRange(xRange=(-1.3, 1.3), yRange=(-1.3, 1.3), padding=0)
        self.summary = QLabel("Train an SAE on the hidden layer to see which latent found which feature.")
        self.summary.setObjectName("toySaeSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.sweep = ZoomPlot("Recovery vs sparsity")
        self.sweep.addLegend(offset=(6, -6), labelTextSize="8pt", labelTextColor="#30343a",
                             brush=pg.mkBrush(255, 255, 255, 230))
        self.mmcs_curve = self.sweep.plot([], [], pen=pg.mkPen(LATENT_COLOUR, width=2), symbol="o", symbolSize=6,
                                          symbolBrush=LATENT_COLOUR, name="MMCS (represented features)")
        self.recovered_curve = self.sweep.plot([], [], pen=pg.mkPen("#3b6ea8", width=2), symbol="s", symbolSize=6,
                                               symbolBrush="#3b6ea8", name="fraction of all n recovered (cos ≥ 0.9)")
        self.sweep.setYRange(0, 1.05, padding=0)
        self.sweep.setXRange(0, 1, padding=0.02)
        self.sweep.setLabel("bottom", "sparsity S", **{"font-size": "8pt"})
        layout.addWidget(self.geometry, 3)
        layout.addWidget(self.summary)
        layout.addWidget(self.sweep, 2)
        self.n_shown = 0
        self.recovery = None

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(420, 620)

    def set_recovery(self, W_MN: np.ndarray, recovery) -> None:
        true_xy = _hidden_xy(W_MN.T)
        latent_xy = _hidden_xy(recovery.W_dec_FM)
        norms = np.linalg.norm(W_MN, axis=0)
        n = min(len(true_xy), MAX_LINES)
        for i in range(max(n, self.n_shown)):
            if i < n and recovery.best_latent_N[i] >= 0:
                f = recovery.best_latent_N[i]
                direction = latent_xy[f] / max(1e-12, float(np.linalg.norm(recovery.W_dec_FM[f])))
                self.true_lines[i].setData([0, true_xy[i, 0]], [0, true_xy[i, 1]])
                self.latent_lines[i].setData([0, direction[0] * norms[i]], [0, direction[1] * norms[i]])
            else:
                self.true_lines[i].setData([], [])
                self.latent_lines[i].setData([], [])
        self.n_shown = n
        self.recovery = recovery
        pairs = ", ".join(f"{i}→{recovery.best_latent_N[i]} ({recovery.best_cos_N[i]:.3f})"
                          for i in range(len(recovery.best_cos_N)) if recovery.best_latent_N[i] >= 0)
        F = recovery.W_dec_FM.shape[0]
        self.summary.setText(
            f"MMCS {recovery.mmcs:.3f} over {int(recovery.represented_N.sum())} represented features · "
            f"recovered {recovery.n_recovered} of {len(recovery.best_cos_N)} (cos ≥ 0.9) · {F} latents: "
            f"{recovery.n_dead} dead, {recovery.n_split} split · feature→latent (cos): {pairs}")

    def set_sweep(self, points) -> None:
        S = np.array([p.sparsity for p in points])
        self.mmcs_curve.setData(S, np.nan_to_num(np.array([p.mmcs for p in points])))
        self.recovered_curve.setData(S, np.array([p.recovered_fraction for p in points]))
