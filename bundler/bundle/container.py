"""Byte-level pieces of the bundle container: tar headers, zstd frame headers, the index and the trailer.

The layout, with every field width, is in ``docs/FORMAT.md``. Nothing here does I/O: :mod:`bundler.bundle.reader`
reads and writes, this module encodes and strictly parses. Every parser treats its input as hostile and
raises :class:`~bundler.errors.BundleFormatError` (never ``struct.error``, ``ValueError`` or ``IndexError``).

Longer than ~500 lines: every byte-level field of the format (tar, zstd frames, index, trailer) with its
checks, in the order of ``docs/FORMAT.md``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from ..errors import BundleFormatError
from ..hashing import is_sha256
from .manifest import MAX_MANIFEST_BYTES

# -- tar --------------------------------------------------------------------------------------------------

TAR_BLOCK = 512
TAR_RECORD = 10240  # GNU tar's default record (blocking factor 20): the end padding rounds up to it
MANIFEST_NAME = "manifest.json"
BLOB_PREFIX = "blobs/sha256/"
_OCTAL_SIZE_MAX = 8**11  # an 11-digit octal size field holds up to 8 GiB - 1
_MEMBER_TYPES = {
    b"1": "a hard link",
    b"2": "a symlink",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a directory",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"x": "a pax extended header",
    b"g": "a pax global header",
    b"L": "a GNU long name",
    b"K": "a GNU long link name",
}


def blob_member_name(sha256: str) -> str:
    return BLOB_PREFIX + sha256


def padded(size: int) -> int:
    """``size`` rounded up to whole tar blocks."""
    return -(-size // TAR_BLOCK) * TAR_BLOCK


def member_tar_length(size: int) -> int:
    """Bytes a regular member of ``size`` bytes takes in the tar stream: header, data, zero padding."""
    return TAR_BLOCK + padded(size)


def end_length(tar_offset: int) -> int:
    """Zero bytes closing a tar stream that has ``tar_offset`` bytes so far: the two end blocks, then up to
    the next whole record, as GNU tar and Python's tarfile write it."""
    return 2 * TAR_BLOCK + (-(tar_offset + 2 * TAR_BLOCK)) % TAR_RECORD


def tar_header(name: str, size: int) -> bytes:
    """The one header hfbundle writes for a member: ustar, regular file, mode 0644, owner 0:0, mtime 0, no
    user or group names. Byte-identical to Python's ``tarfile`` ustar output for the same fields; sizes of
    8 GiB and more use the base-256 size field that GNU tar, bsdtar and Python read.

    Built from a precomputed template: only the name, the size and the checksum vary, and the checksum is the
    template's byte sum plus theirs (one header per blob: field-by-field building was a cost per small file,
    issue 18)."""
    raw = name.encode("ascii")
    if not raw or len(raw) > 100:
        raise ValueError(f"tar member name {name!r} must be 1..100 ASCII bytes")
    if size < 0:
        raise ValueError("negative size")
    size_field = b"%011o\0" % size if size < _OCTAL_SIZE_MAX else b"\x80" + size.to_bytes(11, "big")
    checksum = _HEADER_SUM + sum(raw) + sum(size_field)
    head = (raw, _ZEROS_100[len(raw) :], _HEADER_MODE_IDS, size_field, _HEADER_MTIME)
    return b"".join((*head, b"%06o\0 " % checksum, _HEADER_TAIL))


_ZEROS_100 = bytes(100)
_HEADER_MODE_IDS = b"0000644\0" + b"0000000\0" + b"0000000\0"  # mode, uid, gid
_HEADER_MTIME = b"00000000000\0"
_HEADER_TAIL = (
    b"0"  # typeflag: regular file
    + b"\0" * 100  # linkname
    + b"ustar\x0000"  # magic + version
    + b"\0" * 32  # uname
    + b"\0" * 32  # gname
    + b"\0" * 16  # devmajor, devminor
    + b"\0" * 155  # prefix
    + b"\0" * 12
)
# Byte sum of everything but the name, the size field and the checksum (counted as 8 spaces, as tar does).
_HEADER_SUM = sum(_HEADER_MODE_IDS) + sum(_HEADER_MTIME) + 8 * 32 + sum(_HEADER_TAIL)


