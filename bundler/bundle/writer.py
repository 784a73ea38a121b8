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
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NoReturn, Protocol, TypeVar

import zstandard

from ..errors import BundleFormatError, HfBundleError, IntegrityError, UsageError
from ..hashing import Digests, digest_path, is_sha1, is_sha256, read_fd, read_small_file
from ..records import JsonRecord
from .container import (
    BLOB_PREFIX,
    KIND_BLOB,
    KIND_END,
    KIND_MANIFEST,
    MANIFEST_NAME,
    TAR_BLOCK,
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
from .manifest import Manifest, check_encoded
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
# Small blobs given to :meth:`BundleWriter.add_files` go to the compression workers in batches of this many
# files (or bytes): each worker reads, hashes and compresses a whole batch, so the calling thread only checks
# the results and writes (one task per 3 KB file cost more than its work, issue 18).
SMALL_BATCH_FILES = 64
SMALL_BATCH_BYTES = 1 << 20
# A manifest larger than this, in one frame, is checked on a thread while it is compressed (issue 18). A larger
# one (many frames: ~50,000 files and more) is checked first: the parse's and the frame buffers' memory would
# add up at the peak of the run.
_PARSE_ASIDE = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO never blocks
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
    return _level_for(len(_compressor(1).compress(sample)) / len(sample), size)


def _level_for(ratio: float, size: int) -> int:
    """:func:`choose_level`'s rule, given the sample's level-1 ratio."""
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


class FileBlob(Protocol):
    """A blob :meth:`BundleWriter.add_files` reads from a file: its declared sha256 and size, where it is, its
    expected git blob id (None: not checked) and what to call it in messages."""

    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def source(self) -> str | os.PathLike[str]: ...
    @property
    def git_sha1(self) -> str | None: ...
    @property
    def label(self) -> str: ...
    @property
    def packed(self) -> PackedBlob | None: ...  # its frame made already (from the bytes hashed), or None


_FB = TypeVar("_FB", bound=FileBlob)


@dataclass(frozen=True, slots=True)
class PackedBlob:
    """A small blob as its one frame (tar header, data, padding, compressed), made from the very bytes that were
    hashed (:func:`pack_blob`): what lets a backup read a small file once, to hash it for the manifest and to
    pack it (issue 18). ``size`` is the bytes read; ``frame`` is empty when a reader saw the wrong size."""

    size: int
    sha256: str
    git_sha1: str | None
    frame: bytes
    raw_length: int
    level: int


def fits_one_frame(size: int) -> bool:
    """A blob of ``size`` bytes is small: its member is one frame, made in one call (:func:`pack_blob`)."""
    return TAR_BLOCK + padded(size) <= INLINE_MEMBER


def frame_bound(size: int) -> int:
    """At most the bytes of a small blob's frame: its tar bytes plus zstd's worst case (ZSTD_compressBound)."""
    raw = TAR_BLOCK + padded(size)
    return raw + raw // 255 + 128


def pack_blob(data: bytes, level: int | None, *, git: bool) -> PackedBlob:
    """Hash ``data`` (sha256, and its git blob id when ``git``) and compress its member (named by that sha256)
    into one frame, at ``level`` or the one :func:`choose_level` picks: the bytes :class:`BundleWriter` writes
    for that blob."""
    return pack_blobs([data], level, git=git)[0]


def pack_blobs(datas: list[bytes], level: int | None, *, git: bool) -> list[PackedBlob]:
    """:func:`pack_blob` of each of ``datas``, the compression of all of them in one call per level (zstd's
    ``multi_compress_to_buffer``, one frame per input, the same bytes as one ``compress`` each): the GIL is
    released for the whole batch, not for a few microseconds per 3 KB file, so workers run in parallel
    (issue 18)."""
    hashes = [hashlib.sha256(d).hexdigest() for d in datas]
    gits: list[str | None] = [None] * len(datas)
    if git:
        for i, d in enumerate(datas):
            h1 = hashlib.sha1(b"blob %d\0" % len(d), usedforsecurity=False)
            h1.update(d)
            gits[i] = h1.hexdigest()
    if level is not None:
        levels = [level] * len(datas)
    else:
        levels = [19] * len(datas)  # choose_level: too small a sample to judge
        samples = [(i, d[-SAMPLE_BYTES:]) for i, d in enumerate(datas) if len(d[-SAMPLE_BYTES:]) >= 1024]
        for (i, sample), packed in zip(samples, _compressed_sizes(1, [x for _, x in samples]), strict=True):
            levels[i] = _level_for(packed / len(sample), len(datas[i]))
    raws = [  # header, data, zeros to the next tar block (a slice of one block: not a new bytes per file)
        b"".join((tar_header(BLOB_PREFIX + h, len(d)), d, _ZERO_BLOCK[: -len(d) % TAR_BLOCK]))
        for h, d in zip(hashes, datas, strict=True)
    ]
    frames: list[bytes] = [b""] * len(datas)
    for lvl in sorted(set(levels)):
        idx = [i for i, x in enumerate(levels) if x == lvl]
        for i, frame in zip(idx, _compress_many(lvl, [raws[i] for i in idx]), strict=True):
            frames[i] = frame
    return [
        PackedBlob(len(d), h, g, f, len(r), lvl)
        for d, h, g, f, r, lvl in zip(datas, hashes, gits, frames, raws, levels, strict=True)
    ]


# Frames of small files made while hashing them (backup, build), waiting to be written: a backup or build keeps
# them when all fit, else makes none (issue 18).
PACKED_BUDGET = 96 << 20
_HASH_BATCH_FILES = 64
_HASH_BATCH_BYTES = 1 << 20
Hashed = tuple[Digests, PackedBlob | None] | OSError


def _hash_batch(jobs: list[tuple[str, int, bool]], level: int | None) -> list[Hashed]:
    """A worker's task: each file hashed (sha256 and git blob id), and packed into its frame when asked."""
    out: list[Hashed | None] = []
    read: list[bytes] = []
    where: list[int] = []
    for path, _size, pack in jobs:
        try:
            if pack:
                read.append(read_small_file(path))
                where.append(len(out))
                out.append(None)
            else:
                out.append((digest_path(path).digests, None))
        except OSError as e:
            out.append(e)
    for i, packed in zip(where, pack_blobs(read, level, git=True), strict=True):
        out[i] = (Digests(packed.size, packed.sha256, packed.git_sha1 or ""), packed)
    return [x for x in out if x is not None]


def hash_files(jobs: Iterable[tuple[str, int, bool]], level: int | None, workers: int) -> Generator[Hashed, None, None]:
    """Each file of ``(path, size hint, pack)`` jobs hashed (sha256 and git blob id) and, when ``pack``, made
    into its one frame at ``level`` (:func:`pack_blobs`: from the very bytes hashed, so the file is read once, and
    :meth:`BundleWriter.add_files` stores the frame as it is). In batches on ``workers`` threads (hashlib and zstd
    release the GIL), in job order, at most ``4 * workers`` batches in flight (bounded memory); an ``OSError``
    for a file that cannot be read."""

    def batches() -> Iterator[list[tuple[str, int, bool]]]:
        batch: list[tuple[str, int, bool]] = []
        weight = 0
        for job in jobs:
            if batch and (len(batch) >= _HASH_BATCH_FILES or weight + job[1] > _HASH_BATCH_BYTES):
                yield batch
                batch, weight = [], 0
            batch.append(job)
            weight += job[1]
        if batch:
            yield batch

    if workers == 1:
        for batch in batches():
            yield from _hash_batch(batch, level)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="hfbundle-hash") as pool:
        pending: deque[Future[list[Hashed]]] = deque()
        for batch in batches():
            pending.append(pool.submit(_hash_batch, batch, level))
            if len(pending) >= 4 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _compress_many(level: int, inputs: list[bytes]) -> list[bytes]:
    """One frame per input, as :func:`_compress` makes it; in one call when zstandard's C backend has it."""
    return [bytes(x) for x in _frames_of(level, inputs)]


