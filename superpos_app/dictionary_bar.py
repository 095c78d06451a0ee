"""The dictionary switcher of a family bundle: a toolbar with one combo box, "A/1 · 2,048 · seed 0",
one entry per dictionary (engine.bundle.family). Choosing one emits ``dictionaryChosen(d)``; the
window then shows that dictionary in every pane (``MainWindow.switch_dictionary``). Hidden for a
bundle of one dictionary."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QToolBar, QWidget

__all__ = ["DictionaryBar", "dictionary_name", "dictionary_title"]


def dictionary_name(bundle) -> str:
    """"A/1" for a dictionary of a family, "" for a bundle of one dictionary."""
    if bundle is None or len(bundle.family) < 2:
        return ""
    return bundle.family.names()[int(getattr(bundle, "dictionary", 0))]


def dictionary_title(member: dict) -> str:
    """"A/1 · 2,048 · seed 0": a family member's name, size and model seed."""
    return f"{member['name']} · {int(member['d_sae']):,} features · seed {int(member.get('seed', 0))}"


class DictionaryBar(QToolBar):
    dictionaryChosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Dictionary", parent)
        self.setObjectName("dictionaryBar")
        self.setMovable(False)
        label = QLabel("Dictionary: ")
        label.setToolTip("Which dictionary of the family every pane shows")
        self.addWidget(label)
        self.combo = QComboBox()
        self.combo.setObjectName("dictionaryCombo")
        self.combo.setToolTip("Which dictionary of the family every pane shows (size, model seed)")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.activated.connect(self.dictionaryChosen.emit)
        self.addWidget(self.combo)
        self.toggleViewAction().setVisible(False)      # shown exactly when a family is open
        self.setVisible(False)

    def set_bundle(self, bundle) -> None:
        with QSignalBlocker(self.combo):
            self.combo.clear()
            if bundle is not None and len(bundle.family) > 1:
                for member in bundle.family.members:
                    self.combo.addItem(dictionary_title(member))
                self.combo.setCurrentIndex(int(getattr(bundle, "dictionary", 0)))
        self.setVisible(self.combo.count() > 1)