def _parse_number(field: bytes, what: str) -> int:
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    digits = field.rstrip(b"\0 ").lstrip(b" ")
    if not digits or any(c not in b"01234567" for c in digits):
        raise BundleFormatError(f"{what}: invalid octal field {field!r}")
    return int(digits, 8)


def parse_tar_header(block: bytes, where: str) -> tuple[str, int]:
    """``(name, size)`` of a member header, refusing everything but hfbundle's canonical regular-file header.

    ``where`` names the position for messages ("first member", "member at tar offset 1536").
    """
    canonical = _canonical_header(block)
    if canonical is not None:
        return canonical
    if len(block) != TAR_BLOCK:
        raise BundleFormatError(f"{where}: short tar header ({len(block)} bytes)")
    stored = _parse_number(block[148:156], f"{where}: tar header checksum")
    if stored != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        raise BundleFormatError(
            f"{where}: tar header checksum mismatch (the bundle is damaged)", hint="re-copy the bundle"
        )
    if block[257:265] != b"ustar\x0000":
        raise BundleFormatError(f"{where}: not a POSIX ustar header (GNU or v7 tar format are not accepted)")
    kind = block[156:157]
    if kind != b"0":
        what = _MEMBER_TYPES.get(kind, f"a member of unknown type {kind!r}")
        raise BundleFormatError(f"{where}: {what}; a bundle holds regular files only")
    raw_name = block[:100].rstrip(b"\0")
    if b"\0" in raw_name or any(block[345:500]):
        raise BundleFormatError(f"{where}: malformed member name")
    try:
        name = raw_name.decode("ascii")
    except UnicodeDecodeError as err:
        raise BundleFormatError(f"{where}: member name {raw_name[:100]!r} is not ASCII") from err
    size = _parse_number(block[124:136], f"{where}: size")
    if not name or block != tar_header(name, size):
        raise BundleFormatError(
            f"{where}: tar header of {name!r} has non-canonical fields (mode, owner, time or names)",
            hint="bundles are written by hfbundle only; rebuild it",
        )
    return name, size


def _canonical_header(block: bytes) -> tuple[str, int] | None:
    """``(name, size)`` when ``block`` is byte for byte the header :func:`tar_header` writes for them (so every
    check of :func:`parse_tar_header` holds: checksum, magic, type, name, zero fields); else None, and
    :func:`parse_tar_header` finds what is wrong. One comparison instead of the field checks (issue 18: ~20 us
    a member, paid per small file)."""
    raw_name = block[:100].rstrip(b"\0")
    if len(block) != TAR_BLOCK or b"\0" in raw_name:
        return None
    field = block[124:136]
    try:
        size = int.from_bytes(field[1:], "big") if field[:1] == b"\x80" else int(field[:11], 8)
        name = raw_name.decode("ascii")
        return (name, size) if block == tar_header(name, size) else None
    except ValueError:  # UnicodeDecodeError included
        return None


# -- zstd frames ------------------------------------------------------------------------------------------

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SKIPPABLE_MAGIC_MASK = 0xFFFFFFF0
SKIPPABLE_MAGIC_BASE = 0x184D2A50
SIGNATURES_FRAME_MAGIC = 0x184D2A5D
INDEX_FRAME_MAGIC = 0x184D2A5E
TRAILER_FRAME_MAGIC = 0x184D2A5F
MAX_WINDOW = 1 << 27  # 128 MiB: what a reader agrees to allocate for one frame's window
MAX_FRAME_RAW = (64 << 20) + TAR_BLOCK  # largest frame_size plus a last block of padding
MAX_FRAME_COMPRESSED = MAX_FRAME_RAW + (MAX_FRAME_RAW >> 7) + 4096  # above zstd's compressBound
ZSTD_BLOCK_MAX = 128 * 1024
MAX_ZSTD_HEADER = 18


@dataclass(frozen=True)
class ZstdFrameHeader:
    header_size: int
    content_size: int
    window_size: int


