"""Engine events on a terminal: one tqdm bar per stage, with ETA and live metrics; Ctrl+C cancels.

When the stream is not a terminal (a log file, a pipe, CI), bars would write a carriage-return
update per refresh into the log; there each stage prints plain lines instead: when it starts, at
most one progress line every ``PLAIN_EVERY_S`` seconds, and when it ends."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, Callable

from engine.events import CancelToken, Message, Progress, StageFinished, StageStarted
from engine.run_clock import format_eta
from engine.numbers import readable, si

__all__ = ["ProgressPrinter", "drive", "PLAIN_EVERY_S"]

PLAIN_EVERY_S = 30.0          # a non-terminal log gets at most one progress line this often per stage


class ProgressPrinter:
    """Turns engine events into tqdm bars (one per stage) with ETA and the stage's live metrics.

    A bar opens only once its stage knows how much work it has (so no "0.00it [00:00, ?it/s]"); a
    stage that never says prints one line when it finishes. In a pipeline run every bar also shows
    the whole run's progress and ETA (``Progress.run_eta_s``, from ``engine.run_clock``)."""

    def __init__(self, quiet: bool = False, stream=None, plain: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.plain = (not (isatty and isatty())) if plain is None else plain
        self.clock = clock
        self.bar = None
        self._stage: StageStarted | None = None
        self._last_line = -float("inf")

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        if self.plain:
            self._plain(event)
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

    def _plain(self, event: Any) -> None:
        """Plain lines for a log: stage start, a progress line at most every PLAIN_EVERY_S, stage end."""
        def say(text: str) -> None:
            print(text, file=self.stream, flush=True)

        if isinstance(event, StageStarted):
            self._stage = event
            self._last_line = -float("inf")        # the stage's first progress line prints at once
            size = f" ({si(event.total)} {event.unit or 'steps'})" if event.total else ""
            say(f"{self._prefix()}{event.stage}{size}…")
        elif isinstance(event, Progress) and self._stage is not None:
            now = self.clock()
            if now - self._last_line < PLAIN_EVERY_S:
                return
            self._last_line = now
            bits = []
            if event.total:
                bits.append(f"{100 * event.done / event.total:.0f}% ({si(event.done)}/{si(event.total)} "
                            f"{event.unit or self._stage.unit or 'steps'})")
            bits += [f"{k} {_fmt(v)}" for k, v in (event.metrics or {}).items()]
            if event.run_eta_s is not None and self._stage.n_stages > 1:
                bits.append(f"run {100 * (event.run_fraction or 0):.0f}%, {format_eta(event.run_eta_s)} left")
            say(f"{self._prefix()}{self._stage.stage}: " + " · ".join(bits))
        elif isinstance(event, StageFinished):
            stage = self._stage if self._stage is not None and self._stage.stage == event.stage else None
            prefix = self._prefix() if stage is not None else ""
            say(f"{prefix}{event.stage}: done in {event.seconds:.1f} s")
            self._stage = None
        elif isinstance(event, Message):
            say(("warning: " if event.level == "warning" else "") + event.text)

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
        return si(value) if abs(value) >= 1e4 else readable(value)
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
