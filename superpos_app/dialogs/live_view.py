"""The Train dialog's live view: what the run has learned so far, while it trains (the demo's wait).

Fed by the engine's ``Glimpse`` events (engine/train/glimpse.py) and the run's Progress metrics:

* the unigram and bigram baselines as dashed lines on the model-loss plot, with one sentence
  saying what they mean (the validation loss of count tables: a transformer below the bigram line
  uses more than the previous token);
* the model's current next-token predictions at fixed validation positions (context → its top 3
  with probabilities, the actual token marked), refreshed at each validation estimate; drawn by the
  token view, each context and guess an isolated piece of text, so a Hebrew guess reads right to
  left without reordering the row around it;
* during SAE training, the latest L0, dead fraction and normalised MSE (the
  trainer's, on inputs scaled to mean norm √D; the Overview's MSE is on raw activations) in words.

Only plain data arrives; each update formats a few lines of text (well under a millisecond), so
the GUI thread never waits. Token strings come from the run's tokenizer, read once from the run's
work folder when the first predictions arrive (``set_tokenizer_source``).
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

import numpy as np

from superpos_app.plain_text import display_token, tooltip
from superpos_app.widgets.token_view import TokenView

__all__ = ["LiveView"]

_UNI, _BI = "#7a7f87", "#5a9a5a"


class LiveView(QWidget):
    """Baseline lines on ``curves``' model-loss plot and a text panel of the model's predictions."""

    def __init__(self, curves, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("liveView")
        self.curves = curves
        self.baselines: dict[str, float] = {}
        self.predictions: tuple = ()
        self.step = 0
        self._lines: list = []
        self._tokenizer_path: Path | None = None
        self._vocab: tuple[str, ...] | None = None
        self.baseline_label = _label("liveBaselines")
        self.predictions_label = _label("livePredictions")
        self.predictions_view = TokenView(isolate_tokens=True, line_gap=2.0)
        self.predictions_view.setObjectName("livePredictionsView")
        self.predictions_view.tooltip_fn = self._guess_tooltip
        self.sae_label = _label("liveSae")
        self.placeholder = _label("livePlaceholder")
        self.placeholder.setText("<span style='color:#777'>While it trains: the loss baselines, the model's "
                                 "next-token guesses and the sparse autoencoder in words.</span>")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for w in (self.placeholder, self.baseline_label, self.predictions_label, self.predictions_view,
                  self.sae_label):
            layout.addWidget(w)
        layout.addStretch(1)
        self.clear()

    def clear(self) -> None:
        self._remove_lines()
        self.baselines, self.predictions, self.step = {}, (), 0
        self._vocab = None
        for lab in (self.baseline_label, self.predictions_label, self.sae_label):
            lab.setText("")
            lab.setVisible(False)
        self.predictions_view.clear()
        self.predictions_view.setVisible(False)
        self.placeholder.setVisible(True)

    def set_tokenizer_source(self, path: Path | None) -> None:
        """Where the run's tokenizer is (or will be) saved; read when predictions first need it."""
        self._tokenizer_path = Path(path) if path else None
        self._vocab = None

    # ------------------------------------------------------------------ events
    def on_glimpse(self, glimpse) -> None:
        if glimpse.kind == "baselines" and glimpse.values:
            self._show_baselines(dict(glimpse.values))
        elif glimpse.kind == "predictions":
            self.predictions, self.step = tuple(glimpse.rows), int(glimpse.step)
            self._show_predictions()

    def on_metrics(self, stage: str, points) -> None:
        if stage != "sae" or not points:
            return
        m = points[-1][1]
        bits = []
        if "l0" in m:
            bits.append(f"L0 {m['l0']:.1f} features active per token")
        if "dead_fraction" in m:
            bits.append(f"{100 * m['dead_fraction']:.1f}% of features dead (not fired in the recent window)")
        if "mse" in m:
            bits.append(f"normalised MSE {m['mse']:.4g} (training scale)")
        if bits:
            self.sae_label.setText("<b>Sparse autoencoder now:</b> " + " · ".join(bits) +
                                   ". <span style='color:#777'>Fewer active features and few dead ones at a "
                                   "low MSE make a good dictionary.</span>")
            self.sae_label.setVisible(True)
            self.placeholder.setVisible(False)

    # ------------------------------------------------------------------ pieces
    def _show_baselines(self, values: dict[str, float]) -> None:
        self.baselines = values
        plot = self.curves.plots["Model loss"]
        self._remove_lines()
        for key, colour, text in (("unigram", _UNI, "unigram"), ("bigram", _BI, "bigram")):
            if key in values:
                line = pg.InfiniteLine(pos=values[key], angle=0, pen=pg.mkPen(colour, width=1.2, style=Qt.PenStyle.DashLine),
                                       label=f"{text} {values[key]:.2f}",
                                       labelOpts={"position": 0.02, "color": colour, "anchors": [(0, 1), (0, 1)]})
                plot.addItem(line)
                self._lines.append(line)
        u, b = values.get("unigram"), values.get("bigram")
        self.baseline_label.setText(
            f"<b>Baselines</b> (dashed, validation loss in nats): a table of token frequencies scores "
            f"<span style='color:{_UNI}'>{u:.2f}</span> (no context); a table of which token follows which scores "
            f"<span style='color:{_BI}'>{b:.2f}</span> (one token of context). Below the bigram line the "
            "transformer uses more than the previous token.")
        self.baseline_label.setVisible(True)
        self.placeholder.setVisible(False)

    def _remove_lines(self) -> None:
        for line in self._lines:
            self.curves.plots["Model loss"].removeItem(line)
        self._lines = []

    def _token(self, i: int, visible_spaces: bool = False) -> str:
        vocab = self._load_vocab()
        s = display_token(vocab[i] if vocab is not None and 0 <= i < len(vocab) else f"#{i}")
        return s.replace(" ", "␣") if visible_spaces else s

    def _load_vocab(self):
        if self._vocab is None and self._tokenizer_path is not None and self._tokenizer_path.is_file():
            try:
                from engine.data.tokenizer import Tokenizer

                self._vocab = Tokenizer.load(self._tokenizer_path).readable_strings()
            except Exception:  # noqa: BLE001 - token ids are still shown
                self._vocab = None
        return self._vocab

    def _show_predictions(self) -> None:
        """One row per position: ``…context`` (the prefix column) → guesses with their probabilities;
        the actual token shaded orange where guessed, blue where missed."""
        rows, values, prefixes = [], [], []
        for context, actual, preds in self.predictions:
            items, vals = ["→ "], [0.0]
            for k, (i, p) in enumerate(preds):
                items += [" · "] if k else []
                vals += [0.0] if k else []
                items += [self._token(i, True), f" {100 * p:.0f}%"]
                vals += [1.0 if i == actual else 0.0, 0.0]
            if not any(i == actual for i, _ in preds):
                items += [" (actual ", self._token(actual, True), ")"]
                vals += [0.0, -1.0, 0.0]
            rows.append(items)
            values.append(np.asarray(vals, np.float32))
            prefixes.append("…" + "".join(self._token(t) for t in context))
        self.predictions_label.setText(
            f"<b>The model's next-token guesses now</b> (step {self.step}, validation text; "
            "<span style='background:#ffc080'>orange</span> = it guessed the actual next token, "
            "<span style='background:#a8c4ff'>blue</span> = the actual one it missed):")
        self.predictions_label.setVisible(bool(rows))
        self.predictions_view.set_lines(rows, values, max_value=1.0, prefixes=prefixes)
        self.predictions_view.setVisible(bool(rows))
        self.placeholder.setVisible(self.placeholder.isVisibleTo(self) and not rows)

    def _guess_tooltip(self, line: int, token: int) -> str:
        return tooltip(f"{self.predictions_view.line_tokens(line)[token]!r}")


def _label(name: str) -> QLabel:
    lab = QLabel("")
    lab.setObjectName(name)
    lab.setTextFormat(Qt.TextFormat.RichText)
    lab.setWordWrap(True)
    return lab
