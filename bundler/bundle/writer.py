"""Writing a bundle: the manifest, then each blob hashed while it is compressed, then the index.

Each blob is read once in frames of ``frame_size`` bytes; a frame is hashed on one thread while other
threads compress earlier frames (``hashlib`` and ``zstandard`` release the GIL), and frames are written in
order. Every frame is compressed on its own, single-threaded, so the bytes never depend on thread timing:
the same inputs and options give the same file. Layout: ``docs/FORMAT.md``.

Example::

    with BundleWriter(Path("model.tar.zst")) as w:
        w.write_manifest(manifest.dumps())
        for blob in manifest.blobs:
            with open(source_of(blob), "rb") as f:
                w.add_blob(blob.sha256, blob.size, f, label=str(source_of(blob)))
    report = w.report

Longer than ~500 lines: the write pipeline (read, hash, compress on a pool, gather, one writer thread) is one
object whose stages share bounded queues; split, each piece would need the others' state.
"""

from __future__ import annotations

import hashlib
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

import zstandard

from ..errors import BundleFormatError, HfBundleError, IntegrityError, UsageError
from ..hashing import is_sha1, is_sha256
from ..records import JsonRecord
from .container import (
    KIND_BLOB,
    KIND_END,
    KIND_MANIFEST,
    MANIFEST_NAME,
    TRAILER_LENGTH,
    BundleIndex,
    FrameRef,
    IndexMember,
    Trailer,
    VolumeRef,
    blob_member_name,
    end_length,
    fingerprint,
    index_frame_length,
    padded,
    signatures_frame,
    tar_header,
)
from .manifest import Manifest
from .volumes import OutputSink

DEFAULT_FRAME_SIZE = 16 << 20
MIN_FRAME_SIZE = 1024
MAX_FRAME_SIZE = 64 << 20
# Memory is bounded whatever ``threads`` says: at most MAX_IN_FLIGHT frames being read, hashed and
# compressed (input + output: 2 * frame_size each) and MAX_QUEUED_WRITES compressed frames waiting for the
# write thread, so ~(2 * 4 + 2) * 16 MiB = 160 MiB of buffers at the default frame size. More than
# MAX_WORKERS compression threads would only wait: one stream is hashed at ~1.4 GB/s on one core anyway.
MAX_IN_FLIGHT = 4
MAX_QUEUED_WRITES = 1  # pieces waiting for the writer thread (one more is being written); 3 bought no
# measurable speed on this 2-core VM and cost ~45 MB of peak RSS (issue 22)
MAX_WORKERS = 4
# Output is handed to the writer thread in pieces of at least this much (small members' frames are gathered
# into one piece): one write call per few MiB suits the page cache, one per 3 KB frame did not (issue 22).
WRITE_PIECE = 4 << 20
# A member whose tar bytes (header + data + padding) fit in this is read, hashed and compressed on the
# calling thread: handing a 4 KB file to two pools cost more than the work (issue 18: many small files).
INLINE_MEMBER = 256 << 10
SAMPLE_BYTES = 1 << 20
BARELY_COMPRESSIBLE = 0.88
FAST_LEVEL = -1
SMALL_BLOB = 64 << 10
SMALL_BARELY_LEVEL = 3
LEVEL_MIN, LEVEL_MAX = -7, 22
_T = TypeVar("_T")


def auto_threads(threads: int) -> int:
    if threads < 0:
        raise UsageError(f"threads must be 0 (auto) or more, got {threads}")
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def text_level(size: int) -> int:
    """Level for text-like content: small files get the strongest level, large ones a fast one."""
    return 19 if size <= 64 * 1024 else 9 if size <= 16 << 20 else 3


