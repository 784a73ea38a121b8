"""Where bundle bytes go and come from: one file, numbered volumes, or a stream.

Writing goes through temp files beside the target (``.NAME.001.<random>.tmp``) renamed into place only when
the whole bundle is written, so a partial bundle never exists under the output name (also on Ctrl-C).
Split volumes are ``NAME.001``, ``NAME.002``, … (at least three digits, more when there are over 999) and
their byte concatenation is the bundle: ``cat NAME.* | tar --zstd -x`` works.

Reading presents one file or all volumes as a single random-access byte range (:class:`RandomAccess`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from .. import oscompat
from ..errors import BundleFormatError, HfBundleError, UsageError
from .container import FINGERPRINT_BYTES, BundleIndex, fingerprint

MIN_SPLIT_SIZE = 4096
_VOLUME_SUFFIX = re.compile(r"^(?P<base>.+)\.(?P<num>[0-9]{3,})$")
RECOPY_HINT = "re-copy the bundle (all of its volumes); the copy is damaged"
_VOLUME_HINT = "re-copy every volume of the bundle into one folder and pass the first one (NAME.001)"


def volume_name(base: Path, number: int, count: int) -> Path:
    width = max(3, len(str(count)))
    return base.with_name(f"{base.name}.{number:0{width}d}")


class OutputSink:
    """Writes a byte stream to ``target`` (a path, or any writable binary file object such as stdout).

    With a path the bytes go to temp files, :meth:`commit` renames them to their final names and
    :meth:`abort` deletes them. ``split_size`` (paths only) cuts the stream into volumes of that many bytes.
    The first :data:`~bundler.bundle.container.FINGERPRINT_BYTES` of each volume are kept for the index.
    """

    def __init__(self, target: Path | BinaryIO, split_size: int | None = None) -> None:
        if split_size is not None:
            if not isinstance(target, Path):
                raise UsageError("split volumes need an output path, not a stream")
            if split_size < MIN_SPLIT_SIZE:
                raise UsageError(f"split size {split_size} is too small (minimum {MIN_SPLIT_SIZE} bytes)")
        if isinstance(target, Path):
            if target.is_dir():
                raise UsageError(f"output {target} is a folder", hint="give a file name such as model.tar.zst")
            if not target.parent.is_dir():
                raise UsageError(f"output folder {target.parent} does not exist", hint="create it first")
        self.target = target
        self.split_size = split_size
        self.offset = 0
        self.heads: list[bytearray] = []
        self._temps: list[Path] = []
        self._fd: int | None = None
        self._vol_left = 0 if isinstance(target, Path) else -1  # bytes left in this volume; -1: no limit
        self._done = False
        if isinstance(target, Path):
            # The first temp file exists from the start, not from the first write (which the writer may hold
            # back for seconds, gathering small frames): an unwritable folder fails before any work, and an
            # interrupted build always has its temp file to remove.
            self._open_volume()
            self.heads.append(bytearray())

    # -- writing -------------------------------------------------------------------------------------------

    def _open_volume(self) -> None:
        assert isinstance(self.target, Path)
        self._close_fd()
        number = len(self._temps) + 1
        tmp = self.target.with_name(f".{self.target.name}.{number:03d}.{secrets.token_hex(4)}.tmp")
        try:
            # os.open with 0o666 lets the umask decide the final mode (mkstemp would leave 0600).
            self._fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except OSError as e:
            raise _write_error(self.target, e) from e
        self._temps.append(tmp)
        self._vol_left = self.split_size if self.split_size is not None else -1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise UsageError("the output is already closed")
        view = memoryview(data).cast("B")
        while view.nbytes:
            if isinstance(self.target, Path) and (self._fd is None or self._vol_left == 0):
                self._open_volume()
                self.heads.append(bytearray())
            elif not self.heads:
                self.heads.append(bytearray())
            n = view.nbytes if self._vol_left < 0 else min(view.nbytes, self._vol_left)
            part = view[:n]
            head = self.heads[-1]
            if len(head) < FINGERPRINT_BYTES:
                head += part[: FINGERPRINT_BYTES - len(head)]
            self._write_all(part)
            if self._vol_left > 0:
                self._vol_left -= n
            self.offset += n
            view = view[n:]

    def _write_all(self, part: memoryview) -> None:
        try:
            if self._fd is not None:
                oscompat.write_all(self._fd, part)
            else:
                assert not isinstance(self.target, Path)
                while part.nbytes:  # a raw (unbuffered) stream may take less than it is given
                    written = self.target.write(part)
                    part = part[part.nbytes if written is None else written :]
        except OSError as e:
            raise _write_error(self.target, e) from e

    # -- ending --------------------------------------------------------------------------------------------

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def commit(self) -> tuple[Path, ...]:
        """Flush and move the volumes into place; returns their final paths (empty for a stream)."""
        self._done = True
        if not isinstance(self.target, Path):
            try:
                self.target.flush()
            except OSError as e:
                raise _write_error(self.target, e) from e
            return ()
        try:
            self._close_fd()
            if self.split_size is None:
                os.replace(self._temps[0], self.target)
                final: tuple[Path, ...] = (self.target,)
            else:
                count = len(self._temps)
                final = tuple(volume_name(self.target, i + 1, count) for i in range(count))
                for tmp, dst in zip(self._temps, final, strict=True):
                    os.replace(tmp, dst)
                _remove_stale_volumes(self.target, count)
        except OSError as e:
            self.abort()
            raise _write_error(self.target, e) from e
        except BaseException:
            self.abort()
            raise
        self._temps = []
        return final

    def abort(self) -> None:
        """Delete whatever was written to temp files (nothing can be taken back from a stream)."""
        self._done = True
        with contextlib.suppress(OSError):
            self._close_fd()
        for tmp in self._temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._temps = []


def _remove_stale_volumes(base: Path, count: int) -> None:
    """A previous, longer split of the same name would leave NAME.004… behind and confuse readers."""
    for width in {3, len(str(count)), len(str(count + 1))}:
        n = count + 1
        while (stale := base.with_name(f"{base.name}.{n:0{max(3, width)}d}")).is_file():
            stale.unlink()
            n += 1


def _write_error(target: Path | BinaryIO, e: OSError) -> HfBundleError:
    where = target if isinstance(target, Path) else "the output stream"
    return HfBundleError(f"could not write {where}: {e.strerror or e}", hint="check free space and permissions")


# -- reading ----------------------------------------------------------------------------------------------


class RandomAccess(Protocol):
    """A bundle's bytes with positional reads (thread-safe)."""

    @property
    def size(self) -> int: ...

    @property
    def paths(self) -> tuple[Path, ...]: ...

    @property
    def sizes(self) -> tuple[int, ...]: ...

    def pread(self, offset: int, length: int) -> bytes: ...

    def pread_into(self, offset: int, out: memoryview) -> int:
        """Fill ``out`` from ``offset`` (less only at the end); the number of bytes read."""
        ...

    def close(self) -> None: ...


