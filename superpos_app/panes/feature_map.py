"""Feature map: every decoder direction of the bundle's family as a point of a 2-D embedding
(computed at build time and stored, engine.analysis.feature_map), coloured by dictionary.

Hover shows the nearest feature's label; a click opens that feature (``openFeature(dictionary,
feature)``: the window switches to that dictionary and selects it); "Select region" drags a
rectangle whose features are listed beside the map (click one to open it). The header says how the
map was made, UMAP (cosine) or the PCA fallback when umap-learn was not installed at build time.
One ``PointCloudItem`` per dictionary (one ``drawPoints`` call each) keeps 150k points quick to paint.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSplitter, QVBoxLayout, QWidget,
)

from engine.bundle import FamilyMembers
from superpos_app.faults import contain_faults
from superpos_app.widgets.point_cloud import PointCloudItem

__all__ = ["FeatureMapPane", "DICTIONARY_COLORS", "dictionary_color"]

DICTIONARY_COLORS = ("#d0742b", "#3b6ea8", "#4f9a4a", "#9a4f9a", "#b8a028", "#3aa0a0", "#a04040")
MAX_LISTED = 2000
METHOD_TEXT = {
    "umap-cosine": "UMAP (cosine metric) of the decoder directions",
    "pca": "PCA of the decoder directions — umap-learn was not installed when this bundle was built "
           "(pip install 'superpos[map]' and run again for the UMAP map)",
}


def dictionary_color(d: int) -> str:
    return DICTIONARY_COLORS[d % len(DICTIONARY_COLORS)]


@contain_faults(also=("_on_click", "_on_hover", "_on_region", "_on_listed", "_toggle_region"))
class FeatureMapPane(QWidget):
    PANE_FAULTS = True
    openFeature = Signal(int, int)            # (dictionary, feature)

    def __init__(self, selection, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("featureMap")
        self.selection = selection
        self.bundle = None
        self.xy = np.zeros((0, 2), np.float32)
        self.member = np.zeros(0, np.int16)
        self.unit = np.zeros(0, np.int32)
        self._members = FamilyMembers()            # the other dictionaries (label reads on hover)
        self.scatters: list[PointCloudItem] = []

        self.note = QLabel("")
        self.note.setObjectName("mapNote")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555;")
        self.legend = QLabel("")
        self.legend.setObjectName("mapLegend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.hover = QLabel("")
        self.hover.setObjectName("mapHover")
        self.hover.setTextFormat(Qt.TextFormat.PlainText)
        self.region_box = QCheckBox("Select region")
        self.region_box.setObjectName("mapRegionBox")
        self.region_box.toggled.connect(self._toggle_region)

        self.plot = pg.PlotWidget(background="w")
        self.plot.setObjectName("mapPlot")
        self.plot.getPlotItem().hideAxis("left")
        self.plot.getPlotItem().hideAxis("bottom")
        self.plot.setAspectLocked(True)
        self.plot.scene().sigMouseMoved.connect(self._on_hover)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        self.region = pg.RectROI([0, 0], [1, 1], pen=pg.mkPen("#222", width=1, style=Qt.PenStyle.DashLine))
        self.region.sigRegionChangeFinished.connect(self._on_region)

        self.listed = QListWidget()
        self.listed.setObjectName("mapListed")
        self.listed.itemActivated.connect(self._on_listed)
        self.listed.itemClicked.connect(self._on_listed)
        self.listed.hide()

        top = QHBoxLayout()
        top.addWidget(self.legend, 1)
        top.addWidget(self.region_box)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(self.listed)
        split.setStretchFactor(0, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.note)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.hover)

    # -------------------------------------------------------------- data
    def set_bundle(self, bundle) -> None:
        self._members.close()
        self._members = FamilyMembers(bundle)
        self.bundle = bundle
        for item in self.scatters:
            self.plot.removeItem(item)
        self.scatters = []
        self.listed.clear()
        self.hover.setText("")
        self.xy, self.member, self.unit = np.zeros((0, 2), np.float32), np.zeros(0, np.int16), np.zeros(0, np.int32)
        if bundle is None:
            self.note.setText("")
            self.legend.setText("")
            return
        fmap = bundle.feature_map()
        if fmap is None:
            self.note.setText("This bundle holds one dictionary and no feature map. A family — e.g. "
                              "superpos run --d-sae 512,4096,16384 — maps every dictionary's features here.")
            self.legend.setText("")
            return
        self.xy, self.member, self.unit, method = fmap
        names = bundle.family.names()
        keep = self.member < len(names)          # a damaged map may name dictionaries the bundle lacks
        self.xy, self.member, self.unit = self.xy[keep], self.member[keep], self.unit[keep]
        note = f"{len(self.xy):,} features: " + METHOD_TEXT.get(method, method or "unknown method")
        models = {bundle.family.members[int(d)]["model"] for d in np.unique(self.member)}
        if len(models) > 1:
            note += (". The other seed's directions are drawn in model A's neuron basis (a least-squares map "
                     "between the two models' neurons on the matching sample)")
        elif any(m["model"] for m in bundle.family.members):
            note += (". Model A's dictionaries only (a map drawn before the seed alignment; superpos family "
                     "BUNDLE --rematch adds the other seed's)")
        self.note.setText(note)
        parts = []
        for d, name in enumerate(names):
            rows = self.member == d
            if not rows.any():          # e.g. the other seed's dictionaries: not in model A's map
                continue
            item = PointCloudItem(self.xy[rows, 0], self.xy[rows, 1], dictionary_color(d) + "b0")
            item.setZValue(-d)
            self.plot.addItem(item)
            self.scatters.append(item)
            parts.append(f'<span style="color:{dictionary_color(d)}">●</span> {name} '
                         f'({int(rows.sum()):,})')
        self.legend.setText(" &nbsp; ".join(parts))
        self.plot.autoRange()

    def label_of(self, d: int, f: int) -> str:
        member = self._members.get(d)
        if not 0 <= f < member.n_features:
            return f"(no feature {f}: the stored map does not match this dictionary)"
        return str(member.column("feature", "labels", int(f)))

    # -------------------------------------------------------------- picking
    def nearest(self, x: float, y: float, radius: float | None = None) -> int | None:
        """Row of the point nearest (x, y) in view coordinates, within ``radius`` (default: 8 px)."""
        if not len(self.xy):
            return None
        if radius is None:
            px = self.plot.getPlotItem().getViewBox().viewPixelSize()
            radius = 8 * max(px)
        d2 = (self.xy[:, 0] - x) ** 2 + (self.xy[:, 1] - y) ** 2
        i = int(np.argmin(d2))
        return i if d2[i] <= radius * radius else None

    def _view_point(self, scene_pos):
        vb = self.plot.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = vb.mapSceneToView(scene_pos)
        return p.x(), p.y()

    def _on_hover(self, scene_pos) -> None:
        p = self._view_point(scene_pos)
        i = None if p is None else self.nearest(*p)
        if i is None:
            self.hover.setText("")
            return
        d, f = int(self.member[i]), int(self.unit[i])
        self.hover.setText(f"{self.bundle.family.names()[d]} feature {f}: {self.label_of(d, f)}")

    def _on_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.region_box.isChecked():
            return
        p = self._view_point(event.scenePos())
        i = None if p is None else self.nearest(*p)
        if i is not None:
            self.open_row(i)

    def open_row(self, i: int) -> None:
        self.openFeature.emit(int(self.member[i]), int(self.unit[i]))

    # -------------------------------------------------------------- region selection
    def _toggle_region(self, on: bool) -> None:
        if on and len(self.xy):
            vb = self.plot.getPlotItem().getViewBox()
            (x0, x1), (y0, y1) = vb.viewRange()
            self.region.setPos([x0 + 0.35 * (x1 - x0), y0 + 0.35 * (y1 - y0)])
            self.region.setSize([0.3 * (x1 - x0), 0.3 * (y1 - y0)])
            self.plot.addItem(self.region)
            self.listed.show()
            self._on_region()
        else:
            if self.region.scene() is not None:
                self.plot.removeItem(self.region)
            self.listed.hide()
            self.listed.clear()

    def rows_in(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        xy = self.xy
        return np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))

    def _on_region(self) -> None:
        pos, size = self.region.pos(), self.region.size()
        rows = self.rows_in(pos.x(), pos.y(), pos.x() + size.x(), pos.y() + size.y())
        self.list_rows(rows)

    def list_rows(self, rows: np.ndarray) -> None:
        self.listed.clear()
        names = self.bundle.family.names() if self.bundle is not None else []
        header = QListWidgetItem(f"{len(rows):,} features in the region" +
                                 (f" (first {MAX_LISTED:,} listed)" if len(rows) > MAX_LISTED else ""))
        header.setFlags(Qt.ItemFlag.NoItemFlags)
        self.listed.addItem(header)
        for i in rows[:MAX_LISTED]:
            d, f = int(self.member[i]), int(self.unit[i])
            item = QListWidgetItem(f"{names[d]} #{f}  {self.label_of(d, f)}")
            item.setData(Qt.ItemDataRole.UserRole, int(i))
            item.setForeground(pg.mkColor(dictionary_color(d)))
            self.listed.addItem(item)

    def _on_listed(self, item: QListWidgetItem) -> None:
        row = item.data(Qt.ItemDataRole.UserRole)
        if row is not None:
            self.open_row(int(row))
