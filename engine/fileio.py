"""The one way superpos writes files users keep (bundles, SAE files, checkpoints, exports).

Every such file is written to a temporary name beside its target, fsynced, renamed over the target
and the folder fsynced, so a crash or a full disk never leaves a half-written file under the real
name, and a failed write leaves whatever was there before untouched with no leftovers.

``atomic_path`` is the context-manager form (the body writes the temporary path); ``AtomicWrite`` is
the same as an object with ``commit()`` / ``abort()``, for writers that keep the file open across
calls (``engine.bundle.BundleWriter``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["AtomicWrite", "atomic_path"]


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0o022)     # the only way to read the umask is to set it; put it straight back
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder`` (POSIX); not possible on Windows, harmless to skip."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicWrite:
    """An empty temporary file ``tmp`` beside ``path``; ``commit()`` puts it in place, ``abort()`` drops it.

    ``mode`` is the permission a new file gets before the umask (0o666: what ``open(path, "w")``
    would give; ``mkstemp`` alone would make the file private to its owner).
    """

    def __init__(self, path: str | os.PathLike, suffix: str = ".tmp", mode: int = 0o666):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=suffix, dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp_name)
        try:
            os.chmod(self.tmp, mode & ~_umask())
        except OSError:  # pragma: no cover - e.g. file systems without permissions
            pass

    def commit(self) -> Path:
        """fsync the temporary file, rename it over ``path``, fsync the folder. Returns ``path``.

        If any step fails the temporary file is removed and ``path`` is as it was.
        """
        try:
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        _fsync_folder(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Remove the temporary file (``path`` is untouched)."""
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is committed (see ``AtomicWrite``).

    If the body raises, the temporary file is removed and ``path`` is left as it was.
    """
    write = AtomicWrite(path, suffix, mode)
    try:
        yield write.tmp
    except BaseException:
        write.abort()
        raise
    write.commit()