def find_volumes(path: Path) -> tuple[Path, ...]:
    """The files of the bundle at ``path``: the file itself, or every volume when ``path`` is one volume
    (``NAME.001``) or the name the volumes share (``NAME``). Gaps in the numbering are reported."""
    m = _VOLUME_SUFFIX.match(path.name)
    if path.is_file() and m is None:
        return (path,)
    base = path.with_name(m["base"]) if m is not None else path
    found: dict[int, Path] = {}
    pattern = re.compile(re.escape(base.name) + r"\.([0-9]{3,})")
    with contextlib.suppress(OSError):
        for entry in base.parent.iterdir():
            num = pattern.fullmatch(entry.name)
            if num is not None and entry.is_file():
                if int(num[1]) in found:
                    raise BundleFormatError(
                        f"ambiguous volumes {found[int(num[1])].name} and {entry.name}", hint=_VOLUME_HINT
                    )
                found[int(num[1])] = entry
    if not found:
        if path.exists():
            return (path,)
        raise UsageError(f"bundle {path} does not exist")
    numbers = sorted(found)
    missing = [n for n in range(1, numbers[-1] + 1) if n not in found]
    if missing:
        width = len(found[numbers[0]].name) - len(base.name) - 1
        names = ", ".join(f"{base.name}.{n:0{width}d}" for n in missing[:5])
        raise BundleFormatError(f"bundle volume {names} is missing (found {len(found)} volumes)", hint=_VOLUME_HINT)
    return tuple(found[n] for n in numbers)


