"""Engine events on a terminal: one tqdm bar per stage, with ETA and live metrics; Ctrl+C cancels."""

from __future__ import annotations

import signal
import sys
from typing import Any

from engine.events import CancelToken, Message, Progress, StageFinished, StageStarted

__all__ = ["ProgressPrinter", "drive"]


class ProgressPrinter:
    """Turns engine events into tqdm bars (one per stage) with ETA and the stage's live metrics."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.bar = None

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if isinstance(event, StageStarted):
            self._close()
            prefix = f"[{event.index + 1}/{event.n_stages}] " if event.n_stages > 1 else ""
            self.bar = tqdm(total=event.total or None, desc=f"{prefix}{event.stage}", unit=event.unit or "it",
                            unit_scale=True, file=self.stream, dynamic_ncols=True, leave=True,
                            mininterval=0.5)
        elif isinstance(event, Progress) and self.bar is not None:
            if event.total and self.bar.total != event.total:
                self.bar.total = event.total
            self.bar.n = event.done
            if event.metrics:
                self.bar.set_postfix({k: _fmt(v) for k, v in event.metrics.items()}, refresh=False)
            self.bar.refresh()
        elif isinstance(event, StageFinished):
            if self.bar is not None and self.bar.total:
                self.bar.n = self.bar.total
            self._close()
        elif isinstance(event, Message):
            write = tqdm.write if self.bar is not None else (lambda s, file: print(s, file=file))
            write(("warning: " if event.level == "warning" else "") + event.text, file=self.stream)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

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
