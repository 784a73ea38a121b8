"""The bundle container: round trips, plain-tool compatibility, reproducibility, volumes, pipes, damage."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import struct
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal, cast

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundler.bundle.container import (
    KIND_BLOB,
    KIND_END,
    KIND_MANIFEST,
    TRAILER_LENGTH,
    BundleIndex,
    FrameRef,
    IndexMember,
    Trailer,
    VolumeRef,
    blob_member_name,
    end_length,
    fingerprint,
    member_tar_length,
    padded,
    parse_tar_header,
    parse_zstd_header,
    tar_header,
)
from bundler.bundle.manifest import FORMAT_VERSION, BlobEntry, Manifest, RepoEntry, SnapshotEntry
from bundler.bundle.reader import BundleReader, BundleWriter, WriteReport, choose_level, inspect_bundle, open_bundle
from bundler.bundle.source import BundleSource
from bundler.errors import BundleFormatError, IntegrityError, UsageError
from bundler.hashing import git_blob_sha1, lfs_blob_id
from bundler.repofile import RepoFile
from tests.helpers import sha256 as sha

COMMIT = "c0ffee" + "0" * 34
SMALL_FRAME = 4096


def make_manifest(files: dict[str, bytes]) -> Manifest:
    """One repo, one snapshot, ``files`` as {path: content}; blobs deduplicated by content."""
    entries, blobs = [], {}
    for path, data in files.items():
        digest = sha(data)
        if len(data) > 100:  # stored as LFS on the Hub
            entries.append(RepoFile(path, len(data), lfs_blob_id(digest, len(data)), lfs_sha256=digest))
        else:
            entries.append(RepoFile(path, len(data), git_blob_sha1(data), sha256=digest))
        blobs[digest] = BlobEntry(digest, len(data))
    snapshot = SnapshotEntry(COMMIT, tuple(entries))
    return Manifest(repos=(RepoEntry("model", "org/tiny", {"main": COMMIT}, (snapshot,)),), blobs=tuple(blobs.values()))


def write_bundle(target: Path | BinaryIO, files: dict[str, bytes], **options: object) -> WriteReport:
    manifest = make_manifest(files)
    contents = {sha(d): d for d in files.values()}
    options.setdefault("frame_size", SMALL_FRAME)
    with BundleWriter(target, **options) as writer:  # type: ignore[arg-type]
        writer.write_manifest(manifest.dumps())
        for blob in manifest.blobs:
            writer.add_blob(blob.sha256, blob.size, io.BytesIO(contents[blob.sha256]), label=blob.sha256[:8])
    assert writer.report is not None
    return writer.report


def bundle_bytes(files: dict[str, bytes], **options: object) -> bytes:
    out = io.BytesIO()
    write_bundle(out, files, **options)
    return out.getvalue()


def read_all(reader: BundleReader) -> dict[str, bytes]:
    return {entry.sha256: stream.read() for entry, stream in reader.iter_blobs()}


class Unseekable(io.RawIOBase):
    """A pipe-like reader over bytes: no seek, short reads."""

    def __init__(self, data: bytes, step: int = 7000) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def stream_of(data: bytes) -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(Unseekable(data)))


def consume(src: object) -> dict[str, bytes]:
    with open_bundle(src) as reader:  # type: ignore[arg-type]
        return read_all(reader)


FILES = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}\n',
    "empty.txt": b"",
    "tokenizer/vocab.json": b'{"a": 1, "b": 2}' * 400,
    "unet/weights.safetensors": os.urandom(3 * SMALL_FRAME + 123),
    "copy/weights.safetensors": b"",  # same content as empty.txt: one blob
}
FILES_BY_SHA = {sha(d): d for d in FILES.values()}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "b.tar.zst"
    write_bundle(path, FILES)
    return path


# -- round trips --------------------------------------------------------------------------------------------


def test_round_trip_from_file(bundle: Path) -> None:
    manifest = make_manifest(FILES)
    with open_bundle(bundle) as reader:
        assert reader.manifest.dumps() == reader.manifest_bytes == manifest.dumps()
        assert reader.bundle_id == manifest.bundle_id
        got = read_all(reader)
        assert got == {sha(d): d for d in FILES.values()}
        assert list(got) == [b.sha256 for b in manifest.blobs]  # storage order = order added
        assert reader.index is not None
        assert reader.index.total_length == bundle.stat().st_size
        big = sha(FILES["unet/weights.safetensors"])
        assert len(reader.index.blobs[-1].frames) == 4  # header + data + padding over 4096-byte frames
        sizes = reader.compressed_sizes
        assert sizes is not None and set(sizes) == set(got) and sizes[big] > len(FILES["unet/weights.safetensors"])
        for digest, data in got.items():
            assert reader.read_blob(digest).read() == data


def test_report_and_blob_results(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    manifest = make_manifest({"w.bin": data})
    seen: list[int] = []
    with BundleWriter(tmp_path / "b", frame_size=SMALL_FRAME, on_progress=seen.append) as writer:
        writer.write_manifest(manifest.dumps())
        result = writer.add_blob(sha(data), len(data), io.BytesIO(data), expected_git_sha1=git_blob_sha1(data))
        report = writer.finish()
    assert result.git_sha1 == git_blob_sha1(data) and result.frames == 25 and result.level == -1
    assert seen == sorted(seen) and seen[-1] == len(data)  # progress counts blob bytes only
    assert report.paths == (tmp_path / "b",)
    assert report.bytes_out == (tmp_path / "b").stat().st_size
    assert report.bytes_in == len(data) + len(manifest.dumps())
    assert [m.name for m in report.members] == ["manifest.json", blob_member_name(sha(data))]
    assert report.bundle_id == manifest.bundle_id
    assert writer.finish() is report  # idempotent


def test_iter_blobs_skips_unwanted_and_streams_are_exact(bundle: Path) -> None:
    vocab, weights = sha(FILES["tokenizer/vocab.json"]), sha(FILES["unet/weights.safetensors"])
    for src in (bundle, stream_of(bundle.read_bytes())):
        with open_bundle(src) as reader:
            items = list(reader.iter_blobs(wanted={weights, vocab, "f" * 64}))
            assert [e.sha256 for e, _ in items] == [vocab, weights]
            with pytest.raises(UsageError):  # a stream is valid only until the next item
                items[0][1].read()
    with open_bundle(bundle) as reader:
        for entry, stream in reader.iter_blobs():
            first = stream.read(5)
            assert len(first) == min(5, entry.size)
            buf = bytearray(entry.size + 10)
            n = cast(io.RawIOBase, stream).readinto(buf)
            assert n <= entry.size - len(first)
            assert stream.read() == FILES_BY_SHA[entry.sha256][len(first) + n :]
            assert stream.read(1) == b""  # never more than declared


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z0-9_]{1,10}(\.[a-z]{1,4})?", fullmatch=True),
        st.one_of(st.binary(max_size=3000), st.integers(0, 9000).map(lambda n: bytes(n)), st.binary(max_size=50)),
        min_size=0,
        max_size=6,
    ),
    frame_size=st.sampled_from([1024, 1500, 4096, 1 << 16]),
    threads=st.sampled_from([1, 3]),
    level=st.sampled_from([None, 1, 3]),
)
def test_round_trip_property(files: dict[str, bytes], frame_size: int, threads: int, level: int | None) -> None:
    data = bundle_bytes(files, frame_size=frame_size, threads=threads, level=level)
    expected = {sha(d): d for d in files.values()}
    for src in (io.BytesIO(data), stream_of(data)):
        with open_bundle(src, threads=2) as reader:
            assert reader.manifest_bytes == make_manifest(files).dumps()
            assert read_all(reader) == expected
    with open_bundle(io.BytesIO(data), threads=1) as reader:
        for digest, content in expected.items():
            assert reader.read_blob(digest).read() == content


# -- the format itself --------------------------------------------------------------------------------------


def test_tar_header_is_tarfile_ustar() -> None:
    for size in (0, 1, 511, 512, 10**9, 8**11 - 1):
        info = tarfile.TarInfo(blob_member_name("a" * 64))
        info.size, info.mtime, info.mode, info.uname, info.gname = size, 0, 0o644, "", ""
        assert tar_header(info.name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
        assert parse_tar_header(tar_header(info.name, size), "x") == (info.name, size)
    huge = 9 * 2**30  # over 8 GiB: base-256 size field, as GNU tar writes it
    parsed = tarfile.TarInfo.frombuf(tar_header("manifest.json", huge), "utf-8", "surrogateescape")
    assert (parsed.name, parsed.size, parsed.type) == ("manifest.json", huge, tarfile.REGTYPE)
    assert parse_tar_header(tar_header("manifest.json", huge), "x") == ("manifest.json", huge)


def test_layout_members_frames_and_end(bundle: Path) -> None:
    data = bundle.read_bytes()
    with open_bundle(bundle) as reader:
        index = reader.index
    assert index is not None
    assert [m.kind for m in index.members] == [KIND_MANIFEST] + [KIND_BLOB] * 4 + [KIND_END]
    raw = b""
    for member in index.members:  # every member starts on its own frame; frames decode one by one
        for ref in member.frames:
            frame = data[ref.offset : ref.offset + ref.length]
            header = parse_zstd_header(frame, "t")
            assert header.content_size == ref.raw_length <= SMALL_FRAME
            raw += zstandard.ZstdDecompressor().decompress(frame)
    assert len(raw) == index.tar_length and index.tar_length % 10240 == 0
    assert raw[index.end.tar_offset :] == bytes(index.end.size)
    assert data[index.data_length : index.data_length + 4] == (0x184D2A5E).to_bytes(4, "little")
    assert data[-TRAILER_LENGTH:][:4] == (0x184D2A5F).to_bytes(4, "little")
    assert Trailer.decode(data[-TRAILER_LENGTH:]) == Trailer(1, index.data_length, index.frame_length)
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(raw)).getmembers()]  # noqa: SIM115
    assert names == ["manifest.json"] + [blob_member_name(b.sha256) for b in make_manifest(FILES).blobs]


def test_level_choice() -> None:
    assert choose_level(os.urandom(1 << 16), 10**9) == -1  # incompressible: store nearly raw, fast
    assert choose_level(os.urandom(4096), 4096) == 3  # a small file: tar --zstd's level, no time to save
    rng = random.Random(0)
    weights = [rng.gauss(0, 0.02) for _ in range(1 << 15)]  # like trained weights
    fp16 = struct.pack(f"<{len(weights)}e", *weights)
    float32 = struct.pack(f"<{len(weights)}f", *weights)
    bf16 = b"".join(float32[i + 2 : i + 4] for i in range(0, len(float32), 4))
    assert choose_level(fp16, 10**9) == -1  # ~0.92 at level 1: not worth its CPU time
    assert choose_level(bf16, 10**9) == 1  # ~0.78: worth level 1
    assert choose_level(b'{"vocab": 1}' * 5000, 60_000) == 19
    assert choose_level(b'{"vocab": 1}' * 5000, 10 << 20) == 9
    assert choose_level(b'{"vocab": 1}' * 5000, 1 << 30) == 3
    assert choose_level(b"", 0) == 19


def tool(*cmd: str) -> None:
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} is not installed")


def test_plain_tar_extracts_it(bundle: Path, tmp_path: Path) -> None:
    tool("zstd")
    if subprocess.run(["tar", "--zstd", "-tf", str(bundle)], capture_output=True).returncode:
        pytest.skip("this tar has no --zstd")
    for i, command in enumerate(
        (f"tar --zstd -xf {bundle}", f"zstd -dc {bundle} | tar -x", f"cat {bundle} | zstd -d | tar -x")
    ):
        out = tmp_path / f"x{i}"
        out.mkdir()
        run = subprocess.run(command, shell=True, cwd=out, capture_output=True)
        assert run.returncode == 0 and run.stderr == b"", run.stderr
        found = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        blobs = {sha(d): d for d in FILES.values()}
        assert found == sorted(["manifest.json"] + [blob_member_name(s) for s in blobs])
        assert (out / "manifest.json").read_bytes() == make_manifest(FILES).dumps()
        for digest in blobs:
            assert sha((out / blob_member_name(digest)).read_bytes()) == digest
    assert subprocess.run(["zstd", "-tq", str(bundle)]).returncode == 0


def test_same_inputs_same_bytes() -> None:
    files = {"a.json": b'{"x": 1}' * 3000, "w.bin": os.urandom(50_000), "z": b""}
    first = bundle_bytes(files, threads=1)
    assert bundle_bytes(files, threads=1) == first
    assert bundle_bytes(files, threads=2) == first
    assert bundle_bytes(files, threads=8) == first
    assert bundle_bytes(files, threads=2, level=3) != first


# -- index, pipes, volumes ----------------------------------------------------------------------------------


def test_read_blob_uses_the_index_and_agrees_with_streaming(bundle: Path) -> None:
    data = bundle.read_bytes()
    streamed = consume(stream_of(data))  # also checks the index against the stream at the end
    with open_bundle(bundle) as reader:
        index = reader.index
        assert index is not None
        for member in index.blobs:
            assert reader.read_blob(member.sha256).read() == streamed[member.sha256]
        with pytest.raises(UsageError):
            reader.read_blob("0" * 64)
    with open_bundle(stream_of(data)) as reader:
        assert reader.index is None and reader.compressed_sizes is None
        with pytest.raises(UsageError):
            reader.read_blob(index.blobs[0].sha256)
        read_all(reader)
        with pytest.raises(UsageError):  # a pipe is read once
            reader.iter_blobs()


def test_random_access_reads_only_what_it_needs(bundle: Path) -> None:
    """Damage in one blob does not stop reading another through the index, nor skipping it."""
    start, stop = regions(bundle)["large blob"]
    data = bytearray(bundle.read_bytes())
    data[(start + stop) // 2] ^= 0xFF
    vocab = FILES["tokenizer/vocab.json"]
    with open_bundle(io.BytesIO(bytes(data))) as reader:
        assert reader.read_blob(sha(vocab)).read() == vocab
        assert [s.read() for e, s in reader.iter_blobs(wanted={sha(vocab)})] == [vocab]
        with pytest.raises(BundleFormatError, match="damaged"):
            read_all(reader)


def test_reader_is_a_bundle_source(bundle: Path) -> None:
    with open_bundle(bundle) as reader:
        source: BundleSource = reader  # checked by mypy
        assert source.manifest_bytes == make_manifest(FILES).dumps()


def test_read_blob_verifies_content(bundle: Path, tmp_path: Path) -> None:
    # Rewrite one blob's frame with different content of the same size: valid zstd, valid tar, wrong hash.
    with open_bundle(bundle) as reader:
        index = reader.index
    assert index is not None
    member = next(m for m in index.blobs if m.size == len(FILES["tokenizer/vocab.json"]))
    forged = tar_header(member.name, member.size) + b"x" * member.size + bytes(padded(member.size) - member.size)
    rebuilt = craft(
        [(m.kind, m.sha256, m.size, forged if m is member else raw_member(bundle, m)) for m in index.members]
    )
    with open_bundle(io.BytesIO(rebuilt)) as reader:
        with pytest.raises(IntegrityError) as e:
            reader.read_blob(member.sha256).read()
        assert e.value.expected == member.sha256
        assert reader.read_blob(member.sha256, verify=False).read() == b"x" * member.size


def test_pipe_from_os_pipe(bundle: Path) -> None:
    data = bundle.read_bytes()
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as out:
            out.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        with os.fdopen(r, "rb") as pipe:
            assert not pipe.seekable()
            assert consume(pipe) == FILES_BY_SHA
    finally:
        feeder.join()


def test_write_to_a_pipe(tmp_path: Path) -> None:
    chunks: list[bytes] = []

    class Sink(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def write(self, b: object) -> int:
            chunks.append(bytes(b))  # type: ignore[call-overload]
            return len(chunks[-1])

    report = write_bundle(Sink(), FILES)  # type: ignore[arg-type]
    assert report.paths == ()
    write_bundle(tmp_path / "f", FILES)
    assert b"".join(chunks) == (tmp_path / "f").read_bytes()


def test_split_volumes(tmp_path: Path) -> None:
    files = {"w.bin": os.urandom(40_000), "a.json": b"{}"}
    report = write_bundle(tmp_path / "m.tar.zst", files, split_size=8192)
    volumes = sorted(tmp_path.glob("m.tar.zst.*"))
    assert report.paths == tuple(volumes) and len(volumes) == 6
    assert [p.name for p in volumes] == [f"m.tar.zst.{i:03d}" for i in range(1, 7)]
    assert all(p.stat().st_size == 8192 for p in volumes[:-1])
    assert not (tmp_path / "m.tar.zst").exists()
    whole = b"".join(p.read_bytes() for p in volumes)
    expected = {sha(d): d for d in files.values()}
    for src in (volumes[0], tmp_path / "m.tar.zst", volumes[3], list(volumes), io.BytesIO(whole), stream_of(whole)):
        assert consume(src) == expected
    info = inspect_bundle(volumes[0])
    assert info.volumes == tuple(str(p) for p in volumes) and info.compressed_size == len(whole)
    if shutil.which("zstd") is not None:
        out = tmp_path / "x"
        out.mkdir()
        subprocess.run(f"cat {tmp_path}/m.tar.zst.* | zstd -d | tar -x", shell=True, cwd=out, check=True)
        assert (out / blob_member_name(sha(files["w.bin"]))).read_bytes() == files["w.bin"]


def test_split_volume_problems(tmp_path: Path) -> None:
    write_bundle(tmp_path / "m", {"w.bin": os.urandom(40_000)}, split_size=8192)
    volumes = sorted(tmp_path.glob("m.*"))
    with pytest.raises(BundleFormatError, match="out of order"):
        consume([volumes[1], volumes[0], *volumes[2:]])
    with pytest.raises(BundleFormatError, match="volume"):  # the last one is not last
        consume([*volumes[:-2], volumes[-1], volumes[-2]])
    with pytest.raises(BundleFormatError, match="volume"):
        consume([*volumes[:2], *volumes[3:]])
    volumes[2].rename(tmp_path / "elsewhere")
    with pytest.raises(BundleFormatError, match=r"m\.003 is missing"):
        consume(volumes[0])
    (tmp_path / "elsewhere").rename(volumes[2])
    volumes[-1].unlink()
    with pytest.raises(BundleFormatError, match="volume"):
        consume(volumes[0])


def test_shorter_rebuild_removes_stale_volumes(tmp_path: Path) -> None:
    write_bundle(tmp_path / "m", {"w.bin": os.urandom(40_000)}, split_size=8192)
    write_bundle(tmp_path / "m", {"w.bin": os.urandom(10_000)}, split_size=8192)
    assert [p.name for p in sorted(tmp_path.glob("m.*"))] == ["m.001", "m.002"]
    consume(tmp_path / "m.001")


# -- writer failures ----------------------------------------------------------------------------------------


def no_output(folder: Path) -> bool:
    return not any(folder.iterdir())


@pytest.mark.parametrize(
    ("content", "declared", "git", "match"),
    [
        (b"hello world", b"hello there", None, "sha256 is"),
        (b"short", b"shorter!", None, "has 5 bytes, expected 8"),
        (b"longer!!!", b"longer", None, "larger than"),
        (b"same", b"same", "0" * 40, "git blob id"),
    ],
)
def test_mismatch_at_write_time_leaves_nothing(
    tmp_path: Path, content: bytes, declared: bytes, git: str | None, match: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    manifest = make_manifest({"f": declared})
    target = out / "b.tar.zst"
    with (
        pytest.raises(IntegrityError, match=match) as e,
        BundleWriter(target, frame_size=SMALL_FRAME, split_size=4096) as writer,
    ):
        writer.write_manifest(manifest.dumps())
        writer.add_blob(sha(declared), len(declared), io.BytesIO(content), expected_git_sha1=git, label="repo: f")
    assert e.value.path == "repo: f"
    assert no_output(out)
    with pytest.raises(UsageError):  # the writer is aborted, not reusable
        writer.finish()


def test_interrupt_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "b.tar.zst"
    target.write_bytes(b"previous bundle")
    data = os.urandom(50_000)
    manifest = make_manifest({"w": data})

    def interrupt(done: int) -> None:
        if done > 10_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), BundleWriter(target, frame_size=SMALL_FRAME, on_progress=interrupt) as w:
        w.write_manifest(manifest.dumps())
        w.add_blob(sha(data), len(data), io.BytesIO(data))
    assert [p.name for p in tmp_path.iterdir()] == ["b.tar.zst"]
    assert target.read_bytes() == b"previous bundle"


def test_many_small_members_and_large_ones_give_the_same_bytes_on_any_thread_count() -> None:
    """Small members are packed on the calling thread and their frames gathered into large writes; large
    ones go through the pools: the bytes do not depend on either (nor on the thread count)."""
    rnd = random.Random(7)
    files = {f"f{i}": rnd.randbytes(rnd.randint(1, 4096)) for i in range(300)}
    files["big"] = os.urandom(700_000)
    files["text"] = b"hello world " * 40_000
    one = bundle_bytes(files, threads=1, frame_size=256 << 10)
    assert bundle_bytes(files, threads=3, frame_size=256 << 10) == one
    with open_bundle(io.BytesIO(one)) as reader:
        assert read_all(reader) == {sha(d): d for d in files.values()}
        small = sha(files["f5"])
        assert reader.read_blob(small).read() == files["f5"]  # every member still starts a frame


class FailingSink(io.RawIOBase):
    """A stream that fails once ``limit`` bytes were written to it (a full disk)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.written = limit, 0

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        n = memoryview(cast(bytes, data)).nbytes
        if self.written + n > self.limit:
            raise OSError(28, "No space left on device")
        self.written += n
        return n


