"""Small pyqtgraph helpers shared by the panes: a styled plot, a bar item, and PNG/SVG export.

Every plot in the app is made of ``PaneViewBox`` and ``NumberAxis``: the mouse wheel scrolls the
pane the plot sits in (plots live in scrolled pages), Ctrl+wheel zooms, a drag pans, and a
"Reset view" button (``ResetViewButton``) appears in the plot's corner once the view was changed;
axes write large numbers as 500k / 1M (``engine.numbers.si``), never 500000 next to 1e+06.

Each pane creates its plot items once and later only calls ``setOpts`` / ``setData`` on them.
PNG export uses pyqtgraph's ImageExporter (as its right-click "Export..." menu does); SVG goes through
Qt's QSvgGenerator because pyqtgraph 0.14's SVGExporter fails on Qt 6 path data. The
``ExportButton`` makes export discoverable without knowing about the right-click menu.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyqtgraph as pg

from engine.errors import UserError
from engine.numbers import si
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QFileDialog, QMenu, QToolButton, QWidget

__all__ = ["make_plot", "TitledPlot", "bar_item", "set_bars", "export_plot", "ExportButton", "ACCENT", "NEURON_COLOR",
           "FEATURE_COLOR", "link", "PaneViewBox", "NumberAxis", "number_axes", "ResetViewButton", "ZOOM_HINT"]

ZOOM_HINT = "Ctrl+wheel zooms, drag pans; the wheel alone scrolls the pane"

ACCENT = "#d0742b"           # features / activations (orange, as the token shading)
FEATURE_COLOR = "#d0742b"
NEURON_COLOR = "#3b6ea8"     # neurons (blue)


def _ctrl_held(event) -> bool:
    return bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)


class PaneViewBox(pg.ViewBox):
    """A view box that lets the wheel scroll the pane around it: a wheel event without Ctrl is
    ignored, so Qt hands it on to the enclosing scroll area; Ctrl+wheel zooms. The view before the
    user's first zoom or pan is kept, and ``reset_view()`` goes back to it (auto-range included)."""

    userChanged = Signal(bool)           # True: the user zoomed or panned; False: the view was reset

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._home = None

    @property
    def user_changed(self) -> bool:
        return self._home is not None

    def wheelEvent(self, ev, axis=None):  # noqa: N802 - pyqtgraph name
        if not _ctrl_held(ev):
            ev.ignore()
            return
        self._remember()
        super().wheelEvent(ev, axis)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 - pyqtgraph name
        if any(self.state["mouseEnabled"]):
            self._remember()
        super().mouseDragEvent(ev, axis)

    def _remember(self) -> None:
        if self._home is None:
            self._home = (self.viewRange(), list(self.autoRangeEnabled()))
            self.userChanged.emit(True)

    def reset_view(self) -> None:
        if self._home is None:
            return
        (x_range, y_range), auto = self._home
        self._home = None
        self.setRange(xRange=x_range, yRange=y_range, padding=0)
        for axis, on in zip(("x", "y"), auto):
            if on:
                self.enableAutoRange(axis=axis, enable=on)
        self.userChanged.emit(False)


class NumberAxis(pg.AxisItem):
    """Tick labels in the app's one number style (500k, 1M, 2.5M); the wheel over an axis scrolls the
    pane as over the plot (Ctrl+wheel zooms that axis)."""

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph name
        if values and max(abs(v * scale) for v in values) >= 1e4:
            return [si(v * scale, 4) for v in values]
        return super().tickStrings(values, scale, spacing)

    def wheelEvent(self, event):  # noqa: N802 - Qt name
        if not _ctrl_held(event):
            event.ignore()
            return
        super().wheelEvent(event)


def number_axes() -> dict[str, NumberAxis]:
    return {name: NumberAxis(orientation=name) for name in ("left", "bottom")}


