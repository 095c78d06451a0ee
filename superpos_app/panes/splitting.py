"""Splitting tree: how the selected feature splits across the family's dictionary sizes.

The tree's root is the selected feature's farthest ancestor (its best decoder match in each smaller
dictionary in turn, ``engine.bundle.family.FamilyTree``); under every node are its children in the
next size by the one rule ``superpos family`` prints too (``engine.analysis.family_report.
SplitChildren``: best match, decoder cosine >= 0.5, live, labelled, not a copy, one per label), with
the decoder cosine to the parent, the activation correlation with it on the matching sample (when
it is among the stored top matches), the density and the label; the note says how many weaker
matches the rule leaves out. A selected feature the rule does not count is still shown under its
parent, in grey, with the reason. Deeper levels fill in when expanded. Activating a row opens that
feature (``openFeature(dictionary, feature)``), so the tree is navigable up and down.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from engine.analysis.family_report import SplitChildren
from engine.bundle import FamilyMembers
from engine.bundle.family import FamilyTree
from engine.bundle.schema import BundleError
from superpos_app.faults import contain_faults
from superpos_app.panes.feature_map import dictionary_color

__all__ = ["SplittingPane"]

COLUMNS = ("dict", "feature", "dec. cos", "act. corr", "density", "label")
TIPS = ("dictionary", "feature index", "cos = decoder cosine: how close this feature's direction is to its parent's",
        "corr = activation correlation with the parent on the matching sample (blank: not among its stored "
        "top matches)", "fraction of harvested tokens it fires on", "label")
LEGEND = ("dec. cos = decoder cosine to the parent · act. corr = activation correlation with the parent on the "
          "matching sample · children: best match, cos ≥ {cos:g}, live, labelled, not a copy, one per label "
          "(as superpos family counts them)")
ROLE = Qt.ItemDataRole.UserRole


@contain_faults(also=("show_feature", "_on_activated", "_on_expanded"))
class SplittingPane(QWidget):
    PANE_FAULTS = True
    openFeature = Signal(int, int)            # (dictionary, feature)

    def __init__(self, selection, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("splitting")
        self.selection = selection
        self.bundle = None
        self.family: FamilyTree | None = None
        self.rule: SplitChildren | None = None
        self._members = FamilyMembers()
        self._corr: dict[int, tuple] = {}       # d + 1 -> stored corr matches of d + 1 against d
        self.note = QLabel("Select a feature")
        self.note.setObjectName("splittingNote")
        self.note.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setObjectName("splittingTree")
        self.tree.setHeaderLabels(list(COLUMNS))
        for c, tip in enumerate(TIPS):
            self.tree.headerItem().setToolTip(c, tip)
        self.tree.setUniformRowHeights(True)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)   # labels elide instead
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.tree.setIndentation(14)
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(30)
        for c in range(len(COLUMNS) - 1):
            self.tree.setColumnWidth(c, 56)
        self.tree.itemActivated.connect(self._on_activated)
        self.tree.itemDoubleClicked.connect(self._on_activated)
        self.tree.itemExpanded.connect(self._on_expanded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.note)
        layout.addWidget(self.tree, 1)
        self.legend = QLabel(LEGEND.format(cos=0.5))
        self.legend.setObjectName("splittingLegend")
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("color: #555;")
        layout.addWidget(self.legend)
        selection.unitSelected.connect(self.show_feature)
        selection.cleared.connect(self.tree.clear)

    def set_bundle(self, bundle) -> None:
        self._members.close()
        self._members, self._corr = FamilyMembers(bundle), {}
        self.bundle = bundle
        self.tree.clear()
        self.rule = SplitChildren(bundle) if bundle is not None else None
        self.family = self.rule.tree if self.rule is not None else None
        if bundle is None:
            self.note.setText("")
        elif self.family is None or len(self.family) < 2:
            self.note.setText("This bundle holds one dictionary: there is nothing to split into. A family "
                              "(superpos run --d-sae 512,4096,16384) shows each feature's children here.")
        else:
            self.note.setText("Select a feature to see its parents and children across the sizes "
                              f"{', '.join(self.family.names)}.")
            current = self.selection.current
            if current is not None:
                self.show_feature(*current)

    def _corr_to_parent(self, d: int, f: int, parent: int) -> float:
        if d not in self._corr:
            self._corr[d] = self.bundle.matches(d, d - 1, "corr")
        m = self._corr[d]
        if m is None:
            return math.nan
        ids, values = m
        hit = (ids[f] == parent).nonzero()[0]
        return float(values[f, hit[0]]) if hit.size else math.nan

    def _item(self, d: int, f: int, cos: float | None, parent: int | None) -> QTreeWidgetItem:
        member = self._members.get(d)
        if not 0 <= f < member.n_features:
            raise BundleError(f"{self.bundle.path}: the stored matches name feature {f} of dictionary {d}, "
                              f"which has {member.n_features}; the file may be damaged")
        density = float(member.columns("feature")["density"][f])
        corr = self._corr_to_parent(d, f, parent) if parent is not None else math.nan
        item = QTreeWidgetItem([
            self.family.names[d], str(f), "" if cos is None else f"{cos:.2f}",
            "" if math.isnan(corr) else f"{corr:.2f}", f"{density:.2e}",
            str(member.column("feature", "labels", f)),
        ])
        item.setData(0, ROLE, (d, f))
        item.setToolTip(5, item.text(5))             # a long label elides in its column: hover reads it whole
        item.setToolTip(0, f"{self.family.names[d]} feature {f}: double-click to open it in Feature Detail")
        item.setForeground(0, QBrush(QColor(dictionary_color(d))))
        if self.rule.children(d, f):
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
        return item

    def _fill(self, item: QTreeWidgetItem) -> None:
        """Add the children of ``item``'s feature (once)."""
        if item.childCount():
            return
        d, f = item.data(0, ROLE)
        for child in self.rule.children(d, f):
            item.addChild(self._item(d + 1, child.feature, child.cosine, f))

    def show_feature(self, kind: str, index: int) -> None:
        if self.bundle is None or self.family is None or len(self.family) < 2 or kind != "feature":
            return
        d = int(getattr(self.bundle, "dictionary", 0))
        chain = [(d, int(index), None)]                 # the selected feature and its ancestors
        while chain[-1][0] > 0:
            up = self.family.parent(chain[-1][0], chain[-1][1])
            if up is None:
                break
            chain[-1] = (chain[-1][0], chain[-1][1], up[1])
            chain.append((chain[-1][0] - 1, up[0], None))
        chain.reverse()

        self.tree.clear()
        parent_item, parent_f, selected = None, None, None
        for depth, (dd, f, cos) in enumerate(chain):
            item = self._item(dd, f, cos, parent_f)
            if parent_item is None:
                self.tree.addTopLevelItem(item)
            else:
                self._fill(parent_item)                  # siblings too: the whole split is visible
                item = next((parent_item.child(i) for i in range(parent_item.childCount())
                             if parent_item.child(i).data(0, ROLE) == (dd, f)), None)
                if item is None:                         # on the path but not a child by the rule: say why
                    item = self._item(dd, f, cos, parent_f)
                    why = next((c.reason for c in self.rule.all(dd - 1, parent_f) if c.feature == f), "")
                    for c in range(len(COLUMNS)):
                        item.setForeground(c, QBrush(QColor("#888")))
                        item.setToolTip(c, f"not counted as a child: {why}")
                    parent_item.addChild(item)
            parent_item, parent_f, selected = item, f, item
            item.setExpanded(True)
        self._fill(selected)
        selected.setExpanded(True)
        font = selected.font(0)
        font.setBold(True)
        for c in range(len(COLUMNS)):
            selected.setFont(c, font)
        self.tree.setCurrentItem(selected)
        every = self.rule.all(d, int(index))
        n = sum(c.counted for c in every)
        weaker = f"; {len(every) - n} weaker matches not counted" if len(every) > n else ""
        self.note.setText(f"{self.family.names[d]} feature {index}: {n} children in the next size{weaker}"
                          if d + 1 < len(self.family) else f"{self.family.names[d]} feature {index} "
                          "(the largest dictionary)")
        for c in range(len(COLUMNS) - 1):
            self.tree.resizeColumnToContents(c)

    def _on_expanded(self, item: QTreeWidgetItem) -> None:
        self._fill(item)

    def _on_activated(self, item: QTreeWidgetItem, column: int = 0) -> None:
        d, f = item.data(0, ROLE)
        self.openFeature.emit(int(d), int(f))
