"""A Qt table model over numpy columns that stays fluid at 131,072 rows.

Shape legend: N units (all rows), R rows currently shown (after filtering, in sort order).

The model never builds per-row Python objects: it holds the columns as arrays, a sort permutation
``order_N`` (np.argsort, recomputed on sort) and a boolean filter ``keep_N`` (vectorised numpy on
each search keystroke). The rows shown are ``view_R = order_N[keep_N[order_N]]``; ``data()`` only
formats the few cells the view actually paints.

Text search runs ``np.strings.find`` (a C loop) over the unique lowercase labels and the vocabulary's
token strings, then gathers the hits back to rows (see ``UnitTable``). A query of digits also
matches the unit id exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

from engine.stats import ULTRALOW_DENSITY
from superpos_app.faults import contain_faults
from superpos_app.plain_text import plain, tooltip

__all__ = ["UnitTable", "UnitTableModel", "UnitFilter", "ULTRALOW_DENSITY", "COLUMNS"]


SEARCH_KEY_CHARS = 500          # characters of a label that text search looks at
COLUMNS = ("id", "label", "score", "log₁₀ dens.", "max act", "status")
COL_ID, COL_LABEL, COL_SCORE, COL_DENSITY, COL_MAX, COL_STATUS = range(len(COLUMNS))

try:                              # numpy >= 2.0: a real ufunc
    _find = np.strings.find
except AttributeError:            # pragma: no cover - numpy 1.x
    _find = np.char.find


@dataclass
class UnitTable:
    """The columns the search table shows for one unit kind (plain numpy; built once per bundle).

    Search keys are deduplicated: labels repeat (auto-labels come from templates) and top tokens
    come from a vocabulary of a few thousand strings, so a query scans the U unique labels and the
    V token strings, then maps hits back to rows with two integer gathers.
    """

    kind: str
    ids: np.ndarray               # int64 [N]
    labels: np.ndarray            # object [N] str
    score: np.ndarray             # float32 [N] (NaN: no score)
    log_density: np.ndarray       # float32 [N] (-inf: dead)
    max_act: np.ndarray           # float32 [N]
    status: np.ndarray            # int8 [N]: 0 live, 1 ultralow, 2 dead
    label_keys: np.ndarray        # bytes [U] unique lowercase UTF-8 labels
    label_inv: np.ndarray         # int32 [N] row -> index in label_keys
    token_keys: np.ndarray        # bytes [V+1] lowercase stripped token strings ("" last, for padding)
    top_ids: np.ndarray           # int32 [5, N] top token ids (transposed: one contiguous row per rank),
                                  #   padding -> V
    vocab: list[str]              # [V] readable token strings (tooltips)
    rare: np.ndarray | None = None  # bool [N]: fires on fewer tokens than it shows examples (density floor)
    density_floor: float = 0.0

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def top_tokens_text(self, i: int) -> str:
        V = len(self.vocab)
        return "  ".join(repr(self.vocab[t]) for t in self.top_ids[:, i].tolist() if t < V)

    @classmethod
    def from_columns(cls, kind: str, columns: dict, vocab_strs: list[str] | None = None,
                     density_floor: float = 0.0) -> "UnitTable":
        """Build from ``Bundle.columns(kind)``: density, max_act, label(s), score(s), top_token_ids.
        Units below ``density_floor`` are ``rare``: the score order puts them after the others."""
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
        # Unique search keys as Python strings, never ``astype(str)``: a fixed-width array is as wide as
        # the longest label (one 10 MB label times N rows was gigabytes). A key keeps the first
        # SEARCH_KEY_CHARS characters of the label and of the language-model explanation, if any.
        keys = [k[:SEARCH_KEY_CHARS] for k in labels.tolist()]
        explanations = columns.get("explanation")
        if explanations is not None and any(explanations):      # search matches the LLM explanation too
            keys = [f"{k}\x1f{str(e)[:SEARCH_KEY_CHARS]}" if e else k for k, e in zip(keys, explanations)]
        uniq, inv = np.unique(np.array(keys, dtype=object), return_inverse=True)
        label_keys = np.array([u.lower().encode("utf-8") for u in uniq.tolist()] or [b""])
        vocab = list(vocab_strs or [])
        V = len(vocab)
        token_keys = np.array([t.strip().lower().encode("utf-8") for t in vocab] + [b""])
        tok_ids = _pick(columns, "top_token_ids", default=None)
        if tok_ids is not None and V:
            top_ids = np.asarray(tok_ids, dtype=np.int64).reshape(n, -1)
            top_ids = np.where((top_ids < 0) | (top_ids >= V), V, top_ids).astype(np.int32)
        else:
            top_ids = np.full((n, 1), V, np.int32)
        top_ids = np.ascontiguousarray(top_ids.T)
        return cls(kind=kind, ids=np.arange(n, dtype=np.int64), labels=labels, score=score,
                   log_density=log_density, max_act=max_act, status=status, label_keys=label_keys,
                   label_inv=inv.astype(np.int32).reshape(-1), token_keys=token_keys, top_ids=top_ids,
                   vocab=vocab, rare=density < density_floor, density_floor=float(density_floor))


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


@contain_faults
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

    # ------------------------------------------------------------------ data in
    @property
    def table(self) -> UnitTable | None:
        return self._table

    @property
    def kind(self) -> str | None:
        return self._table.kind if self._table is not None else None

    def set_table(self, table: UnitTable | None, flt: UnitFilter | None = None) -> None:
        """Show ``table`` (sorted as before), filtered by ``flt`` if given, else by the current filter."""
        self.beginResetModel()
        self._table = table
        if flt is not None:
            self._filter = flt
        n = len(table) if table is not None else 0
        self._order = np.arange(n, dtype=np.int64)
        self._keep = np.ones(n, bool)
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

    # ------------------------------------------------------------------ filtering / sorting
    def _text_mask(self, text: str) -> np.ndarray:
        """Rows whose label or one of whose top tokens contains ``text`` (case-insensitive);
        a query of digits (optionally after '#') also matches that unit id."""
        t = self._table
        q = text.strip().lower()
        if not q:
            return np.ones(len(t), bool)
        qb = q.encode("utf-8")
        mask = (_find(t.label_keys, qb) >= 0)[t.label_inv]             # [U] hits -> [N]
        token_hit = _find(t.token_keys, qb) >= 0                        # [V+1]
        if token_hit.any():
            for rank_ids in t.top_ids:                                  # 5 contiguous gathers beat
                mask |= token_hit[rank_ids]                             # .any(axis=1) on [N, 5]
        digits = q.lstrip("#")
        if digits.isdigit() and int(digits) < len(t):
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
            key = np.argsort(t.label_inv, kind="stable")       # label_inv indexes the sorted unique labels
        else:
            values = {COL_ID: t.ids, COL_SCORE: t.score, COL_DENSITY: t.log_density,
                      COL_MAX: t.max_act, COL_STATUS: t.status}.get(column, t.ids)
            values = np.asarray(values, np.float64)
            # NaN (no score) always last; -inf (dead) sorts as the smallest
            if order == Qt.SortOrder.DescendingOrder and column == COL_SCORE and t.rare is not None:
                # "interesting first": by label score among the units above the density floor; the
                # rare ones (a perfect score on a handful of firings says little) follow
                key = np.lexsort((np.where(np.isnan(values), np.inf, -values), t.rare))
            elif order == Qt.SortOrder.DescendingOrder:
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
            floor = self._table.density_floor if self._table is not None else 0.0
            rare = (f"; high to low, units firing on fewer than {floor:.2g} of tokens (fewer firings than "
                    "the examples they show) come last") if floor > 0 else ""
            return {COL_SCORE: "auto-label score (Spearman correlation of predicted vs true activations)" + rare,
                    COL_DENSITY: "log10 of the fraction of tokens on which the unit fires",
                    COL_STATUS: f"dead: never fired; ultralow: density < {ULTRALOW_DENSITY:g}"}.get(section)
        return None

    RIGHT_ALIGNED = frozenset({COL_ID, COL_SCORE, COL_DENSITY, COL_MAX})

    def display_text(self, row: int, col: int) -> str:
        """The text of one cell (used by data() and by the fast delegate)."""
        i = int(self._view[row])
        t = self._table
        if col == COL_ID:
            return str(i)
        if col == COL_LABEL:
            return plain(t.labels[i])
        if col == COL_SCORE:
            s = float(t.score[i])
            return "" if math.isnan(s) else f"{s:.2f}"
        if col == COL_DENSITY:
            d = float(t.log_density[i])
            return "—" if not math.isfinite(d) else f"{d:.2f}"
        if col == COL_MAX:
            return f"{float(t.max_act[i]):.2f}"
        return ("", "ultralow", "dead")[int(t.status[i])]

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self._table is None:
            return None
        row, col = index.row(), index.column()
        if not (0 <= row < self._view.shape[0]):
            return None
        i = int(self._view[row])
        t = self._table
        if role == Qt.ItemDataRole.DisplayRole:
            return self.display_text(row, col)
        elif role == Qt.ItemDataRole.UserRole:
            return i
        elif role == Qt.ItemDataRole.ToolTipRole and col == COL_LABEL:
            tip = t.labels[i] or "(no label)"
            toks = t.top_tokens_text(i)
            return tooltip(f"{tip}\ntop tokens: {toks}" if toks else tip)
        elif role == Qt.ItemDataRole.TextAlignmentRole and col not in (COL_LABEL, COL_STATUS):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return _ITEM_FLAGS


_ITEM_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
