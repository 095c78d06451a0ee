"""The Train dialog's live view from the engine's Glimpse events: baselines on the loss plot, the
model's guesses decoded with the run's tokenizer, the SAE in words, a new run clearing the old."""

from __future__ import annotations

import pyqtgraph as pg

from engine.data.tokenizer import Tokenizer
from engine.events import Glimpse
from engine.testing.synthetic import synthetic_text
from superpos_app.widgets.curves import CurvePanel
from superpos_app.dialogs.live_view import LiveView


def test_glimpses_fill_the_live_view(qtbot, tmp_path):
    tok = Tokenizer.train([synthetic_text(0, 4000)], vocab_size=300)
    tok.save(tmp_path / "tokenizer.json")
    curves = CurvePanel()
    live = LiveView(curves)
    qtbot.addWidget(curves)
    qtbot.addWidget(live)
    live.set_tokenizer_source(tmp_path / "tokenizer.json")
    live.on_glimpse(Glimpse("model", "baselines", values={"unigram": 5.5, "bigram": 3.9}))
    lines = [i for i in curves.plots["Model loss"].items if isinstance(i, pg.InfiniteLine)]
    assert sorted(round(l.value(), 2) for l in lines) == [3.9, 5.5]
    assert "5.50" in live.baseline_label.text() and "3.90" in live.baseline_label.text()

    ids = tok.encode("def f(x):\n    return x")
    rows = ((tuple(ids[:-1]), ids[-1], ((ids[-1], 0.61), (7, 0.2))), (tuple(ids[:3]), 5, ((9, 0.3),)))
    live.on_glimpse(Glimpse("model", "predictions", step=40, done=999, rows=rows))
    assert "step 40" in live.predictions_label.text()
    view = live.predictions_view
    first, second = view.line_tokens(0), view.line_tokens(1)
    assert " 61%" in first and " (actual " in second and "return" in view.line_prefix(0)
    assert view.line_values(0)[first.index(" 61%") - 1] > 0              # the guessed actual token: shaded
    assert view.line_values(1)[second.index(" (actual ") + 1] < 0        # the missed one: the other colour
    live.on_metrics("sae", [(10, {"l0": 12.0, "dead_fraction": 0.05, "mse": 0.01})])
    assert "L0 12.0" in live.sae_label.text() and "5.0% of features dead" in live.sae_label.text()
    live.on_metrics("model", [(10, {"train_loss": 4.0})])              # model metrics: no SAE sentence change
    assert "L0 12.0" in live.sae_label.text()

    live.clear()                                                          # a new run starts clean
    assert not [i for i in curves.plots["Model loss"].items if isinstance(i, pg.InfiniteLine)]
    assert not live.predictions_label.isVisibleTo(live) and not live.baselines
    assert not live.predictions_view.isVisibleTo(live) and live.predictions_view.n_lines() == 0
