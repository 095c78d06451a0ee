"""Engine events on a terminal: one tqdm bar per stage, with ETA and live metrics; Ctrl+C cancels."""

from __future__ import annotations

import signal
import sys
from typing import Any

from engine.events import CancelToken, Message, Progress, StageFinished, StageStarted
from engine.run_clock import format_eta

__all__ = ["ProgressPrinter", "drive"]


class ProgressPrinter:
    """Turns engine events into tqdm bars (one per stage) with ETA and the stage's live metrics.

    A bar opens only once its stage knows how much work it has (so no "0.00it [00:00, ?it/s]"); a
    stage that never says prints one line when it finishes. In a pipeline run every bar also shows
    the whole run's progress and ETA (``Progress.run_eta_s``, from ``engine.run_clock``)."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.bar = None
        self._stage: StageStarted | None = None

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if isinstance(event, StageStarted):
            self._close()
            self._stage = event
            if event.total:
                self._open(event.total)
        elif isinstance(event, Progress) and self._stage is not None:
            if self.bar is None:
                if not event.total:
                    return
                self._open(event.total)
            if event.total and self.bar.total != event.total:
                self.bar.total = event.total
            self.bar.n = event.done
            postfix = {k: _fmt(v) for k, v in (event.metrics or {}).items()}
            if event.run_eta_s is not None and self._stage.n_stages > 1:
                postfix["run"] = f"{100 * (event.run_fraction or 0):.0f}%, {format_eta(event.run_eta_s)} left"
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.refresh()
        elif isinstance(event, StageFinished):
            if self.bar is not None:
                if self.bar.total:
                    self.bar.n = self.bar.total
            elif self._stage is not None and self._stage.stage == event.stage:
                print(f"{self._prefix()}{event.stage}: done in {event.seconds:.1f} s", file=self.stream)
            self._close()
        elif isinstance(event, Message):
            write = tqdm.write if self.bar is not None else (lambda s, file: print(s, file=file))
            write(("warning: " if event.level == "warning" else "") + event.text, file=self.stream)

    def _prefix(self) -> str:
        s = self._stage
        return f"[{s.index + 1}/{s.n_stages}] " if s is not None and s.n_stages > 1 else ""

    def _open(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"{self._prefix()}{self._stage.stage}", unit=self._stage.unit or "it",
                        unit_scale=True, file=self.stream, dynamic_ncols=True, leave=True, mininterval=0.5)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._stage = None

    close = _close


def _fmt(value: float) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def drive(job, cancel: CancelToken, printer: ProgressPrinter):
    """Run a generator job to the end, printing its events; Ctrl+C sets ``cancel``."""
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if cancel.cancelled:  # second Ctrl+C: stop now
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        cancel.cancel()
        print("\nstopping at the next step (Ctrl+C again to abort now)...", file=sys.stderr)

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        pass
    try:
        while True:
            try:
                printer(next(job))
            except StopIteration as stop:
                return stop.value
    finally:
        printer.close()
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass
