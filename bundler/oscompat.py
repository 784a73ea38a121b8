"""The platform seam: every call that only some operating systems have, each with a tested fallback.

hfbundle runs on Linux, macOS and Windows (often without Developer Mode, on NTFS or exFAT sticks). Modules
call these functions instead of the POSIX-only ones, so the fallbacks are one place to read and to test
(the "foreign platform" test lane removes the POSIX calls and reruns the install, verify, backup and hostile
suites through this module; see tests/foreign/):

==========================  ======================================  =============================================
call                        where the system has it                  fallback
==========================  ======================================  =============================================
:func:`pread_into`          ``os.preadv`` (Linux, macOS 11+)         ``os.pread``; else ``lseek`` + ``read`` under
                                                                     a lock per descriptor (Windows)
:func:`pread`               ``os.pread``                             ``lseek`` + ``read`` under the same lock
:func:`sync_filesystem`     ``syncfs`` through ctypes (Linux)        ``False``: the caller fsyncs what it wrote
:func:`fsync_dir`           ``fsync`` of a folder (POSIX)            nothing (Windows cannot open a folder)
:func:`fchmod`              ``os.fchmod``                            ``os.chmod`` of the path
:func:`hard_link`           ``os.link``                              ``False`` when refused (exFAT, FAT32, other
                                                                     device, no permission): the caller copies
:func:`extended_path`       -                                        ``\\\\?\\`` prefix on Windows past 255 chars
:func:`write_all`           ``os.write`` in pieces of                the same (harmless where it is not needed)
                            :data:`WRITE_SLICE`
==========================  ======================================  =============================================

File locks are not here: they go through ``filelock`` (``bundler.cache.locks``), which picks ``msvcrt``
on Windows itself.

Long paths: Windows refuses paths of 260 characters or more unless the ``LongPathsEnabled`` policy is set, and
Hub cache paths are long (``models--org--name/snapshots/<40 hex>/unet/…``). :func:`extended_path` gives such
a path the ``\\\\?\\`` (or ``\\\\?\\UNC\\``) prefix that lifts the limit for our own reads and writes, as
huggingface_hub's ``as_extended_path`` does; the loaders that read the cache afterwards may not do the same, so
:mod:`bundler.winnames` warns about (or refuses) such paths before anything is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
import ntpath
import os
import sys
import tempfile
import threading
from pathlib import Path

__all__ = [
    "MAX_PATH",
    "WINDOWS",
    "case_insensitive",
    "extended_path",
    "fchmod",
    "fsync_dir",
    "hard_link",
    "long_paths_enabled",
    "pread",
    "pread_into",
    "realpath_in",
    "sync_filesystem",
    "write_all",
]

logger = logging.getLogger(__name__)

WINDOWS = os.name == "nt"
MAX_PATH = 260  # Windows' limit without the long-path policy, counting the final NUL: 259 usable characters
_EXTENDED_AFTER = 255  # huggingface_hub's threshold (MAX_PATH minus room for the NUL and short names)

# Errors that mean "this filesystem or system will not make hard links here", not "the disk is broken".
# ERROR_INVALID_FUNCTION (1) and ERROR_NOT_SAME_DEVICE (17) are what Windows' CreateHardLink gives on FAT and
# across volumes; Python maps some of them to EINVAL / EXDEV, others only to winerror.
_LINK_REFUSED = frozenset(
    e
    for e in (
        errno.EPERM,
        errno.EACCES,
        errno.EXDEV,
        errno.EMLINK,
        errno.EINVAL,
        errno.ENOSYS,
        getattr(errno, "ENOTSUP", None),
        getattr(errno, "EOPNOTSUPP", None),
    )
    if e is not None
)
_LINK_REFUSED_WINERROR = frozenset({1, 5, 17, 1142})  # invalid function, access denied, not same device, too many


# -- positioned reads ----------------------------------------------------------------------------------------

_fd_locks: dict[int, threading.Lock] = {}
_fd_locks_guard = threading.Lock()


def _lock_for(fd: int) -> threading.Lock:
    with _fd_locks_guard:
        lock = _fd_locks.get(fd)
        if lock is None:
            lock = _fd_locks[fd] = threading.Lock()
        return lock


# One write(2) into a file takes at most this many bytes. On Linux 6.x (ext4 with large folios) multi-MiB
# writes now and then cost 5-7x the kernel time of the same bytes written in 256 KiB pieces: 1 GB in 16 MiB
# writes took 2.3-3.4 s of system time in most runs, in 256 KiB writes 0.35-0.43 s in every run; 1 and 4 MiB
# varied between the two (issue 22). Above 256 KiB a write only saves syscalls, ~4,000 per GB.
WRITE_SLICE = 256 << 10


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to the file ``fd`` (short writes retried), in pieces of at most
    :data:`WRITE_SLICE` bytes."""
    view = memoryview(data).cast("B")
    while view.nbytes:
        view = view[os.write(fd, view[:WRITE_SLICE]) :]