def choose_level(sample: bytes | bytearray | memoryview, size: int) -> int:
    """Compression level for a blob of ``size`` bytes, judged by how well ``sample`` compresses at level 1.

    - under 0.5 (text, JSON, tokenizers): a strong level, see :func:`text_level`;
    - under 0.88 (bf16 ~0.78, fp32): level 1; higher levels save almost nothing on weights and cost time;
    - from 0.88 (fp16 ~0.92, quantized or already-compressed data): level -1. The few percent level 1 would
      save there come from Huffman-coding every byte, which more than doubles the CPU time of both packing
      and unpacking (measured: level 1 ~0.58 GB/s a core on fp16, level -1 ~1.4 GB/s). ``level=1`` gets
      them back when size matters more than time. Small files (up to 64 KiB) get level 3, tar --zstd's:
      their tar header and padding compress a little better there, at no time that counts (issue 18).

    Tiny samples (under 1 KiB) get level 19: too little to judge, too little to cost anything.
    """
    if len(sample) < 1024:
        return 19
    ratio = len(_compressor(1).compress(sample)) / len(sample)
    if ratio < 0.5:
        return text_level(size)
    if ratio < BARELY_COMPRESSIBLE:
        return 1
    return SMALL_BARELY_LEVEL if size <= SMALL_BLOB else FAST_LEVEL


_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    c = cache.get(level)
    if c is None:
        # Single-threaded per frame, content size and checksum in every frame: deterministic bytes, and a
        # reader can check each frame on its own.
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    return c


def _compress(level: int, data: memoryview) -> bytes:
    return _compressor(level).compress(data)


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class BlobWritten:
    """One blob stored: its verified hashes and what it cost."""

    sha256: str
    size: int
    git_sha1: str | None
    compressed_size: int
    frames: int
    level: int


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class MemberWritten(JsonRecord):
    name: str
    size: int
    compressed_size: int
    frames: int
    level: int


@dataclass(frozen=True)
class WriteReport(JsonRecord, rounding={"elapsed": 3}):
    """What :meth:`BundleWriter.finish` wrote. ``paths`` is empty when writing to a stream."""

    bundle_id: str
    paths: tuple[Path, ...]
    bytes_in: int
    bytes_out: int
    members: tuple[MemberWritten, ...]
    elapsed: float
    threads: int
    frame_size: int

    @property
    def ratio(self) -> float:
        return self.bytes_out / self.bytes_in if self.bytes_in else 1.0

    def json_extra(self) -> dict[str, object]:
        return {"ratio": round(self.ratio, 4)}


@dataclass
class _Pending:
    """One frame on its way: its input buffer (recycled once hashed and compressed) and results."""

    buffer: bytearray
    raw_length: int
    progress: int
    compressed: Future[bytes] | bytes = b""
    hashed: Future[None] | None = None


class _Hasher:
    def __init__(self, size: int, git: bool) -> None:
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False) if git else None

    def update(self, view: memoryview) -> None:
        self.sha256.update(view)
        if self.sha1 is not None:
            self.sha1.update(view)


def _fill(stream: BinaryIO, view: memoryview) -> int:
    """Read into ``view`` until it is full or the stream ends; returns the bytes read."""
    readinto = getattr(stream, "readinto", None)
    got = 0
    while got < view.nbytes:
        if readinto is not None:
            n = readinto(view[got:])
        else:
            chunk = stream.read(view.nbytes - got)
            n = len(chunk)
            view[got : got + n] = chunk
        if not n:
            break
        got += n
    return got


