"""Damage: truncation at every region (cut points computed from the bundle's own index), a flipped byte in each
region, garbage, empty files, split volumes missing, repeated, truncated or out of order. A damaged bundle is
refused (or, for a bit zstd never reads, installs the exact original content): never wrong content, never a
half-visible snapshot."""

from __future__ import annotations

import io
import os
import random
import shutil
import tarfile
from pathlib import Path

import pytest
import zstandard

from . import craft
from .harness import (
    CACHES,
    api_install,
    assert_only_verified_blobs_added,
    assert_refused,
    assert_refused_or_harmless,
    check_cli,
    check_error,
    cli_install,
    loader_problems,
    make_world,
    pipe,
    state,
)

pytestmark = pytest.mark.usefixtures("lane_modes")  # each case in order and on lanes

SPEC = craft.standard()
DATA = craft.written(SPEC)  # the real writer's bytes: 4 KiB frames, so every member spans frames
LAYOUT = craft.layout_of(DATA)
TRUNCATED = r"truncated|damaged|not an hfbundle|missing"


def _regions() -> dict[str, tuple[int, int]]:
    names = ["manifest"] + [f"blob {i}" for i in range(len(LAYOUT.members) - 2)] + ["end"]
    out = dict(zip(names, LAYOUT.members, strict=True))
    out["index"] = LAYOUT.index
    out["trailer"] = LAYOUT.trailer
    return out


REGIONS = _regions()