def zstd_header_size(descriptor: int) -> int:
    """Length of a zstd frame header (magic included) from its Frame_Header_Descriptor byte."""
    fcs_flag, single, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    fcs_len = (single, 2, 4, 8)[fcs_flag]
    return 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + fcs_len


def parse_zstd_header(buf: bytes | bytearray | memoryview, where: str) -> ZstdFrameHeader:
    """Check a data frame's header (RFC 8878 §3.1.1) against what hfbundle writes: content size present
    and at most :data:`MAX_FRAME_RAW`, content checksum on, no dictionary, window at most :data:`MAX_WINDOW`."""
    if len(buf) < 5 or bytes(buf[:4]) != ZSTD_MAGIC:
        raise BundleFormatError(f"{where}: not a zstd frame")
    fhd = buf[4]
    size = zstd_header_size(fhd)
    if len(buf) < size:
        raise BundleFormatError(f"{where}: truncated zstd frame header")
    fcs_flag, single = fhd >> 6, (fhd >> 5) & 1
    if fhd & 0x08:
        raise BundleFormatError(f"{where}: zstd frame header has its reserved bit set")
    if fhd & 0x03:
        raise BundleFormatError(f"{where}: zstd frame uses a dictionary, which bundles never do")
    if not fhd & 0x04:
        raise BundleFormatError(f"{where}: zstd frame has no content checksum")
    pos = 5
    window = 0
    if not single:
        wd = buf[pos]
        log = 10 + (wd >> 3)
        window = (1 << log) + ((1 << log) >> 3) * (wd & 7)
        pos += 1
    fcs_len = (single, 2, 4, 8)[fcs_flag]
    if fcs_len == 0:
        raise BundleFormatError(f"{where}: zstd frame does not declare its content size")
    content = int.from_bytes(bytes(buf[pos : pos + fcs_len]), "little") + (256 if fcs_len == 2 else 0)
    if single:
        window = content
    if window > MAX_WINDOW:
        raise BundleFormatError(
            f"{where}: zstd frame needs a {window >> 20} MiB window, over the {MAX_WINDOW >> 20} MiB limit",
            hint="this is not a bundle hfbundle wrote (or it was crafted); do not use it",
        )
    if not 0 < content <= MAX_FRAME_RAW:
        raise BundleFormatError(f"{where}: zstd frame declares {content} bytes of content (limit {MAX_FRAME_RAW})")
    return ZstdFrameHeader(size, content, window)


def skippable_frame(magic: int, payload: bytes) -> bytes:
    return struct.pack("<II", magic, len(payload)) + payload


def is_skippable_magic(magic4: bytes) -> bool:
    return len(magic4) == 4 and (int.from_bytes(magic4, "little") & SKIPPABLE_MAGIC_MASK) == SKIPPABLE_MAGIC_BASE


# -- index and trailer ------------------------------------------------------------------------------------

INDEX_TAG = b"HFBINDEX"
TRAILER_TAG = b"HFBTRAIL"
SIGNATURES_TAG = b"HFBSIGNS"
INDEX_VERSION = 1  # what an unsigned bundle is written with (byte-identical to bundles made before signing)
SIGNED_INDEX_VERSION = 2  # the same, plus a signatures frame between the data and the index
INDEX_VERSIONS = (INDEX_VERSION, SIGNED_INDEX_VERSION)
SIGNATURES_VERSION = 1
MAX_SIGNATURES_BYTES = 16 << 20
MAX_INDEX_BYTES = 64 << 20
FINGERPRINT_BYTES = 4096
KIND_MANIFEST, KIND_BLOB, KIND_END = 0, 1, 2
_HEAD = struct.Struct("<8sIIIIQQQQ8s")  # 64 bytes; version 2 uses the first reserved 8 for the signatures
_MEMBER = struct.Struct("<B7s32sQQII")  # 64 bytes
_FRAME = struct.Struct("<QQQ")  # 24 bytes
_VOLUME = struct.Struct("<Q16s")  # 24 bytes
_TRAILER = struct.Struct("<II8sIIQQ8s")  # 48 bytes
TRAILER_LENGTH = _TRAILER.size
_ZERO_SHA = "0" * 64


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class FrameRef:
    """One zstd frame: where it is in the file and how many tar bytes it holds."""

    offset: int
    length: int
    raw_length: int


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class IndexMember:
    """One tar member (the manifest, a blob, or the end-of-archive zeros) and the frames that hold it."""

    kind: int
    sha256: str
    size: int
    tar_offset: int
    frames: tuple[FrameRef, ...]

    @property
    def name(self) -> str:
        if self.kind == KIND_MANIFEST:
            return MANIFEST_NAME
        return blob_member_name(self.sha256) if self.kind == KIND_BLOB else ""

    @property
    def compressed_size(self) -> int:
        return sum(f.length for f in self.frames)

    @property
    def tar_length(self) -> int:
        return sum(f.raw_length for f in self.frames)


