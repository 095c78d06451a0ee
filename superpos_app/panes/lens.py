"""Text lens: type or paste text and watch features fire, token by token.

Each edit restarts a short debounce timer; when it fires, a request goes to the app's one "latest
request wins" runner (``superpos_app.workers.latest_runner``), which runs
``engine.analysis.lens.LensEngine.analyze`` (tokenize, model, SAE, predictions, optional clamp) off the
GUI thread. At most one analysis runs at a time (the engine keeps a prefix cache and is not
thread-safe); a long text is read in context windows and the engine checks its token between window
batches, so a burst of keystrokes or a megabyte paste costs little more than the newest analysis, and
only the newest request's result is shown. The GUI thread never runs the model; only plain
``LensResult`` data crosses back.

Tokens are shaded by the selected unit's activation (features from the sparse result, neurons from
the dense one — changing the selection re-shades without re-running). Hovering a token lists its
strongest features and the model's next-token predictions; the ranked table lists every feature
active in the text (click selects it). The clamp scales (or sets) one feature in the spliced SAE
reconstruction and the predictions table shows how the top next tokens change at each position;
underlines mark how the loss on each actual next token changed (red: worse, blue: better).
Item models: lens_models.py; clamp controls: lens_clamp.py.
"""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QFrame, QGridLayout, QHeaderView, QLabel, QPlainTextEdit, QScrollArea, QSplitter,
    QSizePolicy, QTableView, QVBoxLayout, QWidget,
)

from engine.analysis.lens import MAX_TOKENS, LensEngine, LensResult, window_plan
from superpos_app.faults import contain_faults
from superpos_app.widgets.fast_table import FastTableView
from superpos_app.widgets.fit import scrolled
from superpos_app.widgets.lens_clamp import ClampControls
from superpos_app.models.lens_models import LensFeatureModel, PredictionModel, quoted
from superpos_app.widgets.token_view import TokenView
from superpos_app.plain_text import html_text, plain
from superpos_app.workers.latest_runner import LatestRunner, torch_on_one_thread
from superpos_app.workers.worker import freeze_long_lived

__all__ = ["TextLensPane", "DEBOUNCE_MS"]

DEBOUNCE_MS = 60
MAX_INPUT_CHARS = 100_000       # a paste is cut here: Qt lays out 1 MB in ~200 ms, and the lens reads
                                # at most MAX_TOKENS tokens (~20k characters) anyway


@contain_faults(also=("insertFromMimeData",))
class LensInput(QPlainTextEdit):
    """The lens's text box: a paste longer than MAX_INPUT_CHARS is cut there (``clipped`` is the
    pasted length, told on screen), so a megabyte never reaches Qt's text layout."""

    clipped = Signal(int)

    def insertFromMimeData(self, source) -> None:  # noqa: N802 - Qt name
        text = source.text() if source is not None and source.hasText() else ""
        if len(text) > MAX_INPUT_CHARS:
            self.clipped.emit(len(text))
            self.insertPlainText(text[:MAX_INPUT_CHARS])
            return
        super().insertFromMimeData(source)


@contain_faults(also=("request_now", "_on_done", "_on_failed", "_on_unit_selected", "_on_feature_clicked",
                      "_on_token_clicked", "_on_hover", "_token_tooltip"))
