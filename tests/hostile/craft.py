"""Byte-level builders for hostile bundles.

Everything here is written from the byte layout (tar ustar headers, RFC 8878 zstd frames, the index and
trailer of ``bundler/container.py``), *not* through :class:`bundler.bundle.reader.BundleWriter`, so a test can
produce what the writer never would: any tar member type, names with any bytes, frames that lie about their
window or size, indexes that describe something else, manifests that fail every rule. The one valid path,
:func:`assemble` over :func:`standard_parts`, yields a bundle the real reader accepts and installs (checked by
``test_craft.py``), so a refusal in a hostile test is caused by the one thing that test changed.

Layout recap (one bundle)::

    zstd frames: manifest.json member | blobs/sha256/<hex> members … | end-of-archive zeros
    skippable frame 0x184D2A5E: the index (members, frames, volumes; sha256 of itself)
    skippable frame 0x184D2A5F: the 48-byte trailer (where the index is; check bytes)
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import zstandard

from bundler.hashing import git_blob_sha1, lfs_blob_id
from tests.helpers import sha256 as sha256

TAR_BLOCK = 512
TAR_RECORD = 10240
KIND_MANIFEST, KIND_BLOB, KIND_END = 0, 1, 2
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
INDEX_MAGIC = 0x184D2A5E
TRAILER_MAGIC = 0x184D2A5F
TRAILER_LENGTH = 48
FINGERPRINT_BYTES = 4096
ZERO_SHA = "0" * 64

# Tar typeflags, by the name a test uses.
TYPEFLAGS = {
    "regular": b"0",
    "hardlink": b"1",
    "symlink": b"2",
    "chardev": b"3",
    "blockdev": b"4",
    "directory": b"5",
    "fifo": b"6",
    "contiguous": b"7",
    "pax": b"x",
    "pax-global": b"g",
    "gnu-longname": b"L",
    "gnu-longlink": b"K",
    "old-regular": b"\0",
    "unknown": b"Z",
}


# -- tar --------------------------------------------------------------------------------------------------


def padded(n: int) -> int:
    return -(-n // TAR_BLOCK) * TAR_BLOCK


def octal(value: int, width: int) -> bytes:
    """A NUL-terminated octal field of ``width`` bytes (as tarfile and the writer format them)."""
    return b"%0*o\0" % (width - 1, value)


def tar_header(
    name: str | bytes,
    size: int,
    *,
    typeflag: bytes = b"0",
    linkname: bytes = b"",
    mode: bytes = b"0000644\0",
    uid: bytes = b"0000000\0",
    gid: bytes = b"0000000\0",
    mtime: bytes = b"00000000000\0",
    magic: bytes = b"ustar\x0000",
    uname: bytes = b"",
    gname: bytes = b"",
    devmajor: bytes = b"",
    devminor: bytes = b"",
    prefix: bytes = b"",
    size_field: bytes | None = None,
    checksum: bytes | None = None,
) -> bytes:
    """One 512-byte tar header with any field. Defaults give exactly the canonical header hfbundle writes
    (ustar, regular, 0644, owner 0:0, mtime 0); the checksum is computed unless ``checksum`` is given."""
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    if size_field is None:
        size_field = octal(size, 12) if size < 8**11 else b"\x80" + size.to_bytes(11, "big")
    buf = b"".join(
        (
            raw[:100].ljust(100, b"\0"),
            mode.ljust(8, b"\0")[:8],
            uid.ljust(8, b"\0")[:8],
            gid.ljust(8, b"\0")[:8],
            size_field.ljust(12, b"\0")[:12],
            mtime.ljust(12, b"\0")[:12],
            b" " * 8,
            typeflag[:1].ljust(1, b"\0"),
            linkname[:100].ljust(100, b"\0"),
            magic.ljust(8, b"\0")[:8],
            uname[:32].ljust(32, b"\0"),
            gname[:32].ljust(32, b"\0"),
            devmajor[:8].ljust(8, b"\0"),
            devminor[:8].ljust(8, b"\0"),
            prefix[:155].ljust(155, b"\0"),
            b"\0" * 12,
        )
    )
    assert len(buf) == TAR_BLOCK
    check = checksum if checksum is not None else b"%06o\0 " % sum(buf)
    return buf[:148] + check.ljust(8, b"\0")[:8] + buf[156:]


def tar_member(header: bytes, data: bytes = b"") -> bytes:
    """A header, its data and the zero padding to the next block."""
    return header + data + bytes(padded(len(data)) - len(data))


def regular(name: str | bytes, data: bytes) -> bytes:
    """A canonical regular-file member (what the writer stores)."""
    return tar_member(tar_header(name, len(data)), data)


def special(
    name: str | bytes, kind: str, *, linkname: bytes = b"", data: bytes = b"", size: int | None = None
) -> bytes:
    """A member of another type (symlink, hardlink, device, FIFO, directory, …) with valid ustar fields."""
    extra: dict[str, Any] = {}
    if kind in ("chardev", "blockdev"):
        extra = {"devmajor": b"0000001\0", "devminor": b"0000003\0"}
    header = tar_header(name, len(data) if size is None else size, typeflag=TYPEFLAGS[kind], linkname=linkname, **extra)
    return tar_member(header, data)


def pax_records(records: Mapping[str, str]) -> bytes:
    """The body of a pax extended header: ``"%d key=value\\n"`` records with self-inclusive lengths."""
    out = b""
    for key, value in records.items():
        body = f" {key}={value}\n".encode()
        n = len(body) + 1
        while len(str(n).encode()) + len(body) != n:
            n = len(str(n).encode()) + len(body)
        out += str(n).encode() + body
    return out


def pax_member(name: str, data: bytes, records: Mapping[str, str], *, global_header: bool = False) -> bytes:
    """A pax extended header (``x``, or ``g``) followed by the regular member it describes."""
    body = pax_records(records)
    kind = "pax-global" if global_header else "pax"
    head = tar_member(tar_header("././@PaxHeader", len(body), typeflag=TYPEFLAGS[kind]), body)
    return head + regular(name, data)


def gnu_longname_member(name: str, data: bytes, *, link: bool = False) -> bytes:
    """A GNU ``L`` (or ``K``) header carrying a long name, then the member with a truncated name."""
    long = name.encode() + b"\0"
    kind = "gnu-longlink" if link else "gnu-longname"
    head = tar_member(tar_header("././@LongLink", len(long), typeflag=TYPEFLAGS[kind], magic=b"ustar  \0"), long)
    return head + tar_member(tar_header(name[:100], len(data), magic=b"ustar  \0"), data)


def end_blocks(tar_offset: int) -> bytes:
    """The zeros that close a tar stream of ``tar_offset`` bytes: two blocks, then up to a whole record."""
    return bytes(2 * TAR_BLOCK + (-(tar_offset + 2 * TAR_BLOCK)) % TAR_RECORD)


# -- zstd -------------------------------------------------------------------------------------------------


def zframe(raw: bytes, *, level: int = 3, checksum: bool = True, content_size: bool = True) -> bytes:
    """One standalone zstd frame holding ``raw``."""
    if len(raw) > CACHED_RAW_BYTES:  # a cache entry keeps its key: 16 MiB pieces would stay for the session
        return _zframe(raw, level, checksum, content_size)
    return _zframe_cached(raw, level, checksum, content_size)


CACHED_RAW_BYTES = 1 << 20


def _zframe(raw: bytes, level: int, checksum: bool, content_size: bool) -> bytes:
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=checksum, write_content_size=content_size)
    return compressor.compress(raw)


_zframe_cached = functools.lru_cache(maxsize=4096)(_zframe)  # fuzzing re-frames the same members over and over


def zframe_raw_block(raw: bytes, *, window_log: int | None = None, content_size: int | None = None) -> bytes:
    """A zstd frame written by hand: one header, raw (stored) blocks, the xxh64 checksum. ``window_log`` puts a
    window descriptor in the header (absent: single segment); ``content_size`` lies about the content size."""
    declared = len(raw) if content_size is None else content_size
    if window_log is None:
        fhd = 0b1110_0100  # FCS 8 bytes, single segment, checksum
        header = ZSTD_MAGIC + bytes([fhd]) + declared.to_bytes(8, "little")
    else:
        fhd = 0b1100_0100  # FCS 8 bytes, window descriptor, checksum
        header = ZSTD_MAGIC + bytes([fhd, (window_log - 10) << 3]) + declared.to_bytes(8, "little")
    blocks = b""
    chunks = [raw[i : i + 128 * 1024] for i in range(0, len(raw), 128 * 1024)] or [b""]
    for i, chunk in enumerate(chunks):
        last = 1 if i == len(chunks) - 1 else 0
        blocks += ((len(chunk) << 3) | (0 << 1) | last).to_bytes(3, "little") + chunk
    digest = _xxh64(raw) & 0xFFFFFFFF
    return header + blocks + digest.to_bytes(4, "little")


def _xxh64(data: bytes) -> int:
    """xxHash64 (seed 0): zstd's content checksum is its low 32 bits. Small and slow; for crafted frames only."""
    p1, p2, p3, p4, p5 = (
        11400714785074694791,
        14029467366897019727,
        1609587929392839161,
        9650029242287828579,
        2870177450012600261,
    )
    mask = (1 << 64) - 1

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (64 - r))) & mask

    def rnd(acc: int, lane: int) -> int:
        return (rotl((acc + lane * p2) & mask, 31) * p1) & mask

    n, i = len(data), 0
    if n >= 32:
        v = [(p1 + p2) & mask, p2, 0, (-p1) & mask]
        while i + 32 <= n:
            for j in range(4):
                v[j] = rnd(v[j], int.from_bytes(data[i + 8 * j : i + 8 * j + 8], "little"))
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & mask
        for lane in v:
            h = ((h ^ rnd(0, lane)) * p1 + p4) & mask
    else:
        h = p5
    h = (h + n) & mask
    while i + 8 <= n:
        h = ((rotl(h ^ rnd(0, int.from_bytes(data[i : i + 8], "little")), 27)) * p1 + p4) & mask
        i += 8
    if i + 4 <= n:
        h = ((rotl(h ^ (int.from_bytes(data[i : i + 4], "little") * p1) & mask, 23)) * p2 + p3) & mask
        i += 4
    while i < n:
        h = (rotl(h ^ (data[i] * p5) & mask, 11) * p1) & mask
        i += 1
    h ^= h >> 33
    h = (h * p2) & mask
    h ^= h >> 29
    h = (h * p3) & mask
    h ^= h >> 32
    return h


