"""Stopgap for a PySide6 6.12.0 bug on Python < 3.12: every call of a void Qt method from Python
(``label.setText``, ``painter.fillRect``, ``color.setRgb``...) *drops* one reference to ``None``.

Python 3.12+ made ``None`` immortal, so there the bug is harmless; on 3.11 ``None``'s count
reaches zero after some thousands of calls and the interpreter aborts with
``Fatal Python error: none_dealloc``. Reproduce with::

    python -c "import sys; from PySide6.QtGui import QColor; c = QColor(); n = sys.getrefcount(None);
    [c.setRgb(1, 2, 3) for _ in range(1000)]; print(sys.getrefcount(None) - n)"     # -1000 on 6.12.0

PySide6 6.11.3 does not have it. The real fix is the dependency pin (or Python >= 3.12); until then
``ensure_none_guard()`` probes once whether the running PySide leaks and, only if it does, tops
``None``'s reference count back up from a GUI timer (CPython's ``ob_refcnt`` is the object's first
field; adding to it directly costs no memory, and the added references are never released, so
interpreter shutdown stays safe). Idempotent; a no-op where the bug is absent.
"""

from __future__ import annotations

import sys

__all__ = ["ensure_none_guard", "none_leaks", "top_up"]

_LOW = 1_000_000             # top up when None's count falls below this
_CHUNK = 100_000_000         # references added per top-up
_timer = None
_leaks: bool | None = None


def none_leaks() -> bool:
    """True when void PySide calls drop references to None (probed once)."""
    global _leaks
    if _leaks is None:
        if sys.version_info >= (3, 12):
            _leaks = False
        else:
            from PySide6.QtGui import QColor

            c = QColor()
            before = sys.getrefcount(None)
            for _ in range(16):
                c.setRgb(1, 2, 3)
            _leaks = sys.getrefcount(None) < before - 8
            top_up()
    return _leaks


def top_up() -> None:
    if _leaks and sys.getrefcount(None) < _LOW:
        import ctypes

        ctypes.c_ssize_t.from_address(id(None)).value += _CHUNK


def ensure_none_guard() -> None:
    """Start the top-up timer if this PySide leaks None references (call with a QApplication)."""
    global _timer
    if _timer is not None or not none_leaks():
        return
    from PySide6.QtCore import QCoreApplication, QTimer

    app = QCoreApplication.instance()
    if app is None:
        return
    _timer = QTimer(app)
    _timer.setInterval(100)
    _timer.timeout.connect(top_up)
    _timer.start()