def pread(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes of ``fd`` at ``offset`` without moving a position other threads rely on.

    ``os.pread`` where it exists; else a seek and a read under a lock per descriptor (every positioned read of
    that descriptor goes through here, so none sees another's position)."""
    native = getattr(os, "pread", None)
    if native is not None:
        return native(fd, length, offset)  # type: ignore[no-any-return]
    with _lock_for(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, length)


def pread_into(fd: int, out: memoryview, offset: int) -> int:
    """Fill ``out`` from ``fd`` at ``offset`` (one read: maybe fewer bytes); the number of bytes read."""
    native = getattr(os, "preadv", None)
    if native is not None:
        return native(fd, [out], offset)  # type: ignore[no-any-return]
    data = pread(fd, len(out), offset)  # macOS < 11, Windows: one copy more
    out[: len(data)] = data
    return len(data)


# -- durability ----------------------------------------------------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if WINDOWS:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def libc_function(name: str) -> object | None:
    """A C library function by ``name`` (``syncfs``, ``sync_file_range``), or None where the system lacks it."""
    return getattr(_libc(), name, None)


def sync_filesystem(folder: Path) -> bool:
    """Flush the whole filesystem holding ``folder`` (``syncfs``, Linux) and say True; False where the system has
    no such call (macOS, Windows) or it failed: the caller then fsyncs each file it wrote."""
    syncfs = libc_function("syncfs")
    if syncfs is None:
        return False
    fd = os.open(folder, os.O_RDONLY)
    try:
        ok = syncfs(fd) == 0  # type: ignore[operator]
    finally:
        os.close(fd)
    logger.debug("syncfs(%s): %s", folder, "done" if ok else "failed")
    return bool(ok)


def fsync_path(path: Path) -> None:
    """``fsync`` one written file by path (the fallback barrier). A file gone meanwhile is not an error."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make ``folder``'s entries (new names, renames) durable where the system allows it: POSIX opens a folder
    and fsyncs it; Windows cannot open one (its metadata journal covers renames), so nothing is done there."""
    if WINDOWS:
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems (exFAT through FUSE) refuse fsync on a folder
            os.fsync(fd)
    finally:
        os.close(fd)


# -- file modes and links ------------------------------------------------------------------------------------


def fchmod(fd: int, path: Path | str, mode: int) -> None:
    """Set ``mode`` on an open file: ``os.fchmod`` where it exists, else ``os.chmod`` of its path (Windows,
    where only the read-only bit means anything)."""
    native = getattr(os, "fchmod", None)
    if native is not None:
        native(fd, mode)
    else:
        os.chmod(path, mode)


def hard_link(src: Path | str, dst: Path | str) -> bool:
    """Hard-link ``src`` at ``dst`` (True), or False when this filesystem or system will not (exFAT, FAT32,
    another device, no permission): the caller then copies. A full or read-only disk raises: a copy would fail
    too, and the user must hear why."""
    native = getattr(os, "link", None)
    if native is None:
        return False
    try:
        native(src, dst)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOENT, errno.EEXIST):
            raise
        if err.errno in _LINK_REFUSED or getattr(err, "winerror", None) in _LINK_REFUSED_WINERROR:
            logger.debug("hard link %s -> %s refused (%s): copying", src, dst, err)
            return False
        raise
    return True


# -- names and paths -----------------------------------------------------------------------------------------


def extended_path(path: Path | str, max_length: int = _EXTENDED_AFTER) -> str:
    r"""``path`` in Windows' extended-length form (``\\?\C:\…``, ``\\?\UNC\server\share\…``) when it is longer
    than ``max_length``; unchanged elsewhere, when short, or already extended (as huggingface_hub's
    ``as_extended_path``)."""
    text = str(path)
    if not WINDOWS:
        return text
    absolute = ntpath.abspath(text)  # os.path on Windows; explicit so the rule is testable anywhere
    if len(absolute) <= max_length or absolute.startswith("\\\\?\\"):
        return text
    if absolute.startswith("\\\\"):
        return "\\\\?\\UNC\\" + absolute[2:]
    return "\\\\?\\" + absolute


def realpath_in(path: str, folders: dict[str, str]) -> str:
    """``os.path.realpath(path)``, with each folder resolved once per ``folders`` (a dict the caller keeps for a
    run, folder as given -> its real path): for many files in a few folders, two ``readlink`` calls a file (the
    file, and the blob it links to) instead of an ``lstat`` of every part of the path (issue 18: ~60 us a file in
    a cache of many small files). Exact as realpath is: each folder is resolved by realpath itself, and a link's
    text is joined to the real folder holding the link, as the kernel resolves it. Windows: realpath."""
    if WINDOWS:
        return os.path.realpath(path)
    for _ in range(40):  # the kernel's limit of links followed in one lookup
        folder, name = os.path.split(path)
        if name in ("", ".", ".."):
            break
        real = folders.get(folder)
        if real is None:
            real = folders[folder] = os.path.realpath(folder)
        full = os.path.join(real, name)
        try:
            text = os.readlink(full)
        except OSError:  # not a link, or nothing there: realpath leaves the name as it is
            return full
        path = os.path.join(real, text)
    return os.path.realpath(path)


@functools.cache
def long_paths_enabled() -> bool:
    """Whether this Windows lets every program use paths of 260 characters or more (the ``LongPathsEnabled``
    policy); always True elsewhere."""
    if not WINDOWS:
        return True
    try:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        with winreg.OpenKey(  # type: ignore[attr-defined,unused-ignore]
            winreg.HKEY_LOCAL_MACHINE,  # type: ignore[attr-defined,unused-ignore]
            r"SYSTEM\CurrentControlSet\Control\FileSystem",
        ) as key:
            value, _ = winreg.QueryValueEx(key, "LongPathsEnabled")  # type: ignore[attr-defined,unused-ignore]
            return bool(value)
    except OSError:
        return False


_FORCE_CASE_INSENSITIVE = "HFBUNDLE_CASE_INSENSITIVE"  # set by the foreign-platform test lane


def case_insensitive(folder: Path) -> bool:
    """Whether the filesystem holding ``folder`` folds case (Windows, macOS by default, exFAT/FAT everywhere):
    probed by creating a name and looking it up in the other case, as git does for ``core.ignorecase``."""
    if os.environ.get(_FORCE_CASE_INSENSITIVE) == "1":
        return True
    probe_in = folder
    while not probe_in.is_dir():
        if probe_in.parent == probe_in:
            return WINDOWS or sys.platform == "darwin"
        probe_in = probe_in.parent
    try:
        with tempfile.NamedTemporaryFile(dir=probe_in, prefix=".hfbundle-Case-") as f:
            name = Path(f.name)
            return os.path.exists(name.with_name(name.name.swapcase()))
    except OSError:
        return WINDOWS or sys.platform == "darwin"