class ResetViewButton(QToolButton):
    """"Reset view" in the top-right corner of ``host`` (a plot widget), shown while any of
    ``boxes`` is zoomed or panned; a click puts every one of them back."""

    def __init__(self, host: QWidget, boxes: list[PaneViewBox]) -> None:
        super().__init__(host)
        self.setObjectName("resetViewButton")
        self.setText("Reset view")
        self.setToolTip("Back to the whole plot (" + ZOOM_HINT + ")")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setStyleSheet("QToolButton { background: rgba(255,255,255,225); border: 1px solid #bbb; "
                           "border-radius: 3px; padding: 1px 6px; font-size: 8pt; }")
        self.boxes = list(boxes)
        self.clicked.connect(self.reset)
        for box in self.boxes:
            box.userChanged.connect(self._update)
        self._corner = _CornerKeeper(host, self)
        self.hide()

    def reset(self) -> None:
        for box in self.boxes:
            box.reset_view()

    def _update(self, *_args) -> None:
        self.setVisible(any(box.user_changed for box in self.boxes))
        if self.isVisible():
            self._corner.place()
            self.raise_()


class _CornerKeeper(QObject):
    """Keeps ``button`` in the top-right corner of ``host`` as it resizes."""

    def __init__(self, host: QWidget, button: QWidget) -> None:
        super().__init__(button)
        self.host, self.button = host, button
        host.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt name
        if event.type() == QEvent.Type.Resize:
            self.place()
        return False

    def place(self) -> None:
        self.button.adjustSize()
        self.button.move(max(0, self.host.width() - self.button.width() - 4), 2)


class PlotExportError(UserError, ValueError):
    """The file name asks for a format plots cannot be exported as."""


class TitledPlot(pg.PlotWidget):
    """A plot whose title is cut with "…" to the plot's width (a pyqtgraph title would otherwise
    widen the plot past its view, cutting off the axes); the full title is the tooltip."""

    TITLE_STYLE = {"size": "9pt", "color": "#333"}
    _title = ""                 # class defaults: pyqtgraph's __init__ already calls resizeEvent
    _tip = ""

    def set_title(self, text: str) -> None:
        self._title = str(text)
        self._fit_title()

    def title(self) -> str:
        return self._title

    def setToolTip(self, text: str) -> None:  # noqa: N802 - the plot's own tip stays beside the title
        self._tip = text
        self._fit_title()

    def _fit_title(self) -> None:
        item = self.getPlotItem()
        if not self._title:
            item.setTitle(None)
            super().setToolTip("\n".join(t for t in (self._tip, ZOOM_HINT) if t))
            return
        font = QFont(self.font())
        font.setPointSizeF(9)
        left = item.getAxis("left")              # the title spans the data column only
        room = self.width() - (left.width() if left.isVisible() else 0) - 24
        shown = QFontMetrics(font).elidedText(self._title, Qt.TextElideMode.ElideRight, max(40, int(room)))
        item.setTitle(shown, **self.TITLE_STYLE)
        tips = [t for t in ((self._title if shown != self._title else ""), self._tip, ZOOM_HINT) if t]
        super().setToolTip("\n".join(tips))
        item.layout.activate()                    # the shorter title lowers the plot's minimum width:
        super().resizeEvent(None)                 # fit the plot to the view again

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        if self._title:
            self._fit_title()


def make_plot(title: str = "", x_label: str = "", y_label: str = "", height: int = 130) -> TitledPlot:
    """A white plot with the app's axes: the wheel scrolls the pane, Ctrl+wheel zooms, "Reset view"
    appears once zoomed (``plot.reset_button``)."""
    w = TitledPlot(background="w", viewBox=PaneViewBox(), axisItems=number_axes())
    w.setMinimumHeight(height)
    item = w.getPlotItem()
    item.hideButtons()                            # pyqtgraph's tiny "A": the reset button replaces it
    w.reset_button = ResetViewButton(w, [item.getViewBox()])
    if title:
        w.set_title(title)
    axis_pen = pg.mkPen("#888")
    for name in ("left", "bottom"):
        ax = item.getAxis(name)
        ax.setPen(axis_pen)
        ax.setTextPen(pg.mkPen("#444"))
        ax.enableAutoSIPrefix(False)          # fractions read better than "(x0.001)" units
    if x_label:
        item.setLabel("bottom", x_label, **{"font-size": "8pt"})
    if y_label:
        item.setLabel("left", y_label, **{"font-size": "8pt"})
    item.showGrid(x=False, y=True, alpha=0.15)
    item.setMenuEnabled(True)
    return w


def bar_item(color: str = ACCENT, plot: pg.PlotWidget | None = None) -> pg.BarGraphItem:
    item = pg.BarGraphItem(x0=np.zeros(0), x1=np.zeros(0), height=np.zeros(0), brush=color,
                           pen=pg.mkPen(None))
    if plot is not None:
        plot.addItem(item)
    return item


