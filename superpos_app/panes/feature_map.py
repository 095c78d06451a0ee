"""Feature map: every decoder direction of the bundle's family as a point of a 2-D embedding
(computed at build time and stored, engine.analysis.feature_map), coloured by dictionary.

Hover rings the nearest feature and shows its label (a tooltip and the line below the map); a click
opens that feature (``openFeature(dictionary, feature)``: the window switches to that dictionary,
selects it and raises Feature Detail), also while "Select region" is on: that drags a rectangle
whose features are listed beside the map, the active dictionary's first (click one to open it).
The selected feature is ringed on the map with lines to its split parent and children (the one rule
of ``engine.analysis.family_report.SplitChildren``). The legend's boxes hide or show each
dictionary (a size of a seed); smaller dictionaries are drawn on top, so none is buried. The header
says how the map was made, UMAP (cosine) or the PCA fallback when umap-learn was not installed at
build time. One ``PointCloudItem`` per dictionary (one ``drawPoints`` call each) keeps 150k points
quick to paint.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox, QGridLayout, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSplitter, QToolTip, QVBoxLayout, QWidget,
)

from engine.analysis.family_report import SplitChildren
from engine.bundle import FamilyMembers
from superpos_app.faults import contain_faults
from superpos_app.widgets.point_cloud import PointCloudItem

__all__ = ["FeatureMapPane", "DICTIONARY_COLORS", "dictionary_color"]

# strong, distinct on white (each readable as a 3 px dot): orange, blue, green, magenta, brown, teal, violet
DICTIONARY_COLORS = ("#d0742b", "#2f6db5", "#3a9a3a", "#c2368a", "#8a5a2b", "#14968f", "#6a4bc4")
MAX_LISTED = 2000
WHY_PCA = ("UMAP comes with the optional extra superpos[map] (pip install 'superpos[map]': umap-learn with numba, "
           "llvmlite, scikit-learn, pynndescent, about 290 MB) and a build with it draws the UMAP map. It is not a "
           "default: on a 2-core CPU it took 8 minutes for demo-family's 13,312 decoder directions, PCA seconds "
           "(scripts/time_feature_map.py).")
METHOD_TEXT = {
    "umap-cosine": "UMAP (cosine metric) of the decoder directions",
    "pca": "PCA of the decoder directions: a linear view where clusters overlap (the paper's is UMAP: the "
           "optional umap-learn, not installed at build time; hover here for why)",
}


def dictionary_color(d: int) -> str:
    return DICTIONARY_COLORS[d % len(DICTIONARY_COLORS)]


def _dot(color: str) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(color))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(1, 1, 10, 10)
    p.end()
    return QIcon(pixmap)


@contain_faults(also=("_on_click", "_on_hover", "_on_region", "_on_listed", "_toggle_region", "show_selected",
                      "_on_legend"))
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
        self.scatter_of: dict[int, PointCloudItem] = {}      # dictionary -> its points
        self.row_of: dict[int, np.ndarray] = {}              # dictionary -> map row of each feature (-1: none)
        self.shown = np.zeros(0, bool)                        # rows of dictionaries the legend shows
        self.rule: SplitChildren | None = None
        self.highlighted: list[tuple[int, int]] = []         # (dictionary, feature) ringed: selected, parent, children

        self.note = QLabel("")
        self.note.setObjectName("mapNote")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555;")
        self.legend = QWidget()
        self.legend.setObjectName("mapLegend")
        self.legend_grid = QGridLayout(self.legend)       # a row per model (seed), a column per size
        self.legend_grid.setContentsMargins(0, 0, 0, 0)
        self.legend_grid.setHorizontalSpacing(10)
        self.legend_grid.setVerticalSpacing(0)
        self.legend_boxes: dict[int, QCheckBox] = {}
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
        self.plot.setMinimumHeight(220)       # a dock squeezed by any layout still shows a usable map
        self.region = pg.RectROI([0, 0], [1, 1], pen=pg.mkPen("#222", width=1, style=Qt.PenStyle.DashLine))
        self.region.sigRegionChangeFinished.connect(self._on_region)
        # the selected feature (thick ring), its split parent and children (rings), lines between them
        self.links = pg.PlotDataItem([], [], connect="pairs", pen=pg.mkPen("#222", width=1.2))
        self.rings = pg.ScatterPlotItem([], [], size=12, brush=None, pxMode=True)
        self.hover_ring = pg.ScatterPlotItem([], [], size=14, brush=None, pen=pg.mkPen("#000", width=1.5))
        for item, z in ((self.links, 10), (self.rings, 11), (self.hover_ring, 12)):
            item.setZValue(z)
            self.plot.addItem(item)

        self.listed = QListWidget()
        self.listed.setObjectName("mapListed")
        self.listed.itemActivated.connect(self._on_listed)
        self.listed.itemClicked.connect(self._on_listed)
        self.listed.hide()

        top = QHBoxLayout()
        top.addWidget(self.legend)
        top.addStretch(1)
        top.addWidget(self.region_box, 0, Qt.AlignmentFlag.AlignTop)
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
        selection.unitSelected.connect(self.show_selected)
        selection.cleared.connect(lambda: self.show_selected("feature", -1))

    # -------------------------------------------------------------- data
    def set_bundle(self, bundle) -> None:
        self._members.close()
        self._members = FamilyMembers(bundle)
        self.bundle = bundle
        for item in self.scatters:
            self.plot.removeItem(item)
        self.scatters, self.scatter_of, self.row_of = [], {}, {}
        for box in self.legend_boxes.values():
            self.legend_grid.removeWidget(box)
            box.setParent(None)
            box.deleteLater()
        self.legend_boxes = {}
        self.listed.clear()
        self.hover.setText("")
        self.hover_ring.setData([], [])
        self._set_highlight([])
        self.rule = None
        self.xy, self.member, self.unit = np.zeros((0, 2), np.float32), np.zeros(0, np.int16), np.zeros(0, np.int32)
        self.shown = np.zeros(0, bool)
        if bundle is None:
            self.note.setText("")
            return
        fmap = bundle.feature_map()
        if fmap is None:
            self.note.setText("This bundle holds one dictionary and no feature map. A family — e.g. "
                              "superpos run --d-sae 512,4096,16384 — maps every dictionary's features here.")
            return
        self.xy, self.member, self.unit, method = fmap
        names = bundle.family.names()
        keep = self.member < len(names)          # a damaged map may name dictionaries the bundle lacks
        self.xy, self.member, self.unit = self.xy[keep], self.member[keep], self.unit[keep]
        self.shown = np.ones(len(self.xy), bool)
        self.rule = SplitChildren(bundle)
        active = int(getattr(bundle, "dictionary", 0))
        note = (f"{len(self.xy):,} features; showing {names[active]} — " +
                METHOD_TEXT.get(method, method or "unknown method"))
        models = {bundle.family.members[int(d)]["model"] for d in np.unique(self.member)}
        if len(models) > 1:
            note += (". The other seed's directions are drawn in model A's neuron basis (a least-squares map "
                     "between the two models' neurons on the matching sample)")
        elif any(m["model"] for m in bundle.family.members):
            note += (". Model A's dictionaries only (a map drawn before the seed alignment; superpos family "
                     "BUNDLE --rematch adds the other seed's)")
        self.note.setText(note)
        self.note.setToolTip(WHY_PCA if method == "pca" else "")
        for d, name in enumerate(names):
            rows = np.flatnonzero(self.member == d)
            if not len(rows):          # e.g. the other seed's dictionaries: not in model A's map
                continue
            row_of = np.full(int(bundle.family.members[d]["d_sae"]) or int(self.unit[rows].max()) + 1, -1, np.int64)
            ok = self.unit[rows] < len(row_of)
            row_of[self.unit[rows][ok]] = rows[ok]
            self.row_of[d] = row_of
            item = PointCloudItem(self.xy[rows, 0], self.xy[rows, 1], dictionary_color(d) + "c0")
            item.setZValue(-len(rows))            # the smaller dictionaries on top: none is buried
            self.plot.addItem(item)
            self.scatters.append(item)
            self.scatter_of[d] = item
            box = QCheckBox(f"{name} ({len(rows):,})")
            box.setObjectName(f"mapLegend_{name}")
            box.setIcon(_dot(dictionary_color(d)))
            box.setChecked(True)
            box.setToolTip(f"Show or hide {name}'s {len(rows):,} features"
                           + (" (the active dictionary)" if d == active else ""))
            if d == active:
                font = box.font()
                font.setBold(True)
                box.setFont(font)
            box.toggled.connect(lambda on, d=d: self._on_legend(d, on))
            m = bundle.family.members[d]
            sizes = sorted({int(x["d_sae"]) for x in bundle.family.members if x["model"] == m["model"]})
            self.legend_grid.addWidget(box, int(m["model"]), sizes.index(int(m["d_sae"])))
            self.legend_boxes[d] = box
        self.plot.autoRange()
        if self.region_box.isChecked():            # the region stays; its list follows the new dictionary
            self._on_region()
        current = self.selection.current
        if current is not None:
            self.show_selected(*current)

    def _on_legend(self, d: int, on: bool) -> None:
        self.scatter_of[d].setVisible(on)
        self.shown[self.member == d] = on
        if self.region_box.isChecked():
            self._on_region()

    def map_row(self, d: int, f: int) -> int | None:
        rows = self.row_of.get(int(d))
        if rows is None or not 0 <= f < len(rows) or rows[f] < 0:
            return None
        return int(rows[f])

    # -------------------------------------------------------------- the selected feature and its split
    def show_selected(self, kind: str, index: int) -> None:
        """Ring the active dictionary's selected feature, its split parent and children, with lines."""
        if self.bundle is None or self.rule is None or kind != "feature" or index < 0:
            self._set_highlight([])
            return
        d = int(getattr(self.bundle, "dictionary", 0))
        picked = [(d, int(index))]
        up = self.rule.tree.parent(d, int(index))
        if up is not None:
            picked.append((d - 1, up[0]))
        picked += [(d + 1, c.feature) for c in self.rule.children(d, int(index))]
        self._set_highlight(picked)

    def _set_highlight(self, picked: list[tuple[int, int]]) -> None:
        self.highlighted = picked
        rows = [self.map_row(d, f) for d, f in picked]
        spots, lines = [], []
        for n, ((d, f), r) in enumerate(zip(picked, rows)):
            if r is None:
                continue
            x, y = float(self.xy[r, 0]), float(self.xy[r, 1])
            spots.append({"pos": (x, y), "size": 16 if n == 0 else 11,
                          "pen": pg.mkPen("#000" if n == 0 else dictionary_color(d), width=3 if n == 0 else 2),
                          "data": (d, f)})
            if n and rows[0] is not None:
                lines += [(float(self.xy[rows[0], 0]), float(self.xy[rows[0], 1])), (x, y)]
        self.rings.setData(spots)
        self.links.setData([p[0] for p in lines], [p[1] for p in lines])

    def label_of(self, d: int, f: int) -> str:
        member = self._members.get(d)
        if not 0 <= f < member.n_features:
            return f"(no feature {f}: the stored map does not match this dictionary)"
        return str(member.column("feature", "labels", int(f)))

    # -------------------------------------------------------------- picking
    def nearest(self, x: float, y: float, radius: float | None = None) -> int | None:
        """Row of the shown point nearest (x, y) in view coordinates, within ``radius`` (default: 8 px)."""
        if not self.shown.any():
            return None
        if radius is None:
            px = self.plot.getPlotItem().getViewBox().viewPixelSize()
            radius = 8 * max(px)
        d2 = (self.xy[:, 0] - x) ** 2 + (self.xy[:, 1] - y) ** 2
        d2[~self.shown] = np.inf
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
            self.hover_ring.setData([], [])
            QToolTip.hideText()
            return
        d, f = int(self.member[i]), int(self.unit[i])
        text = f"{self.bundle.family.names()[d]} feature {f}: {self.label_of(d, f)}"
        self.hover.setText(text)
        self.hover_ring.setData([float(self.xy[i, 0])], [float(self.xy[i, 1])])
        view = self.plot.mapFromScene(scene_pos)
        QToolTip.showText(self.plot.mapToGlobal(QPoint(int(view.x()), int(view.y())) + QPoint(12, 12)),
                          text + "\n(click to open)", self.plot)

    def _on_click(self, event) -> None:
        # with "Select region" on, a click on a point still opens it (dragging moves the region)
        if event.button() != Qt.MouseButton.LeftButton:
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
        """Shown rows inside the rectangle, the active dictionary's first."""
        xy = self.xy
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1) & self.shown
        rows = np.flatnonzero(inside)
        active = int(getattr(self.bundle, "dictionary", 0))
        return rows[np.argsort(self.member[rows] != active, kind="stable")]

    def _on_region(self) -> None:
        pos, size = self.region.pos(), self.region.size()
        rows = self.rows_in(pos.x(), pos.y(), pos.x() + size.x(), pos.y() + size.y())
        self.list_rows(rows)

    def list_rows(self, rows: np.ndarray) -> None:
        self.listed.clear()
        names = self.bundle.family.names() if self.bundle is not None else []
        active = int(getattr(self.bundle, "dictionary", 0))
        mine = int((self.member[rows] == active).sum()) if len(rows) else 0
        header = QListWidgetItem(f"{len(rows):,} features in the region, {mine:,} of "
                                 f"{names[active] if names else ''} listed first" +
                                 (f" (first {MAX_LISTED:,} listed)" if len(rows) > MAX_LISTED else ""))
        header.setFlags(Qt.ItemFlag.NoItemFlags)
        self.listed.addItem(header)
        for i in rows[:MAX_LISTED]:
            d, f = int(self.member[i]), int(self.unit[i])
            item = QListWidgetItem(f"{names[d]} #{f}  {self.label_of(d, f)}")
            item.setData(Qt.ItemDataRole.UserRole, int(i))
            item.setForeground(pg.mkColor(dictionary_color(d)))
            if d == active:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            self.listed.addItem(item)

    def _on_listed(self, item: QListWidgetItem) -> None:
        row = item.data(Qt.ItemDataRole.UserRole)
        if row is not None:
            self.open_row(int(row))
