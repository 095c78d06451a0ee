"""Stopgap for a PySide6 6.12.0 reference-count bug on Python < 3.12 (fixed by pinning PySide6 != 6.12.0).

On 6.12.0 every Python call of a void Qt method (``label.setText``...) drops one reference to
``None``, and every ``signal.emit(...)`` drops one reference to ``True``. Python 3.12+ made those
objects immortal, so there it is harmless; on 3.11 the count reaches zero and the interpreter aborts
(``Fatal Python error: bool_dealloc`` / ``none_dealloc``). Measured here: a running job's progress
signals drop ~30 references to True a second and the full app holds ~11,000, so an unguarded app
crashed after about six minutes of training.

``install_guard()`` probes once which of None/True/False this PySide leaks and, only for those, tops
the reference count up from a GUI timer (CPython keeps ``ob_refcnt`` as the object's first field; the
added references are never released, so interpreter shutdown stays safe). A no-op on unaffected
versions. superpos_app.panes has an equivalent guard for None (``_none_guard``); both are harmless together.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["install_guard", "leaking_singletons", "top_up"]

_LOW = 1_000_000
_CHUNK = 100_000_000
_leaking: tuple | None = None
_timer = None


def leaking_singletons() -> tuple:
    """The singletons (None, True, False) whose references this PySide drops (probed once)."""
    global _leaking
    if _leaking is not None:
        return _leaking
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        _leaking = ()
        return _leaking
    from PySide6.QtCore import QObject, Signal
    from PySide6.QtGui import QColor

    class _Probe(QObject):
        flag = Signal(bool)

    probe, color = _Probe(), QColor()
    probe.flag.connect(lambda value: None)
    before = {id(o): sys.getrefcount(o) for o in (None, True, False)}
    for _ in range(32):
        color.setRgb(1, 2, 3)
        probe.flag.emit(False)
        probe.flag.emit(True)
    _leaking = tuple(o for o in (None, True, False) if sys.getrefcount(o) < before[id(o)] - 16)
    top_up()
    return _leaking


def top_up() -> None:
    for obj in _leaking or ():
        if sys.getrefcount(obj) < _LOW:
            ctypes.c_ssize_t.from_address(id(obj)).value += _CHUNK


def install_guard() -> bool:
    """Start the top-up timer if needed (call once a QApplication exists); True when it runs."""
    global _timer
    if _timer is not None:
        return True
    if not leaking_singletons():
        return False
    from PySide6.QtCore import QCoreApplication, QTimer

    app = QCoreApplication.instance()
    if app is None:
        return False
    _timer = QTimer(app)
    _timer.setInterval(100)
    _timer.timeout.connect(top_up)
    _timer.start()
    return True
