"""The crafting helpers and the harness themselves: a crafted bundle with nothing changed is a good bundle, and
the invariant has teeth (it fails on a good bundle, on a changed ref, on a file written outside the cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from . import craft
from .harness import (
    api_install,
    assert_installed_safely,
    assert_only_verified_blobs_added,
    assert_refused,
    loader_problems,
    make_world,
    state,
    write_bundle,
)


def test_an_assembled_bundle_is_a_good_bundle(tmp_path: Path, template: Path) -> None:
    assert_installed_safely(craft.bundle_bytes(), tmp_path / "one-frame", template)
    assert_installed_safely(craft.bundle_bytes(frame_size=1024), tmp_path / "small-frames", template)


def test_an_assembled_split_bundle_is_a_good_bundle(tmp_path: Path) -> None:
    volumes = craft.assemble_split(craft.standard_parts(frame_size=1024), 8192)
    assert len(volumes) > 2
    assert api_install(write_bundle(tmp_path / "in", volumes), tmp_path / "cache") is None
    assert loader_problems(tmp_path / "cache", {craft.COMMIT: list(craft.STANDARD_FILES)}) == []


def test_layout_of_agrees_with_assemble() -> None:
    data, layout = craft.assemble(craft.standard_parts(frame_size=2048))
    assert craft.layout_of(data) == layout


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 1000, 200_000])
def test_hand_written_frames_decode(size: int) -> None:
    raw = craft.fake("frame", size)
    assert zstandard.ZstdDecompressor().decompress(craft.zframe_raw_block(raw)) == raw
    checksum = zstandard.ZstdCompressor(write_checksum=True).compress(raw)[-4:]
    assert int.from_bytes(checksum, "little") == craft._xxh64(raw) & 0xFFFFFFFF


def test_the_invariant_has_teeth(tmp_path: Path, template: Path) -> None:
    with pytest.raises(AssertionError, match="installed"):
        assert_refused(craft.bundle_bytes(), tmp_path / "good", template, match=".")
    world, cache = make_world(tmp_path / "w", template)
    before = state(world)
    (cache / "models--hostile--tiny" / "refs" / "main").write_text(craft.COMMIT)
    with pytest.raises(AssertionError, match="changed"):
        assert_only_verified_blobs_added(before, state(world), world, "cache")
    world, cache = make_world(tmp_path / "w2", template)
    before = state(world)
    (world / "outside" / "new.txt").write_text("x")
    with pytest.raises(AssertionError, match="outside the cache"):
        assert_only_verified_blobs_added(before, state(world), world, "cache")
    world, cache = make_world(tmp_path / "w3", template)
    before = state(world)
    (cache / "models--hostile--tiny" / "blobs" / ("0" * 64)).write_bytes(b"not what the name says")
    with pytest.raises(AssertionError, match="does not hold"):
        assert_only_verified_blobs_added(before, state(world), world, "cache")
    os.remove(cache / "models--hostile--tiny" / "blobs" / ("0" * 64))