def skippable(magic: int, payload: bytes) -> bytes:
    """A zstd skippable frame (magic 0x184D2A50..5F): ignored by zstd, used for the index and trailer."""
    return struct.pack("<II", magic, len(payload)) + payload


def decompress_frames(data: bytes) -> bytes:
    """Everything the zstd frames of ``data`` hold (skippable frames ignored), as plain zstd would give it."""
    out = io.BytesIO()
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    while chunk := reader.read(1 << 20):
        out.write(chunk)
    return out.getvalue()


# -- index and trailer ------------------------------------------------------------------------------------

_HEAD = struct.Struct("<8sIIIIQQQ16s")
_MEMBER = struct.Struct("<B7s32sQQII")
_FRAME = struct.Struct("<QQQ")
_VOLUME = struct.Struct("<Q16s")
_TRAILER = struct.Struct("<II8sIIQQ8s")


@dataclass(frozen=True)
class IndexEntry:
    kind: int
    sha256: str
    size: int
    tar_offset: int
    frames: tuple[tuple[int, int, int], ...]  # (file offset, compressed length, raw length)


def index_frame(
    members: Sequence[IndexEntry],
    volumes: Sequence[tuple[int, bytes]],
    *,
    split: int,
    data_length: int,
    tar_length: int,
    version: int = 1,
    tag: bytes = b"HFBINDEX",
    corrupt_checksum: bool = False,
) -> bytes:
    """The index as a skippable frame: header, members, frames, volumes, then the sha256 of all that."""
    frames = [f for m in members for f in m.frames]
    parts = [
        _HEAD.pack(tag, version, len(members), len(frames), len(volumes), split, tar_length, data_length, bytes(16))
    ]
    first = 0
    for m in members:
        parts.append(
            _MEMBER.pack(m.kind, bytes(7), bytes.fromhex(m.sha256), m.size, m.tar_offset, first, len(m.frames))
        )
        first += len(m.frames)
    parts += [_FRAME.pack(*f) for f in frames]
    parts += [_VOLUME.pack(size, fp) for size, fp in volumes]
    payload = b"".join(parts)
    digest = hashlib.sha256(payload).digest()
    if corrupt_checksum:
        digest = bytes([digest[0] ^ 1]) + digest[1:]
    return skippable(INDEX_MAGIC, payload + digest)