class TextLensPane(QWidget):
    resultShown = Signal(int)             # request id, after the result is drawn
    PANE_FAULTS = True

    def __init__(self, selection, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("textLens")
        self.selection = selection
        self.bundle = None
        self.result: LensResult | None = None
        self._labels: list[str] = []
        self._unit: tuple[str, int] | None = None
        self.shown_request = 0                 # the runner's id of the result shown (0: none)
        self.last_seconds = 0.0
        self._engine: LensEngine | None = None
        self.runner = LatestRunner(self)
        self.runner.resultReady.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)

        self._pasted_chars = 0                  # length of a paste cut at MAX_INPUT_CHARS (0: none)
        self.input = LensInput()
        self.input.clipped.connect(self._on_clipped)
        self.input.setObjectName("lensInput")
        self.input.setPlaceholderText("Type or paste text here (Ctrl+L). Every token is run through the model "
                                      "and the SAE as you type.")
        self.input.setMaximumHeight(90)
        self.input.setTabChangesFocus(True)

        # The truncation notice sits in the info row and only changes its text: showing and hiding
        # a widget would relayout the whole pane on every keystroke that crosses the context.
        self.notice = QLabel("")
        self.notice.setTextFormat(Qt.TextFormat.PlainText)
        self.notice.setObjectName("lensTruncated")
        self.notice.setStyleSheet("color:#a05a00; font-weight:bold;")
        self.notice.setToolTip(f"The lens analyses at most {MAX_TOKENS:,} tokens (and keeps at most {MAX_INPUT_CHARS:,} "
                               "characters of a paste); later text is not analysed. "
                               "Texts longer than the model's context are read in overlapping context windows.")
        self.notice.setFixedWidth(self.notice.fontMetrics().horizontalAdvance(
            "  first 4,096 tokens of 9,999,999 characters (limit)  ") * 12 // 10)    # bold: a little wider
        self.notice.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.shading_label = QLabel("")
        self.shading_label.setObjectName("lensShading")
        self.shading_label.setWordWrap(True)
        self.status = QLabel("")
        self.status.setTextFormat(Qt.TextFormat.PlainText)         # may quote an error message
        self.status.setObjectName("lensStatus")
        self.status.setStyleSheet("color:#777;")
        self.status.setMinimumWidth(self.status.fontMetrics().horizontalAdvance("4,096 tokens · 99 windows · 999 ms") + 8)
        info = self._info = QGridLayout()          # one row when wide; shading above the rest when narrow
        info.setContentsMargins(0, 0, 0, 0)
        self._narrow: bool | None = None

        self.tokens = TokenView()
        self.tokens.setObjectName("lensTokens")
        self.tokens.placeholder = "Tokens appear here, shaded by the selected feature's activation."
        self.tokens.tooltip_fn = self._token_tooltip
        self.tokens.tokenHovered.connect(self._on_hover)
        self.tokens.tokenClicked.connect(self._on_token_clicked)
        tok_scroll = QScrollArea()
        tok_scroll.setWidgetResizable(True)
        tok_scroll.setFrameShape(QFrame.Shape.StyledPanel)
        tok_scroll.setWidget(self.tokens)
        tok_scroll.setMinimumHeight(40)

        # ranked features
        self.feature_model = LensFeatureModel(self)
        self.feature_table = _table(self.feature_model, "lensFeatureTable")
        self.feature_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for c, w in ((0, 58), (2, 58), (3, 50)):
            self.feature_table.setColumnWidth(c, w)
        self.feature_table.clicked.connect(self._on_feature_clicked)
        self.feature_table.activated.connect(self._on_feature_clicked)
        ranked = QWidget()
        rl = QVBoxLayout(ranked)
        rl.setContentsMargins(0, 0, 0, 0)
        self.ranked_title = QLabel("<b>Features active in this text</b>")
        self.ranked_title.setWordWrap(True)
        rl.addWidget(self.ranked_title)
        rl.addWidget(self.feature_table, 1)

        # hover info, clamp, predictions
        self.hover_info = QLabel(HOVER_PROMPT)
        self._hovered: tuple[str, int] | None = None       # (the text, token) the hover panel describes
        self.hover_info.setObjectName("lensHoverInfo")
        self.hover_info.setTextFormat(Qt.TextFormat.RichText)
        # not word-wrapped (a wrapped label's height-for-width would make the column's scroll area
        # scroll): its lines are short, a long one is cut at the edge (the token's tooltip has it all)
        self.hover_info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.hover_info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.hover_info.setMinimumHeight(36)

        self.clamp_controls = ClampControls()
        self.clamp_controls.changed.connect(self.request_now)

        self.pred_model = PredictionModel(self)
        self.pred_table = _table(self.pred_model, "lensPredictions")
        hh = self.pred_table.horizontalHeader()
        for c, w in ((0, 34), (1, 80), (2, 80), (5, 90)):
            self.pred_table.setColumnWidth(c, w)
        hh.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        hh.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.pred_table.clicked.connect(lambda idx: self.tokens.set_highlight(0, idx.row()))

        right = QWidget()
        rr = QVBoxLayout(right)
        rr.setContentsMargins(0, 0, 0, 0)
        rr.addWidget(self.hover_info)
        rr.addWidget(self.clamp_controls)
        rr.addWidget(self.pred_table, 1)

        lower = self._lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(ranked)
        # in a scroll area: the hover text, clamp and predictions would otherwise set a minimum height
        # that keeps the dock from being made shorter (they scroll instead when it is very short)
        lower.addWidget(scrolled(right))
        lower.setStretchFactor(0, 2)
        lower.setStretchFactor(1, 3)
        lower.setSizes([380, 620])
        lower.setChildrenCollapsible(False)
        # the text box, the shaded tokens (with the info row above them) and the tables share one
        # splitter: each can be given more room, and the predictions table starts with several rows
        shaded = QWidget()
        sl = QVBoxLayout(shaded)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.setSpacing(2)
        sl.addLayout(info)
        sl.addWidget(tok_scroll, 1)
        body = QSplitter(Qt.Orientation.Vertical)
        self.input.setMinimumHeight(40)          # two lines: the dock can be made short
        body.addWidget(self.input)
        body.addWidget(shaded)
        body.addWidget(lower)
        body.setStretchFactor(0, 0)
        body.setStretchFactor(1, 1)
        body.setStretchFactor(2, 3)
        body.setSizes([56, 90, 400])
        body.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        self._fit(self.sizeHint().width())
        # below 700 px the narrow arrangement applies, which needs far less than the wide one's
        # minimum: an explicit minimum lets a side dock get that narrow at all
        self.setMinimumWidth(300)
        layout.addWidget(body, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.request_now)
        self.input.textChanged.connect(self._debounce.start)
        self.input.textChanged.connect(self._forget_clip)
        selection.unitSelected.connect(self._on_unit_selected)
        selection.cleared.connect(lambda: self._on_unit_selected(None, -1))
        self.setEnabled(False)

    def sizeHint(self):
        return QSize(1000, 330)            # docks start from their widget's size hint

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        self._fit(event.size().width())

    def _fit(self, width: int) -> None:
        """Wide (a bottom dock): the info in one row, ranked features beside the predictions. Narrow
        (a side dock): the truncation notice on a line of its own, the two tables one above the other."""
        narrow = width < 700
        if narrow == self._narrow:
            return
        self._narrow = narrow
        for w in (self.shading_label, self.notice, self.status):
            self._info.removeWidget(w)
        if narrow:
            self._info.addWidget(self.shading_label, 0, 0)
            self._info.addWidget(self.status, 0, 1)
            self._info.addWidget(self.notice, 1, 0, 1, 2, Qt.AlignmentFlag.AlignRight)
        else:
            self._info.addWidget(self.shading_label, 0, 0)
            self._info.addWidget(self.notice, 0, 1)
            self._info.addWidget(self.status, 0, 2)
        self._info.setColumnStretch(0, 1)
        self._lower.setOrientation(Qt.Orientation.Vertical if narrow else Qt.Orientation.Horizontal)

    # ------------------------------------------------------------------ bundle
    def set_bundle(self, bundle) -> None:
        self.bundle = bundle
        self.result = None
        self.runner.drop()                       # a result still in flight for the old bundle is stale
        self._engine = None
        self.feature_model.set_result(None)
        self.pred_model.set_result(None)
        self.tokens.clear()
        self.notice.setText("")
        self.notice.setVisible(False)
        if bundle is None:
            self.setEnabled(False)
            return
        self._labels = list(bundle.columns("feature")["label"])
        self.feature_model.set_labels(self._labels)
        self.clamp_controls.set_n_features(bundle.n_features)
        self.setEnabled(True)
        cur = self.selection.current
        self._unit = cur
        if cur is not None and cur[0] == "feature":
            self.clamp_controls.feature.setValue(cur[1])
        if self.input.toPlainText():
            self.request_now()

    def _ensure_engine(self) -> LensEngine | None:
        if self._engine is None and self.bundle is not None:
            # h5py reads happen here, on the GUI thread; the worker only gets torch modules.
            self._engine = LensEngine(self.bundle.load_model(), self.bundle.load_sae(), self.bundle.tokenizer())
            freeze_long_lived()       # they live as long as the bundle: no full collection rescans them
        return self._engine

    @property
    def engine(self) -> LensEngine | None:
        return self._ensure_engine()

    def focus_input(self) -> None:
        self.input.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def set_text(self, text: str) -> None:
        self._pasted_chars = len(text) if len(text) > MAX_INPUT_CHARS else 0
        self.input.setPlainText(text[:MAX_INPUT_CHARS])

    def _on_clipped(self, n_chars: int) -> None:
        self._pasted_chars = n_chars

    def _forget_clip(self) -> None:
        """A cut paste is told until the text is replaced by a shorter one."""
        if self._pasted_chars and self.input.document().characterCount() < MAX_INPUT_CHARS // 2:
            self._pasted_chars = 0

    def shutdown(self) -> None:
        """Wait for the running analysis and start no more (the pane shows no new results afterwards)."""
        self._debounce.stop()
        self.runner.shutdown()

    # ------------------------------------------------------------------ requests
    def request_now(self) -> int:
        """Send the current text to the worker now (the debounce calls this); returns the request id."""
        self._debounce.stop()
        if self.bundle is None:
            return self.runner.latest
        try:
            engine = self._ensure_engine()
        except Exception as exc:  # noqa: BLE001 - e.g. a bundle without a loadable model
            self.status.setText(plain(f"Cannot run the lens: {exc}", 300))
            return self.runner.latest
        c = self.clamp_controls
        kwargs = dict(unit_kind="feature", clamp=c.clamp(), clamp_mode=c.clamp_mode(), error_term=c.keep_error())
        return self.runner.submit(_analyze_job(engine, self.input.toPlainText(), kwargs))

    @property
    def latest_request(self) -> int:
        return self.runner.latest

    def _on_failed(self, request_id: int, message: str) -> None:
        self.status.setText(plain(f"Lens failed: {message}", 300))

    def _on_done(self, request_id: int, result: LensResult, seconds: float) -> None:
        self.shown_request = request_id
        self.last_seconds = seconds
        self.result = result
        self._render()
        self.resultShown.emit(request_id)

    # ------------------------------------------------------------------ drawing
    def _render(self) -> None:
        r = self.result
        notice = ""
        if r.truncated and r.n_tokens_total >= 0 and not self._pasted_chars:
            notice = f"first {r.n_tokens:,} of {r.n_tokens_total:,} tokens (limit)"
        elif r.truncated:
            notice = f"first {r.n_tokens:,} tokens of {max(self._pasted_chars, len(r.text)):,} characters (limit)"
        if notice != self.notice.text():
            self.notice.setText(notice)
        self.notice.setVisible(bool(notice))     # an empty notice must not take the shading label's room
        self.tokens.set_lines([r.tokens], [self._unit_values()], max_value=self._shade_max())
        self._update_underlines()
        self._refresh_hover()
        self.feature_model.set_result(r)
        self.pred_model.set_result(r)
        n = r.n_tokens
        self.ranked_title.setText(f"<b>Features active in this text</b> ({r.active_ids.size:,})")
        clamp = ""
        if r.clamped is not None:
            (fid, val), = r.clamp.items()
            changed = int((r.clamped.ids[:, 0] != r.predictions.ids[:, 0]).sum())
            op = "×" if r.clamp_mode == "scale" else "="
            clamp = f"F{fid} {op} {val:g}: top prediction changed at {changed} of {n} positions"
        self.clamp_controls.show_summary(clamp)
        windows = len(window_plan(n, r.n_ctx))
        how = f" · {windows} windows" if windows > 1 else ""
        self.status.setText(f"{n:,} tokens{how} · {self.last_seconds * 1000:.0f} ms")
        self._update_shading_label()

    def _shade_unit(self) -> tuple[str, int] | None:
        if self._unit is not None:
            return self._unit
        r = self.result
        if r is not None and r.active_ids.size:
            return ("feature", int(r.active_ids[0]))
        return None

    def _unit_values(self) -> np.ndarray:
        r = self.result
        unit = self._shade_unit()
        if r is None or unit is None or r.n_tokens == 0:
            return np.zeros(r.n_tokens if r is not None else 0, np.float32)
        kind, i = unit
        if kind == "feature" and i >= (self.bundle.n_features if self.bundle is not None else 0):
            return np.zeros(r.n_tokens, np.float32)
        return r.acts_of(kind, i)

    def unit_values(self) -> np.ndarray:
        """Activations currently shading the tokens (float32 [T])."""
        return self._unit_values()

    def _shade_max(self) -> float:
        """Shade relative to the unit's max activation in the bundle (falls back to this text's max)."""
        unit = self._shade_unit()
        vals = self._unit_values()
        mx = float(vals.max()) if vals.size else 0.0
        if unit is not None and self.bundle is not None:
            try:
                mx = max(mx, float(self.bundle.columns(unit[0])["max_act"][unit[1]]))
            except Exception:  # noqa: BLE001
                pass
        return mx or 1.0

    def _update_underlines(self) -> None:
        r = self.result
        if r is None or r.clamped is None or r.n_tokens < 2:
            self.tokens.set_underlines(None)
            return
        # loss change on the token being predicted: position t predicts token t+1
        d = -(r.clamped.next_logprob - r.predictions.next_logprob)          # + = loss got worse
        under = np.zeros(r.n_tokens, np.float32)
        under[1:] = np.nan_to_num(d[:-1])
        self.tokens.set_underlines([under])

    def _update_shading_label(self) -> None:
        unit = self._shade_unit()
        if unit is None:
            self.shading_label.setText("<i>Select a feature to shade the tokens by its activation.</i>")
            return
        kind, i = unit
        name = f"{'Feature' if kind == 'feature' else 'Neuron'} {i}"
        label = self._labels[i] if kind == "feature" and i < len(self._labels) else ""
        how = "" if self._unit is not None else " (strongest in this text; select another to change)"
        self.shading_label.setText(f"Shading: <b>{html.escape(name)}</b> {html_text(label)}{how}")

    def _on_unit_selected(self, kind, index) -> None:
        self._unit = None if kind is None else (kind, int(index))
        if kind == "feature" and self.bundle is not None and self.clamp_controls.follow(int(index)):
            self.request_now()
        if self.result is not None:
            self.tokens.set_values([self._unit_values()], max_value=self._shade_max())
        self._update_shading_label()

    def _on_feature_clicked(self, index) -> None:
        if index.isValid():
            self.selection.select("feature", self.feature_model.feature_at(index.row()))

    def _on_token_clicked(self, line: int, t: int) -> None:
        if self.result is not None and 0 <= t < self.result.n_tokens:
            self.pred_table.selectRow(t)
            self.pred_table.scrollTo(self.pred_model.index(t, 0))

    def _hover_html(self, t: int) -> str:
        r = self.result
        ids, vals = r.features_at(t)
        unit = self._shade_unit()
        head = f"<b>{html_text(quoted(r.tokens[t]), 80)}</b> (token {t})"
        if unit is not None:
            head += f" · {unit[0]} {unit[1]}: {float(self._unit_values()[t]):.3g}"
        feats = ", ".join(
            f"F{int(i)} {float(v):.2f}" + (f" <span style='color:#777'>{html_text(self._labels[int(i)], 28)}</span>"
                                          if int(i) < len(self._labels) and self._labels[int(i)] else "")
            for i, v in zip(ids[:6], vals[:6]))
        pred = html_text(PredictionModel.top_text(r.predictions, t), 300)
        out = f"{head}<br>features: {feats or '<i>none</i>'}<br>next: {pred}"
        if r.clamped is not None:
            out += f"<br>clamped: {html_text(PredictionModel.top_text(r.clamped, t), 300)}"
        return out

    def _on_hover(self, line: int, t: int) -> None:
        if self.result is None or t < 0 or t >= self.result.n_tokens:
            return
        self._hovered = (self.result.text, t)
        self.hover_info.setText(self._hover_html(t))

    def _refresh_hover(self) -> None:
        """A new result: the hovered token again if the text is the same (a clamp changed), else the
        prompt — never a token of text that was replaced."""
        r = self.result
        if self._hovered is not None and r is not None and self._hovered[0] == r.text and self._hovered[1] < r.n_tokens:
            self.hover_info.setText(self._hover_html(self._hovered[1]))
        else:
            self._hovered = None
            self.hover_info.setText(HOVER_PROMPT)

    def _token_tooltip(self, line: int, t: int) -> str:
        return self._hover_html(t) if self.result is not None and t < self.result.n_tokens else ""


HOVER_PROMPT = "Hover a token to list its strongest features."


def _analyze_job(engine: LensEngine, text: str, kwargs: dict):
    """The runner's job: the engine's analysis of ``text``, stopping between window batches when stale."""
    def job(token):
        torch_on_one_thread()
        return engine.analyze(text, should_stop=lambda: token.cancelled, **kwargs)
    return job


def _table(model, name: str) -> QTableView:
    view = FastTableView()
    view.setObjectName(name)
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 6)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    return view
