"""Screenshots of the exploration panes, registered into scripts/screenshots.py's ``SHOTS``.

    python scripts/screenshots_panes.py [--bundle PATH.h5] [--only NAME ...]   # pane shots only
    python scripts/screenshots.py        # all, once it has the line ``import screenshots_panes``

Each shot opens the bundle in a fresh main window, selects a well-labelled feature, types a text in
the lens, then grabs either the whole window ("explore") or one pane floated at a readable size.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _host():
    """The screenshots module to register into: the running ``scripts/screenshots.py`` when it
    imports this file (it is then ``__main__``), else an imported copy."""
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, "SHOTS") and hasattr(main, "shot") and hasattr(main, "Context"):
        return main
    import screenshots

    return screenshots


screenshots = _host()
Context, shot = screenshots.Context, screenshots.shot

LENS_TEXT = ("Superposition lets a model store more features than it has neurons. The sparse autoencoder "
             "finds DNA like ACGTTGCA, base64 like aGVsbG8=, and code:\ndef f(x):\n    return x + 1\n")


def _interesting(label: str) -> bool:
    return bool(label) and not label.startswith("the token")


def _good_feature(win) -> int:
    """A common feature with a high label score and a label beyond "the token X"."""
    import numpy as np

    cols = win.bundle.columns("feature")
    score = np.nan_to_num(np.asarray(cols["score"], np.float64), nan=-1.0)
    score[np.asarray(cols["density"]) < 1e-3] = -1.0            # fires often enough to compare
    plain = np.array([not _interesting(lab) for lab in cols["label"]])
    if (~plain & (score > -1)).any():
        score[plain] = -1.0
    for i in np.argsort(-score, kind="stable")[:300].tolist():   # one the scatter can show
        if score[i] > -1 and win.bundle.sample_feature(i)[0].size >= 20:
            return int(i)
    return int(np.argmax(score))


def _explore_window(ctx: Context, kind: str = "feature", index: int | None = None):
    win = ctx.window()
    unit = _good_feature(win) if index is None else index
    win.selection.select(kind, unit)
    lens = win.pane("textLens")
    lens.set_text(LENS_TEXT)
    lens.request_now()
    ctx.settle(1.0)
    return win


def _lens_feature(win) -> int | None:
    """The strongest feature in the lens text with an interesting label."""
    r = win.pane("textLens").result
    if r is None:
        return None
    labels = win.bundle.columns("feature")["label"]
    for i in r.active_ids.tolist():
        if _interesting(labels[i]):
            return int(i)
    return int(r.active_ids[0]) if r.active_ids.size else None


def _float(ctx: Context, win, name: str, size=(1100, 760)):
    dock = win.docks[name]
    dock.setFloating(True)
    dock.resize(*size)
    dock.show()
    dock.raise_()
    ctx.settle(0.6)
    return dock


@shot("explore")
def explore(ctx: Context):
    win = _explore_window(ctx)
    unit = _lens_feature(win)
    if unit is not None:
        win.selection.select("feature", unit)    # shaded in the lens, shown in the detail
    win.resize(1280, 820)                      # a laptop screen, the default layout (as a new user sees it)
    win.reset_layout()
    ctx.settle(0.6)
    return win


@shot("feature-search")
def feature_search(ctx: Context):
    win = _explore_window(ctx)
    pane = win.pane("featureSearch")
    pane.input.setText("script")
    pane.apply_filter()
    return _float(ctx, win, "featureSearch", (760, 620))


@shot("feature-detail")
def feature_detail(ctx: Context):
    win = _explore_window(ctx)
    dock = _float(ctx, win, "featureDetail", (1100, 900))
    detail = win.pane("featureDetail")
    d = detail.dashboard
    if d is not None and d.max_act > 0:
        detail.set_region(0.45 * d.max_act, d.max_act)            # show the band filter in use
        detail.set_region(0, d.max_act)                           # …then all examples again
    ctx.settle(0.3)
    return dock


@shot("text-lens")
def text_lens(ctx: Context):
    win = _explore_window(ctx)
    lens = win.pane("textLens")
    r = lens.result
    unit = _lens_feature(win)
    if unit is not None:
        win.selection.select("feature", unit)                     # shade by the text's top feature
        lens.clamp_controls.enable.setChecked(True)                  # ablate it: predictions change
        ctx.settle(1.0)
        if r.n_tokens > 3:
            lens._on_hover(0, 3)
    return _float(ctx, win, "textLens", (1150, 720))


@shot("neuron-compare")
def neuron_compare(ctx: Context):
    win = _explore_window(ctx)
    return _float(ctx, win, "neuronCompare", (1100, 1180))


@shot("neuron-detail")
def neuron_detail(ctx: Context):
    win = _explore_window(ctx)
    feature = _good_feature(win)
    neuron = int(win.bundle.dashboard("feature", feature).corr_ids[0])
    win.selection.select("neuron", neuron)                        # as clicking the neuron link does
    ctx.settle(0.3)
    return _float(ctx, win, "featureDetail", (1100, 900))


PANE_SHOTS = ("explore", "feature-search", "feature-detail", "text-lens", "neuron-compare", "neuron-detail")

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--only" not in argv:
        argv += ["--only", *PANE_SHOTS]
    sys.exit(screenshots.main(argv))
