"""The Train dialog's corpus picker: which kind of source, where it is, and its CorpusConfig.spec.

Kinds: the built-in demo corpus, a text file, a folder of text files, a JSON Lines file, or a
Hugging Face dataset (``hf:NAME[:split]``). ``spec()`` checks what can be checked before a run
(the path exists and is the right kind of thing; a dataset name has no spaces) and raises
``ConfigError`` with a readable message otherwise.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QWidget)

from engine.config import ConfigError

__all__ = ["CorpusPicker", "CORPUS_KINDS", "corpus_spec_kind", "form_layout"]

# kind -> (label, placeholder)
CORPUS_KINDS = {
    "builtin": ("Built-in demo corpus", ""),
    "file": ("Text file", "a .txt file"),
    "folder": ("Folder of text files", "a folder (read recursively)"),
    "jsonl": ("JSON Lines file", "a .jsonl file with a \"text\" field per line"),
    "hf": ("Hugging Face dataset", "dataset name, e.g. roneneldan/TinyStories[:split]"),
}


def corpus_spec_kind(spec: str) -> tuple[str, str]:
    """(kind, text for the line edit) for a CorpusConfig.spec."""
    if spec == "builtin":
        return "builtin", ""
    if spec.startswith("hf:"):
        return "hf", spec[3:]
    p = Path(spec)
    if p.suffix.lower() == ".jsonl":
        return "jsonl", spec
    if p.is_dir():
        return "folder", spec
    return "file", spec


def form_layout(group: QGroupBox) -> QFormLayout:
    """The label/field layout every group of the Train dialog's form uses."""
    form = QFormLayout(group)
    form.setContentsMargins(10, 8, 10, 8)
    form.setVerticalSpacing(6)
    form.setHorizontalSpacing(12)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    return form


class CorpusPicker(QGroupBox):
    changed = Signal()                   # the kind or the location changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Corpus", parent)
        form = form_layout(self)
        self.kind = QComboBox()
        self.kind.setObjectName("corpusKind")
        for kind, (label, _ph) in CORPUS_KINDS.items():
            self.kind.addItem(label, kind)
        self.edit = QLineEdit()
        self.edit.setObjectName("corpusEdit")
        self.browse = QPushButton("Browse…")
        self.browse.setObjectName("corpusBrowse")
        self.browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse)
        form.addRow("Source", self.kind)
        self.row_label = QLabel("Location")
        form.addRow(self.row_label, row)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.kind.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.edit.textChanged.connect(lambda _t: self.changed.emit())
        self._kind_changed()

    def set_spec(self, spec: str) -> None:
        kind, text = corpus_spec_kind(spec)
        self.kind.setCurrentIndex(self.kind.findData(kind))
        self.edit.setText(text)
        self._kind_changed()

    def spec(self) -> str:
        """The CorpusConfig.spec the picker describes; raises ConfigError with a readable message."""
        kind = self.kind.currentData()
        text = self.edit.text().strip()
        if kind == "builtin":
            return "builtin"
        if not text:
            raise ConfigError(f"Choose {CORPUS_KINDS[kind][1]} for the corpus, or pick the built-in corpus.")
        if kind == "hf":
            if any(c.isspace() for c in text):
                raise ConfigError(f"{text!r} is not a Hugging Face dataset name (no spaces allowed).")
            return f"hf:{text}"
        path = Path(text).expanduser()
        if kind == "folder":
            if not path.is_dir():
                raise ConfigError(f"The corpus folder {path} does not exist.")
        else:
            if not path.exists():
                raise ConfigError(f"The corpus file {path} does not exist.")
            if not path.is_file():
                raise ConfigError(f"{path} is not a file.")
            if kind == "jsonl" and path.suffix.lower() != ".jsonl":
                raise ConfigError(f"{path.name} is not a .jsonl file; choose “Text file” for plain text.")
        return str(path)

    def _kind_changed(self) -> None:
        kind = self.kind.currentData()
        _label, placeholder = CORPUS_KINDS[kind]
        builtin = kind == "builtin"
        self.edit.setEnabled(not builtin)
        self.edit.setPlaceholderText(placeholder)
        self.browse.setEnabled(kind in ("file", "folder", "jsonl"))
        self.row_label.setText("Dataset" if kind == "hf" else "Location")
        if builtin:
            self.edit.clear()

    def _browse(self) -> None:
        kind = self.kind.currentData()
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(self, "Choose a folder of text files")
        else:
            filt = "JSON Lines (*.jsonl)" if kind == "jsonl" else "Text files (*.txt *.md *.text);;All files (*)"
            path, _ = QFileDialog.getOpenFileName(self, "Choose a corpus file", "", filt)
        if path:
            self.edit.setText(path)
