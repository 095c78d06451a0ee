"""The language-model explanation of one unit, shown beside its offline label in the detail pane.

One plain-text label (never rich text: an explanation is a model's output and may hold anything):
"LLM: <explanation>" with its detection / fuzzing / simulation scores, the model and the date; a
unit whose explanation failed says why; a unit without one shows nothing.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

from superpos_app.plain_text import TOOLTIP_LIMIT, plain

__all__ = ["ExplanationLabel", "explanation_text", "score_source_box", "SCORE_SOURCES"]

# which score the compare pane's population view shows: (Bundle.columns key, axis title)
SCORE_SOURCES = (("Offline label score", ("score", "auto-label score")),
                 ("LLM simulation (Spearman)", ("llm_simulation", "LLM simulation score")),
                 ("LLM detection (balanced acc.)", ("llm_detection", "LLM detection score")),
                 ("LLM fuzzing (balanced acc.)", ("llm_fuzzing", "LLM fuzzing score")))

_SCORES = (("detection", "detection"), ("fuzzing", "fuzzing"), ("simulation", "simulation ρ"))


def explanation_text(record: dict | None) -> str:
    if not record:
        return ""
    # every field is a model's or a file's text: control characters shown (␛), bidi overrides and CR dropped
    if record.get("status") != "ok":
        return f"LLM explanation {plain(record.get('status', 'failed'))}: {plain(record.get('error', ''), TOOLTIP_LIMIT)}"
    scores = "  ·  ".join(f"{name} {record[key]:.2f}" for key, name in _SCORES if _is_number(record.get(key)))
    when = plain(str(record.get("date", ""))[:10])
    return (f"LLM: {plain(record.get('explanation', ''), TOOLTIP_LIMIT)}\n{scores}  —  {plain(record.get('model', ''))}, "
            f"{plain(record.get('prompt_version', ''))}, {when}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ExplanationLabel(QLabel):
    def __init__(self, parent: QWidget | None = None):
        super().__init__("", parent)
        self.setObjectName("detailExplanation")
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setStyleSheet("color: #2b4a6f; background: #eef3f9; border-radius: 4px; padding: 4px 6px;")
        self.setToolTip("Explanation by a language model (superpos explain), scored on held-out examples: "
                        "detection and fuzzing are balanced accuracies (0.5 = chance), simulation is the "
                        "Spearman correlation of predicted with true activations")
        self.records: dict[str, dict[int, dict]] = {}
        self.setVisible(False)

    def set_bundle(self, bundle) -> None:
        self.records = {}
        if bundle is not None:
            try:
                self.records = {kind: bundle.explanations(kind) for kind in ("feature", "neuron")}
            except Exception:  # noqa: BLE001 - unreadable explanations must not break the pane
                self.records = {}
        self.show_unit(None, None)

    def show_unit(self, kind: str | None, index: int | None) -> None:
        text = explanation_text(self.records.get(kind, {}).get(index)) if kind is not None else ""
        self.setText(text)
        self.setVisible(bool(text))


def score_source_box(changed) -> QComboBox:
    """A box choosing the population view's score; calls ``changed()`` when the choice changes."""
    box = QComboBox()
    box.setObjectName("scoreSourceBox")
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(14)       # fits a narrow dock; the list shows each choice in full
    box.setToolTip("Which score to compare: the offline label's, or one of the language-model scores "
                   "(superpos explain; features and neurons are scored the same way)")
    for text, data in SCORE_SOURCES:
        box.addItem(text, data)
    box.currentIndexChanged.connect(lambda _i: changed())
    return box
