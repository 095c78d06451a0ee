"""A painted widget that shows token text with each token's background shaded by an activation.

Used by the detail and compare panes (top / interval examples: many short lines), the text lens
(one long line that wraps) and the Train dialog's guesses. Each line (an example) is one
``QTextLayout`` over the concatenated token text, so Qt does what text needs: bidi (Arabic and
Hebrew read right to left), shaping (joined letters across token boundaries), spaces at their width
(Python indentation), wrapping. A token is a range of offsets into that text; its visual extent on a
laid-out line comes from ``QTextLine.cursorToX`` at both ends (min / max: a right-to-left token's
start is on its right), and a mouse position maps back with ``QTextLine.xToCursor`` and a search in
the sorted token starts. Backgrounds, the ablation underlines (blue / red, as the paper's visualizer
draws a signed effect on next-token loss) and frames are painted from those extents beneath and
over the layout's own text, so a change of shading never re-lays out and never breaks a shaped run.

Whitespace inside tokens is kept; a newline inside a token is drawn as ``↵`` and breaks the line,
control characters as their pictures (``plain_text.display_token``). Layouts are cached per example
text (an LRU) and re-laid out only when the width or the font changes. Hovering shows a tooltip (the
value, or whatever ``tooltip_fn(line, token)`` returns) and emits ``tokenHovered``; clicking emits
``tokenClicked``.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetricsF, QPainter, QPen, QTextLayout, QTextLine, QTextOption
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from superpos_app.faults import contain_faults
from superpos_app.plain_text import display_token, tooltip

__all__ = ["TokenView", "shade_color"]

_ACT_RGB = (255, 128, 0)            # orange, as the paper's visualizer
_NEG_RGB = (40, 110, 255)           # blue for negative values / loss decreases
_POS_RGB = (220, 30, 30)            # red for loss increases

_FSI, _PDI = "\u2068", "\u2069"     # first-strong isolate ... pop: a piece laid out in its own direction
_LINE_BREAK = "\u2028"              # QTextLayout breaks the line here without ending the bidi paragraph
_ROW_GAP = 3.0                      # between wrapped rows: a token's box reaches 1 px above and below
_LAYOUTS_KEPT = 2048                # cached examples (a dashboard shows a few dozen)


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


def _utf16_len(s: str) -> int:
    """Length in QString units (layout offsets count UTF-16 code units, not Python characters)."""
    return len(s) if s.isascii() else len(s.encode("utf-16-le")) // 2


def _first_strong_is_rtl(text: str) -> bool:
    """The paragraph direction of the Unicode bidi algorithm (rules P2-P3): its first strong letter."""
    for ch in text:
        if ch.isascii() and not ch.isalpha():
            continue
        kind = unicodedata.bidirectional(ch)
        if kind == "L":
            return False
        if kind in ("R", "AL"):
            return True
    return False


class _Shaped:
    """One example as Qt lays it out; token ``t`` is the offsets ``starts[t]:starts[t + 1]``."""

    __slots__ = ("layout", "starts", "width", "height", "row_tops", "_segments")

    def __init__(self, shown: Sequence[str], breaks: Sequence[bool], font, isolate: bool,
                 leading: bool = True, wrap: bool = True) -> None:
        pieces, starts, pos = [], [0], 0
        for s, brk in zip(shown, breaks):
            piece = f"{_FSI}{s}{_PDI}" if isolate else s
            if brk:
                piece += _LINE_BREAK
            pieces.append(piece)
            pos += _utf16_len(piece)
            starts.append(pos)
        text = "".join(pieces)
        self.layout = QTextLayout(text, font)
        opt = QTextOption()
        # a dashboard's example is one row, cut at the pane's edge as the paper's visualizer does (more
        # examples fit); the lens wraps (its text is the user's)
        opt.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere if wrap else QTextOption.WrapMode.NoWrap)
        # separate items (isolate) read left to right, each in its own direction; an example takes
        # the direction of its first strong letter (Qt's Auto does not align by it, so it is found
        # here). A right-to-left paragraph starts at the right edge (``leading``: the lens), or at
        # the left one beside its prefix (a dashboard's short lines stay next to their activation).
        rtl = not isolate and _first_strong_is_rtl(text)
        opt.setTextDirection(Qt.LayoutDirection.RightToLeft if rtl else Qt.LayoutDirection.LeftToRight)
        opt.setAlignment(Qt.AlignmentFlag.AlignRight if rtl and leading else Qt.AlignmentFlag.AlignLeft)
        self.layout.setTextOption(opt)
        self.layout.setCacheEnabled(True)
        self.starts = np.asarray(starts, np.int64)
        self.width = -1.0
        self.height = 0.0
        self.row_tops = np.zeros(0)                 # y of each row's box (1 px above its text)
        self._segments: list = []

    def lay_out(self, width: float) -> float:
        """Wrap at ``width``; returns the height (rows and the gaps between them)."""
        if width == self.width:
            return self.height
        layout = self.layout
        layout.beginLayout()
        y = 1.0
        tops = []
        while True:
            line = layout.createLine()
            if not line.isValid():
                break
            line.setLineWidth(width)
            line.setPosition(QPointF(0.0, y))
            tops.append(y - 1.0)
            y += line.height() + _ROW_GAP
        layout.endLayout()
        self.width, self.height = width, y - _ROW_GAP + 1.0
        self.row_tops = np.asarray(tops, np.float64)
        self._segments = [None] * layout.lineCount()
        return self.height

    def rows_between(self, y0: float, y1: float) -> range:
        """The rows whose boxes meet layout y in [y0, y1] (rows are at most a pitch apart)."""
        tops = self.row_tops
        pitch = float(tops[1] - tops[0]) if tops.size > 1 else self.height
        return range(max(0, int(np.searchsorted(tops, y0 - pitch, side="right"))),
                     int(np.searchsorted(tops, y1, side="right")))

    def segments(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row ``k``'s pieces of tokens: (token index, x0, x1), x in layout coordinates. Computed when
        first painted or hit (a 4,096-token lens computes only the rows on screen)."""
        seg = self._segments[k]
        if seg is None:
            line = self.layout.lineAt(k)
            s = line.textStart()
            e = s + line.textLength()
            starts = self.starts
            t0 = max(0, int(np.searchsorted(starts, s, side="right")) - 1)
            t1 = min(starts.size - 1, int(np.searchsorted(starts, e, side="left")))
            bounds = np.clip(starts[t0:t1 + 1], s, e)
            xs = np.fromiter((line.cursorToX(int(b))[0] for b in bounds), np.float64, bounds.size)
            toks = np.arange(t0, t0 + max(0, bounds.size - 1))
            seg = self._segments[k] = (toks, np.minimum(xs[:-1], xs[1:]), np.maximum(xs[:-1], xs[1:]))
        return seg

    def token_at(self, k: int, x: float) -> int:
        """The token drawn at layout x on row ``k``, or -1."""
        line = self.layout.lineAt(k)
        toks, x0, x1 = self.segments(k)
        pos = line.xToCursor(x, QTextLine.CursorPosition.CursorOnCharacter)
        t = int(np.searchsorted(self.starts, pos, side="right")) - 1
        i = t - int(toks[0]) if toks.size else -1
        if 0 <= i < toks.size and x0[i] <= x < x1[i]:
            return t
        inside = np.flatnonzero((x0 <= x) & (x < x1))     # a bidi boundary: the pieces say
        return int(toks[inside[0]]) if inside.size else -1