def _cut_points() -> dict[str, int]:
    """Every frame's first, second, middle and last byte; the index's and trailer's edges and inside."""
    cuts: dict[str, int] = {"1 byte": 1, "4 bytes (magic)": 4, "5 bytes": 5}
    for i, (offset, length) in enumerate(LAYOUT.frames):
        for label, at in (
            ("start", offset),
            ("+1", offset + 1),
            ("middle", offset + length // 2),
            ("last byte", offset + length - 1),
        ):
            cuts[f"frame {i} {label}"] = at
    start, end = LAYOUT.index
    cuts |= {
        "index start": start,
        "index +4": start + 4,
        "index +8": start + 8,
        "index middle": (start + end) // 2,
        "index last byte": end - 1,
    }
    start, end = LAYOUT.trailer
    cuts |= {
        "trailer start": start,
        "trailer +8": start + 8,
        "trailer middle": start + 24,
        "trailer last byte": end - 1,
    }
    return cuts


CUTS = _cut_points()


def test_the_specimen_is_a_good_bundle(tmp_path: Path) -> None:
    assert len(LAYOUT.frames) >= 12 and len(LAYOUT.members) == len(SPEC.blobs()) + 2
    for mode in ("file", "pipe"):
        cache = tmp_path / mode
        src = io.BytesIO(DATA) if mode == "file" else pipe(DATA)
        assert api_install(src, cache) is None
        assert loader_problems(cache, {SPEC.commit: list(SPEC.files)}) == []


@pytest.mark.parametrize("cut", list(CUTS))
def test_truncated(cut: str, tmp_path: Path, template: Path) -> None:
    assert_refused(DATA[: CUTS[cut]], tmp_path, template, match=TRUNCATED, cli=cut.endswith("middle"))


@pytest.mark.parametrize("region", list(REGIONS))
@pytest.mark.parametrize("where", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_flipped_byte(region: str, where: float, tmp_path: Path, template: Path) -> None:
    start, end = REGIONS[region]
    data = bytearray(DATA)
    data[start + int((end - start - 1) * where)] ^= 0x40
    results = assert_refused_or_harmless(
        bytes(data),
        tmp_path,
        template,
        SPEC,
        match=r"damaged|truncated|not an hfbundle|checksum|does not match|index|trailer|frame|member|manifest",
    )
    if region in ("index", "trailer"):  # checksummed: always refused in a file
        assert results["file-empty"] is not None


def test_bits_of_the_index_and_trailer(tmp_path: Path) -> None:
    """Index and trailer carry checksums: a bit flipped in every 7th byte (low and high bit) is refused when
    read as a file (reader only: ~400 bundles)."""
    from bundler.bundle.reader import open_bundle
    from bundler.errors import BundleFormatError

    start = LAYOUT.index[0]
    for pos in range(start, len(DATA), 7):
        for bit in (0x01, 0x80):
            data = bytearray(DATA)
            data[pos] ^= bit
            with pytest.raises(BundleFormatError):
                open_bundle(io.BytesIO(bytes(data)), threads=1).close()


GARBAGE: dict[str, bytes] = {
    "empty": b"",
    "one byte": b"\0",
    "zeros": bytes(10_000),
    "random": random.Random(1).randbytes(50_000),
    "random with zstd magic": craft.ZSTD_MAGIC + random.Random(2).randbytes(5_000),
    "text": b"this is not a bundle\n" * 100,
    "zip": b"PK\x03\x04" + bytes(600),
    "gzip": b"\x1f\x8b\x08\x00" + bytes(600),
    "only the trailer": DATA[LAYOUT.trailer[0] :],
    "only index and trailer": DATA[LAYOUT.index[0] :],
    "the data frames without index": DATA[: LAYOUT.data_length],
    "bundle twice": DATA + DATA,
    "trailing junk": DATA + b"junk",
    "trailing zeros": DATA + bytes(512),
    "leading junk": b"junk" + DATA,
    "a skippable frame first": craft.skippable(0x184D2A50, b"hello") + DATA,
    "plain zstd of the tar stream": craft.zframe(craft.decompress_frames(DATA)),
}


def _plain_tar_zst() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, (content, _) in SPEC.files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return zstandard.ZstdCompressor().compress(raw.getvalue())


GARBAGE["a plain .tar.zst of the files"] = _plain_tar_zst()


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage(case: str, tmp_path: Path, template: Path) -> None:
    assert_refused(
        GARBAGE[case], tmp_path, template, match=r"not an hfbundle|damaged|truncated|trailer|index|unexpected|empty"
    )


# -- split volumes ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    paths = craft.written_volumes(tmp_path_factory.mktemp("volumes"), SPEC, split_size=8192)
    assert len(paths) >= 4
    return [p.read_bytes() for p in paths]


def _other_bundle_volumes(tmp: Path) -> list[bytes]:
    other = craft.Specimen({**craft.STANDARD_FILES, "config.json": (b'{"hidden": 9}\n', False)})
    tmp.mkdir(parents=True, exist_ok=True)
    return [p.read_bytes() for p in craft.written_volumes(tmp, other, split_size=8192)]


def _place(folder: Path, vols: dict[int, bytes]) -> Path:
    folder.mkdir(parents=True)
    for n, data in vols.items():
        (folder / f"b.tar.zst.{n:03d}").write_bytes(data)
    return folder / "b.tar.zst.001"


SPLIT_CASES = [
    "first missing",
    "first missing, the rest renumbered",
    "middle missing",
    "last missing",
    "two swapped",
    "last two swapped",
    "middle truncated",
    "last truncated",
    "middle repeated in place of the next",
    "one from another bundle",
    "stray extra volume",
    "middle empty",
]


def _split_case(case: str, vols: list[bytes], tmp: Path) -> dict[int, bytes]:
    n = len(vols)
    v = dict(enumerate(vols, start=1))
    if case == "first missing":
        del v[1]
    elif case == "first missing, the rest renumbered":  # no gap in the names, one in the data
        v = {i: vols[i] for i in range(1, n)}
    elif case == "middle missing":
        del v[2]
    elif case == "last missing":
        del v[n]
    elif case == "two swapped":
        v[1], v[2] = v[2], v[1]
    elif case == "last two swapped":
        v[n - 1], v[n] = v[n], v[n - 1]
    elif case == "middle truncated":
        v[2] = v[2][:-100]
    elif case == "last truncated":
        v[n] = v[n][:-1]
    elif case == "middle repeated in place of the next":
        v[3] = v[2]
    elif case == "one from another bundle":
        v[2] = _other_bundle_volumes(tmp)[1]
    elif case == "stray extra volume":
        v[n + 1] = v[n]
    elif case == "middle empty":
        v[2] = b""
    return v


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_split_volumes(case: str, volumes: list[bytes], tmp_path: Path, template: Path) -> None:
    vols = _split_case(case, volumes, tmp_path / "other")
    first = _place(tmp_path / "vols", vols).with_name(f"b.tar.zst.{min(vols):03d}")
    for kind in CACHES:
        world, cache = make_world(tmp_path / kind, template if kind == "prefilled" else None)
        before = state(world)
        check_error(api_install(first, cache), r"volume|truncated|damaged|missing|not an hfbundle|index|trailer")
        assert_only_verified_blobs_added(before, state(world), world, "cache")
        # the same volumes concatenated into a pipe (cat b.tar.zst.* | hfbundle install -)
        world, cache = make_world(tmp_path / f"pipe-{kind}", template if kind == "prefilled" else None)
        before = state(world)
        joined = b"".join(vols[k] for k in sorted(vols))
        check_error(api_install(pipe(joined), cache), r".")
        assert_only_verified_blobs_added(before, state(world), world, "cache")
    world, cache = make_world(tmp_path / "cli", template)
    check_cli(*cli_install(first, cache), r".")


def test_split_volumes_intact_install(volumes: list[bytes], tmp_path: Path) -> None:
    first = _place(tmp_path / "vols", dict(enumerate(volumes, start=1)))
    assert api_install(first, tmp_path / "cache") is None
    assert api_install(pipe(b"".join(volumes)), tmp_path / "cache2") is None


def test_volumes_given_by_the_wrong_name(volumes: list[bytes], tmp_path: Path) -> None:
    """Pointing at a middle volume finds them all (by the shared name); a lone renamed volume is refused."""
    first = _place(tmp_path / "vols", dict(enumerate(volumes, start=1)))
    assert api_install(first.with_name("b.tar.zst.003"), tmp_path / "cache") is None
    lone = tmp_path / "lone.tar.zst"
    shutil.copy(first, lone)
    check_error(api_install(lone, tmp_path / "cache2"), r"volume|truncated|not an hfbundle|missing")
    assert not os.path.exists(tmp_path / "cache2" / "models--hostile--tiny" / "snapshots")
