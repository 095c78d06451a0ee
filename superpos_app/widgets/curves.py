"""Training curves as a small grid of pyqtgraph plots (used live by the Train dialog and by the overview).

Each curve's plot item is created once; updates only call ``setData`` on it (appending to numpy
buffers), so a live run adds points without re-plotting. Curve names follow the bundle's
convention ``"<stage>/<metric>"`` ("model/train_loss", "sae/mse", ...), and a live
``Progress.metrics`` key of a stage is the curve of that name: ``f"{stage}/{key}"``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QVBoxLayout, QWidget

from superpos_app.widgets.plots import ZOOM_HINT, PaneViewBox, ResetViewButton, number_axes

__all__ = ["CurvePanel", "PLOTS"]

# plot title -> [(curve name, legend label, colour)]
PLOTS: dict[str, list[tuple[str, str, str]]] = {
    "Model loss": [("model/train_loss", "train", "#3b6ea8"), ("model/val_loss", "validation", "#d0742b")],
    # the trainer's MSE is on inputs scaled to mean norm √D (recipes/base.py): squared error ÷ the
    # activations' mean squared size per element; the Overview's "MSE (raw activations)" is unscaled
    "SAE normalised MSE (training scale)": [("sae/mse", "normalised MSE", "#3b6ea8")],
    "SAE L0 (active features / token)": [("sae/l0", "L0", "#5a9a5a")],
    "Dead feature fraction": [("sae/dead_fraction", "dead", "#b5473a")],
}


def configure_pyqtgraph() -> None:
    pg.setConfigOptions(antialias=True, background="w", foreground="#4a4f57")


class CurvePanel(QWidget):
    """A 2x2 grid of plots with one PlotDataItem per known curve."""

    def __init__(self, parent: QWidget | None = None, columns: int = 2, x_label: str = "") -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.view = pg.GraphicsLayoutWidget()
        self.view.setObjectName("curvePlots")
        self.view.ci.setContentsMargins(4, 4, 4, 4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.plots: dict[str, pg.PlotItem] = {}
        self.items: dict[str, pg.PlotDataItem] = {}
        self._plot_of: dict[str, pg.PlotItem] = {}
        self._x: dict[str, list[float]] = {}
        self._y: dict[str, list[float]] = {}
        for i, (title, curves) in enumerate(PLOTS.items()):
            plot = self.view.addPlot(row=i // columns, col=i % columns, viewBox=PaneViewBox(),
                                     axisItems=number_axes())
            plot.hideButtons()
            plot.setTitle(title, size="9pt", color="#30343a")
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setMenuEnabled(False)
            plot.getAxis("bottom").setStyle(tickFont=_small_font())
            plot.getAxis("left").setStyle(tickFont=_small_font())
            if x_label:
                plot.setLabel("bottom", x_label, **{"font-size": "8pt"})
            if len(curves) > 1:
                plot.addLegend(offset=(-8, 8), labelTextSize="8pt")
            self.plots[title] = plot
            for name, label, colour in curves:
                self.items[name] = plot.plot([], [], pen=pg.mkPen(colour, width=1.6), name=label)
                self._plot_of[name] = plot
                self._x[name], self._y[name] = [], []
        self.view.setToolTip(ZOOM_HINT)
        self.reset_button = ResetViewButton(self.view, [p.getViewBox() for p in self.plots.values()])

    # --- data ------------------------------------------------------------------------------------
    def clear_data(self) -> None:
        for name, item in self.items.items():
            self._x[name], self._y[name] = [], []
            item.setData([], [])

    def set_curve(self, name: str, xy: np.ndarray) -> None:
        if name not in self.items:
            return
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        self._x[name], self._y[name] = list(xy[:, 0]), list(xy[:, 1])
        self.items[name].setData(xy[:, 0], xy[:, 1])
        self._fit_y(name)

    def append_points(self, name: str, xs, ys) -> None:
        if name not in self.items or len(xs) == 0:
            return
        self._x[name].extend(float(x) for x in xs)
        self._y[name].extend(float(y) for y in ys)
        self.items[name].setData(np.asarray(self._x[name]), np.asarray(self._y[name]))
        self._fit_y(name)

    def _fit_y(self, name: str) -> None:
        """Auto-range y, except that a nearly constant curve (TopK's L0 = k) is shown as flat, not as noise."""
        plot = self._plot_of[name]
        ys = [y for n, p in self._plot_of.items() if p is plot for y in self._y[n]]
        if not ys:
            return
        lo, hi = float(np.nanmin(ys)), float(np.nanmax(ys))
        scale = max(abs(lo), abs(hi))
        if scale < 1e-9:                       # all zero (no dead features yet): a readable 0..0.05
            plot.setYRange(0.0, 0.05, padding=0)
        elif hi - lo < 0.02 * scale:
            mid, half = (lo + hi) / 2, 0.1 * scale
            plot.setYRange(max(mid - half, 0.0) if lo >= 0 else mid - half, mid + half, padding=0)
        else:
            plot.enableAutoRange(axis="y")

    def add_event_metrics(self, stage: str, points: list[tuple[float, dict]]) -> int:
        """Append a batch of (x, metrics) from the job controller; returns points added.

        Metric ``key`` of ``stage`` feeds the curve ``f"{stage}/{key}"``; keys without a plot are skipped."""
        batches: dict[str, tuple[list, list]] = {}
        for x, metrics in points:
            for key, value in metrics.items():
                name = f"{stage}/{key}"
                if name not in self.items or value is None or not np.isfinite(value):
                    continue
                xs, ys = batches.setdefault(name, ([], []))
                xs.append(x)
                ys.append(value)
        for name, (xs, ys) in batches.items():
            self.append_points(name, xs, ys)
        return sum(len(xs) for xs, _ in batches.values())

    def point_count(self, name: str) -> int:
        return len(self._x.get(name, ()))

    def has_data(self) -> bool:
        return any(self._x.values())


def _small_font() -> QFont:
    font = QFont()
    font.setPointSize(8)
    return font