def _compressed_sizes(level: int, inputs: list[bytes]) -> list[int]:
    """The length of each input's frame at ``level``: :func:`_compress_many` without a copy of each frame."""
    return [len(x) for x in _frames_of(level, inputs)]


def _frames_of(level: int, inputs: list[bytes]) -> Iterable[bytes | memoryview]:
    """Each input's frame (as bytes, or a segment of zstandard's one buffer): one call for them all when its C
    backend has ``multi_compress_to_buffer`` (the GIL released for the whole batch), else one per input."""
    many = getattr(_compressor(level), "multi_compress_to_buffer", None) if len(inputs) >= 2 else None
    if many is not None:
        try:
            return many(inputs, threads=1)  # type: ignore[no-any-return]
        except NotImplementedError:  # the cffi backend
            pass
    return [_compressor(level).compress(x) for x in inputs]


_ZERO_BLOCK = bytes(TAR_BLOCK)


def _read_small(path: str | os.PathLike[str], size: int) -> bytes:
    """Up to ``size + 1`` bytes of a file (one more tells a grown file), with ``os`` calls only. ``OSError``
    from the open is the caller's; a read error is wrapped in ``_ReadError``."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        return read_fd(fd, size + 1)
    except OSError as e:
        raise _ReadError(e) from e
    finally:
        os.close(fd)


class _ReadError(Exception):
    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


_SmallResult = PackedBlob | OSError | _ReadError


def _pack_small(jobs: list[FileBlob], level: int | None) -> list[_SmallResult]:
    """Read, hash and compress each small blob into its one frame (header, data, padding): a worker's task."""
    out: list[_SmallResult | None] = []
    read: list[bytes] = []
    where: list[int] = []
    for job in jobs:
        size = job.size
        try:
            data = _read_small(job.source, size)
        except (OSError, _ReadError) as e:
            out.append(e)
            continue
        if len(data) != size:
            out.append(PackedBlob(len(data), "", None, b"", 0, 0))
        else:
            where.append(len(out))
            out.append(None)
            read.append(data)
    gits = {job.git_sha1 is not None for job in jobs}
    if len(gits) == 1:
        packed = pack_blobs(read, level, git=gits.pop())
    else:
        packed = [pack_blob(d, level, git=jobs[i].git_sha1 is not None) for i, d in zip(where, read, strict=True)]
    for i, p in zip(where, packed, strict=True):
        out[i] = p
    return [x for x in out if x is not None]