def index_length(members: int, frames: int, volumes: int) -> int:
    return 8 + _HEAD.size + members * _MEMBER.size + frames * _FRAME.size + volumes * _VOLUME.size + 32


def trailer(
    volume_count: int, index_offset: int, index_len: int, *, version: int = 1, check: bytes | None = None
) -> bytes:
    body = _TRAILER.pack(
        TRAILER_MAGIC, TRAILER_LENGTH - 8, b"HFBTRAIL", version, volume_count, index_offset, index_len, bytes(8)
    )
    return body[:-8] + (check if check is not None else hashlib.sha256(body[8:-8]).digest()[:8])


def fingerprint(head: bytes) -> bytes:
    return hashlib.sha256(head).digest()[:16]


# -- members and whole bundles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One tar member as stored: what the index says about it, its raw tar bytes, and where its frames are cut
    (offsets inside ``raw``; none: one frame). ``frames`` overrides the compressed frames outright."""

    kind: int
    sha256: str
    size: int
    raw: bytes
    cuts: tuple[int, ...] = ()
    frames: tuple[bytes, ...] | None = None
    raw_lengths: tuple[int, ...] | None = None  # with ``frames``: the tar bytes each holds (default: all of raw)

    def pieces(self) -> list[bytes]:
        bounds = [0, *sorted(c for c in self.cuts if 0 < c < len(self.raw)), len(self.raw)]
        return [self.raw[a:b] for a, b in itertools.pairwise(bounds)]

    def compressed(self, level: int) -> list[bytes]:
        return list(self.frames) if self.frames is not None else [zframe(p, level=level) for p in self.pieces()]


def manifest_part(manifest: bytes, *, name: str | bytes = "manifest.json", cuts: tuple[int, ...] = ()) -> Part:
    return Part(
        KIND_MANIFEST, sha256(manifest), len(manifest), tar_member(tar_header(name, len(manifest)), manifest), cuts
    )


def blob_part(
    data: bytes, *, sha: str | None = None, name: str | bytes | None = None, cuts: tuple[int, ...] = ()
) -> Part:
    digest = sha or sha256(data)
    member = name if name is not None else f"blobs/sha256/{digest}"
    return Part(KIND_BLOB, digest, len(data), tar_member(tar_header(member, len(data)), data), cuts)


def end_part(tar_offset: int) -> Part:
    zeros = end_blocks(tar_offset)
    return Part(KIND_END, ZERO_SHA, len(zeros), zeros)


def with_end(parts: Sequence[Part]) -> list[Part]:
    return [*parts, end_part(sum(len(p.raw) for p in parts))]


@dataclass(frozen=True)
class Layout:
    """Where everything landed in an assembled bundle (file offsets), for cutting and flipping."""

    frames: tuple[tuple[int, int], ...]  # (offset, length) of every data frame
    members: tuple[tuple[int, int], ...]  # (first byte, end) of each member's frames
    data_length: int
    index: tuple[int, int]
    trailer: tuple[int, int]
    total: int


def assemble(
    parts: Sequence[Part],
    *,
    level: int = 3,
    index: bool = True,
    index_parts: Sequence[Part] | None = None,
    index_options: Mapping[str, Any] | None = None,
    trailer_options: Mapping[str, Any] | None = None,
) -> tuple[bytes, Layout]:
    """Frame ``parts`` (each member in its own frames) and append an index and trailer describing exactly
    that, so only the reader's own checks of the stream can refuse it. ``index_parts`` makes the index
    describe other members (same frames); ``index_options`` / ``trailer_options`` override their fields."""
    out = bytearray()
    entries: list[IndexEntry] = []
    frame_spans: list[tuple[int, int]] = []
    member_spans: list[tuple[int, int]] = []
    tar_offset = 0
    described = list(index_parts) if index_parts is not None else list(parts)
    for i, part in enumerate(parts):
        start = len(out)
        refs = []
        comps = part.compressed(level)
        if part.frames is None:
            raws = [len(p) for p in part.pieces()]
        elif part.raw_lengths is not None:
            raws = list(part.raw_lengths)
        else:
            raws = [len(part.raw)] if len(comps) == 1 else [_content_size(c) for c in comps]
        for comp, raw_len in zip(comps, raws, strict=True):
            refs.append((len(out), len(comp), raw_len))
            frame_spans.append((len(out), len(comp)))
            out += comp
        member_spans.append((start, len(out)))
        desc = described[i] if i < len(described) else part
        entries.append(IndexEntry(desc.kind, desc.sha256, desc.size, tar_offset, tuple(refs)))
        tar_offset += len(part.raw)
    data = bytes(out)
    if not index:
        return data, Layout(
            tuple(frame_spans),
            tuple(member_spans),
            len(data),
            (len(data), len(data)),
            (len(data), len(data)),
            len(data),
        )
    n_frames = sum(len(e.frames) for e in entries)
    total = len(data) + index_length(len(entries), n_frames, 1) + TRAILER_LENGTH
    opts: dict[str, Any] = {
        "split": 0,
        "data_length": len(data),
        "tar_length": tar_offset,
    }
    volumes = [(total, fingerprint(data[:FINGERPRINT_BYTES]))]
    opts.update(index_options or {})
    volumes = opts.pop("volumes", volumes)
    idx = index_frame(entries, volumes, **opts)
    topts: dict[str, Any] = {"volume_count": len(volumes), "index_offset": len(data), "index_len": len(idx)}
    topts.update(trailer_options or {})
    tail = trailer(topts.pop("volume_count"), topts.pop("index_offset"), topts.pop("index_len"), **topts)
    blob = data + idx + tail
    layout = Layout(
        tuple(frame_spans),
        tuple(member_spans),
        len(data),
        (len(data), len(data) + len(idx)),
        (len(data) + len(idx), len(blob)),
        len(blob),
    )
    return blob, layout


def _content_size(frame: bytes) -> int:
    """The content size a frame header declares (0 when it declares none or is not a frame)."""
    try:
        size = int(zstandard.get_frame_parameters(frame).content_size)
    except zstandard.ZstdError:
        return 0
    return max(size, 0)


def layout_of(data: bytes) -> Layout:
    """Regions of a *valid* bundle, read from its own index and trailer (no bundler code involved)."""
    magic, _, tag, _, _, index_offset, index_len, _ = _TRAILER.unpack(data[-TRAILER_LENGTH:])
    assert magic == TRAILER_MAGIC and tag == b"HFBTRAIL", "not a bundle"
    payload = data[index_offset + 8 : index_offset + index_len - 32]
    _, _, n_members, n_frames, _, _, _, data_length, _ = _HEAD.unpack_from(payload)
    pos = _HEAD.size + n_members * _MEMBER.size
    frames = [_FRAME.unpack_from(payload, pos + i * _FRAME.size) for i in range(n_frames)]
    members = []
    for i in range(n_members):
        _, _, _, _, _, first, count = _MEMBER.unpack_from(payload, _HEAD.size + i * _MEMBER.size)
        a = frames[first]
        b = frames[first + count - 1]
        members.append((a[0], b[0] + b[1]))
    return Layout(
        tuple((f[0], f[1]) for f in frames),
        tuple(members),
        data_length,
        (index_offset, index_offset + index_len),
        (len(data) - TRAILER_LENGTH, len(data)),
        len(data),
    )


# -- manifests --------------------------------------------------------------------------------------------


def canonical(obj: Any) -> bytes:
    """JSON bytes in the manifest's canonical form (what ``Manifest.dumps`` writes)."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")