def set_bars(item: pg.BarGraphItem, edges: np.ndarray, heights: np.ndarray, brushes=None) -> None:
    edges = np.asarray(edges, np.float64)
    heights = np.asarray(heights, np.float64)
    if edges.size < 2 or not np.isfinite(edges).all():
        item.setOpts(x0=np.zeros(0), x1=np.zeros(0), height=np.zeros(0), brushes=None)
        return
    opts = dict(x0=edges[:-1], x1=edges[1:], height=heights)
    if brushes is not None:
        opts["brushes"] = brushes
    item.setOpts(**opts)


def _export_svg(item: pg.PlotItem, path: Path) -> Path:
    """Vector SVG via Qt's QSvgGenerator: pyqtgraph 0.14's SVGExporter fails on Qt 6 path data."""
    from PySide6.QtCore import QRectF, QSize
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    source = item.sceneBoundingRect()
    gen = QSvgGenerator()
    gen.setFileName(str(path))
    gen.setSize(QSize(int(source.width()), int(source.height())))
    gen.setViewBox(QRectF(0, 0, source.width(), source.height()))
    gen.setTitle(path.stem)
    painter = QPainter(gen)
    try:
        item.scene().render(painter, QRectF(0, 0, source.width(), source.height()), source)
    finally:
        painter.end()
    if not path.exists():
        raise OSError(f"could not write {path}")
    return path


def export_plot(plot: pg.PlotWidget | pg.PlotItem, path: str | os.PathLike) -> Path:
    """Write ``plot`` to ``path`` as PNG or SVG (chosen by the suffix)."""
    from pyqtgraph import exporters

    path = Path(path)
    item = plot.getPlotItem() if isinstance(plot, pg.PlotWidget) else plot
    suffix = path.suffix.lower()
    if suffix == ".svg":
        return _export_svg(item, path)
    if suffix in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        exporter = exporters.ImageExporter(item)
        exporter.parameters()["width"] = max(800, int(item.sceneBoundingRect().width() * 2))
    else:
        raise PlotExportError(f"cannot export a plot as {suffix or 'a file without extension'}: use .png or .svg")
    exporter.export(str(path))
    return path


class ExportButton(QToolButton):
    """A "Export plot" drop-down: one entry per named plot, each as PNG or SVG."""

    def __init__(self, plots: dict[str, pg.PlotWidget], parent: QWidget | None = None):
        super().__init__(parent)
        self.setText("Export plot")
        self.setToolTip("Save a plot as PNG or SVG (right-click a plot for pyqtgraph's full export menu)")
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.plots = plots
        menu = QMenu(self)
        for name, plot in plots.items():
            sub = menu.addMenu(name)
            for fmt in ("PNG", "SVG"):
                act = sub.addAction(f"as {fmt}…")
                act.triggered.connect(lambda _c=False, n=name, p=plot, f=fmt: self._export(n, p, f))
        self.setMenu(menu)

    def _export(self, name: str, plot: pg.PlotWidget, fmt: str) -> None:
        ext = fmt.lower()
        default = str(Path.home() / f"{name.lower().replace(' ', '_')}.{ext}")
        path, _ = QFileDialog.getSaveFileName(self, f"Export {name}", default, f"{fmt} (*.{ext})")
        if path:
            if not path.lower().endswith("." + ext):
                path += "." + ext
            try:
                export_plot(plot, path)
            except Exception as exc:  # noqa: BLE001 - tell the user, never crash on a bad path
                from superpos_app.errors import show_error
                show_error(self, "Could not export the plot", exc)


def link(kind: str, index: int, text: str | None = None) -> str:
    """An HTML link that the panes turn into ``selection.select(kind, index)``."""
    color = NEURON_COLOR if kind == "neuron" else FEATURE_COLOR
    return f'<a href="{kind}:{int(index)}" style="color:{color}; text-decoration:none;">{text or _short(kind, index)}</a>'


def _short(kind: str, index: int) -> str:
    return f"{'N' if kind == 'neuron' else 'F'}{int(index)}"


def parse_link(href: str) -> tuple[str, int] | None:
    kind, _, idx = href.partition(":")
    if kind in ("feature", "neuron") and idx.lstrip("-").isdigit():
        return kind, int(idx)
    return None