class _WriterThread:
    """Writes pieces in order on its own thread, so compressing the next frames never waits for the kernel to
    take the last one (a file costs that, a pipe hides it: issue 22). At most MAX_QUEUED_WRITES pieces wait;
    :meth:`put` blocks beyond that, so memory stays bounded. The first write error is raised by the next
    :meth:`put` or by :meth:`join`; after it the thread drops what it is given."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._queue: queue.Queue[bytes | None] = queue.Queue(MAX_QUEUED_WRITES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hfbundle-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(data)
                except BaseException as e:  # handed to the producer
                    self._error = e
            self._queue.task_done()
        self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, data: bytes) -> None:
        self._raise()
        self._queue.put(data)

    def join(self) -> None:
        """Wait until everything put so far is written; raise the first write error."""
        self._queue.join()
        self._raise()

    def stop(self) -> None:
        """End the thread once the pieces before are done (written, or dropped after an error)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class BundleWriter:
    """Writes a bundle to ``target``: a path (written atomically), ``"-"`` (stdout) or a binary file object.

    Call :meth:`write_manifest` first, then :meth:`add_blob` once per blob the manifest declares, in the
    order they should be stored, then :meth:`finish`. As a context manager it finishes on success and
    aborts on any exception, so no partial bundle ever appears at ``target``.

    ``level`` is the zstd level for every member (None: chosen per member, see :func:`choose_level`);
    ``threads`` the compression threads (0: one per CPU); ``frame_size`` the uncompressed bytes per zstd
    frame; ``split_size`` cuts the output into volumes ``NAME.001``, ``NAME.002``, …; ``on_progress`` is
    called (on the calling thread) with the total blob bytes stored so far, after each frame.
    """

    def __init__(
        self,
        target: Path | str | BinaryIO,
        *,
        level: int | None = None,
        threads: int = 0,
        frame_size: int = DEFAULT_FRAME_SIZE,
        split_size: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        if level is not None and not LEVEL_MIN <= level <= LEVEL_MAX:
            raise UsageError(f"compression level {level} is out of range ({LEVEL_MIN}..{LEVEL_MAX})")
        if not MIN_FRAME_SIZE <= frame_size <= MAX_FRAME_SIZE:
            raise UsageError(f"frame size {frame_size} is out of range ({MIN_FRAME_SIZE}..{MAX_FRAME_SIZE})")
        self._level = level
        self._threads = auto_threads(threads)
        self._frame_size = frame_size
        self._on_progress = on_progress
        self._started = time.perf_counter()
        if target == "-":
            target = sys.stdout.buffer
        self._sink = OutputSink(Path(target) if isinstance(target, (str, os.PathLike)) else target, split_size)
        self._members: list[IndexMember] = []
        self._written: list[MemberWritten] = []
        self._manifest: Manifest | None = None
        self._bundle_id = ""
        self._declared: dict[str, int] = {}
        self._added: set[str] = set()
        self._tar_offset = 0
        self._bytes_in = 0
        self._progress = 0
        self._pool: ThreadPoolExecutor | None = None
        self._hash_pool: ThreadPoolExecutor | None = None
        self._writer: _WriterThread | None = None
        self._gather = bytearray()  # small frames waiting to be handed to the writer as one piece
        self._buffers: list[bytearray] = []  # input frame buffers, reused
        self._offset = 0  # bytes handed to the output so far (written, or queued to the write thread)
        self._state = "open"  # open → finished | aborted
        self._signatures: bytes | None = None
        self.report: WriteReport | None = None

    # -- public API ----------------------------------------------------------------------------------------

    def write_manifest(self, manifest_bytes: bytes, *, manifest: Manifest | None = None) -> None:
        """Store the manifest (the canonical bytes of :meth:`Manifest.dumps`) as the first member. ``manifest``:
        the caller's :class:`Manifest` whose ``dumps()`` these bytes are; the writer then keeps it instead of a
        parsed copy (a second set of per-file records for the whole run, issue 18). The bytes are parsed and
        validated either way."""
        self._check_open()
        if self._manifest is not None:
            raise UsageError("the manifest was already written")
        try:
            parsed = Manifest.loads(manifest_bytes)
        except BundleFormatError as e:
            raise UsageError(f"invalid manifest: {e.message}", hint=e.hint) from e
        if manifest is not None and manifest.dumps() is manifest_bytes:
            del parsed  # the very bytes that manifest encodes to: canonical, and equal to what was parsed
        elif parsed.dumps() != manifest_bytes:
            raise UsageError("manifest bytes are not canonical", hint="pass Manifest.dumps()")
        else:
            manifest = parsed
        self._manifest = manifest
        self._bundle_id = hashlib.sha256(manifest_bytes).hexdigest()
        self._declared = {b.sha256: b.size for b in manifest.blobs}
        level = self._level if self._level is not None else text_level(len(manifest_bytes))
        self._guarded(lambda: self._write_member(KIND_MANIFEST, self._bundle_id, manifest_bytes, level))
        self._guarded(self._hand_over)  # the output file exists from the manifest on, as before gathering

    def add_blob(
        self,
        sha256: str,
        size: int,
        stream: BinaryIO,
        *,
        expected_git_sha1: str | None = None,
        label: str = "",
    ) -> BlobWritten:
        """Store ``size`` bytes read from ``stream`` as blob ``sha256``, hashing while compressing.

        Raises :class:`IntegrityError` (and aborts the bundle: no output file appears) when the stream is
        shorter or longer than ``size`` or its sha256 (or git blob sha1, when given) differs.
        """
        self._check_open()
        if self._manifest is None:
            raise UsageError("write_manifest() must be called before add_blob()")
        if not is_sha256(sha256) or (expected_git_sha1 is not None and not is_sha1(expected_git_sha1)):
            raise UsageError(f"invalid hash for blob {label or sha256!r}")
        if self._declared.get(sha256) != size:
            raise UsageError(f"blob {sha256[:12]}… of {size} bytes is not declared in the manifest")
        if sha256 in self._added:
            raise UsageError(f"blob {sha256[:12]}… was already added (each blob is stored once)")
        self._added.add(sha256)
        return self._guarded(lambda: self._add_blob(sha256, size, stream, expected_git_sha1, label or sha256))

    def finish(self) -> WriteReport:
        """Write the end of the archive, the index and the trailer, and move the output into place."""
        if self._state == "finished" and self.report is not None:
            return self.report
        self._check_open()
        if self._manifest is None:
            raise UsageError("write_manifest() was never called")
        missing = sorted(self._declared.keys() - self._added)
        if missing:
            self.abort()
            raise UsageError(
                f"{len(missing)} blob(s) declared in the manifest were not added, e.g. {missing[0]}",
                hint="add every blob of manifest.blobs before finishing",
            )
        return self._guarded(self._finish)

    close = finish

    def set_signatures(self, payload: bytes) -> None:
        """Store ``payload`` (the signatures JSON of :mod:`bundler.trust`) in a skippable frame between the
        data and the index, written by :meth:`finish`. It is outside the tar stream and the manifest, so the
        bundle id does not change (``docs/FORMAT.md``, "Signatures")."""
        self._check_open()
        self._signatures = payload

    def abort(self) -> None:
        """Stop and delete every temp file; nothing appears at the target."""
        if self._state == "aborted":
            return
        self._state = "aborted"
        self._shutdown()
        self._sink.abort()

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.finish()

    # -- internals -----------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise UsageError(f"the bundle writer is already {self._state}")

    def _guarded(self, work: Callable[[], _T]) -> _T:
        try:
            return work()
        except BaseException:
            self.abort()
            raise

    def _shutdown(self) -> None:
        for pool in (self._pool, self._hash_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._hash_pool = None
        if self._writer is not None:
            self._writer.stop()
            self._writer = None

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None:
        """Compression workers and one hashing thread (FIFO, so updates stay in order); None when
        single-threaded. Output goes through one more thread so reading never waits on writing."""
        if self._threads <= 1:
            return None
        if self._pool is None or self._hash_pool is None:
            self._pool = ThreadPoolExecutor(min(self._threads, MAX_WORKERS), thread_name_prefix="hfbundle-zstd")
            self._hash_pool = ThreadPoolExecutor(1, thread_name_prefix="hfbundle-hash")
        return self._pool, self._hash_pool

    def _emit(self, data: bytes) -> None:
        """Write in order, on the writer thread (see :class:`_WriterThread`), small frames gathered first."""
        self._offset += len(data)
        if len(data) < WRITE_PIECE:
            self._gather += data
            if len(self._gather) >= WRITE_PIECE:
                self._hand_over()
            return
        self._hand_over()
        self._writer_thread().put(data)

    def _writer_thread(self) -> _WriterThread:
        if self._writer is None:
            self._writer = _WriterThread(self._sink.write)
        return self._writer

    def _hand_over(self) -> None:
        if self._gather:
            data, self._gather = bytes(self._gather), bytearray()
            self._writer_thread().put(data)

    def _drain_writes(self) -> None:
        self._hand_over()
        if self._writer is not None:
            self._writer.join()

    def _add_blob(self, sha256: str, size: int, stream: BinaryIO, git_sha1: str | None, label: str) -> BlobWritten:
        hasher = _Hasher(size, git_sha1 is not None)
        member = self._write_member(KIND_BLOB, sha256, stream, self._level, size=size, hasher=hasher, label=label)
        extra = stream.read(1)
        if extra:
            raise IntegrityError(
                f"{label}: is larger than the {size} bytes the lock declares (it changed since it was locked)",
                path=label,
                expected=str(size),
                actual=f"more than {size}",
                hint="re-run `hfbundle resolve`, or restore the original file",
            )
        actual = hasher.sha256.hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"{label}: sha256 is {actual}, expected {sha256}",
                path=label,
                expected=sha256,
                actual=actual,
                hint="the local copy is corrupt or changed: re-download it, or re-run `hfbundle resolve`",
            )
        git_actual = hasher.sha1.hexdigest() if hasher.sha1 is not None else None
        if git_actual != git_sha1:
            raise IntegrityError(
                f"{label}: git blob id is {git_actual}, expected {git_sha1}",
                path=label,
                expected=git_sha1,
                actual=git_actual,
                hint="the local copy is corrupt or changed: re-download it, or re-run `hfbundle resolve`",
            )
        written = self._written[-1]
        return BlobWritten(sha256, size, git_actual, member.compressed_size, len(member.frames), written.level)

    def _write_member(
        self,
        kind: int,
        sha256: str,
        content: bytes | BinaryIO,
        level: int | None,
        *,
        size: int | None = None,
        hasher: _Hasher | None = None,
        label: str = "",
    ) -> IndexMember:
        """Write one member (header + content + padding, or the end zeros) as frames of ``frame_size``."""
        if kind == KIND_END:
            prefix, size, total = b"", 0, end_length(self._tar_offset)
            stream: BinaryIO | None = None
        else:
            if isinstance(content, bytes):
                size, stream = len(content), None
            else:
                assert size is not None
                stream = content
            name = MANIFEST_NAME if kind == KIND_MANIFEST else blob_member_name(sha256)
            prefix = tar_header(name, size)
            total = len(prefix) + padded(size)
        pools = self._pools() if total > INLINE_MEMBER else None
        depth = 1 if pools is None else min(self._threads + 2, MAX_IN_FLIGHT)
        pending: deque[_Pending] = deque()
        frames: list[FrameRef] = []
        start = self._offset
        pos = 0  # position in the member's tar bytes
        data_done = 0
        try:
            while pos < total:
                length = min(self._frame_size, total - pos)
                buf = self._buffers.pop() if self._buffers else bytearray(self._frame_size)
                view = memoryview(buf)[:length]
                head = max(0, min(len(prefix) - pos, length))
                view[:head] = prefix[pos : pos + head]
                want = max(0, min(size - data_done, length - head))
                data = view[head : head + want]
                if want:
                    if stream is None:
                        assert isinstance(content, bytes)
                        data[:] = content[data_done : data_done + want]
                        got = want
                    else:
                        got = self._read(stream, data, label)
                    if got < want:
                        actual = data_done + got
                        raise IntegrityError(
                            f"{label}: has {actual} bytes, expected {size} (it changed since it was locked)",
                            path=label,
                            expected=str(size),
                            actual=str(actual),
                            hint="re-run `hfbundle resolve`, or restore the original file",
                        )
                view[head + want :] = bytes(length - head - want)  # padding (buffers are reused)
                if level is None:
                    # Sampled from the end of the first frame: a file's start is often a text header
                    # (safetensors' JSON) that says little about the bulk.
                    level = choose_level(data[-SAMPLE_BYTES:], size) if kind == KIND_BLOB else 19
                item = _Pending(buf, length, want if kind == KIND_BLOB else 0)
                if pools is None:
                    if hasher is not None and want:
                        hasher.update(data)
                    item.compressed = _compress(level, view)
                else:
                    if hasher is not None and want:
                        item.hashed = pools[1].submit(hasher.update, data)
                    item.compressed = pools[0].submit(_compress, level, view)
                pending.append(item)
                pos += length
                data_done += want
                del buf, view, data
                while len(pending) >= depth or (pos >= total and pending):
                    frames.append(self._flush(pending.popleft()))
        finally:
            for item in pending:
                for fut in (item.compressed, item.hashed):
                    if isinstance(fut, Future):
                        fut.cancel()
        assert level is not None
        member = IndexMember(
            kind,
            sha256 if kind != KIND_END else "0" * 64,
            size if kind != KIND_END else total,
            self._tar_offset,
            tuple(frames),
        )
        self._members.append(member)
        self._tar_offset += total
        self._bytes_in += size
        if kind != KIND_END:
            self._written.append(MemberWritten(member.name, member.size, self._offset - start, len(frames), level))
        return member

    @staticmethod
    def _read(stream: BinaryIO, view: memoryview, label: str) -> int:
        try:
            return _fill(stream, view)
        except OSError as e:
            raise HfBundleError(f"could not read {label}: {e.strerror or e}", hint="check the file and retry") from e

    def _flush(self, item: _Pending) -> FrameRef:
        data = item.compressed.result() if isinstance(item.compressed, Future) else item.compressed
        if item.hashed is not None:
            item.hashed.result()
        # Both threads are done with the input: recycle it (fresh 16 MiB buffers cost page faults).
        self._buffers.append(item.buffer)
        ref = FrameRef(self._offset, len(data), item.raw_length)
        self._emit(data)
        if item.progress and self._on_progress is not None:  # blob bytes only: what a progress bar totals
            self._progress += item.progress
            self._on_progress(self._progress)
        return ref

    def _finish(self) -> WriteReport:
        self._write_member(KIND_END, "", b"", self._level)
        self._drain_writes()
        self._shutdown()
        total, _ = write_tail(self._sink, tuple(self._members), self._tar_offset, self._signatures)
        paths = self._sink.commit()
        self._state = "finished"
        self.report = WriteReport(
            bundle_id=self._bundle_id,
            paths=paths,
            bytes_in=self._bytes_in,
            bytes_out=total,
            members=tuple(self._written),
            elapsed=time.perf_counter() - self._started,
            threads=self._threads,
            frame_size=self._frame_size,
        )
        return self.report


def write_tail(
    sink: OutputSink, members: tuple[IndexMember, ...], tar_length: int, signatures: bytes | None
) -> tuple[int, BundleIndex]:
    """After the data frames (``sink.offset`` bytes): the signatures frame if any, then the index and the
    trailer. Returns the bundle's total length and its index. Used by the writer and by
    :func:`bundler.trust.sign_bundle`, which copies the data frames of a bundle as they are."""
    data_length = sink.offset
    sig_frame = signatures_frame(signatures) if signatures is not None else b""
    n_frames = sum(len(m.frames) for m in members)
    split = sink.split_size
    count = 1
    while True:  # the index lists the volumes, and its own length decides how many there are
        total = data_length + len(sig_frame) + index_frame_length(len(members), n_frames, count) + TRAILER_LENGTH
        need = -(-total // split) if split else 1
        if need <= count:
            break
        count = need
    volumes = []
    for i in range(count):
        vstart = i * split if split else 0
        vsize = min(split, total - vstart) if split else total
        head = bytes(sink.heads[i])[: max(0, data_length - vstart)] if i < len(sink.heads) else b""
        volumes.append(VolumeRef(vsize, fingerprint(head)))
    index = BundleIndex(members, tuple(volumes), split or 0, data_length, tar_length, len(sig_frame))
    frame = index.encode()
    if sig_frame:
        sink.write(sig_frame)
    sink.write(frame)
    sink.write(Trailer(count, index.index_offset, len(frame), index.version).encode())
    if sink.offset != total:
        raise HfBundleError(f"internal error: wrote {sink.offset} bytes, planned {total}")
    return total, index
