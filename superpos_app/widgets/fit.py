"""Widgets that keep a pane readable at any dock width: a title that elides instead of wrapping one
word per line, and a row of plots that stacks them when each would get too narrow to show its title
and axis numbers. tests/app/test_pane_layout.py checks every pane at the default window size and at
a narrow dock width with these rules."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QBoxLayout, QFrame, QLabel, QScrollArea, QSizePolicy, QWidget

from superpos_app.plain_text import tooltip

__all__ = ["ElidedLabel", "ReflowRow", "scrolled"]


class ElidedLabel(QLabel):
    """One line of plain text, cut with "…" when the label is narrower than it; the full text is
    its tooltip and what ``text()`` returns."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        self._full = str(text)
        self._elide()

    def text(self) -> str:
        return self._full

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, max(1, self.width()))
        super().setText(shown)
        self.setToolTip(tooltip(self._full) if shown != self._full else "")   # tooltips read markup

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event) -> None:  # noqa: N802 - a new font elides differently
        super().changeEvent(event)
        if event.type() == event.Type.FontChange:
            self._elide()

    def sizeHint(self) -> QSize:
        fm = self.fontMetrics()
        return QSize(fm.horizontalAdvance(self._full) + 4, fm.height() + 2)

    def minimumSizeHint(self) -> QSize:
        fm = self.fontMetrics()
        return QSize(fm.horizontalAdvance("Feature 0…"), fm.height() + 2)


class ReflowRow(QWidget):
    """Widgets side by side while each gets at least ``min_width`` px; one above the other below that.
    ``row_height`` (if given) is the row's fixed height per line of widgets."""

    def __init__(self, widgets: list[tuple[QWidget, int]], min_width: int, row_height: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.min_width = min_width
        self.row_height = row_height
        self._box = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self._box.setContentsMargins(0, 0, 0, 0)
        self._widgets = [w for w, _ in widgets]
        for widget, stretch in widgets:
            widget.setMinimumWidth(0)
            self._box.addWidget(widget, stretch)
        self.stacked = False
        self._apply()

    @property
    def n(self) -> int:
        return len(self._widgets)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        stacked = event.size().width() < self.n * self.min_width
        if stacked != self.stacked:
            self.stacked = stacked
            self._apply()

    def _apply(self) -> None:
        self._box.setDirection(QBoxLayout.Direction.TopToBottom if self.stacked else QBoxLayout.Direction.LeftToRight)
        lines = self.n if self.stacked else 1
        if self.row_height is not None:
            self.setFixedHeight(self.row_height * lines + self._box.spacing() * (lines - 1))
        else:
            self.setMinimumHeight(sum(w.minimumHeight() for w in self._widgets) if self.stacked else
                                  max((w.minimumHeight() for w in self._widgets), default=0))

    def minimumSizeHint(self) -> QSize:
        return QSize(self.min_width, super().minimumSizeHint().height())


def scrolled(widget: QWidget, frame: QFrame.Shape = QFrame.Shape.NoFrame) -> QScrollArea:
    """``widget`` in a resizable scroll area: content taller than the dock scrolls instead of forcing
    the dock (and the window) taller."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(frame)
    area.setWidget(widget)
    return area
