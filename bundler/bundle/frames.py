"""Reading the tar stream that a bundle's zstd frames carry, with checks at every step.

- :func:`decode_frame` decompresses one frame, refusing anything but exactly one complete frame of the
  announced size (and windows over :data:`~bundler.bundle.container.MAX_WINDOW`).
- :class:`StreamFrames` splits a pipe into frames by walking frame and block headers (RFC 8878), never
  reading past a frame's end, and stops at the index (a skippable frame).
- :func:`prefetch` decompresses a few frames ahead on a thread pool (zstandard releases the GIL).
- :class:`TarCursor` reads the tar stream across frames and checks that members start and end on frame
  boundaries; :class:`BlobStream` hands out exactly one member's bytes.

Every problem is a :class:`~bundler.errors.BundleFormatError`; nothing here trusts a size it did not check.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import zstandard

from ..errors import BundleFormatError, HfBundleError, UsageError
from .container import (
    MAX_FRAME_COMPRESSED,
    MAX_WINDOW,
    MAX_ZSTD_HEADER,
    ZSTD_BLOCK_MAX,
    ZSTD_MAGIC,
    FrameRef,
    is_skippable_magic,
    parse_zstd_header,
    zstd_header_size,
)
from .volumes import RECOPY_HINT, RandomAccess


def truncated(what: str) -> BundleFormatError:
    return BundleFormatError(
        f"bundle is truncated: {what}", hint="re-copy it (all of its volumes): the copy is incomplete"
    )


def damaged(what: str) -> BundleFormatError:
    return BundleFormatError(f"bundle is damaged: {what}", hint=RECOPY_HINT)


# -- frames -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    ref: FrameRef
    data: bytes | memoryview
    buffer: bytearray | None = None  # the pooled buffer ``data`` lies in, given back when the frame is done


POOLED_SIZE = (16 << 20) + 4096  # the writer's default frame size, with room for a frame's tar padding
SMALL_FRAME_BYTES = 1 << 20  # frames under this get a buffer of their own size, not a pooled one


class FrameBuffers:
    """Reusable output buffers for decoded frames.

    A fresh 16 MiB allocation per frame costs page faults and zeroing on every byte, as much CPU as the
    hashing; reusing a few buffers costs nothing. A buffer is handed out again only once it was given back
    *and* no memoryview of it is alive anywhere (a chunk still being written, a view a consumer kept): the
    probe is CPython's own export count, which refuses to resize a bytearray with live views. So a consumer
    that holds on to data can never see it overwritten. Thread-safe; never blocks (allocates instead).
    """

    def __init__(self, keep: int = 16) -> None:
        self._free: list[bytearray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        if size < SMALL_FRAME_BYTES:
            # Its own small buffer, never pooled: bytearray(n) zeroes (touches) every page, so a pooled 16 MiB
            # buffer per small frame in flight cost 16 MiB of memory each (issue 18: many small files).
            return bytearray(size)
        with self._lock:
            for i, buf in enumerate(self._free):
                if len(buf) >= size and _unshared(buf):
                    return self._free.pop(i)
        buf = bytearray(max(size, POOLED_SIZE))
        buf.append(0)  # leave spare capacity so that the probe in _unshared never reallocates
        buf.pop()
        return buf

    def give(self, buf: bytearray) -> None:
        if len(buf) < SMALL_FRAME_BYTES:
            return
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)

    def clear(self) -> None:
        """Let go of every pooled buffer (the reader's close): memory comes back at once, even while something
        (an exception's traceback) still holds the pool."""
        with self._lock:
            self._free.clear()


def _unshared(buf: bytearray) -> bool:
    try:
        buf.append(0)  # refused while any memoryview of buf exists
    except BufferError:
        return False
    buf.pop()
    return True


_local = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if d is None:
        # max_window_size: a frame asking for a larger window is refused instead of allocating it.
        d = _local.dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    return d


def decode_frame(
    ref: FrameRef, raw: bytes | bytearray | memoryview, where: str, buffers: FrameBuffers | None = None
) -> Frame:
    """Decompress one frame, checking it is exactly one complete frame of ``ref.raw_length`` bytes (its
    content checksum included). With ``buffers`` the content goes into a pooled buffer (see
    :class:`FrameBuffers`); the consumer gives it back when done."""
    if len(raw) != ref.length:
        raise truncated(f"{where} ends early")
    header = parse_zstd_header(memoryview(raw)[:MAX_ZSTD_HEADER], where)
    if header.content_size != ref.raw_length:
        raise damaged(f"{where} holds {header.content_size} bytes, the index says {ref.raw_length}")
    if buffers is None or ref.raw_length < SMALL_FRAME_BYTES:
        # A small frame gets a buffer of its own either way (FrameBuffers.take): one call decodes it, and refuses
        # any data after the frame and a wrong content checksum (a stream reader per frame cost ~8 us; issue 18).
        try:
            data = _decompressor().decompress(raw, allow_extra_data=False)
        except zstandard.ZstdError as e:
            raise damaged(f"{where} does not decompress ({e})") from e
        if len(data) != ref.raw_length:
            raise damaged(f"{where} decompressed to {len(data)} bytes, expected {ref.raw_length}")
        return Frame(ref, data)
    if frame_extent(memoryview(raw), header.header_size, where) != len(raw):
        raise damaged(f"{where} holds more than one zstd frame")
    buf = buffers.take(ref.raw_length)
    out = memoryview(buf)[: ref.raw_length]
    try:
        reader = _decompressor().stream_reader(raw, read_size=len(raw), read_across_frames=False)
        got = reader.readinto(out)
        while got < ref.raw_length:
            n = reader.readinto(out[got:])
            if not n:
                break
            got += n
        if got != ref.raw_length or reader.read(1):  # read(1) also checks the content checksum
            raise damaged(f"{where} does not decompress to the {ref.raw_length} bytes its header declares")
    except BaseException as e:
        out.release()
        buffers.give(buf)
        if isinstance(e, zstandard.ZstdError):
            raise damaged(f"{where} does not decompress ({e})") from e
        raise
    return Frame(ref, out, buf)


def frame_extent(frame: memoryview, header_size: int, where: str) -> int:
    """The length of the zstd frame at the start of ``frame`` (whose header is ``header_size`` bytes and
    declares a content checksum), walking its block headers (RFC 8878 §3.1.1.2)."""
    pos = header_size
    while True:
        if pos + 3 > len(frame):
            raise truncated(f"it ends inside {where}")
        stored, last = block_header(frame[pos : pos + 3], where)
        pos += 3 + stored
        if last:
            return pos + 4  # the content checksum


def block_header(raw: bytes | bytearray | memoryview, where: str) -> tuple[int, bool]:
    """A zstd block header (3 bytes): how many bytes of the frame the block's body takes, and whether it is
    the frame's last block. Reserved block types and blocks over 128 KiB are refused."""
    block = int.from_bytes(raw, "little")
    kind, size = (block >> 1) & 3, block >> 3
    if kind == 3 or size > ZSTD_BLOCK_MAX:
        raise damaged(f"{where} has an invalid block header")
    return (1 if kind == 1 else size), bool(block & 1)


class StreamFrames:
    """Splits a non-seekable byte stream into zstd frames by walking frame and block headers (RFC 8878), so
    no frame is read past its end and no size is taken on trust. Stops at the first skippable frame (the
    index) or at the end of the stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.offset = 0
        self.data_end = -1
        self.tail_magic = b""

    def read(self, n: int, what: str, *, exact: bool = True) -> bytes:
        out = bytearray()
        self._append(out, n, what, exact=exact)
        return bytes(out)

    def _append(self, out: bytearray, n: int, what: str, *, exact: bool = True) -> None:
        goal = len(out) + n
        while len(out) < goal:
            try:
                part = self._stream.read(goal - len(out))
            except OSError as e:
                raise BundleFormatError(f"cannot read the bundle: {e.strerror or e}") from e
            if not part:
                if exact:
                    raise truncated(f"it ends inside {what}")
                break
            out += part
            self.offset += len(part)

    def __iter__(self) -> Iterator[tuple[FrameRef, bytearray]]:
        while True:
            start = self.offset
            frame = bytearray()
            self._append(frame, 4, "a frame header", exact=False)
            if len(frame) < 4 or is_skippable_magic(bytes(frame)):
                if 0 < len(frame) < 4:
                    if start == 0:
                        raise BundleFormatError("not an hfbundle bundle (it is a few bytes long)")
                    raise truncated(f"it ends inside a frame header at offset {start}")
                self.data_end, self.tail_magic = start, bytes(frame)
                return
            where = f"frame at offset {start}"
            if bytes(frame) != ZSTD_MAGIC:
                if start == 0:
                    raise BundleFormatError("not an hfbundle bundle (it is not zstd-compressed)")
                raise damaged(f"no zstd frame at offset {start}")
            self._append(frame, 1, where)
            self._append(frame, zstd_header_size(frame[4]) - 5, where)
            try:
                header = parse_zstd_header(frame, where)
            except BundleFormatError as e:
                if start == 0:  # the very first frame: some other zstd file
                    raise BundleFormatError(f"not an hfbundle bundle ({e.message})") from e
                raise
            while True:
                self._append(frame, 3, where)
                stored, last = block_header(frame[-3:], where)
                self._append(frame, stored, where)
                if len(frame) > MAX_FRAME_COMPRESSED:
                    raise damaged(f"{where} is larger than any frame hfbundle writes")
                if last:
                    break
            self._append(frame, 4, where)  # content checksum
            yield FrameRef(start, len(frame), header.content_size), frame


INLINE_FRAME_BYTES = 128 << 10  # frames this small decode on the consumer's thread (see prefetch)


def prefetch(
    jobs: Iterator[tuple[int, Callable[[], Frame]]], pool: ThreadPoolExecutor | None, depth: int
) -> Iterator[Frame]:
    """Run ``jobs`` (each with its frame's decoded size) up to ``depth`` ahead on ``pool`` and yield their results
    in order. An error met while producing jobs ahead surfaces only when the consumer gets there.

    A frame under :data:`INLINE_FRAME_BYTES` is decoded on the consumer's thread when its turn comes: decoding
    a few KB costs microseconds, the hand-off to a pool thread and back far more (issue 18: a restore of 20,000
    small files spent ~1.2 s waiting on futures and ~29 futex calls a file)."""
    if pool is None:
        for _size, job in jobs:
            yield job()
        return
    queue: deque[Future[Frame] | Callable[[], Frame]] = deque()
    exhausted = False
    try:
        while True:
            while not exhausted and len(queue) < depth:
                try:
                    size, job = next(jobs)
                except StopIteration:
                    exhausted = True
                    break
                except HfBundleError as e:
                    failed: Future[Frame] = Future()
                    failed.set_exception(e)
                    queue.append(failed)
                    exhausted = True
                    break
                queue.append(job if size < INLINE_FRAME_BYTES else pool.submit(job))
            if not queue:
                return
            item = queue.popleft()
            yield item.result() if isinstance(item, Future) else item()
    finally:
        for item in queue:
            if isinstance(item, Future):
                item.cancel()


# -- tar over frames --------------------------------------------------------------------------------------


class TarCursor:
    """The tar stream carried by a sequence of decoded frames, with member/frame boundary checks."""

    def __init__(self, frames: Iterator[Frame], buffers: FrameBuffers | None = None) -> None:
        self._frames = frames
        self._buffers = buffers
        self._held: bytearray | None = None
        self._view = memoryview(b"")
        self._pos = 0
        self.tar_offset = 0
        self.loaded: list[FrameRef] = []

    def close(self) -> None:
        """Let go of the current frame and of the frames decoded ahead (the reader's close)."""
        self._view = memoryview(b"")
        self._held = None
        close = getattr(self._frames, "close", None)  # a generator: its pending frames go with it
        if close is not None:
            close()
        self._frames = iter(())

    def _next(self) -> bool:
        self._view = memoryview(b"")
        if self._held is not None and self._buffers is not None:
            self._buffers.give(self._held)  # reused only once no view of it is alive (FrameBuffers)
        self._held = None
        frame = next(self._frames, None)
        if frame is None:
            return False
        self._view, self._pos, self._held = memoryview(frame.data), 0, frame.buffer
        self.loaded.append(frame.ref)
        return True

    def begin_member(self, where: str) -> bool:
        """Start a member on a fresh frame; False when there are no more frames."""
        self.end_member(where)
        self.loaded = []
        return self._next()

    def end_member(self, where: str) -> None:
        if self._pos != len(self._view):
            raise damaged(f"{where} does not end on a zstd frame boundary")

    def read_some(self, n: int, what: str) -> memoryview:
        if self._pos == len(self._view) and not self._next():
            raise truncated(f"it ends inside {what}")
        take = min(n, len(self._view) - self._pos)
        out = self._view[self._pos : self._pos + take]
        self._pos += take
        self.tar_offset += take
        return out

    def read_exact(self, n: int, what: str) -> bytes:
        parts = []
        while n > 0:
            chunk = self.read_some(n, what)
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def expect_zeros(self, n: int, what: str) -> None:
        while n > 0:
            chunk = self.read_some(n, what)
            if bytes(chunk).count(0) != len(chunk):
                raise damaged(f"{what} holds non-zero bytes")
            n -= len(chunk)

    def rest(self) -> Iterator[memoryview]:
        """The remaining bytes, frame by frame, until the frames end."""
        while self._pos < len(self._view) or self._next():
            chunk = self._view[self._pos :]
            self._pos = len(self._view)
            self.tar_offset += len(chunk)
            yield chunk


class BlobStream(io.RawIOBase):
    """Exactly ``size`` bytes of one member, read through the cursor; never more."""

    def __init__(
        self,
        cursor: TarCursor,
        size: int,
        where: str,
        on_eof: Callable[[], None] | None = None,
        digest: Any = None,
    ) -> None:
        super().__init__()
        self._cursor = cursor
        self._left = size
        self._where = where
        self._on_eof = on_eof
        self._digest = digest
        self._dead = False

    def readable(self) -> bool:
        return True

    def _check(self) -> None:
        if self._dead:
            raise UsageError("a blob stream from iter_blobs() is only valid until the next blob")

    def _take(self, n: int) -> memoryview:
        chunk = self._cursor.read_some(min(n, self._left), self._where)
        self._left -= len(chunk)
        if self._digest is not None:
            self._digest.update(chunk)
        return chunk

    def _eof(self) -> None:
        if self._on_eof is not None:
            callback, self._on_eof = self._on_eof, None
            callback()

    def readinto(self, buffer: Any) -> int:
        self._check()
        view = memoryview(buffer).cast("B")
        if not self._left or not len(view):
            if not self._left:
                self._eof()
            return 0
        chunk = self._take(len(view))
        view[: len(chunk)] = chunk
        if not self._left:
            self._eof()
        return len(chunk)

    def read_view(self, size: int) -> memoryview:
        """Up to ``size`` bytes without a copy (empty at the end): a view into the decoded frame, valid as
        long as it is referenced (the frame's buffer is not reused while any view of it is alive)."""
        self._check()
        if not self._left or size <= 0:
            if not self._left:
                self._eof()
            return memoryview(b"")
        chunk = self._take(size)
        if not self._left:
            self._eof()
        return chunk

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        want = self._left if size is None or size < 0 else min(size, self._left)
        parts = []
        while want > 0:
            chunk = self._take(want)
            parts.append(chunk)
            want -= len(chunk)
        if not self._left:
            self._eof()
        return b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def drain(self) -> None:
        while self._left:
            self._take(1 << 20)
        self._eof()

    def kill(self) -> None:
        self._dead = True


class SequentialReader:
    """Sequential reads over a RandomAccess (to probe a file without trusting its end)."""

    def __init__(self, access: RandomAccess) -> None:
        self._access = access
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        data = self._access.pread(self._pos, n if n >= 0 else self._access.size)
        self._pos += len(data)
        return data
