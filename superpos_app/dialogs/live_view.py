"""The Train dialog's live view: what the run has learned so far, while it trains (the demo's wait).

Fed by the engine's ``Glimpse`` events (engine/train/glimpse.py) and the run's Progress metrics:

* the unigram and bigram baselines as dashed lines on the model-loss plot, with one sentence
  saying what they mean (the validation loss of count tables: a transformer below the bigram line
  uses more than the previous token);
* the model's current next-token predictions at fixed validation positions (context → its top 3
  with probabilities, the actual token marked), refreshed at each validation estimate;
* during SAE training, the latest L0, dead fraction and normalised MSE (the
  trainer's, on inputs scaled to mean norm √D; the Overview's MSE is on raw activations) in words.

Only plain data arrives; each update formats a few lines of text (well under a millisecond), so
the GUI thread never waits. Token strings come from the run's tokenizer, read once from the run's
work folder when the first predictions arrive (``set_tokenizer_source``).
"""

from __future__ import annotations

import html
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from superpos_app.plain_text import display_token

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
        self.sae_label = _label("liveSae")
        self.placeholder = _label("livePlaceholder")
        self.placeholder.setText("<span style='color:#777'>While it trains: the loss baselines, the model's "
                                 "next-token guesses and the sparse autoencoder in words.</span>")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for lab in (self.placeholder, self.baseline_label, self.predictions_label, self.sae_label):
            layout.addWidget(lab)
        layout.addStretch(1)
        self.clear()

    def clear(self) -> None:
        self._remove_lines()
        self.baselines, self.predictions, self.step = {}, (), 0
        self._vocab = None
        for lab in (self.baseline_label, self.predictions_label, self.sae_label):
            lab.setText("")
            lab.setVisible(False)
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
        return html.escape(s.replace(" ", "␣") if visible_spaces else s)

    def _load_vocab(self):
        if self._vocab is None and self._tokenizer_path is not None and self._tokenizer_path.is_file():
            try:
                from engine.data.tokenizer import Tokenizer

                self._vocab = Tokenizer.load(self._tokenizer_path).readable_strings()
            except Exception:  # noqa: BLE001 - token ids are still shown
                self._vocab = None
        return self._vocab

    def _show_predictions(self) -> None:
        rows = []
        for context, actual, preds in self.predictions:
            ctx = "".join(self._token(t) for t in context)
            guesses = []
            for i, p in preds:
                tok = f"<code>{self._token(i, True)}</code> {100 * p:.0f}%"
                guesses.append(f"<b style='color:#2f7a2f'>{tok}</b>" if i == actual else tok)
            hit = any(i == actual for i, _ in preds)
            mark = "" if hit else f" <span style='color:#b33b2f'>(actual <code>{self._token(actual, True)}</code>)</span>"
            rows.append(f"<tr><td align='right' style='color:#555'><code>…{ctx}</code></td>"
                        f"<td>&nbsp;→&nbsp;{' · '.join(guesses)}{mark}</td></tr>")
        self.predictions_label.setText(
            f"<b>The model's next-token guesses now</b> (step {self.step}, validation text; green = the actual "
            f"next token):<table cellspacing='0' cellpadding='1'>{''.join(rows)}</table>")
        self.predictions_label.setVisible(bool(rows))
        self.placeholder.setVisible(self.placeholder.isVisibleTo(self) and not rows)


def _label(name: str) -> QLabel:
    lab = QLabel("")
    lab.setObjectName(name)
    lab.setTextFormat(Qt.TextFormat.RichText)
    lab.setWordWrap(True)
    return lab
