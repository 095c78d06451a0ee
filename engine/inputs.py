"""The rules every file a user *receives* passes before anything reads it — bundles, standalone SAE
files, training checkpoints — so a damaged or hostile file is refused with one clear message instead
of hanging, exhausting memory or handing undecodable bytes to the app.

- ``regular_file(path, error)``: the path names a regular file. FIFOs, devices, sockets and folders
  are refused *before* opening (``open()`` on a FIFO blocks forever); symlink loops and permission
  problems become the same one-line error. The check opens with ``O_NONBLOCK`` and re-checks the
  opened descriptor, so swapping the file for a FIFO between check and open does not hang either.
- ``check_alloc(nbytes, what, error)``: a read that would allocate more than ``MAX_READ_BYTES``
  (or an element count above ``MAX_UNITS``) is refused: a flipped bit in a shape must not make the
  app allocate terabytes. Shapes, never attributes, decide sizes; this only bounds them.
- ``text(value)``: a stored string (bytes, str, numpy scalar) as ``str``, invalid UTF-8 replaced by
  U+FFFD and lone surrogates removed, so every string that leaves the engine is valid Unicode.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["regular_file", "check_alloc", "text", "texts", "MAX_READ_BYTES", "MAX_UNITS"]

MAX_UNITS = 1 << 26                   # 67M units: above any SAE a desktop can browse (the paper's largest: 131k)
MAX_READ_BYTES = 8 << 30              # one read larger than 8 GiB is a damaged shape, not a bundle


def regular_file(path: str | os.PathLike, error: type[Exception], what: str = "file") -> Path:
    """``path`` as a Path after checking it is an existing regular file; raises ``error(message)``."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise error(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{path} is a symbolic link that loops (too many levels of links); "
                        "point it at a real file") from None
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    _refuse_irregular(path, st.st_mode, error, what)
    try:                                 # non-blocking: a FIFO swapped in after the stat cannot hang us
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        _refuse_irregular(path, os.fstat(fd).st_mode, error, what)
    finally:
        os.close(fd)
    return path


def _refuse_irregular(path: Path, mode: int, error: type[Exception], what: str) -> None:
    if stat.S_ISDIR(mode):
        raise error(f"{path} is a folder, not a {what}")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise error(f"{path} is {kind}, not a {what}; superpos reads only regular files")


def check_alloc(nbytes: int | float, what: str, error: type[Exception], n_items: int | None = None) -> None:
    """Refuse a read of ``nbytes`` (or of ``n_items`` units) that no real file of ours needs."""
    if n_items is not None and n_items > MAX_UNITS:
        raise error(f"{what} claims {n_items:,} units (at most {MAX_UNITS:,} are supported); "
                    "the file is damaged or not made by superpos")
    if nbytes > MAX_READ_BYTES:
        raise error(f"{what} would need {nbytes / 2**30:,.1f} GiB of memory to read (at most "
                    f"{MAX_READ_BYTES / 2**30:.0f} GiB); the file is damaged or not made by superpos")


def text(value: Any) -> str:
    """Any stored string as valid Unicode (invalid UTF-8 -> U+FFFD, lone surrogates dropped)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:          # lone surrogates (e.g. from surrogateescape): drop them
        s = s.encode("utf-8", errors="ignore").decode("utf-8")
    return s


def texts(values: Any) -> list[str]:
    """A column of stored strings (h5py gives bytes for variable-length UTF-8) as valid str."""
    return [text(v) for v in np.asarray(values, dtype=object).reshape(-1).tolist()]
