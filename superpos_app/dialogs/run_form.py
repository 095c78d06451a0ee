"""The Train dialog's form and its mapping to a RunConfig.

The form shows one ``RunConfig``: the corpus, the preset it started from, the transformer and SAE
sizes, the statistics budget, the device and the output bundle. ``build_config()`` is
``preset(name).with_overrides(<what the form shows>)``, validated (paths, sizes, device) so a run
never starts on settings that cannot work; problems raise ``ConfigError`` with a readable message.
``changed`` fires when anything that is part of the RunConfig changes (not the output path).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from engine import paths
from engine.config import (SAE_RECIPE_INFO, SAE_RECIPES, ConfigError, RunConfig, SAEConfig, parse_seeds,
                           parse_sizes, preset, preset_description, preset_family, preset_names)
from engine.device import resolve_device

from superpos_app.dialogs.corpus_picker import CorpusPicker, form_layout

__all__ = ["RunForm", "default_output", "DEVICES"]

DEVICES = ("auto", "cpu", "cuda", "mps")
PENALTY_LABELS = {"l1_coeff": "Penalty λ (L1)", "l0_coeff": "Penalty λ (L0)"}   # recipe knobs but k


def default_output(preset_name: str) -> str:
    """A fresh bundle name in the user's data folder: ``runs/<preset>-<YYYYmmdd-HHMM>.h5``."""
    stamp = time.strftime("%Y%m%d-%H%M")
    return str(paths.data_dir() / "runs" / f"{preset_name}-{stamp}.h5")


def _spin(lo: int, hi: int, step: int, tip: str, name: str) -> QSpinBox:
    box = QSpinBox()
    box.setObjectName(name)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setGroupSeparatorShown(True)
    box.setToolTip(tip)
    box.setMinimumWidth(130)
    box.setAlignment(Qt.AlignmentFlag.AlignRight)
    return box


