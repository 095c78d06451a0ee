"""A Qt table model over numpy columns that stays fluid at 131,072 rows.

Shape legend: N units (all rows), R rows currently shown (after filtering, in sort order).

The model never builds per-row Python objects: it holds the columns as arrays, a sort permutation
``order_N`` (np.argsort, recomputed on sort) and a boolean filter ``keep_N`` (vectorised numpy on
each search keystroke). The rows shown are ``view_R = order_N[keep_N[order_N]]``; ``data()`` only
formats the few cells the view actually paints.

Text search runs over one precomputed lowercase UTF-8 byte string per unit (label + top-token
strings) with ``np.strings.find`` — a C loop, ~5 ms over 131k rows. A query of digits also matches
the unit id exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

__all__ = ["UnitTable", "UnitTableModel", "UnitFilter", "ULTRALOW_DENSITY", "COLUMNS"]

ULTRALOW_DENSITY = 1e-6          # the paper's "ultralow density" threshold

COLUMNS = ("id", "label", "score", "log10 density", "max act", "status")
COL_ID, COL_LABEL, COL_SCORE, COL_DENSITY, COL_MAX, COL_STATUS = range(len(COLUMNS))

try:                              # numpy >= 2.0: a real ufunc
    _find = np.strings.find
except AttributeError:            # pragma: no cover - numpy 1.x
    _find = np.char.find


@dataclass
class UnitTable:
    """The columns the search table shows for one unit kind (plain numpy; built once per bundle)."""

    kind: str
    ids: np.ndarray               # int64 [N]
    labels: np.ndarray            # object [N] str
    score: np.ndarray             # float32 [N] (NaN: no score)
    log_density: np.ndarray       # float32 [N] (-inf: dead)
    max_act: np.ndarray           # float32 [N]
    status: np.ndarray            # int8 [N]: 0 live, 1 ultralow, 2 dead
    search: np.ndarray            # bytes [N] lowercase "label \x1f top tokens"
    top_tokens: np.ndarray        # object [N] str: the top tokens, for tooltips

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def from_columns(cls, kind: str, columns: dict, vocab_strs: list[str] | None = None) -> "UnitTable":
        """Build from ``Bundle.columns(kind)``: density, max_act, label(s), score(s), top_token_ids."""
        density = np.asarray(_pick(columns, "density"), dtype=np.float64)
        n = int(density.shape[0])
        labels = _pick(columns, "label", "labels", default=None)
        labels = np.array(["" if x is None else str(x) for x in labels] if labels is not None else [""] * n,
                          dtype=object)
        score = _pick(columns, "score", "scores", default=None)
        score = np.full(n, np.nan, np.float32) if score is None else np.asarray(score, np.float32)
        max_act = np.asarray(_pick(columns, "max_act", default=np.zeros(n)), np.float32)
        with np.errstate(divide="ignore"):
            log_density = np.log10(density).astype(np.float32)
        status = np.zeros(n, np.int8)
        status[(density > 0) & (density < ULTRALOW_DENSITY)] = 1
        status[density <= 0] = 2
        tok_ids = _pick(columns, "top_token_ids", default=None)
        if tok_ids is not None and vocab_strs:
            vocab = np.array([s.strip() for s in vocab_strs] + [""], dtype=object)   # index -1 -> ""
            tok_ids = np.asarray(tok_ids, dtype=np.int64).reshape(n, -1)
            tok_ids = np.where((tok_ids < 0) | (tok_ids >= len(vocab_strs)), -1, tok_ids)
            strs = vocab[tok_ids]                                                      # [N, 5]
            top_tokens = np.array([" ".join(repr(t)[1:-1] for t in row if t) for row in strs], dtype=object)
            raw = [" ".join(row) for row in strs.tolist()]
        else:
            top_tokens = np.array([""] * n, dtype=object)
            raw = [""] * n
        search = np.array([f"{lab}\x1f{tok}".lower().encode("utf-8") for lab, tok in zip(labels, raw)])
        return cls(kind=kind, ids=np.arange(n, dtype=np.int64), labels=labels, score=score,
                   log_density=log_density, max_act=max_act, status=status, search=search,
                   top_tokens=top_tokens)


def _pick(columns: dict, *names, default=KeyError):
    for name in names:
        if name in columns and columns[name] is not None:
            return columns[name]
    if default is KeyError:
        raise KeyError(f"bundle columns lack {names[0]!r} (have {sorted(columns)})")
    return default


@dataclass(frozen=True)
class UnitFilter:
    text: str = ""
    log_density_min: float = -math.inf
    log_density_max: float = math.inf
    hide_dead: bool = False
    hide_ultralow: bool = False
    min_score: float | None = None        # None: no score filter (rows without score kept)


class UnitTableModel(QAbstractTableModel):
    """Sorted, filtered view over a ``UnitTable``; row i of the view is unit ``unit_at(i)``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._table: UnitTable | None = None
        self._order = np.zeros(0, np.int64)        # [N] sort permutation
        self._keep = np.zeros(0, bool)             # [N] filter mask
        self._view = np.zeros(0, np.int64)         # [R] shown rows
        self._filter = UnitFilter()
        self._sort = (COL_ID, Qt.SortOrder.AscendingOrder)
        self._prev_text = ""                       # for incremental text search
        self._prev_text_mask: np.ndarray | None = None

    # ------------------------------------------------------------------ data in
    @property
    def table(self) -> UnitTable | None:
        return self._table

    @property
    def kind(self) -> str | None:
        return self._table.kind if self._table is not None else None

    def set_table(self, table: UnitTable | None) -> None:
        self.beginResetModel()
        self._table = table
        n = len(table) if table is not None else 0
        self._order = np.arange(n, dtype=np.int64)
        self._keep = np.ones(n, bool)
        self._prev_text, self._prev_text_mask = "", None
        if table is not None:
            self._order = self._sort_order(*self._sort)
            self._keep = self._compute_keep(self._filter)
        self._view = self._order[self._keep[self._order]]
        self.endResetModel()

    def set_filter(self, flt: UnitFilter) -> None:
        """Recompute the shown rows (vectorised); the view resets because the row set changes."""
        self._filter = flt
        if self._table is None:
            return
        self.beginResetModel()
        self._keep = self._compute_keep(flt)
        self._view = self._order[self._keep[self._order]]
        self.endResetModel()

    @property
    def filter(self) -> UnitFilter:
        return self._filter

    def unit_at(self, row: int) -> int:
        return int(self._view[row])

    def row_of(self, unit: int) -> int:
        """View row showing ``unit``, or -1 if it is filtered out."""
        hits = np.flatnonzero(self._view == unit)
        return int(hits[0]) if hits.size else -1

    def shown_units(self) -> np.ndarray:
        return self._view.copy()

    # ------------------------------------------------------------------ filtering / sorting
    def _text_mask(self, text: str) -> np.ndarray:
        t = self._table
        q = text.strip().lower()
        if not q:
            return np.ones(len(t), bool)
        if self._prev_text_mask is not None and self._prev_text and self._prev_text in q:
            # typing extends the query: matches can only shrink, so only search previous matches
            cand = np.flatnonzero(self._prev_text_mask)
            mask = np.zeros(len(t), bool)
            mask[cand[_find(t.search[cand], q.encode("utf-8")) >= 0]] = True
        else:
            mask = _find(t.search, q.encode("utf-8")) >= 0
        self._prev_text, self._prev_text_mask = q, mask
        digits = q.lstrip("#")
        if digits.isdigit() and int(digits) < len(t):
            mask = mask.copy()
            mask[int(digits)] = True
        return mask

    def _compute_keep(self, f: UnitFilter) -> np.ndarray:
        t = self._table
        keep = self._text_mask(f.text)
        if f.hide_dead:
            keep &= t.status != 2
        if f.hide_ultralow:
            keep &= t.status != 1
        if f.log_density_min > -math.inf or f.log_density_max < math.inf:
            keep &= (t.log_density >= f.log_density_min) & (t.log_density <= f.log_density_max)
        if f.min_score is not None:
            keep &= t.score >= f.min_score                     # NaN compares False: unscored hidden
        return keep

    def _sort_order(self, column: int, order: Qt.SortOrder) -> np.ndarray:
        t = self._table
        if column == COL_LABEL:
            key = np.argsort(t.labels.astype(str), kind="stable")
        else:
            values = {COL_ID: t.ids, COL_SCORE: t.score, COL_DENSITY: t.log_density,
                      COL_MAX: t.max_act, COL_STATUS: t.status}.get(column, t.ids)
            values = np.asarray(values, np.float64)
            # NaN (no score) always last; -inf (dead) sorts as the smallest
            if order == Qt.SortOrder.DescendingOrder:
                key = np.argsort(np.where(np.isnan(values), np.inf, -values), kind="stable")
            else:
                key = np.argsort(np.where(np.isnan(values), np.inf, values), kind="stable")
            return key.astype(np.int64)
        return (key[::-1] if order == Qt.SortOrder.DescendingOrder else key).astype(np.int64)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self._sort = (column, order)
        if self._table is None:
            return
        self.layoutAboutToBeChanged.emit()
        old_view = self._view
        self._order = self._sort_order(column, order)
        self._view = self._order[self._keep[self._order]]
        # keep persistent indexes (the selection) on the same units
        persistent = self.persistentIndexList()
        if persistent:
            pos = np.empty(len(self._table), np.int64)
            pos[self._view] = np.arange(len(self._view))
            new = [self.index(int(pos[old_view[p.row()]]), p.column()) if p.row() < len(old_view)
                   else QModelIndex() for p in persistent]
            self.changePersistentIndexList(persistent, new)
        self.layoutChanged.emit()

    # ------------------------------------------------------------------ QAbstractTableModel
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else int(self._view.shape[0])

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            if 0 <= section < len(COLUMNS):
                return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return {COL_SCORE: "auto-label score (Spearman correlation of predicted vs true activations)",
                    COL_DENSITY: "log10 of the fraction of tokens on which the unit fires",
                    COL_STATUS: f"dead: never fired; ultralow: density < {ULTRALOW_DENSITY:g}"}.get(section)
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self._table is None:
            return None
        row, col = index.row(), index.column()
        if not (0 <= row < self._view.shape[0]):
            return None
        i = int(self._view[row])
        t = self._table
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_ID:
                return str(i)
            if col == COL_LABEL:
                return t.labels[i]
            if col == COL_SCORE:
                s = float(t.score[i])
                return "" if math.isnan(s) else f"{s:.2f}"
            if col == COL_DENSITY:
                d = float(t.log_density[i])
                return "—" if not math.isfinite(d) else f"{d:.2f}"
            if col == COL_MAX:
                return f"{float(t.max_act[i]):.2f}"
            if col == COL_STATUS:
                return ("", "ultralow", "dead")[int(t.status[i])]
        elif role == Qt.ItemDataRole.UserRole:
            return i
        elif role == Qt.ItemDataRole.ToolTipRole and col == COL_LABEL:
            tip = t.labels[i] or "(no label)"
            return f"{tip}\ntop tokens: {t.top_tokens[i]}" if t.top_tokens[i] else tip
        elif role == Qt.ItemDataRole.TextAlignmentRole and col not in (COL_LABEL, COL_STATUS):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
