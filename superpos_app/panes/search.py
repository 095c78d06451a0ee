"""Feature search: a filterable, sortable table of every feature (or neuron) in the bundle.

Typing filters by id, label text and top-token strings (debounced ``DEBOUNCE_MS``; the filter itself
is one vectorised numpy pass, see unit_table_model). Selecting a row selects the unit everywhere.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QItemSelectionModel, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QButtonGroup, QCheckBox, QDoubleSpinBox, QHBoxLayout, QHeaderView, QLabel,
    QLineEdit, QToolButton, QVBoxLayout, QWidget,
)

from superpos_app.faults import contain_faults
from superpos_app.models.unit_table_model import (
    COL_LABEL, COL_MAX, COL_SCORE, COL_STATUS, UnitFilter, UnitTable, UnitTableModel,
)
from superpos_app.widgets.fast_table import FastTableView

__all__ = ["FeatureSearchPane", "DEBOUNCE_MS"]

DEBOUNCE_MS = 100


@contain_faults(also=("set_kind", "apply_filter", "_on_kind_button", "_on_return", "_on_table_selection",
                      "_on_table_clicked", "_on_unit_selected"))
class FeatureSearchPane(QWidget):
    kindChanged = Signal(str)
    PANE_FAULTS = True                    # faults of its children are shown in this pane (faults.py)

    def __init__(self, selection, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("featureSearch")
        self.selection = selection
        self.bundle = None
        self._tables: dict[str, UnitTable] = {}
        self._vocab_strs: list[str] | None = None
        self._kind = "feature"
        self._syncing = False

        self.input = QLineEdit()
        self.input.setObjectName("featureSearchInput")
        self.input.setPlaceholderText("Search id, label or top token…  (Ctrl+F)")
        self.input.setClearButtonEnabled(True)

        self.feature_button = QToolButton(text="Features", checkable=True, checked=True)
        self.feature_button.setObjectName("searchFeaturesButton")
        self.neuron_button = QToolButton(text="Neurons", checkable=True)
        self.neuron_button.setObjectName("searchNeuronsButton")
        self._kind_group = QButtonGroup(self)
        self._kind_group.setExclusive(True)
        self._kind_group.addButton(self.feature_button)
        self._kind_group.addButton(self.neuron_button)

        top = QHBoxLayout()
        top.addWidget(self.input, 1)
        top.addWidget(self.feature_button)
        top.addWidget(self.neuron_button)

        self.count_label = QLabel("")
        self.count_label.setObjectName("searchCount")
        self.count_label.setStyleSheet("color: #666;")
        self.density_min = _spin(-12.0, 0.0, -12.0, "log10 density ≥", special="any")
        self.density_min.setObjectName("densityMin")
        self.density_max = _spin(-12.0, 0.0, 0.0, "≤", special=None)
        self.density_max.setObjectName("densityMax")
        self.min_score = _spin(-1.0, 1.0, -1.0, "score ≥", special="any", step=0.05)
        self.min_score.setObjectName("minScore")
        self.hide_dead = QCheckBox("hide dead", checked=True)
        self.hide_dead.setObjectName("hideDead")
        self.hide_ultralow = QCheckBox("hide ultralow")
        self.hide_ultralow.setObjectName("hideUltralow")
        # three short rows rather than one long one: the pane must fit a narrow dock (~330 px)
        filters = QVBoxLayout()
        filters.setSpacing(2)
        row1, row2, row3 = QHBoxLayout(), QHBoxLayout(), QHBoxLayout()
        row1.addWidget(QLabel("log10 density"))
        row1.addWidget(self.density_min)
        row1.addWidget(QLabel("to"))
        row1.addWidget(self.density_max)
        row1.addStretch(1)
        row2.addWidget(QLabel("score ≥"))
        row2.addWidget(self.min_score)
        row2.addStretch(1)
        row2.addWidget(self.count_label)
        row3.addWidget(self.hide_dead)
        row3.addWidget(self.hide_ultralow)
        row3.addStretch(1)
        for row in (row1, row2, row3):
            filters.addLayout(row)

        self.model = UnitTableModel(self)
        self.table = FastTableView()
        self.table.setObjectName("featureTable")
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_SCORE, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COL_LABEL, QHeaderView.ResizeMode.Stretch)
        header.setHighlightSections(False)
        for col, width in ((0, 50), (2, 46), (3, 74), (4, 58), (5, 58)):
            self.table.setColumnWidth(col, width)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.apply_filter)
        self.input.textChanged.connect(lambda _t: self._debounce.start())
        self.input.returnPressed.connect(self._on_return)
        for w in (self.density_min, self.density_max, self.min_score):
            w.valueChanged.connect(lambda _v: self.apply_filter())
        for w in (self.hide_dead, self.hide_ultralow):
            w.toggled.connect(lambda _c: self.apply_filter())
        self._kind_group.buttonToggled.connect(self._on_kind_button)
        self.table.selectionModel().selectionChanged.connect(self._on_table_selection)
        self.table.clicked.connect(self._on_table_clicked)
        selection.unitSelected.connect(self._on_unit_selected)
        self.setEnabled(False)
        self._update_count()

    def sizeHint(self) -> QSize:
        return QSize(420, 600)            # docks start from their widget's size hint

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self._fit_columns(event.size().width())

    def _fit_columns(self, width: int) -> None:
        """The label column keeps room to be read: in a narrow dock the status column (its filters
        stay above) and then max act give way."""
        self.table.setColumnHidden(COL_STATUS, width < 480)
        self.table.setColumnHidden(COL_MAX, width < 360)

    # ------------------------------------------------------------------ bundle
    def set_bundle(self, bundle) -> None:
        self.bundle = bundle
        self._tables.clear()
        self._vocab_strs = None
        if bundle is None:
            self.model.set_table(None)
            self.setEnabled(False)
            self._update_count()
            return
        try:
            tok = bundle.tokenizer()
            self._vocab_strs = list(tok.vocab_strings())    # the labels' own spelling, so both match
        except Exception:  # noqa: BLE001 - search still works on labels without a tokenizer
            self._vocab_strs = None
        self.setEnabled(True)
        self.set_kind(self._kind, force=True)

    def unit_table(self, kind: str) -> UnitTable:
        if kind not in self._tables:
            self._tables[kind] = UnitTable.from_columns(kind, self.bundle.columns(kind), self._vocab_strs,
                                                        density_floor=density_floor(self.bundle))
        return self._tables[kind]

    @property
    def kind(self) -> str:
        return self._kind

    def set_kind(self, kind: str, force: bool = False) -> None:
        if kind == self._kind and not force:
            return
        self._kind = kind
        button = self.feature_button if kind == "feature" else self.neuron_button
        if not button.isChecked():
            button.setChecked(True)          # re-enters via _on_kind_button, harmlessly
        if self.bundle is not None:
            self._explain_dead(kind)
            self.model.set_table(self.unit_table(kind), self.current_filter())
            self._update_count()
            self._select_current()
        self.kindChanged.emit(kind)

    def _explain_dead(self, kind: str) -> None:
        """The filter says what "dead" means (engine.stats.DeadCount: the overview's, `superpos info`'s
        and `superpos eval`'s count too) and on how many tokens."""
        try:
            dead = self.bundle.dead_count(kind)
        except Exception:  # noqa: BLE001 - the table itself reports an unreadable bundle
            return
        self.hide_dead.setToolTip(f"Hide the {dead.n_dead:,} dead {kind}s: {dead.meaning}")

    def _on_kind_button(self, button, checked: bool) -> None:
        if checked:
            self.set_kind("feature" if button is self.feature_button else "neuron")

    # ------------------------------------------------------------------ filtering
    def current_filter(self) -> UnitFilter:
        dmin = self.density_min.value()
        return UnitFilter(
            text=self.input.text(),
            log_density_min=-math.inf if dmin <= self.density_min.minimum() else dmin,
            log_density_max=math.inf if self.density_max.value() >= 0 else self.density_max.value(),
            hide_dead=self.hide_dead.isChecked(),
            hide_ultralow=self.hide_ultralow.isChecked(),
            min_score=None if self.min_score.value() <= self.min_score.minimum() else self.min_score.value(),
        )

    def apply_filter(self) -> None:
        """Filter now (the debounce timer calls this; tests and benchmarks may call it directly)."""
        self._debounce.stop()
        if self.model.table is None:
            return
        self.model.set_filter(self.current_filter())
        self._update_count()
        self._select_current()

    def _update_count(self) -> None:
        t = self.model.table
        if t is None:
            self.count_label.setText("No bundle open")
            return
        noun = "features" if t.kind == "feature" else "neurons"
        self.count_label.setText(f"{self.model.rowCount():,} of {len(t):,} {noun}")

    def _on_return(self) -> None:
        self.apply_filter()
        if self.model.rowCount():
            self.table.selectRow(0)

    # ------------------------------------------------------------------ selection
    def _on_table_selection(self, *_args) -> None:
        if self._syncing:
            return
        rows = self.table.selectionModel().selectedRows()
        if rows and self.model.kind:
            self.selection.select(self.model.kind, self.model.unit_at(rows[0].row()))

    def _on_table_clicked(self, index) -> None:
        if index.isValid() and self.model.kind:
            self.selection.select(self.model.kind, self.model.unit_at(index.row()))

    def _on_unit_selected(self, kind: str, index: int) -> None:
        if self.bundle is None:
            return
        if kind != self._kind:
            return
        self._select_current()

    def _select_current(self) -> None:
        cur = self.selection.current
        sm = self.table.selectionModel()
        self._syncing = True
        try:
            if cur is None or cur[0] != self._kind:
                sm.clearSelection()
                return
            row = self.model.row_of(cur[1])
            if row < 0:
                sm.clearSelection()
                return
            idx = self.model.index(row, 0)
            sm.select(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
            sm.setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.NoUpdate)
            self.table.scrollTo(idx)
        finally:
            self._syncing = False

    def focus_search(self) -> None:
        self.input.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.input.selectAll()


def density_floor(bundle) -> float:
    """The density below which a unit fires on fewer harvested tokens than the top examples it
    shows (K / n_tokens): the score order puts such units last."""
    try:
        return float(bundle.dims["K"]) / max(1, int(bundle.n_tokens))
    except (KeyError, TypeError, ValueError, AttributeError):
        return 0.0


def _spin(lo: float, hi: float, value: float, tip: str, special: str | None, step: float = 0.5) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(2)
    s.setSingleStep(step)
    s.setValue(value)
    s.setToolTip(tip)
    s.setKeyboardTracking(False)
    if special:
        s.setSpecialValueText(special)
    s.setMaximumWidth(80)
    return s