class FileSet:
    """One file or several volumes read as one byte range."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise UsageError("no bundle files given")
        self._paths = tuple(paths)
        sizes = []
        for p in self._paths:
            try:
                sizes.append(p.stat().st_size)
            except FileNotFoundError as err:
                raise BundleFormatError(f"bundle volume {p} does not exist", hint=_VOLUME_HINT) from err
            except OSError as e:
                raise BundleFormatError(f"cannot read {p}: {e.strerror}") from e
        self._sizes = tuple(sizes)
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return sum(self._sizes)

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    @property
    def sizes(self) -> tuple[int, ...]:
        return self._sizes

    def _fd(self, i: int) -> int:
        with self._lock:
            fd = self._fds.get(i)
            if fd is None:
                fd = self._fds[i] = os.open(self._paths[i], os.O_RDONLY | getattr(os, "O_BINARY", 0))
            return fd

    def pread(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer only at the end). Thread-safe: positional reads
        (:func:`bundler.oscompat.pread`, a locked seek and read where the system has no ``pread``)."""
        parts: list[bytes] = []
        try:
            for i, start in enumerate(self._starts):
                end = start + self._sizes[i]
                if length <= 0:
                    break
                if offset >= end:
                    continue
                want = min(length, end - offset)
                while want > 0:  # os.pread may return less than asked
                    part = oscompat.pread(self._fd(i), want, offset - start)
                    if not part:
                        raise BundleFormatError(f"{self._paths[i]} changed size while it was read")
                    parts.append(part)
                    offset, length, want = offset + len(part), length - len(part), want - len(part)
        except OSError as e:
            raise BundleFormatError(f"cannot read the bundle: {e.strerror or e}") from e
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pread_into(self, offset: int, out: memoryview) -> int:
        """Like :meth:`pread` into a caller's buffer: no allocation per read (a fresh buffer per 16 MiB frame
        costs page faults on every byte)."""
        done = 0
        try:
            for i, start in enumerate(self._starts):
                end = start + self._sizes[i]
                if done == len(out):
                    break
                if offset >= end:
                    continue
                want = min(len(out) - done, end - offset)
                while want > 0:
                    n = oscompat.pread_into(self._fd(i), out[done : done + want], offset - start)
                    if not n:
                        raise BundleFormatError(f"{self._paths[i]} changed size while it was read")
                    offset, done, want = offset + n, done + n, want - n
        except OSError as e:
            raise BundleFormatError(f"cannot read the bundle: {e.strerror or e}") from e
        return done

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


class SeekableFile:
    """A seekable file object the caller owns (not closed here), read as one byte range."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._f = fileobj
        self._lock = threading.Lock()
        self._size = fileobj.seek(0, os.SEEK_END)

    @property
    def size(self) -> int:
        return self._size

    @property
    def paths(self) -> tuple[Path, ...]:
        return ()

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self._size,)

    def pread(self, offset: int, length: int) -> bytes:
        with self._lock:
            try:
                self._f.seek(offset)
                parts = []
                while length > 0 and (part := self._f.read(length)):
                    parts.append(part)
                    length -= len(part)
            except OSError as e:
                raise BundleFormatError(f"cannot read the bundle: {e.strerror or e}") from e
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pread_into(self, offset: int, out: memoryview) -> int:
        data = self.pread(offset, len(out))
        out[: len(data)] = data
        return len(data)

    def close(self) -> None:
        return None


def check_volumes(access: RandomAccess, index: BundleIndex) -> None:
    """Check the files behind ``access`` against the index's volume table: count, sizes, and the fingerprint
    of each volume's first bytes (volumes of equal size given in the wrong order)."""
    names = [p.name for p in access.paths] or ["the stream"]
    if len(access.sizes) > 1:
        if len(access.sizes) != len(index.volumes):
            raise BundleFormatError(
                f"the bundle has {len(index.volumes)} volumes but {len(access.sizes)} were given", hint=RECOPY_HINT
            )
        for i, (vol, actual) in enumerate(zip(index.volumes, access.sizes, strict=True)):
            if vol.size != actual:
                raise BundleFormatError(
                    f"volume {i + 1} ({names[i]}) has {actual} bytes, expected {vol.size}: volumes are out of "
                    "order, truncated or from different bundles",
                    hint=RECOPY_HINT,
                )
    if len(index.volumes) == 1:
        return  # damage inside a single file is found by its frames; fingerprints tell volumes apart
    start = 0
    for i, vol in enumerate(index.volumes):
        head = access.pread(start, min(FINGERPRINT_BYTES, max(0, index.data_length - start)))
        if fingerprint(head) != vol.fingerprint:
            name = names[i] if len(names) == len(index.volumes) else f"at offset {start}"
            raise BundleFormatError(
                f"volume {i + 1} ({name}) is not the one the bundle expects there: volumes are out of order, "
                "damaged or from different bundles",
                hint="pass the volumes in order (NAME.001, NAME.002, …) from one build",
            )
        start += vol.size