class RunForm(QWidget):
    changed = Signal()            # a setting that is part of the RunConfig changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runForm")
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 6, 0)
        col.setSpacing(4)
        self.corpus = CorpusPicker()
        col.addWidget(self.corpus)
        col.addWidget(self._preset_group())
        col.addWidget(self._model_group())
        col.addWidget(self._sae_group())
        col.addWidget(self._output_group())
        col.addStretch(1)
        for form in self.findChildren(QFormLayout):   # one label column width for all groups
            for row in range(form.rowCount()):
                item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
                if item is not None and item.widget() is not None:
                    item.widget().setMinimumWidth(120)
        self.corpus.changed.connect(self.changed)
        for box in (self.vocab_size, self.n_ctx, self.d_model, self.d_mlp, self.tokens, self.d_sae, self.k,
                    self.l1, self.sae_acts, self.harvest_tokens):
            box.valueChanged.connect(lambda _v: self.changed.emit())
        for combo in (self.preset_combo, self.recipe, self.device):
            combo.currentIndexChanged.connect(lambda _i: self.changed.emit())

    # ============================================================================================
    # groups
    # ============================================================================================
    def _preset_group(self) -> QGroupBox:
        group = QGroupBox("Preset")
        form = form_layout(group)
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("presetCombo")
        for name in preset_names():
            self.preset_combo.addItem(name, name)
        self.preset_combo.activated.connect(lambda _i: self.load_preset(self.preset_combo.currentData()))
        self.preset_note = QLabel("")
        self.preset_note.setProperty("role", "muted")
        self.preset_note.setWordWrap(True)
        form.addRow("Start from", self.preset_combo)
        form.addRow(self.preset_note)
        return group

    def _model_group(self) -> QGroupBox:
        group = QGroupBox("Transformer")
        form = form_layout(group)
        self.vocab_size = _spin(64, 1 << 17, 256, "BPE vocabulary size", "vocabSize")
        self.n_ctx = _spin(8, 4096, 8, "context length in tokens", "nCtx")
        self.d_model = _spin(8, 4096, 8, "residual stream width", "dModel")
        self.d_mlp = _spin(8, 1 << 16, 64, "MLP neurons (the SAE's input)", "dMlp")
        self.tokens = _spin(1000, 2_000_000_000, 100_000, "training budget in tokens", "trainTokens")
        form.addRow("Vocabulary size", self.vocab_size)
        form.addRow("Context length", self.n_ctx)
        form.addRow("d_model", self.d_model)
        form.addRow("MLP neurons", self.d_mlp)
        form.addRow("Training tokens", self.tokens)
        return group

    def _sae_group(self) -> QGroupBox:
        group = QGroupBox("Sparse autoencoder")
        form = form_layout(group)
        self.d_sae = _spin(16, 1 << 20, 256, "dictionary size (number of features)", "dSae")
        self.recipe = QComboBox()
        self.recipe.setObjectName("saeRecipe")
        for r in SAE_RECIPES:
            self.recipe.addItem(SAE_RECIPE_INFO[r].label, r)
        self.k = _spin(1, 4096, 1, "active features per token", "saeK")
        self.l1 = QDoubleSpinBox()
        self.l1.setObjectName("saeL1")
        self.l1.setDecimals(4)
        self.l1.setRange(0.0, 1000.0)
        self.l1.setSingleStep(0.5)
        self.l1.setToolTip("sparsity penalty λ of the recipe (on the L1 norm, or on L0 for JumpReLU)")
        self._sae_defaults = SAEConfig()      # where a recipe's penalty starts when it is chosen
        self.l1.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.sae_acts = _spin(1000, 2_000_000_000, 100_000, "training budget in activation vectors",
                              "saeActivations")
        form.addRow("Features", self.d_sae)
        form.addRow("Recipe", self.recipe)
        self.k_label, self.l1_label = QLabel("k (active / token)"), QLabel("Penalty λ")
        form.addRow(self.k_label, self.k)
        form.addRow(self.l1_label, self.l1)
        form.addRow("Activations", self.sae_acts)
        self.family_sizes = QLineEdit()
        self.family_sizes.setObjectName("familySizes")
        self.family_sizes.setPlaceholderText("e.g. 512, 2048, 4096 (empty: one dictionary)")
        self.family_sizes.setToolTip("several dictionary sizes trained from one pass over the activations "
                                     "(feature splitting); the first replaces Features")
        self.model_seeds = QLineEdit()
        self.model_seeds.setObjectName("modelSeeds")
        self.model_seeds.setPlaceholderText("e.g. 0, 1 (empty: one model)")
        self.model_seeds.setToolTip("two seeds: a second model and its dictionaries of the same sizes, matched "
                                    "to the first (universality of features and neurons)")
        form.addRow("Family sizes", self.family_sizes)
        form.addRow("Model seeds", self.model_seeds)
        for edit in (self.family_sizes, self.model_seeds):
            edit.textChanged.connect(lambda _t: self.changed.emit())
        self.recipe.currentIndexChanged.connect(self._recipe_changed)
        return group

    def _output_group(self) -> QGroupBox:
        group = QGroupBox("Statistics and output")
        form = form_layout(group)
        self.harvest_tokens = _spin(1000, 2_000_000_000, 10_000, "held-out tokens scanned for feature statistics",
                                    "harvestTokens")
        self.device = QComboBox()
        self.device.setObjectName("deviceCombo")
        for d in DEVICES:
            self.device.addItem(d, d)
        self.output_edit = QLineEdit()
        self.output_edit.setObjectName("outputEdit")
        self.output_browse = QPushButton("Browse…")
        self.output_browse.clicked.connect(self._browse_output)
        row = QHBoxLayout()
        row.addWidget(self.output_edit, 1)
        row.addWidget(self.output_browse)
        form.addRow("Harvest tokens", self.harvest_tokens)
        form.addRow("Device", self.device)
        form.addRow("Output bundle", row)
        return group

    # ============================================================================================
    # config -> form
    # ============================================================================================
    def load_preset(self, name: str) -> None:
        self.set_config(preset(name), name)

    def set_config(self, cfg: RunConfig, preset_name: str | None = None) -> None:
        self.blockSignals(True)            # one ``changed`` for the whole form, not one per field
        try:
            if preset_name is not None:
                i = self.preset_combo.findData(preset_name)
                if i >= 0:
                    self.preset_combo.setCurrentIndex(i)
                self.preset_note.setText(preset_description(preset_name))
            self.corpus.set_spec(cfg.corpus.spec)
            self.vocab_size.setValue(cfg.tokenizer.vocab_size)
            self.n_ctx.setValue(cfg.model.n_ctx)
            self.d_model.setValue(cfg.model.d_model)
            self.d_mlp.setValue(cfg.model.d_mlp)
            self.tokens.setValue(cfg.train.tokens)
            self.d_sae.setValue(cfg.sae.d_sae)
            self._sae_defaults = cfg.sae
            self.recipe.setCurrentIndex(max(0, self.recipe.findData(cfg.sae.recipe)))
            self.k.setValue(cfg.sae.k)
            self.sae_acts.setValue(cfg.sae.n_activations)
            self.harvest_tokens.setValue(cfg.harvest.n_tokens)
            if preset_name is not None:
                sizes, seeds = preset_family(preset_name)
                self.family_sizes.setText(", ".join(map(str, sizes)))
                self.model_seeds.setText(", ".join(map(str, seeds)))
            self.device.setCurrentIndex(max(0, self.device.findData(cfg.device)))
            self._recipe_changed()
        finally:
            self.blockSignals(False)
        self.changed.emit()

    def set_corpus(self, spec: str) -> None:
        self.corpus.set_spec(spec)

    def set_output(self, path: str | Path) -> None:
        self.output_edit.setText(str(path))

    def _recipe_changed(self) -> None:
        """Show the chosen recipe's knob (engine.config.SAE_RECIPE_INFO): k, or its penalty λ."""
        knob = SAE_RECIPE_INFO[self.recipe.currentData()].knob
        self.k.setVisible(knob == "k")
        self.k_label.setVisible(knob == "k")
        penalty = knob in PENALTY_LABELS
        self.l1.setVisible(penalty)
        self.l1_label.setVisible(penalty)
        if penalty:
            self.l1_label.setText(PENALTY_LABELS[knob])
            self.l1.setValue(getattr(self._sae_defaults, knob))

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Output bundle", self.output_edit.text(),
                                              "superpos bundles (*.h5)")
        if path:
            self.set_output(path)

    # ============================================================================================
    # form -> config
    # ============================================================================================
    def preset_name(self) -> str:
        return self.preset_combo.currentData()

    def family(self) -> dict:
        """The run's family as ``run_pipeline`` keywords ({} for one dictionary and one model); raises
        ConfigError for sizes or seeds that do not parse."""
        out = {}
        if self.family_sizes.text().strip():
            sizes = parse_sizes(self.family_sizes.text())
            if len(sizes) > 1:
                out["family_sizes"] = sizes
        if self.model_seeds.text().strip():
            out["model_seeds"] = parse_seeds(self.model_seeds.text())
        return out

    def build_config(self) -> RunConfig:
        """The RunConfig the form describes; raises ConfigError with a readable message."""
        family = self.family()
        sizes = family.get("family_sizes") or parse_sizes(self.family_sizes.text() or str(self.d_sae.value()))
        for d in sizes[1:]:
            preset(self.preset_name()).with_overrides(sae={"d_sae": d}).validate()
        sae = {"d_sae": sizes[0], "recipe": self.recipe.currentData(),
               "n_activations": self.sae_acts.value()}
        knob = SAE_RECIPE_INFO[sae["recipe"]].knob
        if knob == "k":
            sae["k"] = self.k.value()
        elif knob in PENALTY_LABELS:
            sae[knob] = float(self.l1.value())
        cfg = preset(self.preset_name()).with_overrides(
            corpus={"spec": self.corpus.spec()},
            tokenizer={"vocab_size": self.vocab_size.value()},
            model={"n_ctx": self.n_ctx.value(), "d_model": self.d_model.value(), "d_mlp": self.d_mlp.value(),
                   "vocab_size": self.vocab_size.value()},
            train={"tokens": self.tokens.value()},
            sae=sae,
            harvest={"n_tokens": self.harvest_tokens.value()},
            device=self.device.currentData(),
        )
        cfg.validate()      # the same ranges and rules as the command line and the presets
        if cfg.device != "auto":
            try:
                resolve_device(cfg.device)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return cfg

    _FIELD_WIDGETS = {"tokenizer.vocab_size": "vocab_size", "model.vocab_size": "vocab_size",
                      "model.n_ctx": "n_ctx", "model.d_model": "d_model", "model.n_heads": "d_model",
                      "model.d_mlp": "d_mlp", "train.tokens": "tokens", "sae.d_sae": "d_sae", "sae.k": "k",
                      "sae.l1_coeff": "l1", "sae.n_activations": "sae_acts", "harvest.n_tokens": "harvest_tokens",
                      "family.sizes": "family_sizes", "family.model_seeds": "model_seeds"}

    def focus_field(self, field: str | None) -> bool:
        """Put the keyboard focus on the control of ``field`` (a ConfigError's ``section.key``)."""
        widget = getattr(self, self._FIELD_WIDGETS.get(field or "", ""), None)
        if widget is None:
            return False
        widget.setFocus()
        return True

    def output_path(self) -> Path:
        """The bundle path to write (``.h5`` added if missing); raises ConfigError if unusable."""
        text = self.output_edit.text().strip()
        if not text:
            raise ConfigError("Choose where to write the bundle.")
        path = Path(text).expanduser()
        if path.suffix.lower() not in (".h5", ".hdf5"):
            path = path.with_suffix(".h5")
        if path.is_dir():
            raise ConfigError(f"The output {path} is a folder; give a file name ending in .h5.")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise ConfigError(f"Cannot write to {path.parent}.")
        return path
