"""The one way superpos writes files users keep (bundles, SAE files, checkpoints, exports).

Every such file is written to a temporary name beside its target, fsynced, renamed over the target
and the folder fsynced, so a crash or a full disk never leaves a half-written file under the real
name, and a failed write leaves whatever was there before untouched with no leftovers.

``atomic_path`` is the context-manager form (the body writes the temporary path); ``AtomicWrite`` is
the same as an object with ``commit()`` / ``abort()``, for writers that keep the file open across
calls (``engine.bundle.BundleWriter``); ``write_bytes`` writes a buffer made in memory.

Faults: a write whose size is known checks the free space first (``ensure_free_space``); any
``OSError`` while writing (a full disk, a quota, an I/O error, a read-only folder) becomes one
``WriteError`` line naming the file and what to do (``write_error``).

Leftovers: a temporary name is ``.TARGET.HOST-PID.RANDOM.SUFFIX`` (hidden, and never ending in the
target's extension), so a process killed mid-write (``kill -9``, a power cut) leaves a file that is
provably ours and provably stale once that process is gone: the next write into the same folder
removes it (``sweep_stale_partials``), and readers refuse it by name (``is_partial``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shutil
import socket
import tempfile
import time
import zlib
from pathlib import Path
from typing import Iterator

from engine.errors import WriteError

__all__ = ["AtomicWrite", "atomic_path", "write_bytes", "write_error", "ensure_free_space",
           "sweep_stale_partials", "is_partial", "TEMP_SUFFIXES", "DISK_FULL"]

TEMP_SUFFIXES = (".partial", ".tmp", ".tmp.npy")
_HOST = f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"
_RANDOM = r"[a-z0-9_]{8}"                       # tempfile.mkstemp's random part
_SUFFIX = "(?:" + "|".join(re.escape(s) for s in TEMP_SUFFIXES) + ")"
_OURS = re.compile(rf"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)\.{_RANDOM}{_SUFFIX}$")
# before the host and pid were named: only targets of the kinds superpos writes
_LEGACY = re.compile(rf"^\.(?P<target>.+\.(?:h5|pt|json|npy|safetensors))\.{_RANDOM}{_SUFFIX}$")
FOREIGN_STALE_S = 7 * 86_400.0    # another machine's (shared folder) or a reused pid's leftover
LEGACY_STALE_S = 86_400.0         # an older superpos's leftover (no pid to ask)
_MARGIN = 1 << 18                 # free space kept beyond a write's known size


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


# ---------------------------------------------------------------------------------- faults
_HINTS = {
    errno.ENOSPC: "free some space or choose another folder",
    getattr(errno, "EDQUOT", -1): "free some space within your quota or choose another folder",
    errno.EIO: "the disk or its connection may be failing",
    errno.EROFS: "choose a folder you can write to",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EFBIG: "the file system cannot hold a file this large; choose another folder",
}


DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG)    # errors only a write can meet


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def write_error(exc: OSError, path: str | os.PathLike, what: str = "the file") -> WriteError:
    """One line for a failed write of ``path``: what, where, the system's reason and what to do."""
    if isinstance(exc, WriteError):
        return exc
    code = exc.errno
    reason = os.strerror(code) if code else (exc.strerror or str(exc) or type(exc).__name__)
    reason = reason.strip().splitlines()[0][:200] if reason.strip() else type(exc).__name__
    hint = _HINTS.get(code, "")
    error = WriteError(f"could not write {what} {path}: {reason}" + (f"; {hint}" if hint else "")
                       + f"; nothing half-written is left, and any previous {Path(path).name} is unchanged")
    error.errno = code
    return error


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes a non-root user may still write in ``folder`` (None where the system cannot say)."""
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return None


def ensure_free_space(folder: str | os.PathLike, n_bytes: int, what: str, path: str | os.PathLike) -> None:
    """Raise ``WriteError`` (ENOSPC) up front when ``folder`` cannot hold ``n_bytes`` more."""
    free = free_bytes(folder)
    if free is not None and free < int(n_bytes) + _MARGIN:
        raise WriteError(f"not enough free space to write {what} {path}: it needs at least {_size(n_bytes)} "
                         f"and {_size(free)} are free; {_HINTS[errno.ENOSPC]}")


# ---------------------------------------------------------------------------------- leftovers
def is_partial(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of an unfinished (or interrupted) write."""
    name = Path(path).name
    return bool(_OURS.match(name) or _LEGACY.match(name))


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True          # no safe probe (os.kill would terminate); age decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:          # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def _is_stale(entry: os.DirEntry, now: float) -> bool:
    age = now - entry.stat(follow_symlinks=False).st_mtime
    ours = _OURS.match(entry.name)
    if ours:
        if ours["host"] != _HOST:
            return age > FOREIGN_STALE_S
        pid = int(ours["pid"])
        return pid != os.getpid() and (not _pid_alive(pid) or age > FOREIGN_STALE_S)
    return bool(_LEGACY.match(entry.name)) and age > LEGACY_STALE_S


def sweep_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove the leftovers of interrupted writes in ``folder`` that are provably stale: named by
    ``AtomicWrite`` on this machine by a process that no longer runs (or, for another machine's or
    an older version's, untouched for days). Regular files only; never follows links. Returns them."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry.name.startswith(".") and entry.is_file(follow_symlinks=False) and _is_stale(entry, now):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


# ---------------------------------------------------------------------------------- the atomic write
class AtomicWrite:
    """An empty temporary file ``tmp`` beside ``path``; ``commit()`` puts it in place, ``abort()`` drops it.

    ``mode`` is the permission a new file gets before the umask (0o666: what ``open(path, "w")``
    would give; ``mkstemp`` alone would make the file private to its owner).
    """

    def __init__(self, path: str | os.PathLike, suffix: str = ".tmp", mode: int = 0o666, *,
                 what: str = "the file", size: int | None = None):
        self.path = Path(path)
        self.what = what
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale_partials(self.path.parent)
            if size is not None:
                ensure_free_space(self.path.parent, size, what, self.path)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.{_HOST}-{os.getpid()}.", suffix=suffix,
                                            dir=self.path.parent)
        except OSError as exc:
            raise write_error(exc, self.path, what) from exc
        os.close(fd)
        self.tmp = Path(tmp_name)
        try:
            os.chmod(self.tmp, mode & ~_umask())
        except OSError:  # pragma: no cover - e.g. file systems without permissions
            pass

    def commit(self) -> Path:
        """fsync the temporary file, rename it over ``path``, fsync the folder. Returns ``path``.

        If any step fails the temporary file is removed, ``path`` is as it was, and the error is a
        ``WriteError``.
        """
        try:
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.path)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise write_error(exc, self.path, self.what) from exc
            raise
        _fsync_folder(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Remove the temporary file (``path`` is untouched)."""
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", mode: int = 0o666, *,
                what: str = "the file", size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is committed (see ``AtomicWrite``).

    If the body raises, the temporary file is removed and ``path`` is left as it was; an ``OSError``
    (a full disk ...) comes out as a ``WriteError`` naming ``what``. ``size``, where known, is
    checked against the free space before anything is written.
    """
    write = AtomicWrite(path, suffix, mode, what=what, size=size)
    try:
        yield write.tmp
    except BaseException as exc:
        write.abort()
        if isinstance(exc, OSError):
            raise write_error(exc, path, what) from exc
        raise
    write.commit()


def write_bytes(path: str | os.PathLike, data: bytes | memoryview, what: str = "the file") -> Path:
    """Write ``data`` to ``path`` atomically, its size checked against the free space first."""
    with atomic_path(path, what=what, size=len(data)) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)