def _too_large(label: str, size: int) -> IntegrityError:
    return IntegrityError(
        f"{label}: is larger than the {size} bytes the lock declares (it changed since it was locked)",
        path=label,
        expected=str(size),
        actual=f"more than {size}",
        hint="re-run `hfbundle resolve`, or restore the original file",
    )


def _mismatch(label: str, what: str, expected: str | None, actual: str | None) -> IntegrityError:
    """A blob's ``what`` (sha256, git blob id) is not the one declared."""
    return IntegrityError(
        f"{label}: {what} is {actual}, expected {expected}",
        path=label,
        expected=expected,
        actual=actual,
        hint="the local copy is corrupt or changed: re-download it, or re-run `hfbundle resolve`",
    )


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
        parsed copy (a second set of per-file records for the whole run, issue 18). The bytes are validated
        either way: every refusal of :meth:`Manifest.loads` stays (:func:`~bundler.bundle.manifest.check_encoded`)."""
        self._check_open()
        if self._manifest is not None:
            raise UsageError("the manifest was already written")
        aside = _PARSE_ASIDE < len(manifest_bytes) <= self._frame_size - TAR_BLOCK
        if manifest is not None and manifest.dumps() is manifest_bytes and aside:
            # The caller's own manifest: checked as its bytes parse (check_encoded), on a thread of its own while this
            # one compresses them (checking holds the GIL, zstd does not: issue 18). On failure nothing is kept.
            checked: list[BaseException | None] = []
            given = manifest

            def check() -> None:
                try:
                    check_encoded(given)
                    checked.append(None)
                except BaseException as e:  # handed to the caller below
                    checked.append(e)

            thread = threading.Thread(target=check, name="hfbundle-manifest-check", daemon=True)
            thread.start()
            try:
                self._store_manifest(manifest_bytes, manifest)
            finally:
                thread.join()
            error = checked[0] if checked else RuntimeError("the manifest check did not finish")
            if error is not None:
                self.abort()
                if isinstance(error, BundleFormatError):
                    raise UsageError(f"invalid manifest: {error.message}", hint=error.hint) from error
                raise error
            return
        if manifest is not None and manifest.dumps() is manifest_bytes:
            try:  # checked as loads() checks these bytes, without their whole parsed tree (issue 18)
                check_encoded(manifest)
            except BundleFormatError as e:
                raise UsageError(f"invalid manifest: {e.message}", hint=e.hint) from e
        else:
            try:
                parsed = Manifest.loads(manifest_bytes)
            except BundleFormatError as e:
                raise UsageError(f"invalid manifest: {e.message}", hint=e.hint) from e
            if parsed.dumps() != manifest_bytes:
                raise UsageError("manifest bytes are not canonical", hint="pass Manifest.dumps()")
            manifest = parsed
        self._store_manifest(manifest_bytes, manifest)

    def _store_manifest(self, manifest_bytes: bytes, manifest: Manifest) -> None:
        self._manifest = manifest
        self._bundle_id = hashlib.sha256(manifest_bytes).hexdigest()
        self._declared = {b.sha256: b.size for b in manifest.blobs}
        level = self._level if self._level is not None else text_level(len(manifest_bytes))
        self._guarded(lambda: self._write_member(KIND_MANIFEST, self._bundle_id, manifest_bytes, level))
        self._guarded(self._hand_over)  # the output file exists from the manifest on, as before gathering
        if len(manifest_bytes) > self._frame_size:
            # A manifest of many files took several frame buffers: freed, not kept for a run that may pack
            # only small blobs (issue 18); a large blob allocates what it needs.
            self._buffers.clear()

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
        self._claim(sha256, size, expected_git_sha1, label)
        return self._guarded(lambda: self._add_blob(sha256, size, stream, expected_git_sha1, label or sha256))

    def add_files(self, jobs: Iterable[_FB]) -> Iterator[_FB]:
        """Store each blob of ``jobs`` (in order) from its file, as :meth:`add_blob` would, yielding each job
        once it is stored and verified. Small blobs are read, hashed and compressed in batches on the worker
        threads (the calling thread checks and writes), large ones as :meth:`add_blob` does: what a cache of
        many small files costs per file (issue 18). Every check of :meth:`add_blob` is made, with its errors
        (the bundle is aborted); an ``OSError`` opening a file is raised as it is, for the caller to name.
        """
        self._check_open()
        if self._manifest is None:
            raise UsageError("write_manifest() must be called before add_files()")
        try:
            yield from self._add_files(jobs)
        except GeneratorExit:
            raise
        except BaseException:
            self.abort()
            raise

    def _check_blob(self, job: FileBlob) -> None:
        self._claim(job.sha256, job.size, job.git_sha1, job.label)

    def _claim(self, sha256: str, size: int, git_sha1: str | None, label: str) -> None:
        """The checks before a blob is stored (:meth:`add_blob`, :meth:`add_files`); it is then counted as added."""
        if not is_sha256(sha256) or (git_sha1 is not None and not is_sha1(git_sha1)):
            raise UsageError(f"invalid hash for blob {label or sha256!r}")
        if self._declared.get(sha256) != size:
            raise UsageError(f"blob {sha256[:12]}… of {size} bytes is not declared in the manifest")
        if sha256 in self._added:
            raise UsageError(f"blob {sha256[:12]}… was already added (each blob is stored once)")
        self._added.add(sha256)

    def _add_files(self, jobs: Iterable[_FB]) -> Iterator[_FB]:
        small_max = min(INLINE_MEMBER, self._frame_size)
        pools = self._pools()
        depth = 2 * min(self._threads, MAX_WORKERS)
        pending: deque[tuple[list[_FB], Future[list[_SmallResult]] | list[_SmallResult]]] = deque()
        batch: list[_FB] = []
        weight = 0
        ready: list[_FB] = []  # jobs whose frames the caller made (job.packed), stored in runs, not one by one
        frames: list[_SmallResult] = []

        def submit() -> None:
            nonlocal batch, weight, ready, frames
            if ready:  # they came before the batch: queued first
                pending.append((ready, frames))
                ready, frames = [], []
            if batch and pools is None:
                pending.append((batch, _pack_small(batch, self._level)))  # type: ignore[arg-type]
                batch, weight = [], 0
            elif batch:
                assert pools is not None
                pending.append((batch, pools[0].submit(_pack_small, batch, self._level)))  # type: ignore[arg-type]
                batch, weight = [], 0

        try:
            for job in jobs:
                self._check_blob(job)
                if TAR_BLOCK + padded(job.size) > small_max:
                    submit()
                    while pending:
                        yield from self._store_small(*pending.popleft())
                    with open(job.source, "rb") as stream:
                        self._add_blob(job.sha256, job.size, stream, job.git_sha1, job.label or job.sha256)
                    yield job
                    continue
                packed = job.packed
                if packed is not None and packed.raw_length <= small_max and self._level in (None, packed.level):
                    if batch:
                        submit()
                    ready.append(job)
                    frames.append(packed)
                    if len(ready) >= SMALL_BATCH_FILES:
                        submit()
                        while pending:
                            yield from self._store_small(*pending.popleft())
                    continue
                batch.append(job)
                weight += job.size
                if len(batch) >= SMALL_BATCH_FILES or weight >= SMALL_BATCH_BYTES:
                    submit()
                    while len(pending) > depth:
                        yield from self._store_small(*pending.popleft())
            submit()
            while pending:
                yield from self._store_small(*pending.popleft())
        finally:
            for _, fut in pending:
                if isinstance(fut, Future):
                    fut.cancel()

    def _store_small(self, jobs: list[_FB], done: Future[list[_SmallResult]] | list[_SmallResult]) -> Iterator[_FB]:
        results = done.result() if isinstance(done, Future) else done
        stored = 0
        for job, r in zip(jobs, results, strict=True):
            sha256, size = job.sha256, job.size
            if (
                not isinstance(r, PackedBlob)
                or r.size != size
                or r.sha256 != sha256
                or (job.git_sha1 is not None and r.git_sha1 != job.git_sha1)
            ):
                self._small_failed(job, r)
            frame = r.frame
            ref = FrameRef(self._offset, len(frame), r.raw_length)
            self._members.append(IndexMember(KIND_BLOB, sha256, size, self._tar_offset, (ref,)))
            self._written.append(MemberWritten(BLOB_PREFIX + sha256, size, len(frame), 1, r.level))
            self._tar_offset += r.raw_length
            self._bytes_in += size
            self._emit(frame)
            stored += size
            yield job
        if stored and self._on_progress is not None:  # once per batch, not per 3 KB file (issue 18)
            self._progress += stored
            self._on_progress(self._progress)

    @staticmethod
    def _small_failed(job: FileBlob, r: _SmallResult) -> NoReturn:
        """Raise what :meth:`add_blob` raises for this failure (in its order: read, size, sha256, git id)."""
        sha256, size, label = job.sha256, job.size, job.label or job.sha256
        if isinstance(r, _ReadError):
            e = r.error
            raise HfBundleError(f"could not read {label}: {e.strerror or e}", hint="check the file and retry") from e
        if isinstance(r, OSError):
            raise r
        if r.size < size:
            raise IntegrityError(
                f"{label}: has {r.size} bytes, expected {size} (it changed since it was locked)",
                path=label,
                expected=str(size),
                actual=str(r.size),
                hint="re-run `hfbundle resolve`, or restore the original file",
            )
        if r.size > size:
            raise _too_large(label, size)
        if r.sha256 != sha256:
            raise _mismatch(label, "sha256", sha256, r.sha256)
        if job.git_sha1 is not None and r.git_sha1 != job.git_sha1:
            raise _mismatch(label, "git blob id", job.git_sha1, r.git_sha1)
        raise HfBundleError(f"internal error: {label} failed no check")

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
            raise _too_large(label, size)
        actual = hasher.sha256.hexdigest()
        if actual != sha256:
            raise _mismatch(label, "sha256", sha256, actual)
        git_actual = hasher.sha1.hexdigest() if hasher.sha1 is not None else None
        if git_actual != git_sha1:
            raise _mismatch(label, "git blob id", git_sha1, git_actual)
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
