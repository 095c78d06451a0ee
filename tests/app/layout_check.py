"""What "a pane that fits" means, as a check a test can run on any widget tree.

``layout_problems(root)`` lists, in words, every visible descendant of ``root`` that

- is cut off sideways: its geometry reaches past its parent's right edge (inside a scroll area's
  viewport too: the content must be as wide as the viewport, since the only scrolling allowed is
  vertical);
- is narrower than its layout needs (Qt then clips the children);
- is a horizontal scroll bar that is showing;
- is a pyqtgraph plot whose title, or an axis whose tick labels, do not fit;
- is a label wrapped to one word per line (a title should elide instead).
"""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractScrollArea, QLabel, QScrollBar, QWidget
from PySide6.QtCore import Qt
from PySide6.QtGui import Qt as GuiQt


def _name(w: QWidget) -> str:
    text = w.text()[:30] if isinstance(w, QLabel) else ""
    return f"{type(w).__name__}({w.objectName() or text or '?'!s})"


def _plot_problems(w: QWidget) -> list[str]:
    try:
        import pyqtgraph as pg
    except ImportError:      # pragma: no cover
        return []
    if not isinstance(w, pg.GraphicsView):
        return []
    out = []
    for item in w.scene().items():
        if isinstance(item, pg.PlotItem) and item.isVisible():
            have = min(item.width(), w.viewport().width())
            title = item.titleLabel
            if title.isVisible() and title.text:
                need = title.item.boundingRect().width()
                if need > have + 1:
                    out.append(f"{_name(w)}: plot title {title.text!r} needs {need:.0f} px, has {have:.0f}")
            if item.width() > w.viewport().width() + 1:
                out.append(f"{_name(w)}: the plot is {item.width():.0f} px wide in a {w.viewport().width()} px "
                           "view (its axes are cut off)")
    return out


def layout_problems(root: QWidget) -> list[str]:
    problems: list[str] = []
    for w in [root, *root.findChildren(QWidget)]:
        if not w.isVisible() or w.isWindow() and w is not root:
            continue
        parent = w.parentWidget()
        if isinstance(w, QScrollBar):
            if w.orientation() == Qt.Orientation.Horizontal:
                problems.append(f"{_name(parent)}: a horizontal scroll bar shows")
            continue
        if parent is not None and w is not root and not isinstance(parent, QAbstractScrollArea):
            if w.geometry().right() > parent.width() + 1:
                problems.append(f"{_name(w)} is cut off: right edge {w.geometry().right()} > parent width "
                                f"{parent.width()} ({_name(parent)})")
        lay = w.layout()
        if lay is not None and w.width() + 1 < lay.minimumSize().width():
            problems.append(f"{_name(w)} is {w.width()} px wide, its layout needs {lay.minimumSize().width()}")
        if (isinstance(w, QLabel) and w.wordWrap() and w.text() and " " in w.text().strip()
                and w.textFormat() != Qt.TextFormat.RichText and not GuiQt.mightBeRichText(w.text())):
            longest = max(len(word) for word in w.text().split())
            per_line = w.fontMetrics().averageCharWidth() * (longest + 1)
            if w.width() < 2 * per_line and len(w.text()) > 2 * longest:
                problems.append(f"{_name(w)} wraps one word per line ({w.width()} px)")
        problems.extend(_plot_problems(w))
    return problems
