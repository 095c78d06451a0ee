"""The one shared "which unit am I looking at" object, with browser-style back/forward history.

Panes never talk to each other directly: a pane that lets the user pick a unit calls
``window.selection.select(kind, index)``; every pane that shows a unit connects to
``unitSelected(kind, index)``. ``kind`` is ``"feature"`` or ``"neuron"`` (engine.stats.UNIT_KINDS).

History works like a browser's: selecting a new unit after going back drops the forward entries;
selecting the unit already current is a no-op (no signal, no history entry).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from engine.stats import UNIT_KINDS

__all__ = ["Selection"]


class Selection(QObject):
    unitSelected = Signal(str, int)    # (kind, index) — emitted on select/back/forward
    historyChanged = Signal()          # can_back / can_forward may have changed
    cleared = Signal()                 # the bundle closed: nothing is selected

    def __init__(self, parent: QObject | None = None, max_history: int = 200) -> None:
        super().__init__(parent)
        self._history: list[tuple[str, int]] = []
        self._pos = -1                 # index of the current entry in _history (-1: none)
        self._max = max_history

    # --- queries ---------------------------------------------------------------------------------
    @property
    def current(self) -> tuple[str, int] | None:
        return self._history[self._pos] if self._pos >= 0 else None

    @property
    def can_back(self) -> bool:
        return self._pos > 0

    @property
    def can_forward(self) -> bool:
        return 0 <= self._pos < len(self._history) - 1

    # --- changes ---------------------------------------------------------------------------------
    def select(self, kind: str, index: int) -> None:
        """Make (kind, index) the current unit, recording it in the history."""
        if kind not in UNIT_KINDS:
            raise ValueError(f"unit kind must be one of {UNIT_KINDS}, not {kind!r}")
        entry = (kind, int(index))
        if entry == self.current:
            return
        del self._history[self._pos + 1:]
        self._history.append(entry)
        if len(self._history) > self._max:
            del self._history[0]
        self._pos = len(self._history) - 1
        self.historyChanged.emit()
        self.unitSelected.emit(*entry)

    def back(self) -> bool:
        if not self.can_back:
            return False
        self._pos -= 1
        self.historyChanged.emit()
        self.unitSelected.emit(*self._history[self._pos])
        return True

    def forward(self) -> bool:
        if not self.can_forward:
            return False
        self._pos += 1
        self.historyChanged.emit()
        self.unitSelected.emit(*self._history[self._pos])
        return True

    def clear(self) -> None:
        """Forget everything (called when a bundle closes)."""
        self._history.clear()
        self._pos = -1
        self.historyChanged.emit()
        self.cleared.emit()