@dataclass(frozen=True)
class VolumeRef:
    """One volume of a split bundle (a single file is one volume): its size and a fingerprint of its first
    bytes, so volumes given in the wrong order or from another bundle are recognised."""

    size: int
    fingerprint: str


def fingerprint(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()[:32]


def index_frame_length(members: int, frames: int, volumes: int) -> int:
    return 8 + _HEAD.size + members * _MEMBER.size + frames * _FRAME.size + volumes * _VOLUME.size + 32


def signatures_frame(payload: bytes) -> bytes:
    """The signatures (canonical JSON, see :mod:`bundler.trust`) as a skippable frame."""
    if len(payload) > MAX_SIGNATURES_BYTES:
        raise BundleFormatError(f"the signatures are {len(payload)} bytes, over the {MAX_SIGNATURES_BYTES} limit")
    return skippable_frame(SIGNATURES_FRAME_MAGIC, SIGNATURES_TAG + struct.pack("<I", SIGNATURES_VERSION) + payload)


def parse_signatures_frame(frame: bytes) -> bytes:
    """The JSON payload of a signatures frame. Its content is not trusted here: every signature in it is
    checked against a key by :mod:`bundler.trust`; this only checks the frame's shape."""
    bad = "the bundle's signatures frame is damaged"
    if len(frame) < 20 or len(frame) > MAX_SIGNATURES_BYTES + 20:
        raise BundleFormatError(f"{bad}: bad length", hint="sign the bundle again (`hfbundle sign`)")
    magic, length = struct.unpack_from("<II", frame)
    if magic != SIGNATURES_FRAME_MAGIC or length != len(frame) - 8 or frame[8:16] != SIGNATURES_TAG:
        raise BundleFormatError(f"{bad}: bad frame header", hint="sign the bundle again (`hfbundle sign`)")
    (version,) = struct.unpack_from("<I", frame, 16)
    if version != SIGNATURES_VERSION:
        raise BundleFormatError(
            f"bundle signatures version {version} is not supported (this hfbundle reads {SIGNATURES_VERSION})",
            hint="install a newer hfbundle on this machine",
        )
    return bytes(frame[20:])


@dataclass(frozen=True)
class BundleIndex:
    """Where every member is. Advisory: readers check it for consistency and check every member they read
    against it, so a wrong index fails loudly instead of misleading."""

    members: tuple[IndexMember, ...]
    volumes: tuple[VolumeRef, ...]
    split_size: int
    data_length: int
    tar_length: int
    signatures_length: int = 0  # the signatures frame between the data and the index (0: unsigned)

    @property
    def version(self) -> int:
        return SIGNED_INDEX_VERSION if self.signatures_length else INDEX_VERSION

    @property
    def index_offset(self) -> int:
        return self.data_length + self.signatures_length

    @property
    def manifest(self) -> IndexMember:
        return self.members[0]

    @property
    def blobs(self) -> tuple[IndexMember, ...]:
        return self.members[1:-1]

    @property
    def end(self) -> IndexMember:
        return self.members[-1]

    @property
    def frame_length(self) -> int:
        return index_frame_length(len(self.members), sum(len(m.frames) for m in self.members), len(self.volumes))

    @property
    def total_length(self) -> int:
        return self.index_offset + self.frame_length + TRAILER_LENGTH

    def encode(self) -> bytes:
        """The index as a skippable frame."""
        frames = [f for m in self.members for f in m.frames]
        parts = [
            _HEAD.pack(
                INDEX_TAG,
                self.version,
                len(self.members),
                len(frames),
                len(self.volumes),
                self.split_size,
                self.tar_length,
                self.data_length,
                self.signatures_length,
                b"\0" * 8,
            )
        ]
        first = 0
        for m in self.members:
            sha = bytes.fromhex(m.sha256)
            parts.append(_MEMBER.pack(m.kind, b"\0" * 7, sha, m.size, m.tar_offset, first, len(m.frames)))
            first += len(m.frames)
        parts += [_FRAME.pack(f.offset, f.length, f.raw_length) for f in frames]
        parts += [_VOLUME.pack(v.size, bytes.fromhex(v.fingerprint)) for v in self.volumes]
        payload = b"".join(parts)
        return skippable_frame(INDEX_FRAME_MAGIC, payload + hashlib.sha256(payload).digest())

    @classmethod
    def decode(cls, frame: bytes) -> BundleIndex:
        """Parse and check an index frame: checksum, version, and that members, frames and volumes tile the
        file and the tar stream exactly."""
        bad = "the bundle index is damaged"
        hint = "re-copy the bundle (all of its volumes)"
        if len(frame) < 8 + _HEAD.size + 32:
            raise BundleFormatError(f"{bad}: it is too short", hint=hint)
        magic, length = struct.unpack_from("<II", frame)
        payload, digest = frame[8:-32], frame[-32:]
        if magic != INDEX_FRAME_MAGIC or length != len(frame) - 8:
            raise BundleFormatError(f"{bad}: bad frame header", hint=hint)
        if hashlib.sha256(payload).digest() != digest:
            raise BundleFormatError(f"{bad}: checksum mismatch", hint=hint)
        tag, version, n_members, n_frames, n_volumes, split, tar_length, data_length, sig_length, _ = _HEAD.unpack_from(
            payload
        )
        if tag != INDEX_TAG:
            raise BundleFormatError(f"{bad}: bad tag", hint=hint)
        if version == INDEX_VERSION:
            sig_length = 0  # version 1 readers never looked at the reserved bytes: neither do we
        elif version == SIGNED_INDEX_VERSION and not 20 <= sig_length <= MAX_SIGNATURES_BYTES + 20:
            raise BundleFormatError(f"{bad}: impossible signatures length", hint=hint)
        if version not in INDEX_VERSIONS:
            raise BundleFormatError(
                f"bundle index version {version} is not supported (this hfbundle reads {INDEX_VERSIONS})",
                hint="install a newer hfbundle on this machine, or rebuild the bundle with this version",
            )
        if len(frame) != index_frame_length(n_members, n_frames, n_volumes) or n_members < 2 or n_volumes < 1:
            raise BundleFormatError(f"{bad}: its counts do not match its length", hint=hint)
        pos = _HEAD.size + n_members * _MEMBER.size
        frames = [_FRAME.unpack_from(payload, pos + i * _FRAME.size) for i in range(n_frames)]
        offset = 0
        for f_off, f_len, f_raw in frames:
            if f_off != offset or not 0 < f_len <= MAX_FRAME_COMPRESSED or not 0 < f_raw <= MAX_FRAME_RAW:
                raise BundleFormatError(f"{bad}: frames do not tile the file", hint=hint)
            offset += f_len
        if offset != data_length:
            raise BundleFormatError(f"{bad}: frames do not end where the index starts", hint=hint)
        members: list[IndexMember] = []
        next_frame = tar_offset = 0
        seen: set[str] = set()
        for i in range(n_members):
            kind, reserved, sha, size, m_tar, first, count = _MEMBER.unpack_from(payload, _HEAD.size + i * _MEMBER.size)
            want_kind = KIND_MANIFEST if i == 0 else KIND_END if i == n_members - 1 else KIND_BLOB
            if kind != want_kind or any(reserved) or first != next_frame or count < 1 or m_tar != tar_offset:
                raise BundleFormatError(f"{bad}: member {i} is out of place", hint=hint)
            refs = tuple(FrameRef(*frames[j]) for j in range(first, min(first + count, n_frames)))
            member = IndexMember(kind, sha.hex(), size, m_tar, refs)
            expected = size if kind == KIND_END else member_tar_length(size)
            if len(refs) != count or member.tar_length != expected:
                raise BundleFormatError(f"{bad}: member {i} does not match its frames", hint=hint)
            if kind == KIND_END and (size < 2 * TAR_BLOCK or size % TAR_BLOCK or member.sha256 != _ZERO_SHA):
                raise BundleFormatError(f"{bad}: bad end-of-archive entry", hint=hint)
            if kind == KIND_MANIFEST and size > MAX_MANIFEST_BYTES:
                raise BundleFormatError(f"{bad}: the manifest is over {MAX_MANIFEST_BYTES} bytes", hint=hint)
            if kind == KIND_BLOB and member.sha256 in seen:
                raise BundleFormatError(f"{bad}: blob {member.sha256} is listed twice", hint=hint)
            seen.add(member.sha256)
            members.append(member)
            next_frame += count
            tar_offset += expected
        if next_frame != n_frames or tar_offset != tar_length:
            raise BundleFormatError(f"{bad}: members do not cover the tar stream", hint=hint)
        pos += n_frames * _FRAME.size
        volumes = []
        for i in range(n_volumes):
            v_size, v_fp = _VOLUME.unpack_from(payload, pos + i * _VOLUME.size)
            volumes.append(VolumeRef(v_size, v_fp.hex()))
        index = cls(tuple(members), tuple(volumes), split, data_length, tar_length, sig_length)
        sizes = [v.size for v in volumes]
        ok = sum(sizes) == index.total_length and all(s > 0 for s in sizes)
        if n_volumes > 1:
            ok = ok and split > 0 and all(s == split for s in sizes[:-1]) and sizes[-1] <= split
        if not ok:
            raise BundleFormatError(f"{bad}: its volume table does not add up", hint=hint)
        return index


@dataclass(frozen=True)
class Trailer:
    """The fixed 48 bytes at the very end of a bundle: where the index is, and how many volumes there are."""

    volume_count: int
    index_offset: int
    index_length: int
    version: int = INDEX_VERSION

    def encode(self) -> bytes:
        body = _TRAILER.pack(
            TRAILER_FRAME_MAGIC,
            TRAILER_LENGTH - 8,
            TRAILER_TAG,
            self.version,
            self.volume_count,
            self.index_offset,
            self.index_length,
            b"\0" * 8,
        )
        return body[:-8] + hashlib.sha256(body[8:-8]).digest()[:8]

    @classmethod
    def decode(cls, raw: bytes) -> Trailer | None:
        """The trailer, or None when ``raw`` is not one (not an hfbundle file, or truncated)."""
        if len(raw) != TRAILER_LENGTH:
            return None
        magic, length, tag, version, volumes, offset, index_len, check = _TRAILER.unpack(raw)
        if magic != TRAILER_FRAME_MAGIC or length != TRAILER_LENGTH - 8 or tag != TRAILER_TAG:
            return None
        if hashlib.sha256(raw[8:-8]).digest()[:8] != check:
            raise BundleFormatError("the bundle trailer is damaged (checksum mismatch)", hint="re-copy the bundle")
        if version not in INDEX_VERSIONS:
            raise BundleFormatError(
                f"bundle index version {version} is not supported (this hfbundle reads {INDEX_VERSIONS})",
                hint="install a newer hfbundle on this machine, or rebuild the bundle with this version",
            )
        if volumes < 1 or not 0 < index_len <= MAX_INDEX_BYTES:
            raise BundleFormatError("the bundle trailer is damaged (impossible values)", hint="re-copy the bundle")
        return cls(volumes, offset, index_len, version)


def member_kind(name: str) -> tuple[int, str]:
    """``(kind, sha256)`` for a member name, or a BundleFormatError for anything a bundle may not hold."""
    if name == MANIFEST_NAME:
        return KIND_MANIFEST, ""
    if name.startswith(BLOB_PREFIX) and is_sha256(name[len(BLOB_PREFIX) :]):
        return KIND_BLOB, name[len(BLOB_PREFIX) :]
    raise BundleFormatError(f"unexpected member {name[:120]!r}: a bundle holds manifest.json and blobs/sha256/<hex>")
