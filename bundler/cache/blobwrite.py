"""Writing one blob to a new file while hashing it: the inner loop of an install, and of every copy of a blob
(install, restore: :func:`copy_hashed`).

:func:`write_hashed` reads a stream chunk by chunk, hashes each chunk on the calling thread while the chunk
before it is written on a writer thread (hashlib and ``write`` both release the GIL, so the two overlap on
two cores), and starts the kernel's write-out as it goes (:class:`~bundler.cache.durable.Writeback`). It reads at
most ``size + 1`` bytes: a stream longer than declared is cut off there, never read to its end.

Chunks are taken without a copy when the stream offers ``read_view`` (bundle streams do: a view into the
decoded frame). The caller checks the returned digests; this module knows nothing about caches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from .. import oscompat
from ..errors import HfBundleError
from ..hashing import Digests, StreamHasher
from .durable import Writeback

__all__ = ["CHUNK", "Cancelled", "copy_hashed", "write_hashed"]

CHUNK = 1 << 20  # per read; measured here: 512 KiB and 4 MiB both cost more CPU (hand-offs; cache misses)


class Cancelled(HfBundleError):
    """The write was stopped from outside (another part of the install failed first)."""


def write_hashed(
    stream: BinaryIO,
    path: Path | str,
    size: int,
    *,
    git: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Digests:
    """Create ``path`` (which must not exist; never follows a link) with at most ``size + 1`` bytes of
    ``stream``, and return their digests. ``git=False`` skips the git blob sha1 (content whose every name is
    its sha256): ~40% less hashing. ``cancelled`` is polled once per chunk and raises :class:`Cancelled`."""
    hasher = StreamHasher(size, git=git)
    read: Callable[[int], bytes | memoryview] = getattr(stream, "read_view", stream.read)
    fd = os.open(
        oscompat.extended_path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666
    )
    if size < CHUNK:
        return _write_small(read, fd, size, hasher, on_chunk, cancelled)
    writeback = Writeback(fd)
    with os.fdopen(fd, "wb", buffering=0) as out, ThreadPoolExecutor(max_workers=1) as writer:

        def write(chunk: bytes | memoryview) -> None:
            oscompat.write_all(out.fileno(), chunk)
            writeback.wrote(len(chunk))

        # One write in flight while the next chunk is hashed: memory stays at ~2 chunks.
        pending: Future[None] | None = None
        remaining = size + 1
        while remaining > 0:
            if cancelled is not None and cancelled():
                if pending is not None:
                    pending.result()
                raise Cancelled("stopped")
            chunk = read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            hasher.update(chunk)
            if pending is not None:
                pending.result()
                pending = None
            if hasher.size > size:
                break
            pending = writer.submit(write, chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
        if pending is not None:
            pending.result()
    return hasher.digests()


def copy_hashed(
    src: Path,
    dst: Path,
    size: int,
    *,
    git: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Digests:
    """Copy the file ``src`` (``size`` bytes expected) to the new file ``dst`` while hashing it: one read, as
    :func:`write_hashed`. The caller compares the digests with what ``src`` must hold before publishing ``dst``
    (a file that changed while it was copied is never published)."""
    with open(oscompat.extended_path(src), "rb") as f:
        return write_hashed(f, dst, size, git=git, on_chunk=on_chunk, cancelled=cancelled)


def _write_small(
    read: Callable[[int], bytes | memoryview],
    fd: int,
    size: int,
    hasher: StreamHasher,
    on_chunk: Callable[[int], None] | None,
    cancelled: Callable[[], bool] | None,
) -> Digests:
    """A blob under one chunk: read, hash and write on this thread. A writer thread per blob cost ~0.6 ms of
    thread start-up per file, more than the whole write of a 4 KB file (issue 18: many small files). The bare
    descriptor, no file object around it (~10 us a file)."""
    try:
        if cancelled is not None and cancelled():
            raise Cancelled("stopped")
        data: bytes | memoryview | bytearray = b""
        remaining = size + 1
        while remaining > 0 and (chunk := read(remaining)):
            remaining -= len(chunk)
            hasher.update(chunk)
            if hasher.size > size:
                break
            # Copy as soon as a second chunk comes: an earlier view may point into a recycled frame buffer.
            data = chunk if not data else bytearray(data) + chunk
        oscompat.write_all(fd, data)
        if on_chunk is not None and len(data):
            on_chunk(len(data))
    finally:
        os.close(fd)
    return hasher.digests()
