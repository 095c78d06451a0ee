"""The app's look: one calm light style sheet (resources/style.qss) on Qt's Fusion style."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from engine.resources import read_text, resource_path

__all__ = ["apply_style", "ACCENT"]

ACCENT = "#3b6ea8"


def apply_style(app: QApplication | None = None) -> None:
    """Apply the style sheet and palette once per application (safe to call again)."""
    app = app or QApplication.instance()
    if app is None or app.property("superposStyled"):
        return
    app.setStyle("Fusion")
    palette = app.palette()
    palette.setColor(QPalette.ColorRole.Window, QColor("#f4f5f7"))
    palette.setColor(QPalette.ColorRole.Base, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#f7f8fa"))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.Text, QColor("#22262b"))
    palette.setColor(QPalette.ColorRole.WindowText, QColor("#22262b"))
    palette.setColor(QPalette.ColorRole.ButtonText, QColor("#22262b"))
    app.setPalette(palette)
    font = app.font()
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
    font.setStyleStrategy(QFont.StyleStrategy.PreferAntialias)
    app.setFont(font)
    app.setWindowIcon(QIcon(str(resource_path("icons/superpos.svg"))))
    try:
        icons = str(resource_path("icons")).replace("\\", "/")
        app.setStyleSheet(read_text("style.qss").replace("@ICONS@", icons))
    except (FileNotFoundError, ModuleNotFoundError):  # pragma: no cover - broken install
        pass
    app.setProperty("superposStyled", True)
