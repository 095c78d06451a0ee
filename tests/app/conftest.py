"""App-level fixtures: a tiny bundle made once per session, a window with private settings, a fake
pipeline job (fast, cancellable, resumable) standing in for engine.pipeline.run_pipeline."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from engine.events import Cancelled, Message, Progress, StageFinished, StageStarted


@pytest.fixture(scope="session")
def tiny_bundle(real_tiny_bundle) -> Path:
    """The bundle the real engine pipeline made once for this session (tiny preset, built-in corpus)."""
    return Path(real_tiny_bundle)


@pytest.fixture
def app_settings(tmp_path):
    from superpos_app.settings import AppSettings

    return AppSettings(tmp_path / "settings.ini")


def _shown_window(qtbot, app_settings, install_panes: bool):
    """A shown main window; afterwards a running job is cancelled, the bundle closed, the lens stopped."""
    from superpos_app import create_window

    win = create_window(settings=app_settings, install_panes=install_panes)
    qtbot.addWidget(win)
    win.show()
    yield win
    if win.jobs.is_busy:
        win.jobs.cancel()
        win.jobs.wait(5000)
    win.close_bundle()
    if install_panes:
        win.pane("textLens").shutdown()


@pytest.fixture
def window(qtbot, app_settings):
    """The main window without its panes."""
    yield from _shown_window(qtbot, app_settings, install_panes=False)


@pytest.fixture
def window_with_panes(qtbot, app_settings):
    """The full window, panes installed."""
    yield from _shown_window(qtbot, app_settings, install_panes=True)


class FakePipeline:
    """Mimics run_pipeline's events and checkpoints: ``steps`` model steps then ``steps`` SAE steps.

    Each step sleeps ``step_s``, checks the token and records its position in ``workdir/fake.json``
    (the 'checkpoint'); on resume it continues from there. The result is a copy of the tiny bundle.
    """

    def __init__(self, bundle: Path, steps: int = 30, step_s: float = 0.004):
        self.bundle = bundle
        self.steps = steps
        self.step_s = step_s
        self.calls: list[dict] = []

    def __call__(self, cfg, out_path, workdir, resume, cancel, **family):
        return self._run(cfg, out_path, workdir, resume, cancel, family)

    def _run(self, cfg, out_path, workdir, resume, cancel, family):
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
        ckpt = work / "fake.json"
        start = json.loads(ckpt.read_text())["step"] if resume and ckpt.exists() else 0
        self.calls.append({"cfg": cfg, "out": out_path, "resume": resume, "start": start, "family": family})
        yield Message(f"fake pipeline from step {start}")
        for index, stage in enumerate(("model", "sae")):
            lo, hi = index * self.steps, (index + 1) * self.steps
            if start >= hi:
                continue
            yield StageStarted(stage, total=hi - lo, unit="steps", index=index, n_stages=3)
            t0 = time.perf_counter()
            for step in range(max(lo, start), hi):
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled", checkpoint=str(ckpt))
                time.sleep(self.step_s)
                ckpt.write_text(json.dumps({"step": step + 1}))
                done = step + 1 - lo
                if stage == "model":
                    metrics = {"train_loss": 8.0 / (1 + step), "lr": 1e-3}
                    if done % 5 == 0:
                        metrics["val_loss"] = 8.5 / (1 + step)
                else:
                    metrics = {"mse": 0.1 / (1 + done), "l0": 20.0, "dead_fraction": 0.5 / (1 + done)}
                yield Progress(stage, done=done, total=hi - lo, step=step, metrics=metrics, unit="steps")
            yield StageFinished(stage, seconds=time.perf_counter() - t0, summary={"steps": float(hi - lo)})
        yield StageStarted("bundle", total=0, index=2, n_stages=3)
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.bundle, out_path)
        yield StageFinished("bundle", seconds=0.0)
        return Path(out_path)


@pytest.fixture
def fake_pipeline(monkeypatch, tiny_bundle):
    import superpos_app.dialogs.train_dialog as td

    fake = FakePipeline(tiny_bundle)
    monkeypatch.setattr(td, "pipeline_job", fake)
    return fake
