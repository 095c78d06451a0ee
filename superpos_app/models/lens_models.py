"""Item models of the text lens: the features active in the analysed text, and per-position predictions.

Both read a ``engine.analysis.lens.LensResult`` (plain numpy data); neither runs anything.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

from PySide6.QtGui import QColor

from engine.analysis.lens import LensResult
from superpos_app.faults import contain_faults
from superpos_app.plain_text import display_token
from superpos_app.plain_text import plain

__all__ = ["LensFeatureModel", "PredictionModel", "quoted"]


def quoted(s: str) -> str:
    """A token as the lens shows it: quoted, with whitespace made visible."""
    return "'" + display_token(s) + "'"


def _pct(p: float) -> str:
    return f"{p:.0%}" if p >= 0.095 else f"{p:.1%}" if p >= 0.001 else "<0.1%"


@contain_faults
class LensFeatureModel(QAbstractTableModel):
    """The features active in the analysed text, strongest first."""

    HEADERS = ("feature", "label", "max act", "tokens")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._ids = np.zeros(0, np.int32)
        self._max = np.zeros(0, np.float32)
        self._count = np.zeros(0, np.int32)
        self._labels: list[str] = []

    def set_labels(self, labels: list[str]) -> None:
        self._labels = labels

    def set_result(self, result: LensResult | None) -> None:
        self.beginResetModel()
        if result is None or result.unit_kind != "feature":
            self._ids, self._max, self._count = np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int32)
        else:
            self._ids, self._max, self._count = result.active_ids, result.active_max, result.active_count
        self.endResetModel()

    def feature_at(self, row: int) -> int:
        return int(self._ids[row])

    RIGHT_ALIGNED = frozenset({0, 2, 3})

    def display_text(self, r: int, c: int) -> str:
        fid = int(self._ids[r])
        if c == 0:
            return str(fid)
        if c == 1:
            return plain(self._labels[fid]) if fid < len(self._labels) else ""
        if c == 2:
            return f"{float(self._max[r]):.2f}"
        return str(int(self._count[r]))

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else int(self._ids.shape[0])

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < 4:
            return self.HEADERS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < self._ids.shape[0]:
            return None
        r, c = index.row(), index.column()
        fid = int(self._ids[r])
        if role == Qt.ItemDataRole.DisplayRole:
            return self.display_text(r, c)
        elif role == Qt.ItemDataRole.UserRole:
            return fid
        elif role == Qt.ItemDataRole.TextAlignmentRole and c != 1:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


@contain_faults
class PredictionModel(QAbstractTableModel):
    """Per position: the token, the model's top next tokens, and with the clamp applied."""

    HEADERS = ("#", "token", "next", "predicted", "with clamp", "Δ log p(next)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._r: LensResult | None = None

    def set_result(self, result: LensResult | None) -> None:
        self.beginResetModel()
        self._r = result
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() or self._r is None else self._r.n_tokens

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.HEADERS):
            if role == Qt.ItemDataRole.DisplayRole:
                return self.HEADERS[section]
            if role == Qt.ItemDataRole.ToolTipRole and section == 5:
                return "change in log-probability of the actual next token caused by the clamp"
        return None

    @staticmethod
    def top_text(pred, t: int) -> str:
        """The top next tokens at position t and their probabilities, on one line."""
        return "  ".join(f"{quoted(s)} {_pct(p)}" for s, p in zip(pred.strs[t], pred.probs[t].tolist()))

    def delta(self, t: int) -> float:
        r = self._r
        if r is None or r.clamped is None:
            return math.nan
        return float(r.clamped.next_logprob[t] - r.predictions.next_logprob[t])

    RIGHT_ALIGNED = frozenset({0, 5})
    _RED, _BLUE = QColor(180, 40, 40), QColor(40, 90, 200)

    def display_text(self, t: int, c: int) -> str:
        r = self._r
        if c == 0:
            return str(t)
        if c == 1:
            return quoted(r.tokens[t])
        if c == 2:
            return quoted(r.tokens[t + 1]) if t + 1 < r.n_tokens else ""
        if c == 3:
            return self.top_text(r.predictions, t)
        if c == 4:
            return self.top_text(r.clamped, t) if r.clamped is not None else ""
        d = self.delta(t)
        return "" if not math.isfinite(d) or abs(d) < 5e-4 else f"{d:+.3f}"

    def cell_color(self, t: int, c: int):
        """Red: the clamp changed the top prediction / lowered p(next); blue: raised it."""
        r = self._r
        if r.clamped is None or c < 4:
            return None
        if c == 4:
            return self._RED if int(r.clamped.ids[t, 0]) != int(r.predictions.ids[t, 0]) else None
        d = self.delta(t)
        if math.isfinite(d) and abs(d) > 1e-3:
            return self._RED if d < 0 else self._BLUE
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        r = self._r
        if r is None or not index.isValid() or not 0 <= index.row() < r.n_tokens:
            return None
        t, c = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.display_text(t, c)
        elif role == Qt.ItemDataRole.ForegroundRole:
            return self.cell_color(t, c)
        elif role == Qt.ItemDataRole.TextAlignmentRole and c in (0, 5):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
