"""The text lens's clamp controls: edit one feature in the SAE reconstruction spliced into the MLP.

    [x] Clamp feature [ 123 ] [× scale | = set to] [ 0.00 ]
    [x] keep SAE error    F123 × 0: top prediction changed at 7 of 40 positions

``changed`` is emitted whenever the lens must re-run: the clamp was switched on or off, or one of
its settings changed while it is on, or the error-term choice changed (it sets the baseline too).
The maths is in engine.analysis.lens.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

__all__ = ["ClampControls"]


class ClampControls(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.enable = QCheckBox("Clamp feature")
        self.enable.setObjectName("lensClampEnable")
        self.enable.setToolTip("Edit one feature in the SAE reconstruction spliced into the MLP and compare "
                               "the model's predictions")
        self.feature = QSpinBox()
        self.feature.setObjectName("lensClampFeature")
        self.feature.setRange(0, 0)
        self.feature.setToolTip("Feature to clamp (follows the selected feature)")
        self.feature.setMinimumWidth(60)
        self.mode = QComboBox()
        self.mode.setObjectName("lensClampMode")
        self.mode.addItem("× scale", "scale")
        self.mode.addItem("= set to", "set")
        self.mode.setToolTip("scale: multiply the feature's activation (0 ablates it); set: the same value "
                             "at every token (steering)")
        self.value = QDoubleSpinBox()
        self.value.setObjectName("lensClampValue")
        self.value.setRange(-100.0, 100.0)
        self.value.setDecimals(2)
        self.value.setSingleStep(0.5)
        self.value.setValue(0.0)
        self.value.setToolTip("0 with × scale ablates the feature")
        self.value.setMinimumWidth(60)
        self.error_term = QCheckBox("keep SAE error")
        self.error_term.setObjectName("lensErrorTerm")
        self.error_term.setChecked(True)
        self.error_term.setToolTip("Checked: baseline = the model's own MLP output (SAE error added back), so "
                                   "only the clamp differs.\nUnchecked: both runs use the pure SAE reconstruction.")
        self.summary = QLabel("")
        self.summary.setObjectName("lensClampSummary")
        self.summary.setStyleSheet("color:#555;")

        row = QHBoxLayout()
        for w in (self.enable, self.feature, self.mode, self.value):
            row.addWidget(w)
        row.addStretch(1)
        row2 = QHBoxLayout()
        row2.addWidget(self.error_term)
        row2.addSpacing(12)
        row2.addWidget(self.summary, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addLayout(row2)

        self.enable.toggled.connect(self.changed)
        self.feature.valueChanged.connect(self._on_setting)
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.value.valueChanged.connect(self._on_setting)
        self.error_term.toggled.connect(self.changed)

    # ------------------------------------------------------------------ what the engine gets
    def clamp(self) -> dict[int, float] | None:
        """{feature: value} when the clamp is on, else None."""
        if not self.enable.isChecked():
            return None
        return {int(self.feature.value()): float(self.value.value())}

    def clamp_mode(self) -> str:
        return self.mode.currentData()

    def keep_error(self) -> bool:
        return self.error_term.isChecked()

    # ------------------------------------------------------------------ updates from the pane
    def set_n_features(self, n: int) -> None:
        self.feature.setRange(0, max(0, int(n) - 1))

    def follow(self, feature: int) -> bool:
        """Show ``feature`` without emitting ``changed``; True when the lens must re-run for it."""
        moved = self.feature.value() != feature
        self.feature.blockSignals(True)
        self.feature.setValue(int(feature))
        self.feature.blockSignals(False)
        return moved and self.enable.isChecked()

    def show_summary(self, text: str) -> None:
        if text != self.summary.text():
            self.summary.setText(text)

    def _on_setting(self, *_a) -> None:
        if self.enable.isChecked():
            self.changed.emit()

    def _on_mode(self, *_a) -> None:
        self.value.setToolTip("0 ablates the feature" if self.clamp_mode() == "scale" else
                              "activation given to the feature at every token")
        self._on_setting()
