"""The bundle container: a POSIX tar inside zstd, manifest first, blobs by sha256, an index at the end.

This module is the public API of the format: :class:`BundleWriter` (from :mod:`bundler.bundle.writer`) writes a
bundle, :func:`open_bundle` reads one (a file, split volumes, or a pipe) as a
:class:`~bundler.bundle.source.BundleSource`, and :func:`inspect_bundle` summarises one without decompressing blobs.
Byte layout and who checks what: ``docs/FORMAT.md``.

Example::

    with open_bundle("model.tar.zst") as bundle:
        for entry, stream in bundle.iter_blobs():
            install(entry, stream)  # the consumer checks size and sha256 (see bundler/source.py)

The reader checks *structure* (tar headers, member names and sizes against the manifest, frames, the index,
the volumes) and raises :class:`BundleFormatError`; the *content* hash of a blob is the consumer's check
(``iter_blobs``), or the reader's when asked (``read_blob(verify=True)``, :class:`IntegrityError`).

Longer than ~500 lines: it is the format's public reading API (random access by the index, a pipe once,
volumes, inspection), each a thin layer over :mod:`bundler.bundle.frames`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
import threading
import weakref
from collections.abc import Container, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, cast

from ..errors import BundleFormatError, IntegrityError, UsageError
from ..records import JsonRecord
from .container import (
    INDEX_FRAME_MAGIC,
    KIND_BLOB,
    KIND_END,
    KIND_MANIFEST,
    MANIFEST_NAME,
    MAX_INDEX_BYTES,
    MAX_SIGNATURES_BYTES,
    SIGNATURES_FRAME_MAGIC,
    TAR_BLOCK,
    TRAILER_LENGTH,
    ZSTD_MAGIC,
    BundleIndex,
    FrameRef,
    IndexMember,
    Trailer,
    member_kind,
    padded,
    parse_signatures_frame,
    parse_tar_header,
)
from .frames import (
    BlobStream,
    Frame,
    FrameBuffers,
    SequentialReader,
    StreamFrames,
    TarCursor,
    damaged,
    decode_frame,
    prefetch,
    truncated,
)
from .manifest import MAX_MANIFEST_BYTES, BlobEntry, BundleKind, Manifest
from .volumes import RECOPY_HINT, FileSet, RandomAccess, SeekableFile, check_volumes, find_volumes
from .writer import BlobWritten, BundleWriter, MemberWritten, WriteReport, auto_threads, choose_level

__all__ = [
    "BlobWritten",
    "BundleInfo",
    "BundleReader",
    "BundleWriter",
    "MemberWritten",
    "RepoSummary",
    "WriteReport",
    "choose_level",
    "inspect_bundle",
    "open_bundle",
]

MAX_READ_THREADS = 3  # with one frame more in flight: ~4 * 2 * 16 MiB of buffers at most
MAX_END_BYTES = 1 << 20


# -- summaries --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoSummary(JsonRecord):
    repo_type: str
    repo_id: str
    commits: tuple[str, ...]
    refs: Mapping[str, str]
    files: int
    size: int


@dataclass(frozen=True)
class ExpectedBlob(JsonRecord, rename={"where": "file"}):
    """A content a delta bundle does not carry: the target cache must hold it (``where``: one file using it)."""

    sha256: str
    size: int
    where: str


@dataclass(frozen=True)
class BundleInfo(JsonRecord):
    """What a bundle holds, read from its manifest and index only. ``compressed_size`` (the bundle's bytes,
    all volumes) is None for a pipe, which has no index until its end."""

    format_version: int
    index_version: int | None
    bundle_id: str
    kind: BundleKind
    creator: str
    base: str | None
    recipe: str | None
    repos: tuple[RepoSummary, ...]
    blob_count: int
    file_count: int
    total_size: int
    compressed_size: int | None
    volumes: tuple[str, ...]
    signature: Mapping[str, Any] | None = None  # bundler.trust.TrustReport.to_json(), added by api.inspect
    expects: tuple[ExpectedBlob, ...] = ()  # a delta bundle's contents the target cache must hold

    def json_extra(self) -> dict[str, Any]:
        return {"delta": bool(self.expects)}


# -- the reader -------------------------------------------------------------------------------------------


class BundleReader:
    """A bundle opened for reading; implements :class:`~bundler.bundle.source.BundleSource`. Use :func:`open_bundle`.

    Seekable sources (files, volumes) are checked against their index when opened and allow
    :meth:`read_blob`; a pipe is read once, front to back, and its index is checked when
    :meth:`iter_blobs` reaches the end.
    """

    def __init__(
        self,
        *,
        access: RandomAccess | None = None,
        stream: BinaryIO | None = None,
        threads: int = 0,
        owns_stream: bool = False,
    ) -> None:
        workers = min(auto_threads(threads), MAX_READ_THREADS)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hfbundle-unzstd") if workers > 1 else None
        self._depth = workers + 1
        self._buffers = FrameBuffers()
        self._cursors: weakref.WeakSet[TarCursor] = weakref.WeakSet()  # closed with the reader
        self._raw = threading.local()  # one reusable read buffer per decoding thread
        self._access = access
        self._stream = stream
        self._owns_stream = owns_stream
        self._index: BundleIndex | None = None
        self._stream_used = False
        self._members: list[IndexMember] = []  # what a pipe held so far, compared with its index at the end
        self._signatures: bytes | None = None
        self.volumes: tuple[Path, ...] = access.paths if access is not None else ()
        try:
            if access is not None:
                raw = self._open_indexed(access)
            else:
                assert stream is not None
                self._frames = StreamFrames(stream)
                jobs = (
                    (
                        ref.raw_length,
                        functools.partial(decode_frame, ref, raw, f"frame at offset {ref.offset}", self._buffers),
                    )
                    for ref, raw in self._frames
                )
                self._cursor = TarCursor(prefetch(jobs, self._pool, self._depth), self._buffers)
                raw = self._read_manifest(self._cursor)
                member = IndexMember(
                    KIND_MANIFEST, hashlib.sha256(raw).hexdigest(), len(raw), 0, tuple(self._cursor.loaded)
                )
                self._members.append(member)
        except BaseException:
            self.close()
            raise
        self._buffers.clear()  # the manifest's (large) frame buffers: blobs may never need one again
        self._manifest_bytes = raw
        self._bundle_id = hashlib.sha256(raw).hexdigest()
        self._blobs = {b.sha256: b for b in self._manifest.blobs}

    # -- BundleSource --------------------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def manifest_bytes(self) -> bytes:
        return self._manifest_bytes

    @property
    def bundle_id(self) -> str:
        """sha256 of the manifest bytes (= ``Manifest.bundle_id``)."""
        return self._bundle_id

    @property
    def index(self) -> BundleIndex | None:
        """The verified index; None for a pipe."""
        return self._index

    @property
    def signatures(self) -> bytes | None:
        """The signatures payload (JSON, unverified: see :mod:`bundler.trust`), None when unsigned. A pipe
        carries it after the blobs, so it is known only once :meth:`iter_blobs` has reached the end."""
        return self._signatures

    @property
    def random_access(self) -> bool:
        """True for a file or volumes (see :meth:`read_blob`), False for a pipe."""
        return self._index is not None

    @property
    def compressed_sizes(self) -> Mapping[str, int] | None:
        """Compressed bytes per blob sha256 (from the index); None for a pipe."""
        if self._index is None:
            return None
        return {m.sha256: m.compressed_size for m in self._index.blobs}

    def iter_blobs(self, wanted: Container[str] | None = None) -> Iterator[tuple[BlobEntry, BinaryIO]]:
        """``(entry, stream)`` for each stored blob in storage order, skipping those not in ``wanted``.

        Each stream gives exactly ``entry.size`` bytes and is valid until the next item. Raises
        :class:`BundleFormatError` for structural damage; the consumer checks the content's sha256.
        """
        if self._index is not None:
            return self._iter_indexed(self._index, wanted)
        if self._stream_used:
            raise UsageError("a bundle read from a pipe can be iterated only once")
        self._stream_used = True
        return self._iter_stream(wanted)

    def read_blob(self, sha256: str, *, verify: bool = True) -> BinaryIO:
        """A stream of one blob, fetched through the index (seekable bundles only). With ``verify`` the
        stream raises :class:`IntegrityError` at its end if the content's sha256 differs."""
        if self._index is None:
            raise UsageError("read_blob() needs a bundle file, not a pipe", hint="use iter_blobs() for pipes")
        member = next((m for m in self._index.blobs if m.sha256 == sha256), None)
        if member is None:
            raise UsageError(f"blob {sha256} is not in this bundle")
        # Two frames ahead: read_blob streams run side by side (an install's lanes), sharing the decoders.
        cursor = self._cursor_over([member], depth=2)
        where = self._begin_indexed(cursor, member)
        digest = hashlib.sha256() if verify else None

        def at_eof() -> None:
            self._end_indexed(cursor, member, where)
            if digest is not None and digest.hexdigest() != sha256:
                raise IntegrityError(
                    f"blob {sha256[:12]}… has sha256 {digest.hexdigest()}",
                    path=member.name,
                    expected=sha256,
                    actual=digest.hexdigest(),
                    hint=RECOPY_HINT,
                )

        return cast(BinaryIO, BlobStream(cursor, member.size, where, at_eof, digest))

    def iter_data(self, chunk: int = 16 << 20) -> Iterator[bytes]:
        """The data frames exactly as stored (compressed), up to the signatures or the index: what
        :func:`bundler.trust.sign_bundle` copies to give a bundle a new tail without recompressing it."""
        if self._index is None or self._access is None:
            raise UsageError("iter_data() needs a bundle file, not a pipe")
        pos, end = 0, self._index.data_length
        while pos < end:
            data = self._access.pread(pos, min(chunk, end - pos))
            if not data:
                raise truncated(f"it ends at offset {pos}")
            yield data
            pos += len(data)

    def info(self) -> BundleInfo:
        m = self._manifest
        repos = []
        for r in m.repos:
            files = [f for s in r.snapshots for f in s.files]
            commits = tuple(s.commit for s in r.snapshots)
            repos.append(
                RepoSummary(r.repo_type, r.repo_id, commits, dict(r.refs), len(files), sum(f.size for f in files))
            )
        return BundleInfo(
            format_version=m.format_version,
            index_version=self._index.version if self._index is not None else None,
            bundle_id=self.bundle_id,
            kind=m.kind,
            creator=m.creator,
            base=m.base,
            recipe=m.lock.recipe if m.lock is not None else None,
            repos=tuple(repos),
            blob_count=len(m.blobs),
            file_count=sum(1 for _ in m.iter_files()),
            total_size=m.total_size,
            compressed_size=self._index.total_length if self._index is not None else None,
            volumes=tuple(str(p) for p in self.volumes),
            expects=_expected_blobs(m),
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._access is not None:
            self._access.close()
        if self._owns_stream and self._stream is not None:
            self._stream.close()
        # Drop the decode buffers (16 MiB each) now: a refused bundle's reader lives on in the error's traceback,
        # in reference cycles only a full garbage collection frees; a process refusing bundles grew by ~100 MB each.
        cursor = self.__dict__.pop("_cursor", None)
        for each in [cursor, *self._cursors]:
            if each is not None:
                each.close()
        self.__dict__.pop("_frames", None)
        self._buffers.clear()
        self._raw = threading.local()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- shared --------------------------------------------------------------------------------------------

    def _read_manifest(self, cursor: TarCursor) -> bytes:
        if not cursor.begin_member("the first member"):
            raise BundleFormatError("not an hfbundle bundle (it is empty)")
        name, size = parse_tar_header(cursor.read_exact(TAR_BLOCK, "the first tar header"), "the first member")
        if name != MANIFEST_NAME:
            raise BundleFormatError(f"not an hfbundle bundle: its first member is {name[:100]!r}, not {MANIFEST_NAME}")
        if size > MAX_MANIFEST_BYTES:
            raise BundleFormatError(f"manifest is {size} bytes, over the {MAX_MANIFEST_BYTES} limit")
        raw = cursor.read_exact(size, MANIFEST_NAME)
        self._end_of_member(cursor, size, MANIFEST_NAME)
        self._manifest = Manifest.loads(raw)
        if not self._manifest.is_canonical(raw):
            raise BundleFormatError(
                "manifest.json is not in canonical form", hint="the bundle was not written by hfbundle"
            )
        return raw

    @staticmethod
    def _end_of_member(cursor: TarCursor, size: int, where: str) -> None:
        cursor.expect_zeros(padded(size) - size, f"the padding of {where}")
        cursor.end_member(where)

    # -- indexed (seekable) sources ------------------------------------------------------------------------

    def _open_indexed(self, access: RandomAccess) -> bytes:
        size = access.size
        trailer = (
            Trailer.decode(access.pread(size - TRAILER_LENGTH, TRAILER_LENGTH)) if size >= TRAILER_LENGTH else None
        )
        if trailer is None:
            raise self._no_trailer(access)
        total = trailer.index_offset + trailer.index_length + TRAILER_LENGTH
        if total != size:
            if len(access.sizes) > 1 or trailer.volume_count > 1:
                raise BundleFormatError(
                    f"the {len(access.sizes)} bundle volume(s) hold {size} bytes, but the bundle is {total} bytes "
                    f"in {trailer.volume_count} volumes: a volume is missing, repeated or truncated",
                    hint=RECOPY_HINT,
                )
            raise (
                truncated(f"it is {size} bytes but its trailer says {total}")
                if size < total
                else damaged(f"it is {size} bytes but its trailer says {total}")
            )
        if trailer.index_length > MAX_INDEX_BYTES:
            raise damaged("its index is too large")
        index = BundleIndex.decode(access.pread(trailer.index_offset, trailer.index_length))
        if (
            index.index_offset != trailer.index_offset
            or len(index.volumes) != trailer.volume_count
            or index.version != trailer.version
        ):
            raise damaged("its index and trailer disagree")
        check_volumes(access, index)
        if index.signatures_length:
            self._signatures = parse_signatures_frame(access.pread(index.data_length, index.signatures_length))
        raw = self._read_manifest(self._cursor_over([index.manifest]))
        if hashlib.sha256(raw).hexdigest() != index.manifest.sha256:
            raise damaged("the index does not match manifest.json")
        declared = {b.sha256: b.size for b in self._manifest.blobs}
        held = {m.sha256: m.size for m in index.blobs}
        for sha, blob_size in declared.items():
            if held.get(sha) != blob_size:
                what = "does not hold" if sha not in held else f"holds {held[sha]} bytes of"
                raise damaged(f"the manifest declares blob {sha} ({blob_size} bytes) but the bundle {what} it")
        for sha in held.keys() - declared.keys():
            raise damaged(f"the bundle holds blob {sha}, which the manifest does not declare")
        self._index = index
        return raw

    def _no_trailer(self, access: RandomAccess) -> BundleFormatError:
        """Explain a missing trailer: not a bundle at all, or a bundle that lost its end."""
        if access.pread(0, 4) != ZSTD_MAGIC:
            return BundleFormatError(
                "not an hfbundle bundle (no hfbundle trailer at its end)",
                hint="pass a file written by `hfbundle build` or `hfbundle backup`",
            )
        probe = TarCursor(
            decode_frame(ref, raw, "the first frame")
            for ref, raw in StreamFrames(cast(BinaryIO, SequentialReader(access)))
        )
        try:  # a readable manifest first means the end is missing, else it is some other .tar.zst
            self._read_manifest(probe)
        except BundleFormatError as e:
            if e.message.startswith("bundle is truncated"):
                return e
            return BundleFormatError(
                f"not an hfbundle bundle: it has no hfbundle trailer and {e.message}",
                hint="pass a file written by `hfbundle build` or `hfbundle backup`",
            )
        if len(access.paths) > 1:
            return BundleFormatError(
                f"the last volume {access.paths[-1].name} does not end with the bundle trailer: "
                "a volume is missing, out of order or truncated",
                hint=RECOPY_HINT,
            )
        return truncated("its index and trailer are missing")

    def _fetch(self, ref: FrameRef, where: str) -> Frame:
        assert self._access is not None
        buf: bytearray | None = getattr(self._raw, "buf", None)
        if buf is None or len(buf) < ref.length:
            # Grown to the largest frame met, not 17 MiB up front: bytearray(n) touches every page, and a bundle
            # of small files never needs more than a few KB (issue 18).
            buf = self._raw.buf = bytearray(max(ref.length, 64 << 10))
        raw = memoryview(buf)[: ref.length]
        got = self._access.pread_into(ref.offset, raw)
        return decode_frame(ref, raw[:got], where, self._buffers)

    def _cursor_over(self, members: Sequence[IndexMember], depth: int | None = None) -> TarCursor:
        jobs = (
            (ref.raw_length, functools.partial(self._fetch, ref, f"{m.name or 'the end of the archive'} (frame {i})"))
            for m in members
            for i, ref in enumerate(m.frames)
        )
        cursor = TarCursor(prefetch(jobs, self._pool, depth or self._depth), self._buffers)
        self._cursors.add(cursor)
        return cursor

    def _begin_indexed(self, cursor: TarCursor, member: IndexMember) -> str:
        where = f"{member.name} (tar offset {member.tar_offset})"
        if not cursor.begin_member(where):
            raise truncated(f"it ends before {where}")
        name, size = parse_tar_header(cursor.read_exact(TAR_BLOCK, where), where)
        if name != member.name or size != member.size:
            raise damaged(f"the index says {where} is {member.size} bytes, the tar header says {name!r}, {size} bytes")
        return where

    def _end_indexed(self, cursor: TarCursor, member: IndexMember, where: str) -> None:
        self._end_of_member(cursor, member.size, where)
        if tuple(cursor.loaded) != member.frames:
            raise damaged(f"the frames of {where} do not match the index")

    def _iter_indexed(self, index: BundleIndex, wanted: Container[str] | None) -> Iterator[tuple[BlobEntry, BinaryIO]]:
        members = [m for m in index.blobs if wanted is None or m.sha256 in wanted]
        cursor = self._cursor_over([*members, index.end])
        for member in members:
            where = self._begin_indexed(cursor, member)
            stream = BlobStream(cursor, member.size, where)
            try:
                yield self._blobs[member.sha256], cast(BinaryIO, stream)
                stream.drain()
            finally:
                stream.kill()
            self._end_indexed(cursor, member, where)
        end = index.end
        if not cursor.begin_member("the end of the archive"):
            raise truncated("it ends before the end-of-archive blocks")
        cursor.expect_zeros(end.size, "the end-of-archive blocks")
        cursor.end_member("the end of the archive")
        if tuple(cursor.loaded) != end.frames:
            raise damaged("the end-of-archive frames do not match the index")

    # -- pipes ---------------------------------------------------------------------------------------------

    def _iter_stream(self, wanted: Container[str] | None) -> Iterator[tuple[BlobEntry, BinaryIO]]:
        cursor, seen = self._cursor, set()
        while True:
            start = cursor.tar_offset
            where = f"the member at tar offset {start}"
            if not cursor.begin_member(where):
                raise truncated("it ends before the end-of-archive blocks")
            block = cursor.read_exact(TAR_BLOCK, where)
            if not any(block):
                self._stream_end(cursor, start)
                break
            name, size = parse_tar_header(block, where)
            kind, sha = member_kind(name)
            if kind == KIND_MANIFEST:
                raise damaged(f"{where} is a second {MANIFEST_NAME}")
            entry = self._blobs.get(sha)
            if entry is None:
                raise BundleFormatError(f"{where} is blob {sha}, which the manifest does not declare")
            if sha in seen:
                raise BundleFormatError(f"{where} is blob {sha} a second time")
            if size != entry.size:
                raise BundleFormatError(
                    f"{where}: blob {sha} has {size} bytes in its tar header, {entry.size} in the manifest"
                )
            seen.add(sha)
            stream = BlobStream(cursor, size, where)
            try:
                if wanted is None or sha in wanted:
                    yield entry, cast(BinaryIO, stream)
                stream.drain()
            finally:
                stream.kill()
            self._end_of_member(cursor, size, where)
            self._members.append(IndexMember(KIND_BLOB, sha, size, start, tuple(cursor.loaded)))
        missing = self._blobs.keys() - seen
        if missing:
            raise truncated(f"{len(missing)} blob(s) the manifest declares are missing, e.g. {min(missing)}")
        self._check_stream_tail()

    def _stream_end(self, cursor: TarCursor, start: int) -> None:
        total = TAR_BLOCK
        for chunk in cursor.rest():
            if bytes(chunk).count(0) != len(chunk):
                raise damaged("non-zero bytes after the end-of-archive marker")
            total += len(chunk)
            if total > MAX_END_BYTES:
                raise damaged("the end-of-archive zeros go on and on")
        if total < 2 * TAR_BLOCK or total % TAR_BLOCK:
            raise damaged("the end-of-archive blocks are incomplete")
        self._members.append(IndexMember(KIND_END, "0" * 64, total, start, tuple(cursor.loaded)))

    def _check_stream_tail(self) -> None:
        """The index and trailer after the data frames of a pipe must describe exactly what was read."""
        frames = self._frames
        if not frames.tail_magic:
            raise truncated("its index is missing")
        sig_length = 0
        if int.from_bytes(frames.tail_magic, "little") == SIGNATURES_FRAME_MAGIC:
            length_raw = frames.read(4, "the signatures")
            length = int.from_bytes(length_raw, "little")
            if length > MAX_SIGNATURES_BYTES + 12:
                raise damaged("its signatures frame is too large")
            sig_frame = frames.tail_magic + length_raw + frames.read(length, "the signatures")
            self._signatures = parse_signatures_frame(sig_frame)
            sig_length = len(sig_frame)
            frames.tail_magic = frames.read(4, "the index")
        if int.from_bytes(frames.tail_magic, "little") != INDEX_FRAME_MAGIC:
            raise damaged(f"unexpected skippable frame at offset {frames.data_end}")
        length_raw = frames.read(4, "the index")
        length = int.from_bytes(length_raw, "little")
        if length > MAX_INDEX_BYTES:
            raise damaged("its index is too large")
        frame = frames.tail_magic + length_raw + frames.read(length, "the index")
        index = BundleIndex.decode(frame)
        trailer = Trailer.decode(frames.read(TRAILER_LENGTH, "the trailer"))
        if trailer is None:
            raise damaged("its trailer is missing or invalid")
        if frames.read(1, "", exact=False):
            raise damaged("unexpected data after the trailer")
        if (
            index.members != tuple(self._members)
            or index.data_length != frames.data_end
            or index.signatures_length != sig_length
            or (trailer.index_offset, trailer.index_length) != (frames.data_end + sig_length, len(frame))
            or trailer.volume_count != len(index.volumes)
        ):
            raise damaged("its index does not describe its contents")


def open_bundle(src: Path | str | BinaryIO | Sequence[Path | str], *, threads: int = 0) -> BundleReader:
    """Open a bundle: a path (a split bundle by its first volume or shared name), the volumes in order,
    ``"-"`` (stdin), or a binary file object (seekable: random access; else streamed once).

    Example::

        with open_bundle("model.tar.zst") as b:
            print(b.bundle_id, len(b.manifest.blobs))
    """
    if isinstance(src, (str, os.PathLike)):
        if src == "-":
            return BundleReader(stream=sys.stdin.buffer, threads=threads)
        path = Path(src)
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a FIFO or /dev/stdin: stream it
            return BundleReader(stream=open(path, "rb"), threads=threads, owns_stream=True)
        if stat.S_ISDIR(mode):
            raise UsageError(f"{path} is a folder, not a bundle")
        return BundleReader(access=FileSet(find_volumes(path)), threads=threads)
    if isinstance(src, Sequence):
        return BundleReader(access=FileSet([Path(p) for p in src]), threads=threads)
    try:
        seekable = src.seekable()
    except (AttributeError, OSError, ValueError):
        seekable = False
    if seekable:
        return BundleReader(access=SeekableFile(src), threads=threads)
    return BundleReader(stream=src, threads=threads)


def _expected_blobs(m: Manifest) -> tuple[ExpectedBlob, ...]:
    where: dict[str, str] = {}
    for repo, snap, f in m.iter_files():
        assert f.sha256 is not None
        where.setdefault(f.sha256, f"{repo.repo_id}@{snap.commit[:8]}: {f.path}")
    return tuple(ExpectedBlob(b.sha256, b.size, where.get(b.sha256, "")) for b in m.expects)


def inspect_bundle(src: Path | str | BinaryIO | Sequence[Path | str]) -> BundleInfo:
    """Summarise a bundle from its manifest and index, without decompressing any blob."""
    with open_bundle(src, threads=1) as bundle:
        return bundle.info()