def test_a_write_error_on_the_writer_thread_stops_the_bundle() -> None:
    from bundler.errors import HfBundleError

    files = {f"f{i}": os.urandom(3000) for i in range(40)} | {"big": os.urandom(9 << 20)}
    with pytest.raises(HfBundleError, match="No space left"):
        write_bundle(cast(BinaryIO, FailingSink(1 << 20)), files, frame_size=1 << 20, threads=2)


def test_writer_usage_errors(tmp_path: Path) -> None:
    manifest = make_manifest({"a": b"a", "b": b"b"})
    writer = BundleWriter(tmp_path / "x")
    with pytest.raises(UsageError, match="write_manifest"):
        writer.add_blob(sha(b"a"), 1, io.BytesIO(b"a"))
    writer.write_manifest(manifest.dumps())
    with pytest.raises(UsageError, match="not declared"):
        writer.add_blob(sha(b"c"), 1, io.BytesIO(b"c"))
    writer.add_blob(sha(b"a"), 1, io.BytesIO(b"a"))
    with pytest.raises(UsageError, match="already added"):
        writer.add_blob(sha(b"a"), 1, io.BytesIO(b"a"))
    with pytest.raises(UsageError, match="not added"):
        writer.finish()
    writer.abort()  # what `with BundleWriter(...)` does on any error: the temp file (open from the start) goes
    assert no_output(tmp_path)
    with pytest.raises(UsageError, match="canonical"), BundleWriter(tmp_path / "y") as bad:
        bad.write_manifest(manifest.dumps().replace(b"\n", b"\n "))
    with pytest.raises(UsageError, match="frame size"):
        BundleWriter(tmp_path / "y", frame_size=10)
    with pytest.raises(UsageError, match="split"):
        BundleWriter(io.BytesIO(), split_size=1 << 20)
    with pytest.raises(UsageError, match="does not exist"):
        BundleWriter(tmp_path / "no" / "such")
    assert no_output(tmp_path)


