"""Write the README's screenshots to docs/screenshots/*.png (offscreen; rerun after UI changes).

    python scripts/screenshots.py [--bundle PATH.h5] [--only NAME ...] [--out docs/screenshots]

Each screenshot is a function registered by name with ``@shot("name")``; it receives a ``Context``
(the app, a main window with the bundle's path at hand) and returns the widget to grab — add new
panes' screenshots the same way. The bundle is ``--bundle``, else the cached demo bundle, else a
synthetic one written to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHOTS: dict[str, Callable] = {}


def shot(name: str):
    """Register a screenshot function ``fn(ctx) -> QWidget`` under ``name`` (the PNG's file name)."""
    def register(fn):
        SHOTS[name] = fn
        return fn
    return register


@dataclass
class Context:
    app: object
    bundle_path: Path
    home: Path
    _window: object = None
    extras: dict = field(default_factory=dict)

    def window(self, bundle: bool = True):
        """A fresh main window (1280x820), with the bundle open unless ``bundle=False``."""
        from superpos_app import create_window
        from superpos_app.settings import AppSettings

        if self._window is not None:
            self._window.close()
        self.extras["n_windows"] = self.extras.get("n_windows", 0) + 1
        # fresh settings per window: no shot inherits another's dock layout or recent files
        settings = AppSettings(self.home / f"screenshots-{self.extras['n_windows']}.ini")
        win = create_window(settings=settings)
        win.resize(1280, 820)
        win.show()
        if bundle:
            win.open_bundle(self.bundle_path)
        self._window = win
        self.settle()
        return win

    def settle(self, seconds: float = 0.3) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.app.processEvents()
            time.sleep(0.01)


# --------------------------------------------------------------------------------------------------
# shell
# --------------------------------------------------------------------------------------------------
@shot("welcome")
def welcome(ctx: Context):
    win = ctx.window(bundle=False)
    win.settings.clear_recent()
    (ctx.home / "bundles").mkdir(exist_ok=True)
    for name in ("tinystories-8k.h5", "code-and-prose.h5"):   # a lived-in recent list (hard links to the bundle)
        link = ctx.home / "bundles" / name
        if not link.exists():
            try:
                os.link(ctx.bundle_path, link)
            except OSError:
                link.symlink_to(ctx.bundle_path)
        win.settings.add_recent(link)
    win.settings.add_recent(ctx.bundle_path)
    win._refresh_recent()
    ctx.settle()
    return win


@shot("overview")
def overview(ctx: Context):
    win = ctx.window()
    win.stack.setCurrentWidget(win.overview)
    for dock in win.docks.values():          # the overview alone, as large as the window allows
        dock.hide()
    ctx.settle(0.2)
    win.setMinimumSize(0, 0)
    win.resize(1280, 820)
    ctx.settle()
    return win


@shot("train-dialog")
def train_dialog(ctx: Context):
    """The Train dialog mid-run: model curves replayed from the bundle, the SAE stage half-way."""
    import superpos_app.dialogs.train_dialog as td

    win = ctx.window(bundle=False)
    with_curves, cfg = _open_curves(ctx.bundle_path)
    td.pipeline_job = lambda cfg, out, workdir, resume, cancel: _with_run_eta(_replay_job(with_curves, cancel), cfg)
    from engine.config import preset_names

    name = cfg.name if cfg.name in preset_names() else "demo"
    dialog = win.show_train_dialog(name, str(Path.home() / "superpos-runs" / f"{name}-run.h5"))  # never written
    dialog.form.set_config(cfg, name)         # the form shows the settings that made these curves
    dialog.resize(1180, 760)
    dialog.start()
    deadline = time.perf_counter() + 20
    while time.perf_counter() < deadline and not (win.jobs.status.stage == "sae" and win.jobs.status.fraction > 0.45):
        ctx.settle(0.05)
    ctx.settle(0.4)
    ctx.extras["cleanup"] = lambda: (win.jobs.cancel(), win.jobs.wait(5000), ctx.settle(0.2))
    return dialog


def _open_curves(path: Path):
    from engine.bundle import open_bundle

    with open_bundle(path) as b:
        return {k: v.copy() for k, v in b.curves().items()}, b.config


def _with_run_eta(events, cfg):
    """Stamp the replayed events with the whole-run fraction and ETA a real run would show on the
    measured machine (engine.run_clock at the reference speed)."""
    import dataclasses

    from engine.events import Progress
    from engine.run_clock import STAGES, expected_stage_seconds

    expected = expected_stage_seconds(cfg)
    total = sum(expected.values())
    for event in events:
        if isinstance(event, Progress) and event.stage in expected:
            before = sum(expected[s] for s in STAGES[:STAGES.index(event.stage)])
            done = before + event.fraction * expected[event.stage]
            event = dataclasses.replace(event, run_fraction=done / total, run_eta_s=total - done)
        yield event


def _replay_job(curves: dict, cancel):
    """Yield the stored curves as live events; stop half-way through the SAE and wait for cancel."""
    from engine.events import Cancelled, Progress, StageFinished, StageStarted

    n_stages = 8
    yield StageStarted("tokenizer", index=0, n_stages=n_stages)
    yield StageFinished("tokenizer", seconds=1.2)
    yield StageStarted("tokenize", index=1, n_stages=n_stages)
    yield StageFinished("tokenize", seconds=0.8)
    train, val = curves.get("model/train_loss"), curves.get("model/val_loss")
    total = int(train[-1, 0]) if train is not None and len(train) else 1000
    yield StageStarted("model", total=total, unit="tokens", index=2, n_stages=n_stages)
    vals = {int(x): y for x, y in (val if val is not None else [])}
    for x, y in (train if train is not None else []):
        metrics = {"train_loss": float(y)}          # live key k of stage s = stored curve s/k
        near = [vx for vx in vals if abs(vx - x) <= (train[1, 0] - train[0, 0]) / 2] if len(train) > 1 else []
        if near:
            metrics["val_loss"] = float(vals.pop(near[0]))
        yield Progress("model", done=int(x), total=total, metrics=metrics, unit="tokens")
        time.sleep(0.002)
    yield StageFinished("model", seconds=42.0, summary={"val_loss": float(val[-1, 1]) if val is not None else 0.0})
    mse, l0, dead = (curves.get(k) for k in ("sae/mse", "sae/l0", "sae/dead_fraction"))
    n = len(mse) if mse is not None else 0
    total = int(mse[-1, 0]) if n else 1000
    yield StageStarted("sae", total=total, unit="activations", index=3, n_stages=n_stages)
    for i in range(n // 2 + 1):
        metrics = {"mse": float(mse[i, 1])}
        if l0 is not None and i < len(l0):
            metrics["l0"] = float(l0[i, 1])
        if dead is not None and i < len(dead):
            metrics["dead_fraction"] = float(dead[i, 1])
        yield Progress("sae", done=int(mse[i, 0]), total=total, metrics=metrics, unit="activations",
                       eta_s=95.0 * (1 - i / max(n, 1)))
        time.sleep(0.004)
    while not cancel.cancelled:
        time.sleep(0.02)
        yield Progress("sae", done=int(mse[n // 2, 0]) if n else 0, total=total, unit="activations", eta_s=52.0)
    raise Cancelled("screenshot done")


# --------------------------------------------------------------------------------------------------
def _bundle(arg: str | None, home: Path) -> Path:
    from engine import paths

    if arg:
        return Path(arg)
    if paths.demo_bundle_path().exists():
        return paths.demo_bundle_path()
    from engine.testing.synthetic import write_synthetic_bundle

    print("no demo bundle cached: using a synthetic bundle (random statistics)")
    return Path(write_synthetic_bundle(home / "synthetic.h5", n_features=4096, n_neurons=512, seed=0))


def _load_extra_shots() -> None:
    """Register the shots other scripts add (scripts/screenshots_*.py import this module as ``screenshots``)."""
    import importlib

    sys.modules.setdefault("screenshots", sys.modules[__name__])   # one SHOTS registry, even when run as __main__
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for extra in sorted(Path(__file__).resolve().parent.glob("screenshots_*.py")):
        importlib.import_module(extra.stem)


def main(argv: list[str] | None = None) -> int:
    _load_extra_shots()
    parser = argparse.ArgumentParser(description="Write docs/screenshots/*.png")
    parser.add_argument("--bundle", help="bundle to show (default: the demo bundle, else synthetic)")
    parser.add_argument("--only", nargs="*", help=f"names among: {', '.join(SHOTS)}")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    home = Path(tempfile.mkdtemp(prefix="superpos-shots-"))
    real_home = os.environ.get("SUPERPOS_HOME")
    bundle = _bundle(args.bundle, home)
    if not real_home:
        os.environ["SUPERPOS_HOME"] = str(home)   # screenshots never touch the user's settings
    app = QApplication.instance() or QApplication([])
    ctx = Context(app=app, bundle_path=bundle, home=home)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(SHOTS)
    unknown = set(names) - set(SHOTS)
    if unknown:
        parser.error(f"unknown screenshot(s): {', '.join(sorted(unknown))}")
    for name in names:
        widget = SHOTS[name](ctx)
        ctx.settle(0.2)
        target = out / f"{name}.png"
        widget.grab().save(str(target))
        print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
        cleanup = ctx.extras.pop("cleanup", None)
        if cleanup:
            cleanup()
    if ctx._window is not None:
        ctx._window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
