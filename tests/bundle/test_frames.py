"""Decoding frames into reused buffers (``bundler.bundle.frames``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import zstandard

from bundler.bundle.container import FrameRef
from bundler.bundle.frames import POOLED_SIZE, SMALL_FRAME_BYTES, Frame, FrameBuffers, TarCursor, decode_frame
from bundler.errors import BundleFormatError


def frame(data: bytes, *, checksum: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=checksum, write_content_size=True).compress(data)


def test_a_buffer_given_back_is_reused() -> None:
    pool = FrameBuffers()
    buf = pool.take(SMALL_FRAME_BYTES)
    assert len(buf) >= POOLED_SIZE
    pool.give(buf)
    assert pool.take(SMALL_FRAME_BYTES) is buf


def test_a_small_frame_gets_a_buffer_of_its_size_never_pooled() -> None:
    """bytearray(n) touches every page: a pooled 16 MiB buffer per small frame cost 16 MiB each (issue 18)."""
    pool = FrameBuffers()
    buf = pool.take(1000)
    assert len(buf) == 1000
    pool.give(buf)
    assert pool.take(1000) is not buf


def test_a_buffer_with_a_live_view_is_never_handed_out_again() -> None:
    pool = FrameBuffers()
    buf = pool.take(SMALL_FRAME_BYTES)
    view = memoryview(buf)[3:7]  # e.g. a chunk still being written by another thread
    pool.give(buf)
    other = pool.take(SMALL_FRAME_BYTES)
    assert other is not buf
    view.release()
    pool.give(other)
    # by identity: a fresh zeroed bytearray of the same length would compare equal to either
    first, second = pool.take(SMALL_FRAME_BYTES), pool.take(SMALL_FRAME_BYTES)
    assert {id(first), id(second)} == {id(buf), id(other)}


def test_the_pool_keeps_at_most_keep_buffers() -> None:
    pool = FrameBuffers(keep=2)
    bufs = [pool.take(SMALL_FRAME_BYTES) for _ in range(3)]
    for b in bufs:
        pool.give(b)
    again = [pool.take(SMALL_FRAME_BYTES) for _ in range(3)]
    assert sum(any(a is b for b in bufs) for a in again) == 2


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("pooled", [False, True])
def test_decode_frame_gives_the_content(pooled: bool, small: bool) -> None:
    """A frame of SMALL_FRAME_BYTES or more decodes into a pooled buffer when there is a pool; a smaller one
    into bytes of its own (one decompress call)."""
    data = os.urandom(50_000) + bytes(50_000 if small else SMALL_FRAME_BYTES)
    raw = frame(data)
    pool = FrameBuffers() if pooled else None
    got = decode_frame(FrameRef(0, len(raw), len(data)), raw, "frame 0", pool)
    assert bytes(got.data) == data
    assert (got.buffer is not None) == (pooled and not small)


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize(
    "case",
    ["extra bytes after the frame", "two frames", "checksum flipped", "content flipped", "size lies"],
)
@pytest.mark.parametrize("small", [False, True])
def test_decode_frame_refuses_anything_but_one_exact_frame(case: str, pooled: bool, small: bool) -> None:
    data = os.urandom(40_000 if small else SMALL_FRAME_BYTES + 40_000)  # small frames decode in one call
    raw = bytearray(frame(data))
    raw_length = len(data)
    if case == "extra bytes after the frame":
        raw += b"\0\0\0\0"
    elif case == "two frames":
        raw += frame(b"more")
    elif case == "checksum flipped":
        raw[-1] ^= 1
    elif case == "content flipped":
        raw[len(raw) // 2] ^= 1
    elif case == "size lies":
        raw_length -= 1
    pool = FrameBuffers() if pooled else None
    with pytest.raises(BundleFormatError):
        decode_frame(FrameRef(0, len(raw), raw_length), bytes(raw), "frame 0", pool)
    if pool is not None:  # the buffer went back to the pool
        assert pool.take(1) is not None


def test_the_cursor_gives_each_frame_back_once_it_moves_on() -> None:
    pool = FrameBuffers()
    parts = [os.urandom(SMALL_FRAME_BYTES), os.urandom(SMALL_FRAME_BYTES + 2000)]  # small ones are never pooled
    first: list[bytearray] = []

    def frames() -> Iterator[Frame]:  # like prefetch(): keeps no reference to what it yielded
        for p in parts:
            raw = frame(p)
            f = decode_frame(FrameRef(0, len(raw), len(p)), raw, "f", pool)
            if f.buffer is not None and not first:
                first.append(f.buffer)
            yield f

    cursor = TarCursor(frames(), pool)
    assert bytes(cursor.read_some(len(parts[0]), "x")) == parts[0]
    assert bytes(cursor.read_some(len(parts[1]), "x")) == parts[1]  # moved on: frame 0's buffer was given back
    assert pool.take(SMALL_FRAME_BYTES) is first[0]
