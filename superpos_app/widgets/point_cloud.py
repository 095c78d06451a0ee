"""A graphics item that paints many same-coloured points in one ``QPainter.drawPoints`` call.

pyqtgraph's ScatterPlotItem keeps per-point records (fine for thousands, slow for 150k); the feature
map needs neither per-point symbols nor per-point brushes, only round dots of one colour per
dictionary, so this item holds one QPolygonF and a cosmetic pen (its width is in pixels whatever
the zoom).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pyqtgraph.functions as fn
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPolygonF

__all__ = ["PointCloudItem"]


class PointCloudItem(pg.GraphicsObject):
    def __init__(self, x: np.ndarray, y: np.ndarray, color: str, size: float = 3.0):
        super().__init__()
        self.x = np.ascontiguousarray(x, np.float64)
        self.y = np.ascontiguousarray(y, np.float64)
        # (an empty QPolygonF's buffer is read-only: pyqtgraph cannot fill one)
        self.polygon = fn.arrayToQPolygonF(self.x, self.y) if len(self.x) else QPolygonF()
        self.pen = pg.mkPen(color, width=size)
        self.pen.setCosmetic(True)
        self.pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        if len(self.x):
            x0, x1, y0, y1 = self.x.min(), self.x.max(), self.y.min(), self.y.max()
        else:
            x0 = x1 = y0 = y1 = 0.0
        self._bounds = QRectF(x0, y0, max(x1 - x0, 1e-9), max(y1 - y0, 1e-9))

    def __len__(self) -> int:
        return len(self.x)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt name
        return self._bounds

    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange=None):  # noqa: N802,N803 - pyqtgraph names
        if not len(self.x):
            return None
        v = self.x if ax == 0 else self.y
        return float(v.min()), float(v.max())

    def pixelPadding(self) -> float:  # noqa: N802 - pyqtgraph name
        return self.pen.widthF()

    def paint(self, painter, *args) -> None:
        # drawn in device pixels (the view's scale would stretch the pen's dots): map, then draw
        on_screen = painter.transform().map(self.polygon)
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(painter.RenderHint.Antialiasing, True)
        painter.setPen(self.pen)
        painter.drawPoints(on_screen)
        painter.restore()
