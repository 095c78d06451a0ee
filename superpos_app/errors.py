"""Error reporting for things a user can cause: a short readable message, details on request.

``show_error`` opens a window-modal message box without blocking (``open()``, not ``exec()``), so
the app — and a test driving it — keeps running; the box has the objectName ``errorDialog``.
Exceptions the engine raises on purpose (bad config, unreadable corpus, corrupt bundle, diverged
training) show their own message; anything else is "unexpected" and carries the traceback in the
expandable details.
"""

from __future__ import annotations

import traceback

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from engine.errors import USER_ERRORS  # the CLI catches the same set
from superpos_app.plain_text import TOOLTIP_LIMIT, html_text, plain, tooltip

__all__ = ["show_error", "describe_exception", "ErrorDialog"]


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(message for the user, details with the traceback)."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, USER_ERRORS):
        return text, details
    return f"Unexpected error ({type(exc).__name__}): {text}", details


class ErrorDialog(QMessageBox):
    def __init__(self, parent: QWidget | None, title: str, message: str, details: str | None = None):
        super().__init__(parent)
        self.setObjectName("errorDialog")
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle(plain(title))
        self.setText(f"<b>{html_text(title)}</b>")
        # the message often quotes a file's own strings (a path, a label): shown as text, never markup
        self.setInformativeText(tooltip(message, TOOLTIP_LIMIT))
        self._message = plain(message, TOOLTIP_LIMIT, newlines=True)
        if details:
            self.setDetailedText(plain(details, 20 * TOOLTIP_LIMIT, newlines=True))
        self.setStandardButtons(QMessageBox.StandardButton.Ok)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    @property
    def message(self) -> str:
        return self._message


def show_error(parent: QWidget | None, title: str, message: str | BaseException,
               details: str | None = None) -> ErrorDialog:
    """Show a non-blocking error box and return it."""
    if isinstance(message, BaseException):
        message, auto_details = describe_exception(message)
        details = details or auto_details
    box = ErrorDialog(parent, title, str(message), details)
    box.open()
    return box
