"""Faults stay in the pane they happen in: a message there, the rest of the app usable.

Bundles are read lazily, long after open (a dashboard when a unit is selected, the population view
when a pane is first shown), so a damaged chunk can surface in any Qt callback. An exception that
escapes a Python override of a Qt virtual (``showEvent``, ``paintEvent``, a model's ``data``) is not
an ordinary error in PySide: it leaves Python's error state set inside C++, and the next call into
Python can crash the process (measured: a BundleError from ``showEvent`` ended in SIGSEGV in the
next ``resizeEvent``). So:

- ``@contain_faults`` (a class decorator) wraps every Qt virtual a class overrides, and any other
  methods named in ``also=`` (slots connected to signals), so an exception is caught and reported
  instead of escaping; the wrapped call returns a harmless default (0 rows, no data, an empty size).
- ``report_fault(obj, exc)`` finds the pane ``obj`` belongs to (the nearest parent with a
  ``PANE_FAULTS`` marker) and shows the message in a notice at the top of that pane;
  ``clear_fault(pane)`` hides it again (a new bundle).
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QSize, Qt
from PySide6.QtWidgets import QLabel, QWidget

from engine.errors import USER_ERRORS
from superpos_app.plain_text import TOOLTIP_LIMIT, plain, tooltip

__all__ = ["contain_faults", "report_fault", "clear_fault", "fault_text", "FAULT_NAME"]

FAULT_NAME = "paneFault"           # objectName of the notice a pane shows
_VIRTUALS = re.compile(r"^(event|eventFilter|[a-z][A-Za-z]*Event|data|headerData|rowCount|columnCount|"
                       r"flags|sort|paint|sizeHint|minimumSizeHint)$")
_DEFAULTS: dict[str, Callable[[], Any]] = {
    "rowCount": lambda: 0, "columnCount": lambda: 0, "sizeHint": QSize, "minimumSizeHint": QSize,
    "event": lambda: False, "eventFilter": lambda: False,
}


def fault_text(exc: BaseException) -> str:
    """One readable line: a UserError's own message, anything else with its type (it is a bug)."""
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, USER_ERRORS) else f"Unexpected error ({type(exc).__name__}): {text}"


def _pane_of(obj: Any) -> QWidget | None:
    while obj is not None:
        if isinstance(obj, QWidget) and getattr(obj, "PANE_FAULTS", False):
            return obj
        obj = obj.parent() if isinstance(obj, QObject) else None
    return None


def report_fault(obj: Any, exc: BaseException, what: str = "") -> None:
    """Show ``exc`` in the pane that ``obj`` belongs to (stderr too, with the traceback, for bugs)."""
    if not isinstance(exc, USER_ERRORS):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    pane = _pane_of(obj)
    if pane is None:
        return
    try:
        notice = pane.findChild(QLabel, FAULT_NAME)
        if notice is None:
            notice = QLabel(pane)
            notice.setObjectName(FAULT_NAME)
            notice.setTextFormat(Qt.TextFormat.PlainText)
            notice.setWordWrap(True)
            notice.setStyleSheet("background:#fde8e6; color:#8a1c12; padding:4px; border:1px solid #e0a39b;")
            layout = pane.layout()
            if layout is not None:
                layout.insertWidget(0, notice)
        message = (what + ": " if what else "") + fault_text(exc)
        notice.setText(plain(message, 400))
        notice.setToolTip(tooltip(message, TOOLTIP_LIMIT))
        notice.setEnabled(True)
        notice.show()
    except Exception:  # noqa: BLE001 - reporting must never raise into Qt either
        traceback.print_exc(file=sys.stderr)


def clear_fault(pane: QWidget) -> None:
    notice = pane.findChild(QLabel, FAULT_NAME)
    if notice is not None:
        notice.hide()


def _max_positional(fn: Callable) -> int | None:
    """How many positional arguments (after self) ``fn`` takes; None if any number (*args)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _wrap(fn: Callable, name: str) -> Callable:
    default = _DEFAULTS.get(name, lambda: None)
    # PySide passes a slot as many signal arguments as its signature takes; the wrapper's (*args)
    # takes all of them, so it drops the ones ``fn`` does not accept (as PySide would have).
    n_args = _max_positional(fn)

    @functools.wraps(fn)
    def guarded(self, *args, **kwargs):
        if n_args is not None and len(args) > n_args:
            args = args[:n_args]
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the point: nothing escapes into Qt
            report_fault(self, exc)
            return default()

    guarded.__wrapped_fault__ = True
    return guarded


def contain_faults(cls=None, *, also: tuple[str, ...] = ()):
    """Class decorator: the class's Qt virtual overrides (and ``also``) never let an exception out."""
    def apply(klass):
        for name, fn in list(vars(klass).items()):
            if callable(fn) and not getattr(fn, "__wrapped_fault__", False) and (
                    _VIRTUALS.match(name) or name in also):
                setattr(klass, name, _wrap(fn, name))
        return klass

    return apply(cls) if cls is not None else apply
