"""The view shown when no bundle is open: the three ways in, and the recent bundles."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from superpos_app.plain_text import plain, tooltip

__all__ = ["WelcomeView"]


class WelcomeView(QWidget):
    openRequested = Signal()          # "Open bundle…"
    trainRequested = Signal()         # "Train new…"
    demoRequested = Signal()          # "Open demo"
    recentRequested = Signal(str)     # a recent bundle's path
    toyRequested = Signal()           # "Toy models…"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcomeView")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(48, 40, 48, 40)
        outer.addStretch(1)

        panel = QFrame()
        panel.setObjectName("welcomePanel")
        panel.setMaximumWidth(860)
        inner = QVBoxLayout(panel)
        inner.setContentsMargins(36, 32, 36, 32)
        inner.setSpacing(8)
        title = QLabel("superpos")
        title.setProperty("role", "heroTitle")
        tagline = QLabel("Train a one-layer transformer and a sparse autoencoder on your own text, "
                         "then explore the features hiding in its 512 MLP neurons.")
        tagline.setProperty("role", "muted")
        tagline.setWordWrap(True)
        inner.addWidget(title)
        inner.addWidget(tagline)
        inner.addSpacing(18)

        columns = QHBoxLayout()
        columns.setSpacing(32)
        actions = QVBoxLayout()
        actions.setSpacing(10)
        start = QLabel("Start")
        start.setProperty("role", "sectionTitle")
        actions.addWidget(start)
        self.open_button = self._action("openBundleButton", "Open bundle…",
                                        "A .h5 bundle made by superpos (Ctrl+O)", self.openRequested)
        self.train_button = self._action("trainNewButton", "Train new…",
                                         "Train a model and an SAE on a corpus (Ctrl+T)", self.trainRequested)
        self.demo_button = self._action("openDemoButton", "Open demo",
                                        "The demo run on the built-in corpus (trained on first use)",
                                        self.demoRequested)
        self.toy_button = self._action("toyModelsButton", "Toy models of superposition…",
                                       "Watch superposition happen in tiny models, then an SAE undo it",
                                       self.toyRequested)
        for button in (self.open_button, self.train_button, self.demo_button, self.toy_button):
            actions.addWidget(button)
        hint = QLabel("You can also drop a .h5 bundle on this window.")
        hint.setProperty("role", "muted")
        actions.addSpacing(6)
        actions.addWidget(hint)
        actions.addStretch(1)

        recent = QVBoxLayout()
        recent.setSpacing(8)
        recent_title = QLabel("Recent bundles")
        recent_title.setProperty("role", "sectionTitle")
        self.recent_list = QListWidget()
        self.recent_list.setObjectName("recentList")
        self.recent_list.setMinimumHeight(230)
        self.recent_list.setMaximumHeight(300)
        self.recent_list.itemActivated.connect(self._recent_activated)
        self.recent_list.itemClicked.connect(self._recent_activated)
        self.recent_empty = QLabel("Bundles you open or train will be listed here.")
        self.recent_empty.setProperty("role", "muted")
        self.recent_empty.setWordWrap(True)
        recent.addWidget(recent_title)
        recent.addWidget(self.recent_list, 1)
        recent.addWidget(self.recent_empty)
        recent.addStretch(1)
        columns.addLayout(actions, 2)
        columns.addLayout(recent, 3)
        inner.addLayout(columns)

        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(panel, 10)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)

    def _action(self, name: str, text: str, tip: str, signal) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.setProperty("role", "welcomeAction")
        button.setToolTip(tip)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.setMinimumHeight(40)
        button.clicked.connect(signal.emit)
        return button

    def set_recent(self, files: list[str]) -> None:
        self.recent_list.clear()
        for f in files:
            p = Path(f)
            item = QListWidgetItem(f"{plain(p.name, 120)}\n{plain(str(p.parent), 200)}")
            item.setData(Qt.ItemDataRole.UserRole, f)
            item.setToolTip(tooltip(f))
            if not p.exists():
                item.setForeground(Qt.GlobalColor.gray)
                item.setToolTip(tooltip(f"{f} (missing)"))
            self.recent_list.addItem(item)
        self.recent_list.setVisible(bool(files))
        self.recent_empty.setVisible(not files)

    def _recent_activated(self, item: QListWidgetItem) -> None:
        self.recentRequested.emit(item.data(Qt.ItemDataRole.UserRole))