def file_entry(path: str, data: bytes, *, lfs: bool) -> dict[str, Any]:
    digest = sha256(data)
    if lfs:
        return {"path": path, "size": len(data), "blob_id": lfs_blob_id(digest, len(data)), "lfs_sha256": digest}
    return {"path": path, "size": len(data), "blob_id": git_blob_sha1(data), "sha256": digest}


def manifest_obj(repos: Sequence[Mapping[str, Any]], blobs: Iterable[bytes], **top: Any) -> dict[str, Any]:
    """A full manifest object (every key the canonical form has); ``top`` overrides top-level keys."""
    unique = {sha256(b): len(b) for b in blobs}
    obj: dict[str, Any] = {
        "format": "hfbundle",
        "format_version": 1,
        "kind": "bundle",
        "creator": "hfbundle",
        "base": None,
        "recipe": None,
        "lock": None,
        "repos": list(repos),
        "blobs": [{"sha256": k, "size": v} for k, v in sorted(unique.items())],
        "skipped": [],
        "extra": {},
    }
    obj.update(top)
    return obj


def repo_obj(
    repo_id: str,
    commit: str,
    files: Sequence[Mapping[str, Any]],
    *,
    refs: Mapping[str, str] | None = None,
    repo_type: str = "model",
    no_exist: Sequence[str] = (),
    tree: str = "files",
) -> dict[str, Any]:
    return {
        "repo_type": repo_type,
        "repo_id": repo_id,
        "refs": dict(refs if refs is not None else {"main": commit}),
        "snapshots": [{"commit": commit, "files": list(files), "no_exist": list(no_exist), "tree": tree}],
    }


