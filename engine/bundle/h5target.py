"""An HDF5 file being written, that survives a full disk: ``create_h5`` and ``finish_h5``; and the
one way to change an existing bundle, ``rewrite_h5``.

Given a path, HDF5 (sec2 driver) meets a failed ``write()`` in the middle of its caches, and
closing such a file in h5py 3.x / HDF5 2.0 (``File.close`` flushing metadata that cannot be
written, then every open object's ``__dealloc__`` failing in turn) was seen to end in SIGSEGV on a
full file system. So the writers hand h5py a Python file object instead (h5py's ``fileobj``
driver): the first ``OSError`` a ``write`` / ``flush`` / ``truncate`` meets is kept, and from then
on writes are accepted and dropped, so HDF5 itself never sees a failure and closes normally.
``finish_h5`` then closes the file and raises the kept error; the caller removes the temporary
file (it is never renamed into place), and the writer stops at its next ``check()``.

``rewrite_h5(path)`` changes a bundle that exists (``superpos family --rematch``, folding the
explanations' journal): the file is checked as a reader checks it (``schema.open_h5``), copied byte
for byte to a temporary name beside it (``engine.fileio.AtomicWrite``: the free space for the copy
is checked first), the copy opened through a ``GuardedFile``, changed, then fsynced and renamed over
``path``. Any failure leaves ``path`` as it was and no temporary file behind; a reader that holds
the old file open keeps reading the old file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import h5py

from engine.bundle.schema import FORMAT, H5_LIBVER, H5_LOCK, open_h5
from engine.fileio import atomic_path

__all__ = ["GuardedFile", "create_h5", "finish_h5", "guarded_h5", "rewrite_h5"]


class GuardedFile:
    """The file object given to h5py: an unbuffered binary file (one system call per HDF5 request,
    as HDF5's own sec2 driver does) that keeps its first error instead of raising it.
    ``mode``: "w+b" a new (emptied) file, "r+b" an existing one to change."""

    def __init__(self, path: str | os.PathLike, mode: str = "w+b"):
        self.path = Path(path)
        self._fh = open(self.path, mode, buffering=0)
        self.error: OSError | None = None

    # h5py's fileobj driver calls exactly these
    def readinto(self, buffer) -> int:
        try:
            return self._fh.readinto(buffer) or 0
        except OSError as exc:
            self.error = self.error or exc
            return 0

    def read(self, n: int = -1) -> bytes:
        try:
            return self._fh.read(n) or b""
        except OSError as exc:
            self.error = self.error or exc
            return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if self.error is None:
            try:
                view = memoryview(data).cast("B")
                while view.nbytes:            # a raw write may take only part
                    done = self._fh.write(view)
                    view = view[done:]
            except OSError as exc:
                self.error = exc
        return n

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._fh.truncate(size)
            except OSError as exc:
                self.error = exc
        return self._fh.tell() if size is None else size

    def flush(self) -> None:
        if self.error is None:
            try:
                self._fh.flush()
            except OSError as exc:
                self.error = exc

    def check(self) -> None:
        """Raise the kept write error, if any (call between datasets to stop early)."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.flush()            # (fsync and rename: engine.fileio.AtomicWrite.commit)
        try:
            self._fh.close()
        except OSError as exc:
            self.error = self.error or exc


def create_h5(path: str | os.PathLike, mode: str = "w") -> tuple[h5py.File, GuardedFile]:
    """The HDF5 file at ``path`` written through a ``GuardedFile``: a new one (``mode`` "w") or an
    existing one to change ("r+": only ever a temporary copy, see ``rewrite_h5``)."""
    guard = GuardedFile(path, {"w": "w+b", "r+": "r+b"}[mode])
    try:
        return h5py.File(guard, mode, libver=H5_LIBVER), guard
    except BaseException:
        guard.close()
        raise


def finish_h5(file: h5py.File, guard: GuardedFile) -> None:
    """Close both; raise the first write error met (the file is then incomplete)."""
    try:
        file.close()
    finally:
        guard.close()
    guard.check()


@contextlib.contextmanager
def guarded_h5(path: str | os.PathLike, mode: str = "w") -> Iterator[h5py.File]:
    """``create_h5`` as a context manager: a clean exit raises the kept write error (``finish_h5``);
    an exception in the body closes quietly and propagates unchanged."""
    file, guard = create_h5(path, mode)
    try:
        yield file
    except BaseException:
        with contextlib.suppress(OSError):
            finish_h5(file, guard)
        raise
    finish_h5(file, guard)


@contextlib.contextmanager
def rewrite_h5(path: str | os.PathLike, what: str = "the bundle",
               accept: tuple[str, ...] = (FORMAT,)) -> Iterator[h5py.File]:
    """Change the bundle at ``path`` atomically (see the module docstring): yields the copy open for
    writing; a clean exit renames it over ``path``; an exception in the body, or a write error (a
    ``WriteError``), removes it. ``path`` must be a bundle a reader would open (else ``BundleError``)."""
    path = Path(path)
    with H5_LOCK:
        open_h5(path, accept).close()
    with atomic_path(path, what=what, size=path.stat().st_size) as tmp:
        shutil.copyfile(path, tmp)
        with guarded_h5(tmp, "r+") as file:
            yield file