@dataclass
class _Line:
    tokens: list[str]
    values: np.ndarray              # float32 [n]
    prefix: str = ""
    center: int = -1                # token drawn with a frame (the example's own token)
    underline: np.ndarray | None = None   # float32 [n] signed effect, or None
    shaped: _Shaped | None = None   # the laid-out text (None: a heading line)


@contain_faults
class TokenView(QWidget):
    tokenHovered = Signal(int, int)     # (line, token); (-1, -1) when leaving tokens
    tokenClicked = Signal(int, int)

    def __init__(self, parent: QWidget | None = None, line_gap: float = 6.0, isolate_tokens: bool = False,
                 wrap: bool = True):
        """``isolate_tokens``: the tokens of a line are separate items (a guess, a percentage), not
        one text: each is laid out in its own direction and the line reads left to right. ``wrap``:
        a long line wraps (the lens) or stays one row cut at the edge (dashboards' examples)."""
        super().__init__(parent)
        self.setMouseTracking(True)
        # paintEvent fills its background itself: Qt need not repaint the parents beneath it
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        self._isolate = isolate_tokens
        self._wrap = wrap
        self._lines: list[_Line] = []
        self._max_value = 1.0
        self._underline_scale = 1.0
        self._origins: list[QPointF] = []          # per line, where its layout (or heading) is drawn
        self._prefix_rects: list[QRectF] = []
        self._laid_out_width = -1
        self._height = 0
        self._line_gap = line_gap
        self._hover = (-1, -1)
        self._highlight: tuple[int, int] | None = None
        self.tooltip_fn: Callable[[int, int], str] | None = None
        self.placeholder = ""
        self.paint_count = 0                                # benchmarks check that a paint happened
        self._shaped: OrderedDict[tuple, _Shaped] = OrderedDict()   # example text -> its layout

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.FontChange:
            self._shaped.clear()
            for line in self._lines:
                if line.shaped is not None:
                    line.shaped = self._shape(line.tokens, not line.prefix)
            self._relayout()
        super().changeEvent(event)

    def _shape(self, tokens: Sequence[str], leading: bool = True) -> _Shaped:
        shown = tuple(display_token(t) for t in tokens)
        breaks = tuple(self._wrap and "\n" in t for t in tokens)     # one-row examples show ↵, not a break
        key = (shown, breaks, leading)
        shaped = self._shaped.get(key)
        if shaped is None:
            shaped = self._shaped[key] = _Shaped(shown, breaks, self.font(), self._isolate, leading, self._wrap)
            while len(self._shaped) > _LAYOUTS_KEPT:
                self._shaped.popitem(last=False)
        else:
            self._shaped.move_to_end(key)
        return shaped

    # ------------------------------------------------------------------ content
    def set_lines(self, lines: Sequence[Sequence[str]], values: Sequence[np.ndarray],
                  max_value: float | None = None, prefixes: Sequence[str] | None = None,
                  centers: Sequence[int] | None = None) -> None:
        self._lines = []
        for i, (toks, vals) in enumerate(zip(lines, values)):
            prefix = prefixes[i] if prefixes else ""
            toks = list(toks)
            self._lines.append(_Line(toks, np.asarray(vals, np.float32).reshape(-1), prefix,
                                     centers[i] if centers else -1,
                                     shaped=self._shape(toks, not prefix) if toks or not prefix else None))
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

    def line_prefix(self, i: int) -> str:
        return self._lines[i].prefix

    def line_values(self, i: int) -> np.ndarray:
        return self._lines[i].values.copy()

    def line_underline(self, i: int) -> np.ndarray | None:
        """Line i's signed underline values (as set by ``set_underlines``), or None."""
        u = self._lines[i].underline
        return None if u is None else np.asarray(u, np.float32)

    def line_layout(self, i: int) -> QTextLayout | None:
        """Line i's laid-out text (None for a heading); its tokens are ``token_range`` offsets."""
        self._ensure_layout()
        shaped = self._lines[i].shaped
        return None if shaped is None else shaped.layout

    def token_range(self, line: int, token: int) -> tuple[int, int]:
        """The offsets of a token in its line's layout text."""
        starts = self._lines[line].shaped.starts
        return int(starts[token]), int(starts[token + 1])

    def token_rects(self, line: int, token: int) -> list[QRectF]:
        """Where a token is drawn, in widget coordinates: one rectangle per row it lies on."""
        self._ensure_layout()
        shaped = self._lines[line].shaped
        if shaped is None:
            return []
        origin = self._origins[line]
        layout, starts = shaped.layout, shaped.starts
        if not 0 <= token < starts.size - 1:
            return []
        first = max(0, layout.lineForTextPosition(int(starts[token])).lineNumber())
        last = max(first, layout.lineForTextPosition(max(int(starts[token]), int(starts[token + 1]) - 1)).lineNumber())
        rects = []
        for k in range(first, last + 1):
            toks, x0, x1 = shaped.segments(k)
            for i in np.flatnonzero(toks == token):
                rects.append(self._box(shaped.layout.lineAt(k), origin, x0[i], x1[i]))
        return rects

    @staticmethod
    def _box(row: QTextLine, origin: QPointF, x0: float, x1: float) -> QRectF:
        return QRectF(origin.x() + x0, origin.y() + row.y() - 1.0, x1 - x0, row.height() + 2.0)

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
        y = 2.0
        self._origins, self._prefix_rects = [], []
        # prefixes of token lines form one aligned column (at most half the width: the guesses'
        # contexts are elided from the left); a line without tokens is a heading
        col = max((fm.horizontalAdvance(ln.prefix + "  ") for ln in self._lines if ln.prefix and ln.tokens),
                  default=0.0)
        col = min(col, 0.5 * width)
        for line in self._lines:
            x = 4.0
            if line.shaped is None:
                self._prefix_rects.append(QRectF(x, y + 2, width - 8, h))
                self._origins.append(QPointF(x, y + 2))
                y += h + self._line_gap + 2
                continue
            if line.prefix:
                self._prefix_rects.append(QRectF(x, y, col, h))
                x += col
            else:
                self._prefix_rects.append(QRectF())
            self._origins.append(QPointF(x, y))
            y += line.shaped.lay_out(max(20.0, width - 4 - x)) + self._line_gap
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
        bold = self.font()
        bold.setBold(True)
        fm = QFontMetricsF(self.font())
        for li, line in enumerate(self._lines):
            shaped, origin = line.shaped, self._origins[li]
            if shaped is None:
                if line.prefix and self._prefix_rects[li].intersects(clip):
                    p.setFont(bold)
                    p.setPen(text_pen)
                    p.drawText(self._prefix_rects[li], int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                               line.prefix)
                    p.setFont(self.font())
                continue
            if origin.y() + shaped.height < clip.top() or origin.y() > clip.bottom():
                continue
            if line.prefix:
                p.setPen(dim)
                r = self._prefix_rects[li].adjusted(0, 0, -fm.horizontalAdvance("  "), 0)
                # elided at its logical start (a guess's context keeps its end)
                shown = fm.elidedText(line.prefix, Qt.TextElideMode.ElideLeft, r.width())
                # drawText finds the prefix's own direction (forcing one misplaces a leading "…")
                p.drawText(r, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), shown)
            self._paint_line(p, li, line, clip)
            p.setPen(text_pen)
            shaped.layout.draw(p, origin, [], clip)
            self._paint_frames(p, li, line)
        p.end()

    def _paint_line(self, p: QPainter, li: int, line: _Line, clip: QRectF) -> None:
        """Backgrounds and underlines of the rows of line ``li`` that meet ``clip``."""
        shaped, origin = line.shaped, self._origins[li]
        layout = shaped.layout
        vals = line.values
        unders = line.underline
        mx = self._max_value
        for k in shaped.rows_between(clip.top() - origin.y(), clip.bottom() - origin.y()):
            row = layout.lineAt(k)
            top = origin.y() + row.y() - 1.0
            toks, x0, x1 = shaped.segments(k)
            if not toks.size:
                continue
            inside = toks < vals.size
            v = np.zeros(toks.size, np.float32)
            v[inside] = vals[toks[inside]]
            bottom = top + row.height() + 2.0
            for i in np.flatnonzero(v).tolist():
                c = shade_color(float(v[i]), mx)
                if c.alpha():
                    p.fillRect(QRectF(origin.x() + x0[i], top, x1[i] - x0[i], bottom - top), c)
            if unders is None:
                continue
            inside = toks < unders.size
            u = np.zeros(toks.size, np.float32)
            u[inside] = unders[toks[inside]]
            for i in np.flatnonzero(np.nan_to_num(u)).tolist():      # non-zero, not NaN
                a = min(1.0, abs(float(u[i])) / self._underline_scale)
                col = QColor(*(_POS_RGB if u[i] > 0 else _NEG_RGB), int(60 + 195 * a))
                p.fillRect(QRectF(origin.x() + x0[i], bottom - 3.0, x1[i] - x0[i], 3.0), col)

    def _paint_frames(self, p: QPainter, li: int, line: _Line) -> None:
        """The example's own token framed; the hovered / highlighted one outlined in blue."""
        marks = []
        if line.center >= 0:
            pen = QPen(QColor(60, 60, 60))
            pen.setWidthF(1.0)
            marks.append((line.center, pen, 0))
        for l2, ti in (self._highlight or (-1, -1), self._hover):
            if l2 == li:
                pen = QPen(QColor(0, 120, 215))
                pen.setWidthF(2.0)
                marks.append((ti, pen, 1))
        for ti, pen, inset in marks:
            p.setPen(pen)
            for r in self.token_rects(li, ti):
                p.drawRect(r.adjusted(inset, inset, -1, -1))

    # ------------------------------------------------------------------ interaction
    def token_at(self, pos: QPoint | QPointF) -> tuple[int, int]:
        """(line, token) drawn at ``pos`` (widget coordinates), or (-1, -1)."""
        self._ensure_layout()
        x, y = float(pos.x()), float(pos.y())
        for li, line in enumerate(self._lines):
            shaped, origin = line.shaped, self._origins[li]
            if shaped is None or not origin.y() - 1 <= y <= origin.y() + shaped.height + 1:
                continue
            layout = shaped.layout
            for k in shaped.rows_between(y - origin.y(), y - origin.y()):
                row = layout.lineAt(k)
                top = origin.y() + row.y() - 1.0
                if top <= y <= top + row.height() + 2.0:
                    t = shaped.token_at(k, x - origin.x())
                    return (li, t) if t >= 0 else (-1, -1)
        return -1, -1

    def mouseMoveEvent(self, event) -> None:
        hit = self.token_at(event.position())
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
        hit = self.token_at(event.position())
        if hit[0] >= 0 and event.button() == Qt.MouseButton.LeftButton:
            self.tokenClicked.emit(*hit)
        super().mousePressEvent(event)

    def tooltip(self, line: int, token: int) -> str:
        if self.tooltip_fn is not None:
            return self.tooltip_fn(line, token)
        ln = self._lines[line]
        v = float(ln.values[token]) if token < ln.values.size else 0.0
        return tooltip(f"{display_token(ln.tokens[token])!r}  activation {v:.3g}")