def test_output_mode_follows_umask(bundle: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    assert bundle.stat().st_mode & 0o777 == 0o666 & ~umask


# -- damaged and crafted input ------------------------------------------------------------------------------


def raw_member(bundle: Path, member: IndexMember) -> bytes:
    data = bundle.read_bytes()
    return b"".join(
        zstandard.ZstdDecompressor().decompress(data[f.offset : f.offset + f.length]) for f in member.frames
    )


def frame(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True).compress(raw)


def craft(members: list[tuple[int, str, int, bytes]], *, with_index: bool = True) -> bytes:
    """A bundle from raw tar members (kind, sha256, size, tar bytes), one frame each, with a matching index:
    the index is consistent, so only the reader's own checks of the stream can refuse it."""
    out, index_members, tar_offset = b"", [], 0
    for kind, digest, size, raw in members:
        data = frame(raw)
        index_members.append(IndexMember(kind, digest, size, tar_offset, (FrameRef(len(out), len(data), len(raw)),)))
        out += data
        tar_offset += len(raw)
    if not with_index:
        return out
    tmp = BundleIndex(tuple(index_members), (VolumeRef(0, ""),), 0, len(out), tar_offset)
    volume = VolumeRef(tmp.total_length, fingerprint(out[:4096]))
    index = BundleIndex(tuple(index_members), (volume,), 0, len(out), tar_offset).encode()
    return out + index + Trailer(1, len(out), len(index)).encode()


def tar_member(info: tarfile.TarInfo, data: bytes = b"", fmt: Literal[0, 1, 2] = tarfile.USTAR_FORMAT) -> bytes:
    info.size = len(data) if info.type == tarfile.REGTYPE else 0
    raw = info.tobuf(fmt, "utf-8", "surrogateescape") + data
    return raw + bytes(padded(len(raw)) - len(raw))


def regular(name: str, data: bytes) -> bytes:
    return tar_header(name, len(data)) + data + bytes(padded(len(data)) - len(data))


BLOB = b"blob content\n"
MANIFEST = make_manifest({"f.txt": BLOB})
MANIFEST_MEMBER = (
    KIND_MANIFEST,
    sha(MANIFEST.dumps()),
    len(MANIFEST.dumps()),
    regular("manifest.json", MANIFEST.dumps()),
)
GOOD_BLOB = (KIND_BLOB, sha(BLOB), len(BLOB), regular(blob_member_name(sha(BLOB)), BLOB))


def end(tar_offset: int) -> tuple[int, str, int, bytes]:
    return (KIND_END, "0" * 64, end_length(tar_offset), bytes(end_length(tar_offset)))


def with_end(members: list[tuple[int, str, int, bytes]]) -> list[tuple[int, str, int, bytes]]:
    return [*members, end(sum(len(m[3]) for m in members))]


def _with(info: tarfile.TarInfo, **fields: object) -> tarfile.TarInfo:
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def special(kind: bytes, **fields: object) -> Callable[[], bytes]:
    def make() -> bytes:
        info = tarfile.TarInfo(blob_member_name(sha(BLOB)))
        info.type = kind
        for key, value in fields.items():
            setattr(info, key, value)
        return tar_member(info)

    return make


def pax_member() -> bytes:
    info = tarfile.TarInfo(blob_member_name(sha(BLOB)))
    info.pax_headers = {"comment": "x"}
    info.size = len(BLOB)
    raw = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + BLOB
    return raw + bytes(padded(len(raw)) - len(raw))


# name: (the member in place of the blob, what a pipe reader says: it meets the member before any index)
CRAFTED_BLOB_MEMBERS: dict[str, tuple[Callable[[], bytes], str]] = {
    "symlink": (special(tarfile.SYMTYPE, linkname="/etc/passwd"), "a symlink"),
    "hardlink": (special(tarfile.LNKTYPE, linkname="manifest.json"), "a hard link"),
    "directory": (special(tarfile.DIRTYPE), "a directory"),
    "fifo": (special(tarfile.FIFOTYPE), "a FIFO"),
    "device": (special(tarfile.CHRTYPE), "a character device"),
    "pax header": (pax_member, "a pax extended header"),
    "GNU long name": (
        lambda: tar_member(tarfile.TarInfo("blobs/sha256/" + "a" * 200), BLOB, tarfile.GNU_FORMAT),
        "not a POSIX ustar header",
    ),
    "undeclared blob": (lambda: regular(blob_member_name("e" * 64), BLOB), "manifest does not declare"),
    "bad name": (lambda: regular("../../etc/passwd", BLOB), "unexpected member"),
    "owner and mtime": (
        lambda: tar_member(_with(tarfile.TarInfo(blob_member_name(sha(BLOB))), mtime=1, uname="u"), BLOB),
        "non-canonical",
    ),
    "larger than declared": (
        lambda: tar_header(blob_member_name(sha(BLOB)), 1 << 40) + BLOB + bytes(512 - len(BLOB)),
        "1099511627776 bytes in its tar header, 13 in the manifest",
    ),
    "bad header checksum": (lambda: b"\1" + regular(blob_member_name(sha(BLOB)), BLOB)[1:], "checksum mismatch"),
}


def both_modes(data: bytes) -> Iterator[BinaryIO]:
    yield io.BytesIO(data)  # seekable: index first
    yield stream_of(data)  # a pipe: front to back


def test_crafted_bundle_helper_is_valid() -> None:
    data = craft(with_end([MANIFEST_MEMBER, GOOD_BLOB]))
    for src in both_modes(data):
        assert consume(src) == {sha(BLOB): BLOB}


@pytest.mark.parametrize("case", sorted(CRAFTED_BLOB_MEMBERS))
def test_crafted_members_are_refused(case: str) -> None:
    make, message = CRAFTED_BLOB_MEMBERS[case]
    data = craft(with_end([MANIFEST_MEMBER, (KIND_BLOB, sha(BLOB), len(BLOB), make())]))
    with pytest.raises(BundleFormatError, match=message):
        consume(stream_of(data))
    with pytest.raises(BundleFormatError):  # with an index, its own checks may refuse it first
        consume(io.BytesIO(data))


def test_member_larger_than_declared_is_refused_before_reading_it() -> None:
    size = 1 << 30  # a claimed 1 GiB member: the header alone is refused
    header = tar_header(blob_member_name(sha(BLOB)), size)
    data = craft([MANIFEST_MEMBER, (KIND_BLOB, sha(BLOB), len(BLOB), header + BLOB)], with_index=False)
    with pytest.raises(BundleFormatError, match="1073741824 bytes in its tar header, 13 in the manifest"):
        consume(stream_of(data))


def test_first_member_must_be_the_manifest() -> None:
    # The index says the first member is the manifest; the tar stream says otherwise.
    for first in ((KIND_MANIFEST, *GOOD_BLOB[1:]), (KIND_MANIFEST, "0" * 64, 3, regular("README.md", b"hi\n"))):
        data = craft(with_end([first, (KIND_BLOB, *MANIFEST_MEMBER[1:])]))
        for src in both_modes(data):
            with pytest.raises(BundleFormatError, match="first member"):
                consume(src)


def test_duplicate_members_are_refused() -> None:
    for members in ([MANIFEST_MEMBER, GOOD_BLOB, GOOD_BLOB], [MANIFEST_MEMBER, GOOD_BLOB, MANIFEST_MEMBER]):
        data = craft(with_end(members), with_index=False)
        with pytest.raises(BundleFormatError, match="second"):
            consume(stream_of(data))


def test_a_member_split_across_frames_wrongly_is_refused() -> None:
    # manifest and blob in one frame: a plain tar.zst is not a bundle, even with the right members.
    raw = MANIFEST_MEMBER[3] + GOOD_BLOB[3] + bytes(2048)
    with pytest.raises(BundleFormatError, match="frame boundary"):
        consume(stream_of(frame(raw)))


def test_plain_tar_zst_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hi")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        t.add(tmp_path / "hello.txt", "hello.txt")
    data = zstandard.ZstdCompressor().compress(raw.getvalue())
    for src in both_modes(data):
        with pytest.raises(BundleFormatError, match="not an hfbundle"):
            consume(src)


@pytest.mark.parametrize("data", [b"", b"\0", b"garbage" * 1000, os.urandom(100), b"PK\x03\x04" + bytes(600)])
def test_garbage_is_not_a_bundle(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "g"
    path.write_bytes(data)
    for src in (path, *both_modes(data)):
        with pytest.raises(BundleFormatError, match="not an hfbundle"):
            consume(src)


def regions(bundle: Path) -> dict[str, tuple[int, int]]:
    """Byte ranges of each part of a bundle file."""
    with open_bundle(bundle) as reader:
        index = reader.index
    assert index is not None
    size = bundle.stat().st_size

    def span(m: IndexMember) -> tuple[int, int]:
        return m.frames[0].offset, m.frames[-1].offset + m.frames[-1].length

    return {
        "manifest": span(index.manifest),
        "small blob": span(index.blobs[0]),
        "large blob": span(index.blobs[-1]),
        "end": span(index.end),
        "index": (index.data_length, size - TRAILER_LENGTH),
        "trailer": (size - TRAILER_LENGTH, size),
    }


@pytest.mark.parametrize("region", ["manifest", "small blob", "large blob", "end", "index", "trailer"])
@pytest.mark.parametrize("where", [0.0, 0.1, 0.5, 0.99])
def test_a_flipped_byte_anywhere_is_detected(bundle: Path, region: str, where: float) -> None:
    """Damage is refused, or (for the rare bit an entropy decoder ignores) provably harmless: never wrong
    content. Index and trailer are checksummed: always refused."""
    start, stop = regions(bundle)[region]
    data = bytearray(bundle.read_bytes())
    data[start + int((stop - start - 1) * where)] ^= 0x20
    for src in both_modes(bytes(data)):
        try:
            with open_bundle(src) as reader:
                got = {e.sha256: s.read() for e, s in reader.iter_blobs()}
                manifest = reader.manifest_bytes
        except (BundleFormatError, IntegrityError):
            continue
        assert region not in ("index", "trailer")
        assert got == FILES_BY_SHA and manifest == make_manifest(FILES).dumps()


def test_a_flipped_bit_in_a_blob_is_caught_by_the_frame_checksum(bundle: Path) -> None:
    _, stop = regions(bundle)["large blob"]
    data = bytearray(bundle.read_bytes())
    data[stop - 10] ^= 0x01  # in the last block of a raw (incompressible) frame: content bytes
    for src in both_modes(bytes(data)):
        with pytest.raises(BundleFormatError, match="damaged"):
            consume(src)


@pytest.mark.parametrize("region", ["manifest", "small blob", "large blob", "end", "index", "trailer"])
@pytest.mark.parametrize("where", [0.0, 0.5])
def test_truncation_anywhere_is_detected(bundle: Path, tmp_path: Path, region: str, where: float) -> None:
    start, stop = regions(bundle)[region]
    cut = bundle.read_bytes()[: start + int((stop - start) * where)]
    path = tmp_path / "cut.tar.zst"
    path.write_bytes(cut)
    for src in (path, *both_modes(cut)):
        with pytest.raises(BundleFormatError, match=r"truncated|not an hfbundle|damaged"):
            consume(src)


def test_truncated_bundle_says_so(bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut"
    path.write_bytes(bundle.read_bytes()[: regions(bundle)["large blob"][0] + 100])
    with pytest.raises(BundleFormatError, match="truncated") as e:
        consume(path)
    assert e.value.hint is not None and "re-copy" in e.value.hint


def test_trailing_bytes_are_refused(bundle: Path) -> None:
    data = bundle.read_bytes() + b"\0"
    for src in both_modes(data):
        with pytest.raises(BundleFormatError):
            consume(src)


def test_huge_window_frame_is_refused(tmp_path: Path) -> None:
    data = os.urandom(2 << 20)
    path = tmp_path / "b"
    write_bundle(path, {"w": data}, frame_size=4 << 20, level=1)
    with open_bundle(path) as reader:
        assert reader.index is not None
        first = reader.index.blobs[0].frames[0]
    raw = bytearray(path.read_bytes())
    assert not raw[first.offset + 4] & 0x20  # not single-segment: the header carries a window descriptor
    raw[first.offset + 5] = 21 << 3  # window 2**31
    for src in both_modes(bytes(raw)):
        with pytest.raises(BundleFormatError, match="window"):
            consume(src)


def test_index_that_lies_is_caught(tmp_path: Path) -> None:
    a, b = b"A" * 700, b"B" * 700  # same size: swapping their index entries keeps the index consistent
    members = with_end(
        [
            (KIND_MANIFEST, *_manifest_of({"a": a, "b": b})),
            (KIND_BLOB, sha(b), len(a), regular(blob_member_name(sha(a)), a)),
            (KIND_BLOB, sha(a), len(b), regular(blob_member_name(sha(b)), b)),
        ]
    )
    data = craft(members)
    for src in both_modes(data):
        with pytest.raises(BundleFormatError):
            consume(src)


def _manifest_of(files: dict[str, bytes]) -> tuple[str, int, bytes]:
    raw = make_manifest(files).dumps()
    return sha(raw), len(raw), regular("manifest.json", raw)


def test_non_canonical_manifest_is_refused() -> None:
    raw = MANIFEST.dumps().replace(b'"format"', b' "format"')
    data = craft(with_end([(KIND_MANIFEST, sha(raw), len(raw), regular("manifest.json", raw)), GOOD_BLOB]))
    for src in both_modes(data):
        with pytest.raises(BundleFormatError, match="canonical"):
            consume(src)


def test_unknown_index_version_is_refused(bundle: Path) -> None:
    data = bytearray(bundle.read_bytes())
    trailer = Trailer.decode(bytes(data[-TRAILER_LENGTH:]))
    assert trailer is not None
    body = bytearray(data[-TRAILER_LENGTH:])
    body[16:20] = (3).to_bytes(4, "little")
    body[40:48] = hashlib.sha256(bytes(body[8:40])).digest()[:8]
    data[-TRAILER_LENGTH:] = body
    with pytest.raises(BundleFormatError, match="version 3 is not supported"):
        consume(io.BytesIO(bytes(data)))


# -- inspect ------------------------------------------------------------------------------------------------


def test_inspect(bundle: Path) -> None:
    info = inspect_bundle(bundle)
    manifest = make_manifest(FILES)
    assert info.bundle_id == manifest.bundle_id and info.format_version == FORMAT_VERSION and info.index_version == 1
    assert info.compressed_size == bundle.stat().st_size
    assert (info.blob_count, info.file_count, info.total_size) == (4, 5, manifest.total_size)
    (repo,) = info.repos
    assert (repo.repo_id, repo.commits, repo.files) == ("org/tiny", (COMMIT,), 5)
    assert info.to_json()["repos"][0]["refs"] == {"main": COMMIT}
    assert inspect_bundle(stream_of(bundle.read_bytes())).compressed_size is None
    assert member_tar_length(0) == 512


def test_a_refused_bundle_lets_go_of_its_buffers_while_its_error_lives() -> None:
    """A refused bundle's reader lives on in the error's traceback, in cycles only a full collection frees:
    closing it must free its decode buffers (16 MiB each) at once. Before, the hostile suite peaked at 11.8 GB."""
    import gc
    import io
    import tracemalloc

    from tests.hostile import craft
    from tests.hostile.harness import pipe

    obj = craft.standard().manifest()
    obj["repos"][0]["snapshots"][0]["commit"] = "g" * 40
    data = craft.with_manifest(obj)
    kept: list[BaseException] = []
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(3):
            for src in (io.BytesIO(data), pipe(data)):
                with pytest.raises(BundleFormatError) as info:
                    open_bundle(src, threads=2)
                kept.append(info.value)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert len(kept) == 6 and all(e.__traceback__ is not None for e in kept)
    assert held < 8 << 20, f"{held} bytes still held by 6 refused readers"


def test_manifest_bytes_are_those_of_json_dumps_and_the_writer_keeps_the_callers_manifest(tmp_path: Path) -> None:
    """The canonical bytes are made in pieces (issue 18) and must stay json.dumps' bytes: bundle ids depend on
    them. Unicode paths, many files, an empty skipped list."""
    import json

    files = {f"data/ü-{i:04d}/τ.bin": os.urandom(50 + i) for i in range(300)}
    manifest = make_manifest(files)
    expected = (json.dumps(manifest.to_json(), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()
    assert manifest.dumps() == expected
    assert Manifest.loads(expected).dumps() == expected
    writer = BundleWriter(tmp_path / "b.hfb")
    writer.write_manifest(manifest.dumps(), manifest=manifest)
    assert writer._manifest is manifest  # no parsed second copy of every record
    writer.abort()
    other = BundleWriter(tmp_path / "c.hfb")
    with pytest.raises(UsageError, match="not canonical"):  # bytes not from that manifest: checked as before
        other.write_manifest(expected.replace(b'\n "', b'\n  "', 1), manifest=manifest)
    other.abort()
