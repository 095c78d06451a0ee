"""A QTableView that paints its visible cells itself, for item models over numpy arrays.

A model opts in by providing ``display_text(row, col) -> str`` (and optionally ``RIGHT_ALIGNED``, a
set of columns, and ``cell_color(row, col) -> QColor | None``); other models paint as usual.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QPainter, QStaticText, QTransform
from PySide6.QtWidgets import QTableView

from superpos_app.faults import contain_faults

__all__ = ["FastTableView"]


@contain_faults
class FastTableView(QTableView):
    """A QTableView that paints its visible cells itself, in one Python call per repaint.

    The stock path asks ``data()`` for ~8 roles per cell and lays every text out afresh; a
    delegate still costs a C++->Python round trip with wrapped index and option objects per cell.
    At ~35 visible rows x 6 columns either was most of a 20 ms search keystroke on a slow CPU.
    Here one loop reads the model's arrays, draws cached ``QStaticText`` (cell texts repeat a lot:
    labels, 2-decimal numbers) and fills selected / alternate rows. Rows have a uniform height
    (the vertical header is fixed-size), so visible rows follow from the scroll offset. Everything
    else (selection, scrolling, sorting by header click, keyboard navigation) is QTableView's.
    """

    MAX_CACHE = 20_000

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cache: dict[tuple[str, int], tuple[QStaticText | None, float, str]] = {}
        self.setShowGrid(False)
        self.paint_count = 0                     # paints done by the fast path (benchmarks check it)

    def changeEvent(self, event) -> None:
        self._cache.clear()                      # the font or the palette may have changed
        super().changeEvent(event)

    def _text(self, fm, font, text: str, width: int):
        """(static text or None, width, shown text). A text seen for the first time is drawn with
        drawText (~20 µs); preparing a QStaticText costs ~70 µs and pays off only when the text
        comes back (labels and 2-decimal numbers do; most ids do not)."""
        key = (text, width)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > self.MAX_CACHE:
                self._cache.clear()
            tw = fm.horizontalAdvance(text)
            shown = text
            if tw > width:
                shown = fm.elidedText(text, Qt.TextElideMode.ElideRight, width)
                tw = fm.horizontalAdvance(shown)
            hit = self._cache[key] = (None, tw, shown)
        elif hit[0] is None:
            st = QStaticText(hit[2])
            st.setTextFormat(Qt.TextFormat.PlainText)
            st.prepare(QTransform(), font)
            hit = self._cache[key] = (st, hit[1], hit[2])
        return hit

    def paintEvent(self, event) -> None:
        self.paint_count += 1
        m = self.model()
        if m is None or not hasattr(m, "display_text") or m.rowCount() == 0 or m.columnCount() == 0:
            return super().paintEvent(event)
        vp = self.viewport()
        vh, hh = self.verticalHeader(), self.horizontalHeader()
        first = vh.logicalIndexAt(0)
        if first < 0:
            return super().paintEvent(event)
        row_h = vh.defaultSectionSize()
        y = vh.sectionViewportPosition(first)
        n_rows = m.rowCount()
        last = min(n_rows, first + vp.height() // max(1, row_h) + 2)
        cols = [(c, hh.sectionViewportPosition(c), hh.sectionSize(c)) for c in range(m.columnCount())
                if not hh.isSectionHidden(c)]
        width = max((x + w for _, x, w in cols), default=vp.width())
        sel = {i.row() for i in self.selectionModel().selectedRows()} if self.selectionModel() else set()
        pal = self.palette()
        hl, hl_text, alt, text_color = pal.highlight(), pal.highlightedText().color(), pal.alternateBase(), pal.text().color()
        alternate = self.alternatingRowColors()
        font = self.font()
        fm = self.fontMetrics()
        text_dy = (row_h - fm.height()) / 2             # static text: top-left origin
        base_dy = text_dy + fm.ascent()                 # drawText: baseline origin
        right = getattr(m, "RIGHT_ALIGNED", frozenset())
        cell_color = getattr(m, "cell_color", None)
        painter = QPainter(vp)
        try:
            for row in range(first, last):
                if row in sel:
                    painter.fillRect(0, y, width, row_h, hl)
                    painter.setPen(hl_text)
                else:
                    if alternate and row & 1:
                        painter.fillRect(0, y, width, row_h, alt)
                    painter.setPen(text_color)
                selected = row in sel
                for col, x, w in cols:
                    text = m.display_text(row, col)
                    if not text:
                        continue
                    if cell_color is not None and not selected:
                        color = cell_color(row, col)
                        painter.setPen(color if color is not None else text_color)
                    st, tw, shown = self._text(fm, font, text, max(1, w - 8))
                    tx = x + w - 4 - tw if col in right else x + 4
                    if st is None:
                        painter.drawText(int(tx), int(y + base_dy), shown)
                    else:
                        painter.drawStaticText(QPointF(tx, y + text_dy), st)
                y += row_h
        finally:
            painter.end()
