"""The cache's file locks, the ones huggingface_hub takes, through the ``filelock`` package as it does.

- :func:`repo_lock`: ``<cache>/.locks/<repo folder>/<etag>.lock``, held by whoever writes ``blobs/<etag>``
  (huggingface_hub's ``WeakFileLock`` in ``file_download.py``), so our installs and the real client exclude
  each other. Mode 0o664, so users sharing a cache can wait on each other's locks.
- :func:`file_lock`: any such lock (the shared Xet store's ``<xet>.lock`` too).
- :class:`RepoClaim`: ``.locks/<repo folder>/hfbundle-install.lock``, held *shared* by every install while it may
  have temp blobs in that repo; one that gets it *exclusively* knows every temp blob there is a killed
  install's and may sweep them. ``filelock`` has no shared locks: this one is ``flock`` itself.

A lock still held after ``timeout`` raises :class:`LockTimeout` (a :class:`TimeoutError`) naming the file. A
filesystem without locks (``flock`` failing with anything but "held") is not waited on: the lock is skipped
with a debug line, as no other process can hold it there either (huggingface_hub falls back to soft locks).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import HfBundleError
from .layout import RepoLayout

__all__ = ["CLAIM_NAME", "LOCK_POLL_SECONDS", "LockTimeout", "RepoClaim", "file_lock", "repo_lock"]

logger = logging.getLogger(__name__)

LOCK_POLL_SECONDS = 0.05
CLAIM_NAME = "hfbundle-install"  # .locks/<repo>/hfbundle-install.lock
# flock's answers for "someone else holds it" (some filesystems report EACCES); any other error means the
# filesystem cannot lock at all.
_HELD = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})


class LockTimeout(HfBundleError, TimeoutError):
    """A cache lock was still held by another process after the timeout."""


def _timeout(path: Path, timeout: float) -> LockTimeout:
    return LockTimeout(
        f"the lock {path} is still held after {timeout:g} s",
        hint="another download or install is writing that file: wait for it to finish and re-run; if none is "
        "running, a process holding the lock is stuck (the lock is released when it exits)",
    )


@contextlib.contextmanager
def file_lock(path: Path, *, mode: int = 0o664, timeout: float = 600) -> Iterator[None]:
    """An exclusive lock on ``path`` (created, and left in place as ``filelock`` leaves it on POSIX)."""
    from filelock import FileLock, Timeout  # ~50 ms: only when a lock is taken

    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # filelock >= 3.30: no soft fallback (it would wait out a lock file huggingface_hub left behind)
        lock = FileLock(str(path), mode=mode, timeout=timeout, fallback_to_soft=False)
    except TypeError:  # older filelock raises NotImplementedError where flock is missing
        lock = FileLock(str(path), mode=mode, timeout=timeout)
    try:
        lock.acquire(poll_interval=LOCK_POLL_SECONDS)
    except Timeout:
        raise _timeout(path, timeout) from None
    except (NotImplementedError, OSError) as err:
        if isinstance(err, OSError) and (err.errno is None or err.errno in _HELD):
            raise
        logger.debug("%s: the filesystem cannot lock (%s): going on without the lock", path, err)
        yield
        return
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def repo_lock(layout: RepoLayout, etag: str, *, timeout: float = 600) -> Iterator[None]:
    """The lock huggingface_hub takes while it writes ``blobs/<etag>`` (``.locks/<repo>/<etag>.lock``)."""
    with file_lock(layout.lock(etag), mode=0o664, timeout=timeout):
        yield


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401 - only whether it exists
    except ImportError:
        return False
    return True


class RepoClaim:
    """``.locks/<repo>/hfbundle-install.lock`` (see the module's docstring). One lock per repo and run, not one
    per blob (issue 18). Without ``flock`` (Windows, a filesystem without locks) it is never exclusive: only
    day-old temps are swept then."""

    def __init__(self, lay: RepoLayout) -> None:
        self._fd: int | None = None
        self._path = lay.lock(CLAIM_NAME)
        if not _has_flock():  # Windows, or a Python without fcntl: the claim does not work here
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o664)

    @property
    def supported(self) -> bool:
        """Whether the claim works here (False: sweep only day-old temps)."""
        return self._fd is not None

    def _flock(self, op: int) -> bool:
        """True when taken; False when another install holds it. A filesystem without locks disables the claim."""
        if self._fd is None:
            return False
        import fcntl

        try:
            fcntl.flock(self._fd, op | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in _HELD:
                return False
            logger.debug("%s: the filesystem cannot lock (%s): no install claim", self._path, err)
            self.release()
            return False
        return True

    def exclusive(self) -> bool:
        """Try to hold it alone, at once (True), else leave it as it was (False). Where the claim does not work
        (:attr:`supported` False): True, and the sweep removes only day-old temps."""
        if self._fd is None:
            return True
        import fcntl

        return self._flock(fcntl.LOCK_EX) or not self.supported

    def share(self, timeout: float = 600) -> None:
        """Hold it shared (waiting out another install's sweep, which holds it for a moment)."""
        if self._fd is None:
            return
        import fcntl

        deadline = time.monotonic() + timeout
        while self.supported and not self._flock(fcntl.LOCK_SH):
            if time.monotonic() >= deadline:
                raise _timeout(self._path, timeout)
            time.sleep(LOCK_POLL_SECONDS)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None
