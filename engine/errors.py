"""Errors a user can cause, under one base class.

Everything a person can get wrong — a bad configuration value, a corpus path that holds no text, a
damaged bundle, an activation file of the wrong shape, a run whose loss diverged — raises a subclass
of :class:`UserError`. Its message says what was wrong and what to do; drivers catch ``UserError``
once (the CLI prints it as one line, the app shows it in a dialog) and treat anything else as a bug.

The concrete classes live with the code that detects them (``ConfigError`` in config,
``CorpusError`` in data.sources, ``BundleError`` in bundle, ...); each keeps the built-in base it
had (``ValueError`` and so on) so existing ``except ValueError`` callers keep working.
"""

from __future__ import annotations

__all__ = ["UserError", "TrainingDiverged", "CheckpointError", "WriteError", "USER_ERRORS"]


class UserError(Exception):
    """An error caused by the user's input or files; its message is meant to be shown as it is."""


class TrainingDiverged(UserError, RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint, if any, is kept."""


class CheckpointError(UserError, ValueError):
    """A checkpoint met by ``--resume`` cannot be used (unreadable, or made with other settings)."""


class WriteError(UserError, OSError):
    """A file could not be written (full disk, quota, I/O error, no permission); nothing half-written
    is left and the previous file, if any, is unchanged. Made by ``engine.fileio.write_error``."""


# What drivers show as a plain message (no traceback): the errors above, and files the operating
# system refuses (missing, unreadable, a full disk). The CLI and the app both catch exactly these.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError)
