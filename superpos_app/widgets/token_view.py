"""A painted widget that shows token text with each token's background shaded by an activation.

Used by the detail pane (top / interval examples: many short lines) and the text lens (one long
line that wraps). Tokens are laid out like words in a paragraph; whitespace inside tokens is kept,
a newline inside a token is drawn as ``↵`` and breaks the line. Hovering shows a tooltip (the value,
or whatever ``tooltip_fn(line, token)`` returns) and emits ``tokenHovered``; clicking emits
``tokenClicked``. Optional per-token underlines (blue/red) draw a signed effect, as the paper's
visualizer does for ablation effects on next-token loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetricsF, QPainter, QPen, QStaticText, QTransform
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from superpos_app.faults import contain_faults
from superpos_app.plain_text import display_token, tooltip

__all__ = ["TokenView", "shade_color"]

_ACT_RGB = (255, 128, 0)            # orange, as the paper's visualizer
_NEG_RGB = (40, 110, 255)           # blue for negative values / loss decreases
_POS_RGB = (220, 30, 30)            # red for loss increases


_SHADES: dict[tuple[bool, int], QColor] = {}


def shade_color(value: float, max_value: float) -> QColor:
    """Background for an activation: transparent at 0, saturated orange at ``max_value``."""
    if not max_value or not np.isfinite(value) or value == 0:
        return _CLEAR
    a = float(min(1.0, abs(value) / max_value))
    key = (value > 0, int(round(25 + 200 * a)))
    color = _SHADES.get(key)
    if color is None:
        r, g, b = _ACT_RGB if key[0] else _NEG_RGB
        color = _SHADES[key] = QColor(r, g, b, key[1])
    return color


_CLEAR = QColor(0, 0, 0, 0)


@dataclass
class _Line:
    tokens: list[str]
    values: np.ndarray              # float32 [n]
    prefix: str = ""
    center: int = -1                # token drawn with a frame (the example's own token)
    underline: np.ndarray | None = None   # float32 [n] signed effect, or None
    shown: list[str] | None = None        # tokens as drawn (display_token), computed once


@contain_faults
class TokenView(QWidget):
    tokenHovered = Signal(int, int)     # (line, token); (-1, -1) when leaving tokens
    tokenClicked = Signal(int, int)

    def __init__(self, parent: QWidget | None = None, line_gap: float = 6.0):
        super().__init__(parent)
        self.setMouseTracking(True)
        # paintEvent fills its background itself: Qt need not repaint the parents beneath it
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        self._lines: list[_Line] = []
        self._max_value = 1.0
        self._underline_scale = 1.0
        self._rects: list[list[QRectF]] = []      # per line, per token
        self._prefix_rects: list[QRectF] = []
        self._laid_out_width = -1
        self._height = 0
        self._line_gap = line_gap
        self._hover = (-1, -1)
        self._highlight: tuple[int, int] | None = None
        self.tooltip_fn: Callable[[int, int], str] | None = None
        self.placeholder = ""
        self.paint_count = 0                                # benchmarks check that a paint happened
        self._widths: dict[str, float] = {}               # shown token -> advance (font-dependent)
        self._statics: dict[str, QStaticText] = {}        # shown token -> prepared text

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.FontChange:
            self._widths.clear()
            self._statics.clear()
            self._relayout()
        super().changeEvent(event)

    def _static(self, shown: str) -> QStaticText:
        st = self._statics.get(shown)
        if st is None:
            if len(self._statics) > 20_000:
                self._statics.clear()
            st = QStaticText(shown)
            st.setTextFormat(Qt.TextFormat.PlainText)
            st.prepare(QTransform(), self.font())
            self._statics[shown] = st
        return st

    # ------------------------------------------------------------------ content
    def set_lines(self, lines: Sequence[Sequence[str]], values: Sequence[np.ndarray],
                  max_value: float | None = None, prefixes: Sequence[str] | None = None,
                  centers: Sequence[int] | None = None) -> None:
        self._lines = [
            _Line(list(toks), np.asarray(vals, np.float32).reshape(-1),
                  prefixes[i] if prefixes else "", centers[i] if centers else -1,
                  shown=[display_token(t) for t in toks])
            for i, (toks, vals) in enumerate(zip(lines, values))
        ]
        self._set_max(max_value)
        self._hover = (-1, -1)
        self._relayout()

    def set_values(self, values: Sequence[np.ndarray], max_value: float | None = None) -> None:
        """Change only the shading (same tokens): no relayout."""
        for line, vals in zip(self._lines, values):
            line.values = np.asarray(vals, np.float32).reshape(-1)
        self._set_max(max_value)
        self.update()

    def set_underlines(self, underlines: Sequence[np.ndarray | None] | None, scale: float | None = None) -> None:
        for i, line in enumerate(self._lines):
            line.underline = None if underlines is None else underlines[i]
        vals = [np.abs(u[np.isfinite(u)]) for u in (underlines or []) if u is not None]
        vals = [v for v in vals if v.size]
        self._underline_scale = scale or (max(float(v.max()) for v in vals) if vals else 1.0) or 1.0
        self.update()

    def set_highlight(self, line: int, token: int) -> None:
        self._highlight = (line, token) if line >= 0 else None
        self.update()

    def clear(self) -> None:
        self.set_lines([], [])

    def _set_max(self, max_value: float | None) -> None:
        if max_value is None:
            mx = [float(np.abs(line.values).max()) for line in self._lines if line.values.size]
            max_value = max(mx) if mx else 1.0
        self._max_value = float(max_value) if max_value and max_value > 0 else 1.0

    @property
    def max_value(self) -> float:
        return self._max_value

    def n_lines(self) -> int:
        return len(self._lines)

    def line_tokens(self, i: int) -> list[str]:
        return list(self._lines[i].tokens)

    def line_values(self, i: int) -> np.ndarray:
        return self._lines[i].values.copy()

    def line_underline(self, i: int) -> np.ndarray | None:
        """Line i's signed underline values (as set by ``set_underlines``), or None."""
        u = self._lines[i].underline
        return None if u is None else np.asarray(u, np.float32)

    def token_color(self, line: int, token: int) -> QColor:
        return shade_color(float(self._lines[line].values[token]), self._max_value)

    # ------------------------------------------------------------------ layout
    def _relayout(self) -> None:
        old = self._height
        self._laid_out_width = -1
        self._ensure_layout()
        if self._height != old:              # a new height re-lays out the parents; else just repaint
            self.updateGeometry()
        self.update()

    def _ensure_layout(self) -> None:
        width = max(50, self.width())
        if width == self._laid_out_width:
            return
        fm = QFontMetricsF(self.font())
        h = fm.height() + 2
        pad = 1.0
        y = 2.0
        self._rects, self._prefix_rects = [], []
        widths = self._widths
        # prefixes of token lines form one aligned column; a line without tokens is a heading
        col = max((fm.horizontalAdvance(ln.prefix + "  ") for ln in self._lines if ln.prefix and ln.tokens),
                  default=0.0)
        for line in self._lines:
            x = 4.0
            if line.prefix and not line.tokens:
                self._prefix_rects.append(QRectF(x, y + 2, width - 8, h))
                self._rects.append([])
                y += h + self._line_gap + 2
                continue
            if line.prefix:
                self._prefix_rects.append(QRectF(x, y, col, h))
                x += col
            else:
                self._prefix_rects.append(QRectF())
            indent = x
            rects = []
            for tok in line.tokens:
                shown = display_token(tok)
                w = widths.get(shown)
                if w is None:
                    w = widths[shown] = max(4.0, fm.horizontalAdvance(shown)) + 2 * pad
                if x + w > width - 4 and x > indent:
                    x, y = indent, y + h + 1
                rects.append(QRectF(x, y, w, h))
                x += w
                if "\n" in tok:
                    x, y = indent, y + h + 1
            self._rects.append(rects)
            y += h + self._line_gap
        self._height = int(y + 2)
        self._laid_out_width = width
        if self.minimumHeight() != self._height:
            self.setMinimumHeight(self._height)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._laid_out_width = -1
            self._ensure_layout()

    def sizeHint(self) -> QSize:
        self._ensure_layout()
        return QSize(400, max(self._height, 24))

    def minimumSizeHint(self) -> QSize:
        return QSize(100, 24)

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event) -> None:
        self.paint_count += 1
        self._ensure_layout()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        clip = QRectF(event.rect())
        pal = self.palette()
        p.fillRect(event.rect(), pal.window())
        text_pen = QPen(pal.windowText().color())
        dim = QColor(pal.windowText().color())
        dim.setAlpha(130)
        if not self._lines and self.placeholder:
            p.setPen(dim)
            p.drawText(self.rect().adjusted(6, 4, -6, -4),
                       int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap),
                       self.placeholder)
            return
        frame = QPen(QColor(60, 60, 60))
        frame.setWidthF(1.0)
        hl = QPen(QColor(0, 120, 215))
        hl.setWidthF(2.0)
        bold = self.font()
        bold.setBold(True)
        fm = QFontMetricsF(self.font())
        text_dy = (fm.height() + 2 - fm.height()) / 2              # rects are fm.height() + 2 tall
        for li, (line, rects) in enumerate(zip(self._lines, self._rects)):
            if not rects:
                if line.prefix and self._prefix_rects[li].intersects(clip):
                    p.setFont(bold)
                    p.setPen(text_pen)
                    p.drawText(self._prefix_rects[li], int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                               line.prefix)
                    p.setFont(self.font())
                continue
            if rects[-1].bottom() < clip.top() or rects[0].top() > clip.bottom():
                continue
            if line.prefix:
                p.setPen(dim)
                p.drawText(self._prefix_rects[li], int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                           line.prefix + "  ")
            # per-token work kept to plain floats: this loop runs for every token on every repaint
            inside = rects[0].top() >= clip.top() and rects[-1].bottom() <= clip.bottom()
            vals = line.values.tolist()
            unders = line.underline.tolist() if line.underline is not None else None
            special = {ti for (l2, ti) in (self._highlight or (-1, -1), self._hover) if l2 == li}
            if line.center >= 0:
                special.add(line.center)
            mx = self._max_value
            p.setPen(text_pen)
            for ti, r in enumerate(rects):
                if not inside and not r.intersects(clip):
                    continue
                v = vals[ti] if ti < len(vals) else 0.0
                if v:
                    c = shade_color(v, mx)
                    if c.alpha():
                        p.fillRect(r, c)
                if unders is not None and ti < len(unders):
                    u = unders[ti]
                    if u and u == u:                                  # non-zero, not NaN
                        a = min(1.0, abs(u) / self._underline_scale)
                        col = QColor(*(_POS_RGB if u > 0 else _NEG_RGB), int(60 + 195 * a))
                        p.fillRect(QRectF(r.left(), r.bottom() - 3, r.width(), 3), col)
                p.drawStaticText(QPointF(r.left() + 1.0, r.top() + text_dy), self._static(line.shown[ti]))
                if ti in special:
                    if ti == line.center:
                        p.setPen(frame)
                        p.drawRect(r.adjusted(0, 0, -1, -1))
                    if (li, ti) == self._highlight or (li, ti) == self._hover:
                        p.setPen(hl)
                        p.drawRect(r.adjusted(1, 1, -1, -1))
                    p.setPen(text_pen)
        p.end()

    # ------------------------------------------------------------------ interaction
    def token_at(self, pos: QPoint) -> tuple[int, int]:
        self._ensure_layout()
        x, y = float(pos.x()), float(pos.y())
        for li, rects in enumerate(self._rects):
            if not rects or y < rects[0].top() - 1 or y > rects[-1].bottom() + 1:
                continue
            for ti, r in enumerate(rects):
                if r.contains(x, y):
                    return li, ti
        return -1, -1

    def mouseMoveEvent(self, event) -> None:
        hit = self.token_at(event.position().toPoint())
        if hit != self._hover:
            self._hover = hit
            self.update()
            self.tokenHovered.emit(*hit)
            if hit[0] >= 0:
                QToolTip.showText(event.globalPosition().toPoint(), self.tooltip(*hit), self)
            else:
                QToolTip.hideText()
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:
        if self._hover != (-1, -1):
            self._hover = (-1, -1)
            self.update()
            self.tokenHovered.emit(-1, -1)
        super().leaveEvent(event)

    def mousePressEvent(self, event) -> None:
        hit = self.token_at(event.position().toPoint())
        if hit[0] >= 0 and event.button() == Qt.MouseButton.LeftButton:
            self.tokenClicked.emit(*hit)
        super().mousePressEvent(event)

    def tooltip(self, line: int, token: int) -> str:
        if self.tooltip_fn is not None:
            return self.tooltip_fn(line, token)
        ln = self._lines[line]
        v = float(ln.values[token]) if token < ln.values.size else 0.0
        return tooltip(f"{display_token(ln.tokens[token])!r}  activation {v:.3g}")
