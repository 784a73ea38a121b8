"""Hashes the Hub uses to name content, computed while streaming.

- LFS files are named by the sha256 of their content.
- Regular (git) files are named by their git blob id: ``sha1(b"blob <size>\\0" + content)``.
- An LFS file's git blob id is the sha1 of its *pointer* file, which is fully determined by sha256 and size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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


@dataclass(frozen=True)
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


@dataclass
class InodeHasher:
    """:func:`digest_file` that hashes each inode once (hard links, a blob behind many snapshot links), counting
    the bytes it read (``bytes_hashed``) and the distinct contents among them (``content_bytes``: the same, once
    per sha256, so copy-layout snapshots holding one content twice count it once): one per verify or doctor run."""

    by_inode: dict[tuple[int, int], Digests] = field(default_factory=dict)
    bytes_hashed: int = 0
    on_hashed: Callable[[int], None] | None = None  # called with each file's size once it is hashed (progress)
    contents: dict[str, int] = field(default_factory=dict)  # sha256 -> size of every content hashed

    @property
    def content_bytes(self) -> int:
        """Bytes of the distinct contents hashed (each sha256 once, however many files or copies hold it)."""
        return sum(self.contents.values())

    def _hashed(self, d: Digests) -> None:
        size = d.size
        self.contents[d.sha256] = size
        self.bytes_hashed += size
        if self.on_hashed is not None:
            self.on_hashed(size)

    def digest(self, path: Path, *, git: bool = True) -> Digests:
        """Digests of ``path``'s content; ``git=False``: the git blob sha1 may be missing (content named by its
        sha256 needs none: ~40% less hashing)."""
        from . import oscompat

        st = os.stat(oscompat.extended_path(path))
        key = (st.st_dev, st.st_ino)
        d = self.by_inode.get(key)
        if d is None or (git and not d.git_sha1):
            d = digest_file(str(path), git=git)
            self.by_inode[key] = d
            self._hashed(d)
        return d

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
