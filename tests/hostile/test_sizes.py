"""Sizes that lie or explode: members larger than declared, zstd frames asking for huge windows or claiming
other sizes, and a tiny bundle that expands past the free space of the disk."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Container, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from bundler.bundle.manifest import BlobEntry, Manifest
from bundler.cache.layout import RepoLayout
from bundler.errors import InstallError, IntegrityError
from bundler.hashing import CHUNK
from bundler.install import install
from tests.testing.hf_client import REPO_ROOT

from . import craft
from .harness import (
    api_install,
    assert_only_verified_blobs_added,
    assert_refused,
    loader_problems,
    make_world,
    state,
    write_bundle,
)

pytestmark = pytest.mark.usefixtures("lane_modes")  # each case in order and on lanes

SPEC = craft.standard()
WEIGHTS, _ = SPEC.files["model.safetensors"]
WEIGHTS_SHA = craft.sha256(WEIGHTS)
BIG = craft.fake("big", 2 * CHUNK + 12345)  # several of the installer's reads
BIG_SPEC = craft.Specimen({**craft.STANDARD_FILES, "big.safetensors": (BIG, True)})


# -- a member larger than declared ------------------------------------------------------------------------------


class Endless:
    """A blob stream that never ends, checking at each read that no temp file in ``blobs`` grows past the
    declared size plus one read."""

    def __init__(self, blobs: Path, declared: int) -> None:
        self.blobs = blobs
        self.declared = declared
        self.served = 0
        self.largest_temp = 0

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else n
        for p in self.blobs.glob(".hfbundle-*") if self.blobs.is_dir() else []:
            size = p.stat().st_size
            self.largest_temp = max(self.largest_temp, size)
            assert size <= self.declared + CHUNK, f"temp file {p.name} grew to {size} bytes"
        self.served += n
        assert self.served <= self.declared + 4 * CHUNK, "the installer kept reading past the declared size"
        return b"\xab" * n


class EndlessSource:
    """A bundle source (the installer's input protocol) whose weights blob never ends."""

    def __init__(self, cache: Path) -> None:
        self._manifest = Manifest.loads(craft.canonical(BIG_SPEC.manifest()))
        self.stream = Endless(RepoLayout(cache, "model", craft.REPO).blobs, len(BIG))

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def manifest_bytes(self) -> bytes:
        return self._manifest.dumps()

    def iter_blobs(self, wanted: Container[str] | None = None) -> Iterator[tuple[BlobEntry, BinaryIO]]:
        import io

        for entry in sorted(self._manifest.blobs, key=lambda b: b.sha256):
            if wanted is not None and entry.sha256 not in wanted:
                continue
            if entry.sha256 == craft.sha256(BIG):
                yield entry, self.stream  # type: ignore[misc]
            else:
                yield entry, io.BytesIO(BIG_SPEC.blobs()[entry.sha256])

    def close(self) -> None:
        return None


@pytest.mark.parametrize("kind", ["empty", "prefilled"])
def test_a_member_far_larger_than_declared_stops_at_the_declared_size(
    kind: str, tmp_path: Path, template: Path
) -> None:
    world, cache = make_world(tmp_path, template if kind == "prefilled" else None)
    before = state(world)
    source = EndlessSource(cache)
    with pytest.raises(IntegrityError, match="longer than") as info:
        install(source, cache)
    assert "big.safetensors" in info.value.message
    assert source.stream.served <= len(BIG) + 1 + CHUNK
    assert CHUNK <= source.stream.largest_temp <= len(BIG)  # never more than declared: the extra byte is dropped
    assert_only_verified_blobs_added(before, state(world), world, "cache")
    assert not list(RepoLayout(cache, "model", craft.REPO).blobs.glob(".hfbundle-*")), "temp file left"


def test_tar_header_claiming_a_terabyte(tmp_path: Path, template: Path) -> None:
    """A pipe: the header of a blob claims 1 TiB; refused from the header, nothing read on."""
    parts = craft.standard_parts(SPEC)
    raw = (
        craft.tar_header(f"blobs/sha256/{WEIGHTS_SHA}", 1 << 40)
        + WEIGHTS
        + bytes(craft.padded(len(WEIGHTS)) - len(WEIGHTS))
    )
    parts = [craft.Part(p.kind, p.sha256, p.size, raw) if p.sha256 == WEIGHTS_SHA else p for p in parts]
    data, _ = craft.assemble(parts, index=False)
    assert_refused(data, tmp_path, template, match=r"1099511627776 bytes in its tar header", modes=["pipe"], cli=False)


def test_index_claiming_a_terabyte_member(tmp_path: Path, template: Path) -> None:
    parts = craft.standard_parts(SPEC)
    described = [craft.Part(p.kind, p.sha256, 1 << 40, p.raw) if p.sha256 == WEIGHTS_SHA else p for p in parts]
    data, _ = craft.assemble(parts, index_parts=described)
    assert_refused(data, tmp_path, template, match=r"index|damaged", modes=["file"])


def test_member_data_running_past_its_header_size(tmp_path: Path, template: Path) -> None:
    """The header says N bytes, N+2000 follow: the extra bytes are not padding and not a header."""
    parts = craft.standard_parts(SPEC)
    raw = craft.tar_header(f"blobs/sha256/{WEIGHTS_SHA}", len(WEIGHTS)) + WEIGHTS + craft.fake("more", 2000)
    raw += bytes(craft.padded(len(raw)) - len(raw))
    parts = [craft.Part(p.kind, p.sha256, p.size, raw) if p.sha256 == WEIGHTS_SHA else p for p in parts]
    data, _ = craft.assemble(parts, index=False)
    assert_refused(data, tmp_path, template, match=r"padding|frame boundary|damaged|header", modes=["pipe"])
    described = [craft.Part(p.kind, p.sha256, p.size, raw[: craft.TAR_BLOCK + craft.padded(p.size)]) for p in parts]
    data, _ = craft.assemble(parts, index_parts=described)
    assert_refused(data, tmp_path / "file", template, match=r"index|damaged", modes=["file"])


# -- zstd frames that lie ---------------------------------------------------------------------------------------


def _with_frame(frame: bytes) -> bytes:
    """The standard bundle with the weights member stored in the given frame (the index agrees with it)."""
    parts = craft.standard_parts(SPEC)
    parts = [
        craft.Part(p.kind, p.sha256, p.size, p.raw, frames=(frame,)) if p.sha256 == WEIGHTS_SHA else p for p in parts
    ]
    data, _ = craft.assemble(parts)
    return data


def _weights_raw() -> bytes:
    return next(p.raw for p in craft.standard_parts(SPEC) if p.sha256 == WEIGHTS_SHA)


@pytest.mark.parametrize("window_log", [28, 31, 41])
def test_frame_asking_for_a_huge_window(window_log: int, tmp_path: Path, template: Path) -> None:
    """A frame whose header asks for a 256 MiB .. 2 TiB window: refused before any allocation."""
    data = _with_frame(craft.zframe_raw_block(_weights_raw(), window_log=window_log))
    assert_refused(data, tmp_path, template, match=r"window")


def test_frame_with_the_largest_allowed_window_is_fine(tmp_path: Path, template: Path) -> None:
    from bundler.bundle.container import MAX_WINDOW

    data = _with_frame(craft.zframe_raw_block(_weights_raw(), window_log=MAX_WINDOW.bit_length() - 1))
    assert api_install(write_bundle(tmp_path, data), tmp_path / "cache") is None


FRAME_LIES = {
    "content size far larger": lambda raw: craft.zframe_raw_block(raw, content_size=1 << 40),
    "content size smaller": lambda raw: craft.zframe_raw_block(raw, content_size=len(raw) - 512),
    "content size larger": lambda raw: craft.zframe_raw_block(raw, content_size=len(raw) + 512),
    "no content size": lambda raw: craft.zframe(raw, content_size=False),
    "no checksum": lambda raw: craft.zframe(raw, checksum=False),
    "dictionary id": lambda raw: _with_dict_id(craft.zframe(raw)),
    "reserved bit": lambda raw: _set_descriptor_bit(craft.zframe(raw), 0x08),
    "two frames glued as one": lambda raw: craft.zframe(raw[:1024]) + craft.zframe(raw[1024:]),
    "a skippable frame inside": lambda raw: craft.zframe(raw[:1024]) + craft.skippable(0x184D2A50, b"x" * 64),
    "bad checksum": lambda raw: craft.zframe(raw)[:-1] + bytes([craft.zframe(raw)[-1] ^ 0xFF]),
}


def _with_dict_id(frame: bytes) -> bytes:
    fhd = frame[4] | 0x01  # a 1-byte dictionary id follows the window descriptor
    pos = 5 + (0 if frame[4] & 0x20 else 1)
    return frame[:4] + bytes([fhd]) + frame[5:pos] + b"\x07" + frame[pos:]


def _set_descriptor_bit(frame: bytes, bit: int) -> bytes:
    return frame[:4] + bytes([frame[4] | bit]) + frame[5:]


@pytest.mark.parametrize("case", sorted(FRAME_LIES))
def test_frame_that_lies(case: str, tmp_path: Path, template: Path) -> None:
    data = _with_frame(FRAME_LIES[case](_weights_raw()))
    assert_refused(data, tmp_path, template, match=r"frame|truncated|damaged|index")


def test_skippable_frame_spliced_between_members(tmp_path: Path, template: Path) -> None:
    """A pipe stops at the first skippable frame (the index): one in the middle is not the index."""
    data = craft.bundle_bytes(SPEC)
    lay = craft.layout_of(data)
    cut = lay.members[1][1]
    spliced = data[:cut] + craft.skippable(0x184D2A5E, b"\0" * 100) + data[cut:]
    assert_refused(spliced, tmp_path, template, match=r"index|skippable|damaged|truncated|trailer|not an hfbundle")


# -- a tiny bundle that expands past the free space -------------------------------------------------------------

BOMB_SIZE = 12 << 20  # 12 MiB of zeros: ~1 KB compressed


def bomb() -> bytes:
    zeros = bytes(BOMB_SIZE)
    files = {**craft.STANDARD_FILES, "huge.safetensors": (zeros, True)}
    spec = craft.Specimen(files)
    data, _ = craft.assemble(craft.standard_parts(spec, frame_size=4 << 20), level=3)
    assert len(data) < 64 * 1024
    return data


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` (root only); skips the test where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or proc.returncode}): needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("kind", ["empty", "prefilled"])
def test_bundle_expanding_past_the_free_space(kind: str, tmp_path: Path, template: Path) -> None:
    """12 MiB of content into an 8 MiB filesystem: "disk full" with a hint, temp files removed, the cache as it
    was except for blobs verified before the disk filled."""
    data = bomb()
    bundle = write_bundle(tmp_path / "in", data)
    with small_disk(tmp_path / "disk") as disk:
        world, cache = make_world(disk, template if kind == "prefilled" else None)
        before = state(world)
        e = api_install(bundle, cache)
        assert isinstance(e, InstallError), e
        assert "disk full" in e.message and e.hint is not None and "free some space" in e.hint
        assert isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.ENOSPC
        assert_only_verified_blobs_added(before, state(world), world, "cache")
        assert loader_problems(cache) == []
        leftovers = [p for p in state(world) if ".tmp" in p or ".incomplete" in p]
        assert leftovers == []


RLIMIT_CHILD = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from bundler.cli import main
main(["install", sys.argv[1], "--cache-dir", sys.argv[2]])
"""


def test_file_size_limit_in_a_subprocess(tmp_path: Path) -> None:
    """Where no small filesystem can be mounted: RLIMIT_FSIZE makes the big blob's write fail (EFBIG). The CLI
    exits 1 with one line and a hint, and leaves no temp file."""
    bundle = write_bundle(tmp_path / "in", bomb())
    world, cache = make_world(tmp_path, None)
    before = state(world)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", RLIMIT_CHILD, str(bundle), str(cache), str(4 << 20)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: could not write the cache") and "too large" in lines[0].lower(), proc.stderr
    assert len(lines) == 2 and lines[1].startswith("  hint: ")
    assert_only_verified_blobs_added(before, state(world), world, "cache")
    assert [p for p in state(world) if ".tmp" in p] == []
