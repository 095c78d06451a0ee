"""Help > About: what superpos is, the versions it runs on, the device in use, where files live."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from engine import paths

__all__ = ["about_text", "device_text", "show_about"]


def device_text() -> str:
    """The device training would use ("auto"), in words."""
    from engine.device import describe_device, resolve_device   # imports torch: not at app start-up

    return describe_device(resolve_device("auto"))


def about_text(settings_path) -> str:
    import numpy
    import PySide6
    import pyqtgraph
    import torch

    try:
        ours = version("superpos")
    except PackageNotFoundError:
        ours = "development"
    return (f"<h3>superpos {ours}</h3>"
            "<p>A desktop lab for superposition research: train a one-layer transformer and a "
            "sparse autoencoder on your own text, then explore its features and neurons "
            "(after Bricken et al., <i>Towards Monosemanticity</i>, 2023).</p>"
            f"<p>Device in use: <b>{device_text()}</b></p>"
            f"<p>Python {platform.python_version()} · PyTorch {torch.__version__} · "
            f"Qt {PySide6.QtCore.qVersion()} (PySide6 {PySide6.__version__}) · "
            f"pyqtgraph {pyqtgraph.__version__} · NumPy {numpy.__version__}</p>"
            f"<p>Settings: {settings_path}<br>Data: {paths.data_dir()}</p>")


def show_about(parent: QWidget, settings_path) -> QMessageBox:
    box = QMessageBox(parent)
    box.setObjectName("aboutDialog")
    box.setWindowTitle("About superpos")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(about_text(settings_path))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
