"""Hashes the Hub uses to name content, computed while streaming.

- LFS files are named by the sha256 of their content.
- Regular (git) files are named by their git blob id: ``sha1(b"blob <size>\\0" + content)``.
- An LFS file's git blob id is the sha1 of its *pointer* file, which is fully determined by sha256 and size.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .progress import STEP_BYTES, STEP_FILES

CHUNK = 1024 * 1024

LFS_POINTER_TEMPLATE = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"


def git_blob_sha1(data: bytes) -> str:
    """Git blob id of ``data`` (what the Hub reports as ``oid`` for a regular file)."""
    h = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    h.update(data)
    return h.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file the Hub stores in git for an LFS file."""
    return LFS_POINTER_TEMPLATE.format(sha256=sha256, size=size).encode()


def lfs_blob_id(sha256: str, size: int) -> str:
    """The git blob id (``oid``) the Hub reports for an LFS file: the sha1 of its pointer."""
    return git_blob_sha1(lfs_pointer(sha256, size))


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class Digests:
    """Both hashes and the size of one stream."""

    size: int
    sha256: str
    git_sha1: str


class StreamHasher:
    """Hashes a stream of known size with sha256 and the git blob sha1 at once.

    The git header needs the size up front; pass it when known, else use :func:`digest_file`. With
    ``git=False`` only sha256 is computed (LFS content: its name is its sha256) and ``git_sha1`` is empty.
    """

    def __init__(self, size: int, *, git: bool = True) -> None:
        self.expected_size = size
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False) if git else None

    def update(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        self._sha256.update(chunk)
        if self._sha1 is not None:
            self._sha1.update(chunk)

    def digests(self) -> Digests:
        git_sha1 = self._sha1.hexdigest() if self._sha1 is not None else ""
        return Digests(size=self.size, sha256=self._sha256.hexdigest(), git_sha1=git_sha1)


def sha256_file(path: str, *, chunk: int = CHUNK) -> str:
    """Streamed sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_stream(stream: BinaryIO, size: int, *, chunk: int = CHUNK, git: bool = True) -> Digests:
    """Hash ``size`` bytes of ``stream`` with both algorithms (fewer bytes are reported in ``size``);
    ``git=False``: sha256 only."""
    hasher = StreamHasher(size, git=git)
    remaining = size
    readinto: Callable[[memoryview], int | None] | None = getattr(stream, "readinto", None)
    buf = memoryview(bytearray(min(chunk, max(size, 1))))
    while remaining > 0:
        if readinto is not None:  # one buffer, reused: no allocation (nor page faults) per read
            n = readinto(buf[: min(len(buf), remaining)])
            block: bytes | memoryview = buf[:n] if n else b""
        else:
            block = stream.read(min(chunk, remaining))
        if not block:
            break
        hasher.update(block)
        remaining -= len(block)
    return hasher.digests()


def digest_file(path: str, *, git: bool = True) -> Digests:
    """sha256, git blob sha1 (unless ``git=False``) and size of a file, in one streamed read (a long path in
    Windows' extended-length form: :func:`bundler.oscompat.extended_path`)."""
    import os

    from . import oscompat

    path = oscompat.extended_path(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        return digest_stream(f, size, git=git)


PREFETCH_BATCH = 512
SMALL_FILE = 1024 * 1024  # read in one call, hashed in one update
_BATCH_FILES = 128  # small files per worker task: one task per file costs more than hashing 4 KB (issue 18)
_BATCH_BYTES = 8 * 1024 * 1024  # … or this many bytes: a large file is a task of its own, so two run in parallel
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO never blocks


@dataclass(frozen=True, slots=True)
class FileDigest:
    """What :func:`digest_path` read: the file's identity (``dev``, ``ino``, ``nlink`` from the open file
    itself) and its digests (``sha256`` empty unless asked for, ``git_sha1`` likewise)."""

    dev: int
    ino: int
    nlink: int
    digests: Digests


def digest_path(path: str, *, sha256: bool = True, git: bool = True) -> FileDigest:
    """Hash one regular file with ``os`` calls only (open, fstat, read, close: no file object, no stat before
    the open): what hashing many small files costs is the calls around the hash. A hard-linked file gets both
    hashes (another name may need the other one). ``OSError`` when it cannot be read or is not a regular file."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
        size = st.st_size
        if st.st_nlink > 1:  # another name reaches this inode: both hashes, so it is read once whatever it needs
            sha256 = git = True
        h256 = hashlib.sha256() if sha256 else None
        h1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False) if git else None
        done = 0
        if size <= SMALL_FILE:
            data = read_fd(fd, size)
            done = len(data)
            if h256 is not None:
                h256.update(data)
            if h1 is not None:
                h1.update(data)
        else:
            view = memoryview(bytearray(CHUNK))
            with open(fd, "rb", buffering=0, closefd=False) as f:
                while done < size:
                    n = f.readinto(view[: min(CHUNK, size - done)])
                    if not n:
                        break
                    done += n
                    if h256 is not None:
                        h256.update(view[:n])
                    if h1 is not None:
                        h1.update(view[:n])
    finally:
        os.close(fd)
    d = Digests(done, h256.hexdigest() if h256 is not None else "", h1.hexdigest() if h1 is not None else "")
    return FileDigest(st.st_dev, st.st_ino, st.st_nlink, d)


def read_small_file(path: str) -> bytes:
    """The whole content of a regular file (as many bytes as its size when opened), with ``os`` calls only: for
    files of at most :data:`SMALL_FILE` bytes, read once to be hashed and packed (issue 18). ``OSError`` when it
    cannot be read or is not a regular file."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
        return read_fd(fd, st.st_size)
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from the open file ``fd`` (fewer at its end), with ``os.read`` only."""
    chunks: list[bytes] = []
    done = 0
    while done < limit:
        block = os.read(fd, limit - done)
        if not block:
            break
        chunks.append(block)
        done += len(block)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _digest_batch(jobs: Sequence[tuple[str, bool, bool]]) -> list[FileDigest | OSError]:
    out: list[FileDigest | OSError] = []
    for path, sha256, git in jobs:
        try:
            out.append(digest_path(path, sha256=sha256, git=git))
        except OSError as e:
            out.append(e)
    return out


def digest_paths(
    jobs: Iterable[tuple[str, bool, bool, int]], *, threads: int = 0
) -> Generator[FileDigest | OSError, None, None]:
    """:func:`digest_path` of each ``(path, sha256, git, size hint)`` job, on ``threads`` threads (0: one per CPU;
    hashlib and the reads release the GIL), yielded in job order. Small files go to the workers in batches
    (:data:`_BATCH_FILES`), so the pool costs one task per batch, not per file; a file of
    :data:`_BATCH_BYTES` or more is a task of its own, so two large files hash at once. One file is hashed by one
    thread: a sha256 is sequential, so a single huge file takes one core whatever ``threads`` says. At most
    ``4 * threads`` tasks are in flight (bounded memory however many files)."""
    workers = max(1, threads or os.cpu_count() or 1)

    def batches() -> Iterator[list[tuple[str, bool, bool]]]:
        batch: list[tuple[str, bool, bool]] = []
        weight = 0
        for path, sha256, git, size in jobs:
            if batch and (len(batch) >= _BATCH_FILES or weight + size > _BATCH_BYTES):
                yield batch
                batch, weight = [], 0
            batch.append((path, sha256, git))
            weight += size
        if batch:
            yield batch

    if workers == 1:
        for batch in batches():
            yield from _digest_batch(batch)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="hfbundle-hash") as pool:
        pending: deque[Future[list[FileDigest | OSError]]] = deque()
        for batch in batches():
            pending.append(pool.submit(_digest_batch, batch))
            if len(pending) >= 4 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


@dataclass
class InodeHasher:
    """:func:`digest_file` that hashes each inode once (hard links, a blob behind many snapshot links), counting
    the bytes it read (``bytes_hashed``) and the distinct contents among them (``content_bytes``: the same, once
    per sha256, so copy-layout snapshots holding one content twice count it once): one per verify or doctor run."""

    by_inode: dict[tuple[int, int], Digests] = field(default_factory=dict)
    bytes_hashed: int = 0
    # (bytes, files) hashed since its last call, in progress.STEP_BYTES or STEP_FILES (not per 3 KB file, issue
    # 18) and at report_progress(): progress.
    on_hashed: Callable[[int, int], None] | None = None
    contents: dict[str, int] = field(default_factory=dict)  # sha256 (or git blob id) -> size of each content
    _unreported: tuple[int, int] = (0, 0)

    @property
    def content_bytes(self) -> int:
        """Bytes of the distinct contents hashed (each sha256 once, however many files or copies hold it)."""
        return sum(self.contents.values())

    def _hashed(self, d: Digests) -> None:
        size = d.size
        # A blob named by its git id is hashed for that id alone (no sha256): the id names the content then.
        self.contents[d.sha256 or d.git_sha1 or f"unnamed:{len(self.contents)}"] = size
        self.bytes_hashed += size
        if self.on_hashed is not None:
            done, files = self._unreported
            self._unreported = (done + size, files + 1)
            if done + size >= STEP_BYTES or files + 1 >= STEP_FILES:
                self.report_progress()

    def report_progress(self) -> None:
        """Hand ``on_hashed`` what was hashed since its last call."""
        done, files = self._unreported
        if self.on_hashed is not None and files:
            self._unreported = (0, 0)
            self.on_hashed(done, files)

    def digest(self, path: Path, *, git: bool = True) -> Digests:
        """Digests of ``path``'s content; ``git=False``: the git blob sha1 may be missing (content named by its
        sha256 needs none: ~40% less hashing)."""
        from . import oscompat

        st = os.stat(oscompat.extended_path(path))
        key = (st.st_dev, st.st_ino)
        d = self.by_inode.get(key)
        if d is None or not d.sha256 or (git and not d.git_sha1):
            d = digest_file(str(path), git=git)
            self.by_inode[key] = d
            self._hashed(d)
        return d

    def known(self, key: tuple[int, int], *, sha256: bool, git: bool) -> Digests | None:
        """Digests already computed for the inode ``key`` (``(st_dev, st_ino)``) with the hashes asked for."""
        d = self.by_inode.get(key)
        if d is None or (sha256 and not d.sha256) or (git and not d.git_sha1):
            return None
        return d

    def remember(self, fd: FileDigest, *, keep: bool = False) -> None:
        """Count a file :func:`digest_paths` hashed; keep its digests only when another name can reach the same
        inode (a hard link), or when ``keep`` (links of other snapshots may name it: checks of installed files):
        a per-file record for every blob is what made memory grow with the file count."""
        if keep or fd.nlink > 1:
            self.by_inode[(fd.dev, fd.ino)] = fd.digests
        self._hashed(fd.digests)

    def digest_inodes(
        self, todo: Mapping[tuple[int, int], tuple[str, int]], *, git: bool
    ) -> dict[tuple[int, int], Digests | OSError]:
        """The digests (sha256, and the git blob id when ``git``) of each inode of ``todo`` (``(st_dev, st_ino)``
        -> a path to it and its size): those this run hashed already are not read again, the others are hashed in
        batches on all cores (:func:`digest_paths`) and kept for the rest of the run (a link of another snapshot
        may reach them); an ``OSError`` for one that cannot be read (issue 18: doctor, verify of a bundle)."""
        out: dict[tuple[int, int], Digests | OSError] = {}
        jobs: dict[tuple[int, int], tuple[str, bool, bool, int]] = {}
        for key, (path, size) in todo.items():
            done = self.known(key, sha256=True, git=git)
            if done is not None:
                out[key] = done
            else:
                jobs[key] = (path, True, git, size)
        for key, got in zip(jobs, digest_paths(jobs.values()), strict=True):
            if isinstance(got, OSError):
                out[key] = got
                continue
            self.remember(got, keep=True)
            out[key] = got.digests
        self.report_progress()
        return out

    def prefetch(self, jobs: Sequence[tuple[Path, bool]], threads: int = 0) -> None:
        """Hash ``(path, git)`` jobs on ``threads`` threads (0: one per CPU; hashlib releases the GIL), so the
        :meth:`digest` calls that follow find them done. Unreadable files are left for :meth:`digest`."""
        todo: dict[tuple[int, int], tuple[Path, bool]] = {}
        for path, git in jobs:
            with contextlib.suppress(OSError):
                st = os.stat(path)
                key = (st.st_dev, st.st_ino)
                d = self.by_inode.get(key)
                if stat.S_ISREG(st.st_mode) and key not in todo and (d is None or (git and not d.git_sha1)):
                    todo[key] = (path, git)
        workers = min(threads or os.cpu_count() or 1, len(todo))
        if workers < 2:
            return

        def one(job: tuple[Path, bool]) -> Digests | None:
            try:
                return digest_file(str(job[0]), git=job[1])
            except OSError:
                return None

        items = list(todo.items())
        with ThreadPoolExecutor(workers, thread_name_prefix="hfbundle-hash") as pool:
            for start in range(0, len(items), PREFETCH_BATCH):  # bounded: not one future per file at once
                batch = items[start : start + PREFETCH_BATCH]
                for (key, _job), d in zip(batch, pool.map(one, [job for _key, job in batch]), strict=True):
                    if d is not None:
                        self.by_inode[key] = d
                        self._hashed(d)


# One regex match, not a generator per character: called several times per file (issue 18).
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SHA1_RE = re.compile(r"[0-9a-f]{40}")


def is_sha256(value: str) -> bool:
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


def is_sha1(value: str) -> bool:
    return isinstance(value, str) and _SHA1_RE.fullmatch(value) is not None


_SHA256_LINES = re.compile(r"(?:[0-9a-f]{64}\n)*")
_SHA1_LINES = re.compile(r"(?:[0-9a-f]{40}\n)*")


def all_sha256(values: Sequence[str]) -> bool:
    """Whether every one of ``values`` (strings) is :func:`is_sha256`: one match over them all, not one call per
    value (issue 18: a manifest of 100,000 files)."""
    return _all_lines(_SHA256_LINES, values)


def all_sha1(values: Sequence[str]) -> bool:
    """Whether every one of ``values`` (strings) is :func:`is_sha1`, in one match."""
    return _all_lines(_SHA1_LINES, values)


def _all_lines(pattern: re.Pattern[str], values: Sequence[str]) -> bool:
    text = "\n".join(values) + "\n" if values else ""
    # As many lines as values: a value holding a newline would otherwise pass as two good ones.
    return text.count("\n") == len(values) and pattern.fullmatch(text) is not None
