"""Ablation underlines on a dashboard's examples (the paper's blue/red), computed lazily on a worker.

``AblationUnderlines`` sits beside a pane's ``TokenView``: the pane calls ``show(kind, index,
windows)`` with one stored window per line (None for a heading line) right after drawing the
examples, and the underlines arrive when the worker has run ``engine.analysis.ablation``:

    blue  ablating the unit lowers log p of this token (the unit helped predict it)
    red   ablating it raises log p (the unit worked against it); intensity ∝ |Δ| / max |Δ| shown

Nothing is computed at harvest time and nothing on the GUI thread: each request is a job of the
app's one ``LatestRunner`` (latest request wins; a newer unit stops the running one between batches), started
once the unit has been shown for SETTLE_MS (browsing with the arrow keys starts no jobs). The
job opens the bundle itself (an h5py handle never crosses threads) and keeps an ``AblationEngine``
for each of the last two (bundle file, dictionary) pairs — so the model and SAE load once, and the
clean passes of examples already seen are reused. Results are cached per (bundle, dictionary, unit,
examples) on the GUI side, so going back to a unit redraws at once. The toggle (a checkbox in the
pane; remembered in the app settings) turns the whole thing off, jobs included.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSizePolicy, QWidget

from superpos_app.workers.latest_runner import LatestRunner, torch_on_one_thread
from superpos_app.settings import AppSettings

__all__ = ["AblationUnderlines", "ablation_job", "LEGEND_BLUE", "LEGEND_RED"]

LEGEND_BLUE, LEGEND_RED = "#2866ff", "#dc1e1e"     # token_view's _NEG_RGB / _POS_RGB
_RESULTS_KEPT = 128
SETTLE_MS = 200                                    # a unit shown this long gets its job (arrow-key browsing
                                                   # and bursts of selections start none)
_ENGINES: OrderedDict[tuple, object] = OrderedDict()   # (path, dictionary, mtime) -> AblationEngine
_ENGINES_KEPT = 2                                  # model + SAE + clean cache each (~60 MB at the demo's size)
_ENGINE_LOCK = threading.Lock()                    # one engine call at a time, whichever pane asks


def _engine_for(path: str, dictionary: int):
    from engine.analysis.ablation import AblationEngine
    from engine.bundle import open_bundle

    key = (path, dictionary, Path(path).stat().st_mtime_ns)
    engine = _ENGINES.get(key)
    if engine is not None:
        _ENGINES.move_to_end(key)
    else:
        with open_bundle(path, dictionary) as bundle:
            sae = bundle.load_sae() if bundle.n_features else None
            engine = AblationEngine(bundle.load_model(), sae)
        for old in [k for k in _ENGINES if k[:2] == key[:2]]:      # a rewritten file: forget the old one
            del _ENGINES[old]
        _ENGINES[key] = engine
        while len(_ENGINES) > _ENGINES_KEPT:
            _ENGINES.popitem(last=False)
    return engine


def ablation_job(path: str, dictionary: int, kind: str, index: int, windows: np.ndarray):
    """A runner job: Δ [B, W] float32 of ablating the unit on each window."""
    def job(token):
        torch_on_one_thread()
        with _ENGINE_LOCK:
            engine = _engine_for(path, dictionary)
            return engine.effects(kind, index, windows, should_stop=lambda: token.cancelled)
    return job


class AblationUnderlines(QObject):
    """The underlines of one TokenView: checkbox + legend widget (``bar``), requests, cache."""

    def __init__(self, view, parent: QObject | None = None, settings: AppSettings | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.settings = settings or AppSettings()
        self.runner = LatestRunner(self)
        self.runner.resultReady.connect(self._on_result)
        self.runner.failed.connect(self._on_failed)
        self.bundle = None
        self._pending: tuple | None = None       # the key of the request in flight (settling or running)
        self._shown: tuple | None = None         # (key, line rows) drawn or waiting to be drawn
        self._results: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.last_seconds = float("nan")
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._submit)

        self.bar = QWidget()
        self.bar.setObjectName("ablationBar")
        row = QHBoxLayout(self.bar)             # the legend beside the checkbox: one line where it fits
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        self.toggle = QCheckBox("Ablation underlines")
        self.toggle.setObjectName("ablationToggle")
        self.toggle.setToolTip("Underline each token by the effect of ablating this unit on its log-likelihood "
                               "(computed for the shown examples on a worker)")
        self.toggle.setChecked(self.settings.ablation_underlines())
        self.toggle.toggled.connect(self._on_toggled)
        self.legend = QLabel("")
        self.legend.setObjectName("ablationLegend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.legend, 1)
        view.tooltip_fn = self._tooltip

    # ------------------------------------------------------------------ the pane's calls
    @property
    def enabled(self) -> bool:
        return self.toggle.isChecked()

    def set_bundle(self, bundle) -> None:
        self.bundle = bundle
        self.clear()

    def clear(self) -> None:
        """No examples (or a new unit coming): stop the running request, no underlines."""
        self._pending = self._shown = None
        self._settle.stop()
        self.runner.drop()
        self.view.set_underlines(None)
        self._set_legend("")

    def show(self, kind: str, index: int, windows: list) -> None:
        """Underline the view's lines: ``windows[i]`` is line i's stored window (int [W], −1 padding),
        or None for a line without one (a heading)."""
        self.clear()
        rows = [i for i, w in enumerate(windows) if w is not None]
        if self.bundle is None or not rows:
            return
        windows_BW = np.stack([np.asarray(windows[i], np.int64) for i in rows])
        key = (str(self.bundle.path), int(getattr(self.bundle, "dictionary", 0)), kind, int(index),
               windows_BW.tobytes())
        self._shown = (key, rows, windows_BW)
        if not self.enabled:
            return
        if key in self._results:
            self._results.move_to_end(key)
            self._draw()
            return
        self._pending = key
        self._set_legend("<span style='color:#777'>computing the ablation effects…</span>")
        self._settle.start()

    def _submit(self) -> None:
        if self._pending is None or self._shown is None:
            return
        key, _, windows_BW = self._shown
        self.runner.submit(ablation_job(key[0], key[1], key[2], key[3], windows_BW))

    def shutdown(self) -> None:
        self.runner.shutdown()

    def effects_shown(self) -> np.ndarray | None:
        """Δ [B, W] of the examples drawn now (tests), or None."""
        return self._results.get(self._shown[0]) if self._shown else None

    # ------------------------------------------------------------------ results
    def _on_result(self, _request_id: int, delta: np.ndarray, seconds: float) -> None:
        key, self._pending = self._pending, None
        if key is None:                          # never: clear() drops the runner's requests
            return
        self.last_seconds = seconds
        self._results[key] = delta
        while len(self._results) > _RESULTS_KEPT:
            self._results.popitem(last=False)
        self._draw()

    def _on_failed(self, _request_id: int, message: str) -> None:
        if self._pending is not None:
            self._pending = None
            self._set_legend(f"<span style='color:#b33b2f'>ablation effects unavailable: "
                             f"{_escape(message[:300])}</span>")

    def _draw(self) -> None:
        key, rows, windows_BW = self._shown
        delta_BW = self._results[key]
        under: list = [None] * self.view.n_lines()
        for b, line in enumerate(rows):
            if line < len(under):
                under[line] = delta_BW[b][windows_BW[b] >= 0]          # the view draws trimmed windows
        finite = np.abs(delta_BW[np.isfinite(delta_BW)])
        scale = float(finite.max()) if finite.size and finite.max() > 0 else None
        self.view.set_underlines(under, scale)
        if scale is None:
            self._set_legend("<span style='color:#777'>ablating this unit changes no shown token's likelihood "
                             "(it is silent on these examples)</span>")
            return
        self._set_legend(
            f"<span style='color:{LEGEND_BLUE}'><b>▬</b></span> lowers log p · "
            f"<span style='color:{LEGEND_RED}'><b>▬</b></span> raises it · darkest |Δ| {scale:.3g} nats")
        self.legend.setToolTip("Underlines: the change in each token's log-likelihood when this unit is ablated. "
                               "Blue: ablating lowers it (the unit helped predict the token); red: raises it. "
                               f"The darkest underline is |Δ log p| = {scale:.3g} nats.")

    def _set_legend(self, text: str) -> None:
        self.legend.setText(text)
        self.legend.setVisible(bool(text))

    def _on_toggled(self, on: bool) -> None:
        self.settings.set_ablation_underlines(on)
        shown = self._shown
        if not on:
            self.clear()
            self._shown = shown                  # turned back on: the same examples are requested
            return
        if shown is not None:
            key, rows, windows_BW = shown
            windows: list = [None] * (max(rows) + 1)
            for b, line in enumerate(rows):
                windows[line] = windows_BW[b]
            self.show(key[2], key[3], windows)

    def _tooltip(self, line: int, token: int) -> str:
        from superpos_app.plain_text import display_token, tooltip

        toks, vals = self.view.line_tokens(line), self.view.line_values(line)
        v = float(vals[token]) if token < vals.size else 0.0
        text = f"{display_token(toks[token])!r}  activation {v:.3g}"
        u = self.view.line_underline(line)
        if u is not None and token < u.size and np.isfinite(u[token]):
            effect = "helped predict it" if u[token] < 0 else "worked against it" if u[token] > 0 else "no effect"
            text += f"\nablated: Δ log p(token) = {float(u[token]):+.4f} nats ({effect})"
        return tooltip(text)


def _escape(s: str) -> str:
    import html

    return html.escape(s)
