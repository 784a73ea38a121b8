"""Getting written bytes onto the disk: write-out started early, one barrier at the end.

An install writes gigabytes of blobs, then makes them durable with one ``syncfs`` before any snapshot entry
names them (see :mod:`bundler.install`). Left alone, the kernel keeps all of it dirty in memory (until
``vm.dirty_background_ratio``, 10% of RAM by default) and the barrier then waits for the whole write-out,
~0.5 s per GB on this kind of disk. :class:`Writeback` asks the kernel to start writing a file's bytes out as
soon as a few MiB are written (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which is what dpkg does), so the
disk works while the install decompresses and hashes, and the barrier finds little left to wait for.

Both go through :mod:`bundler.oscompat`. Where the system lacks ``syncfs`` (macOS, Windows) the barrier
fsyncs each file the install wrote and their folders (where the OS lets a folder be fsynced), and
:class:`Writeback` does nothing off Linux.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import oscompat

__all__ = ["WRITEBACK_STEP", "Writeback", "sync_filesystem"]

WRITEBACK_STEP = 8 << 20  # start write-out every 8 MiB: large enough for big I/O, small enough to keep up
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    func: Any = oscompat.libc_function("sync_file_range") if sys.platform.startswith("linux") else None
    if func is None:
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


class Writeback:
    """Starts the write-out of an open file's bytes every :data:`WRITEBACK_STEP` bytes written.

    Call :meth:`wrote` after each write. It never waits for the disk (the kernel queues the pages) and never
    fails: durability comes from the barrier, this only makes the barrier short.
    """

    def __init__(self, fd: int, step: int = WRITEBACK_STEP) -> None:
        self._fd = fd
        self._step = step
        self._start = 0
        self._end = 0
        self._call = _sync_file_range()

    def wrote(self, n: int) -> None:
        self._end += n
        if self._call is not None and self._end - self._start >= self._step:
            self._call(self._fd, self._start, self._end - self._start, _SYNC_FILE_RANGE_WRITE)
            self._start = self._end


def sync_filesystem(folder: Path, written: Iterable[Path] = ()) -> None:
    """Make what was written under ``folder`` durable: one ``syncfs`` of its filesystem (Linux), else an
    ``fsync`` of each ``written`` file and of the folders holding them (macOS, Windows, a failed ``syncfs``)."""
    if oscompat.sync_filesystem(folder):
        return
    folders: set[Path] = set()
    for path in written:
        oscompat.fsync_path(path)
        folders.add(path.parent)
    for parent in sorted(folders):
        oscompat.fsync_dir(parent)