# -- the standard specimen --------------------------------------------------------------------------------

REPO = "hostile/tiny"
COMMIT = hashlib.sha1(b"hostile commit").hexdigest()
OLD_COMMIT = hashlib.sha1(b"the commit already installed").hexdigest()


def fake(label: str, size: int) -> bytes:
    """Deterministic incompressible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@dataclass(frozen=True)
class Specimen:
    """A small valid bundle's ingredients: files ``path -> (content, lfs)``, its manifest object and blobs."""

    files: Mapping[str, tuple[bytes, bool]]
    repo_id: str = REPO
    commit: str = COMMIT
    refs: Mapping[str, str] | None = None
    no_exist: tuple[str, ...] = ()
    top: Mapping[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        entries = [file_entry(p, d, lfs=lfs) for p, (d, lfs) in sorted(self.files.items())]
        repo = repo_obj(self.repo_id, self.commit, entries, refs=self.refs, no_exist=self.no_exist)
        return manifest_obj([repo], [d for d, _ in self.files.values()], **self.top)

    def blobs(self) -> dict[str, bytes]:
        return {sha256(d): d for d, _ in self.files.values()}

    def with_files(self, **changes: Any) -> Specimen:
        return replace(self, **changes)


STANDARD_FILES: dict[str, tuple[bytes, bool]] = {
    "config.json": (b'{"hidden": 8}\n', False),
    "model.safetensors": (fake("weights", 20_000), True),
    "unet/config.json": (b'{"block_out_channels": [8, 16]}\n', False),
    "unet/diffusion_pytorch_model.safetensors": (fake("unet", 3_000), True),
    "empty.txt": (b"", False),
}
# What the pre-filled cache holds: the same repo at an older commit, sharing no content with the specimen
# (so every hostile blob is needed and streamed), and `main` pointing there.
PREFILL_FILES: dict[str, tuple[bytes, bool]] = {
    "config.json": (b'{"hidden": 4}\n', False),
    "model.safetensors": (fake("old weights", 9_000), True),
}


def standard() -> Specimen:
    return Specimen(STANDARD_FILES)


def prefill() -> Specimen:
    return Specimen(PREFILL_FILES, commit=OLD_COMMIT)


def standard_parts(
    spec: Specimen | None = None,
    *,
    manifest: bytes | None = None,
    frame_size: int | None = None,
) -> list[Part]:
    """Manifest, blobs (sorted by sha256, as the writer orders them here) and the end: a valid bundle's parts.
    ``frame_size`` cuts each member into frames of that many tar bytes."""
    spec = spec or standard()
    raw = manifest if manifest is not None else canonical(spec.manifest())
    parts = [manifest_part(raw)]
    parts += [blob_part(data) for _, data in sorted(spec.blobs().items())]
    if frame_size:
        parts = [replace(p, cuts=tuple(range(frame_size, len(p.raw), frame_size))) for p in parts]
    return with_end(parts)


def bundle_bytes(spec: Specimen | None = None, **options: Any) -> bytes:
    """A valid bundle of ``spec`` (default: the standard specimen), assembled here."""
    frame_size = options.pop("frame_size", None)
    manifest = options.pop("manifest", None)
    data, _ = assemble(standard_parts(spec, manifest=manifest, frame_size=frame_size), **options)
    return data


def with_manifest(obj: Any, blobs: Mapping[str, bytes] | None = None, **options: Any) -> bytes:
    """A bundle whose manifest is ``obj`` (canonical bytes; any JSON, valid or not) over ``blobs``
    (default: the standard specimen's). Index and framing are consistent with whatever the manifest says."""
    raw = obj if isinstance(obj, bytes) else canonical(obj)
    contents = blobs if blobs is not None else standard().blobs()
    parts = [manifest_part(raw)] + [blob_part(d, sha=s) for s, d in sorted(contents.items())]
    data, _ = assemble(with_end(parts), **options)
    return data


def split_volumes(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into volumes of ``size`` bytes (the last shorter). The index of ``data`` describes one
    volume, so this is only for damage tests; use :func:`assemble_split` for a valid split bundle."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def assemble_split(parts: Sequence[Part], split: int, *, level: int = 3) -> list[bytes]:
    """A valid split bundle: volumes of ``split`` bytes whose index lists them with fingerprints."""
    data, layout = assemble(parts, level=level, index=False)
    n_frames = len(layout.frames)
    count = 1
    while True:
        total = len(data) + index_length(len(parts), n_frames, count) + TRAILER_LENGTH
        need = -(-total // split)
        if need <= count:
            break
        count = need
    volumes = []
    for i in range(count):
        start = i * split
        vsize = min(split, total - start)
        head = data[start : min(start + FINGERPRINT_BYTES, len(data))] if start < len(data) else b""
        volumes.append((vsize, fingerprint(head)))
    whole, _ = assemble(parts, level=level, index_options={"volumes": volumes, "split": split})
    return [whole[i : i + split] for i in range(0, len(whole), split)]


def written(spec: Specimen | None = None, *, frame_size: int = 4096, **options: Any) -> bytes:
    """A valid bundle of ``spec`` written by the real :class:`~bundler.bundle.reader.BundleWriter` (in memory), for
    damage tests that should start from exactly what users have."""
    spec = spec or standard()
    return written_manifest(spec.manifest(), spec.blobs(), frame_size=frame_size, **options)


def written_manifest(
    obj: Mapping[str, Any], blobs: Mapping[str, bytes], *, frame_size: int = 4096, **options: Any
) -> bytes:
    """Like :func:`written`, from a manifest object and its blobs."""
    from bundler.bundle.manifest import Manifest
    from bundler.bundle.reader import BundleWriter

    manifest = Manifest.loads(canonical(obj))
    out = io.BytesIO()
    with BundleWriter(out, frame_size=frame_size, threads=1, **options) as writer:
        writer.write_manifest(manifest.dumps())
        for blob in manifest.blobs:
            writer.add_blob(blob.sha256, blob.size, io.BytesIO(blobs[blob.sha256]))
    return out.getvalue()


def written_volumes(
    folder: Any, spec: Specimen | None = None, *, split_size: int = 4096, name: str = "b.tar.zst"
) -> list[Any]:
    """A valid split bundle written by the real writer into ``folder``: the volume paths, in order."""
    from pathlib import Path

    from bundler.bundle.manifest import Manifest
    from bundler.bundle.reader import BundleWriter

    spec = spec or standard()
    manifest = Manifest.loads(canonical(spec.manifest()))
    with BundleWriter(Path(folder) / name, frame_size=4096, threads=1, split_size=split_size) as writer:
        writer.write_manifest(manifest.dumps())
        for blob in manifest.blobs:
            writer.add_blob(blob.sha256, blob.size, io.BytesIO(spec.blobs()[blob.sha256]))
    assert writer.report is not None
    return list(writer.report.paths)
