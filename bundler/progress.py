"""One progress-callback shape for every long command: build, install, restore, backup, verify, push, pull.

The library reports :class:`Progress` records to an ``on_progress`` callable; only ``bundler/cli.py`` (through
:mod:`bundler.output`) draws them, and ``-q`` / ``--json`` draw nothing. A record carries the phase it belongs to
and that phase's counts: bytes (the bar) and files (beside it). ``total_bytes`` is 0 where the total is not
known in advance (verify's hashing): a counter is shown instead of a bar.

Phases: ``pack`` (build, backup: bytes packed), ``verify`` (install, restore: blobs already present re-hashed;
``hfbundle verify``: blobs hashed), ``stream`` and ``link`` (install, restore, pull: blobs written, and the other
places of each content filled by a hard link, whole, or by a copy, chunk by chunk), ``copy`` (an install in the copy
layout: the second and later snapshot files of one content, copied), ``upload`` (push: layers sent). Each phase's
``done_bytes`` ends exactly at its ``total_bytes``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["STEP_BYTES", "STEP_FILES", "Counter", "Progress", "ProgressCallback", "files_due"]

# Counts of many small files are told in steps, not per 3 KB file (issue 18: a call per file cost more than the
# file): every STEP_FILES files, or STEP_BYTES, and each file that large.
STEP_BYTES = 1 << 20
STEP_FILES = 256


def files_due(done: int, total: int, size: int) -> bool:
    """Whether to tell ``done`` of ``total`` files now that one of ``size`` bytes is done: each large one,
    every :data:`STEP_FILES`-th and the last."""
    return size >= STEP_BYTES or not done % STEP_FILES or done == total


@dataclass(frozen=True)
class Progress:
    """Sent to ``on_progress``: where one phase of a long command stands."""

    phase: str
    done_bytes: int
    total_bytes: int
    item: str | None = None
    done_files: int = 0  # blobs verified (verify) or written/linked (stream, link) or packed (pack) so far
    total_files: int = 0


ProgressCallback = Callable[[Progress], None]


class Counter:
    """Turns a worker's plain counts (``bytes(done, total)``, ``files(done, total)``, ``add(n)``) into
    :class:`Progress` records of one phase for ``on_progress`` (None: every call is a no-op). Thread-safe."""

    def __init__(self, on_progress: ProgressCallback | None, phase: str, *, every: float = 0.0) -> None:
        """``every``: at most one record per that many seconds from :meth:`add` (a call per small file would
        cost more than the file; :meth:`flush` sends the last counts)."""
        self._on_progress = on_progress
        self._phase = phase
        self._lock = threading.Lock()
        self._bytes = (0, 0)
        self._files = (0, 0)
        self._every = every
        self._next = 0.0
        self._unsent = False

    def bytes(self, done: int, total: int) -> None:
        with self._lock:
            self._bytes = (done, total)
            self._emit()

    def files(self, done: int, total: int) -> None:
        with self._lock:
            self._files = (done, total)
            self._emit()

    def add(self, n: int, *, files: int = 0) -> None:
        """``n`` more bytes (and ``files`` more files) done, toward an unknown total."""
        with self._lock:
            self._bytes = (self._bytes[0] + n, self._bytes[1])
            self._files = (self._files[0] + files, self._files[1])
            if self._every:
                now = time.monotonic()
                if now < self._next:
                    self._unsent = True
                    return
                self._next = now + self._every
            self._emit()

    def flush(self) -> None:
        """Send the counts :meth:`add` held back (``every``)."""
        with self._lock:
            if self._unsent:
                self._emit()

    def _emit(self) -> None:
        self._unsent = False
        if self._on_progress is not None:
            self._on_progress(Progress(self._phase, *self._bytes, None, *self._files))
