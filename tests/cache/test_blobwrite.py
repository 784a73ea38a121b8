"""Writing one blob while hashing it (``bundler.cache.blobwrite``)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from bundler.cache.blobwrite import CHUNK, Cancelled, write_hashed
from bundler.hashing import git_blob_sha1


class Counting(io.RawIOBase):
    """A stream of ``data`` that counts what was read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        part = bytes(self._data[self.read_bytes : self.read_bytes + (n if n >= 0 else len(self._data))])
        self.read_bytes += len(part)
        return part


class Views:
    """A stream that only offers zero-copy views (``read`` must not be used)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self.views = 0

    def read_view(self, n: int) -> memoryview:
        out = self._view[self._pos : self._pos + min(n, 300_000)]  # shorter than asked, like a frame's end
        self._pos += len(out)
        self.views += 1
        return out

    def read(self, n: int = -1) -> bytes:
        raise AssertionError("read() used although read_view() is offered")


def test_writes_the_bytes_and_returns_both_digests(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 12345)
    seen: list[int] = []
    d = write_hashed(io.BytesIO(data), tmp_path / "blob", len(data), on_chunk=seen.append)
    assert (tmp_path / "blob").read_bytes() == data
    assert (d.size, d.sha256, d.git_sha1) == (len(data), hashlib.sha256(data).hexdigest(), git_blob_sha1(data))
    assert sum(seen) == len(data) and len(seen) == 3


def test_git_false_skips_the_sha1(tmp_path: Path) -> None:
    d = write_hashed(io.BytesIO(b"abc"), tmp_path / "blob", 3, git=False)
    assert d.sha256 == hashlib.sha256(b"abc").hexdigest() and d.git_sha1 == ""


def test_a_longer_stream_is_cut_after_one_byte_too_many(tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK)
    stream = Counting(data)
    d = write_hashed(cast(BinaryIO, stream), tmp_path / "blob", 1000)
    assert d.size == 1001 and stream.read_bytes == 1001  # never read on to the end
    assert (tmp_path / "blob").stat().st_size <= 1000  # the chunk that went over is not written


def test_zero_copy_views_are_used_when_offered(tmp_path: Path) -> None:
    data = os.urandom(1_000_000)
    stream = Views(data)
    d = write_hashed(stream, tmp_path / "blob", len(data))  # type: ignore[arg-type]
    assert (tmp_path / "blob").read_bytes() == data and d.sha256 == hashlib.sha256(data).hexdigest()
    assert stream.views >= 4


def test_cancelled_stops_at_the_next_chunk(tmp_path: Path) -> None:
    data = os.urandom(4 * CHUNK)
    polls = iter([False, False, True])
    with pytest.raises(Cancelled):
        write_hashed(io.BytesIO(data), tmp_path / "blob", len(data), cancelled=lambda: next(polls))
    assert (tmp_path / "blob").stat().st_size == 2 * CHUNK  # two chunks written, then stopped


def test_never_overwrites_nor_follows_a_link(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"keep")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "file").write_bytes(b"keep")
    for name in ("link", "file"):
        with pytest.raises(FileExistsError):
            write_hashed(io.BytesIO(b"new"), tmp_path / name, 3)
    assert (tmp_path / "target").read_bytes() == b"keep" and (tmp_path / "file").read_bytes() == b"keep"


def test_small_blobs_are_written_on_the_calling_thread_in_pieces(tmp_path: Path) -> None:
    """Under one chunk: no writer thread (issue 18), and a stream handing out several short views is joined
    whole, as is a stream longer than declared cut at one byte too many."""
    import threading

    data = os.urandom(700_000)  # Views hands out at most 300,000 bytes at a time: three pieces
    before = threading.active_count()
    seen: list[int] = []
    d = write_hashed(Views(data), tmp_path / "blob", len(data), on_chunk=seen.append)  # type: ignore[arg-type]
    assert threading.active_count() == before
    assert (tmp_path / "blob").read_bytes() == data and d.sha256 == hashlib.sha256(data).hexdigest()
    assert d.git_sha1 == git_blob_sha1(data) and sum(seen) == len(data)
    stream = Counting(os.urandom(5000))
    d = write_hashed(cast(BinaryIO, stream), tmp_path / "long", 3000)
    assert d.size == 3001 and stream.read_bytes == 3001 and (tmp_path / "long").stat().st_size == 0


def test_copy_hashed_reads_once_and_hashes_what_it_wrote(tmp_path: Path) -> None:
    from bundler.cache.blobwrite import copy_hashed

    data = os.urandom(CHUNK + 5)
    (tmp_path / "src").write_bytes(data)
    d = copy_hashed(tmp_path / "src", tmp_path / "dst", len(data), git=True)
    assert (tmp_path / "dst").read_bytes() == data
    assert d.sha256 == hashlib.sha256(data).hexdigest() and d.git_sha1 == git_blob_sha1(data) and d.size == len(data)
    with pytest.raises(FileExistsError):  # never over an existing file
        copy_hashed(tmp_path / "src", tmp_path / "dst", len(data))
