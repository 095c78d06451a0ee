"""The token view lays each example out as text (superpos_app.widgets.token_view): right-to-left
scripts read right to left, a click finds the token under it, spaces keep their width, control
characters show as their pictures."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QFontMetricsF

from superpos_app.widgets.token_view import TokenView

ARABIC = ["مر", "حبا", " بال", "عالم"]          # "hello world", split inside words as BPE does
HEBREW = ["של", "ום", " עו", "לם"]              # "shalom olam"


def _view(qtbot, lines, width=600, **kw) -> TokenView:
    view = TokenView(**kw)
    qtbot.addWidget(view)
    view.resize(width, 200)
    view.set_lines(lines, [np.arange(1, len(t) + 1, dtype=np.float32) for t in lines])
    view.show()
    qtbot.waitExposed(view)
    return view


def _center(view, line, token) -> QPoint:
    rects = view.token_rects(line, token)
    assert rects and rects[0].width() > 0, (line, token)
    return rects[0].center().toPoint()


@pytest.mark.parametrize("tokens", [ARABIC, HEBREW], ids=["arabic", "hebrew"])
def test_right_to_left_examples_read_right_to_left_and_clicks_find_their_token(qtbot, tokens):
    view = _view(qtbot, [tokens, ["plain", " text"]])
    xs = [view.token_rects(0, t)[0].center().x() for t in range(len(tokens))]
    assert xs == sorted(xs, reverse=True)                      # the first logical token is rightmost
    assert xs[0] > xs[1]
    layout = view.line_layout(0)
    assert layout.lineAt(0).cursorToX(0)[0] > layout.lineAt(0).cursorToX(len(tokens[0]))[0]
    lx = [view.token_rects(1, t)[0].center().x() for t in range(2)]
    assert lx[0] < lx[1]                                       # a Latin line still reads left to right
    for t in range(len(tokens)):
        assert view.token_at(_center(view, 0, t)) == (0, t)
        with qtbot.waitSignal(view.tokenClicked) as clicked:
            qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=_center(view, 0, t))
        assert clicked.args == [0, t]
    assert view.token_at(QPoint(view.width() - 2, 190)) == (-1, -1)
    assert view.token_rects(0, 0)[0].right() > view.width() - 10     # a right-to-left paragraph starts at the right


def test_dashboard_lines_stay_beside_their_prefix(qtbot):
    view = TokenView()
    qtbot.addWidget(view)
    view.resize(600, 200)
    view.set_lines([ARABIC], [np.ones(4, np.float32)], prefixes=["4.00"])
    rects = [view.token_rects(0, t)[0] for t in range(4)]
    assert rects[0].right() > rects[1].right() and min(r.left() for r in rects) < 150


def test_shading_follows_the_drawn_token(qtbot):
    """The background of token t is drawn where token t's glyphs are (its rectangle)."""
    view = _view(qtbot, [ARABIC])
    view.set_values([np.array([0, 0, 5, 0], np.float32)], max_value=5.0)
    img = view.grab().toImage()
    hot = view.token_rects(0, 2)[0]
    cold = view.token_rects(0, 0)[0]
    px_hot = img.pixelColor(int(hot.left()) + 1, int(hot.top()) + 1)
    px_cold = img.pixelColor(int(cold.left()) + 1, int(cold.top()) + 1)
    assert px_hot.red() > px_hot.blue() + 60 and abs(px_cold.red() - px_cold.blue()) < 30


def test_python_indentation_keeps_its_width(qtbot):
    toks = ["def", " f", "():", "\n", "        ", "return", " 1", "\n", "    ", "pass"]
    view = _view(qtbot, [toks])
    space = QFontMetricsF(view.font()).horizontalAdvance(" ")
    eight, four = view.token_rects(0, 4)[0], view.token_rects(0, 8)[0]
    assert eight.width() == pytest.approx(8 * space, rel=0.05)
    assert four.width() == pytest.approx(4 * space, rel=0.05)
    ret = view.token_rects(0, 5)[0]
    assert ret.top() > view.token_rects(0, 0)[0].bottom() - 2   # the newline token broke the line
    assert ret.left() == pytest.approx(eight.right(), abs=0.5)


def test_control_characters_show_as_their_pictures(qtbot):
    view = _view(qtbot, [["a\x00", "\x1b[31m", "\u202eevil", "\x7f"]])
    text = view.line_layout(0).text()
    assert "\u2400" in text and "\u241b" in text and "\u2421" in text
    assert "\x00" not in text and "\x1b" not in text and "\u202e" not in text    # nothing is obeyed
    assert all(view.token_rects(0, t)[0].width() > 0 for t in range(4))


def test_isolated_items_read_left_to_right(qtbot):
    """The Train dialog's guesses: a Hebrew guess among Latin items keeps the row's order."""
    items = ["→ ", "יש", " 41%", " (actual ", "של", ")"]
    view = _view(qtbot, [items], isolate_tokens=True)
    xs = [view.token_rects(0, t)[0].left() for t in range(len(items))]
    assert xs == sorted(xs)
    assert view.token_at(_center(view, 0, 4)) == (0, 4)


def test_a_long_line_wraps_and_hit_tests_on_later_rows(qtbot):
    toks = [f" word{i}" for i in range(400)]
    view = _view(qtbot, [toks], width=300)
    assert view.line_layout(0).lineCount() > 5
    last = view.token_rects(0, 399)
    assert last and last[0].top() > 50
    assert view.token_at(last[0].center()) == (0, 399)
