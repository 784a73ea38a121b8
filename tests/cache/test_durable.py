"""Early write-out and the durability barrier (``bundler.cache.durable``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bundler.cache import durable


def test_writeback_starts_write_out_every_step_over_contiguous_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int, int]] = []

    def record(fd: int, offset: int, nbytes: int, flags: int) -> int:
        calls.append((fd, offset, nbytes, flags))
        return 0

    monkeypatch.setattr(durable, "_sync_file_range", lambda: record)
    wb = durable.Writeback(7, step=100)
    for n in (60, 60, 30, 10, 200, 5):
        wb.wrote(n)
    # 120 bytes reach the step; 40 more do not, with 200 more they do (240); the last 5 wait for the barrier.
    assert calls == [(7, 0, 120, 2), (7, 120, 240, 2)]


def test_writeback_does_nothing_where_the_call_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[None] = []
    monkeypatch.setattr(durable, "_sync_file_range", lambda: lookups.append(None))  # finds nothing
    wb = durable.Writeback(-1, step=1)  # a bad fd would fail any real call
    wb.wrote(10)
    wb.wrote(10)
    assert lookups == [None]  # looked up once, at construction; the writes call nothing and raise nothing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux-only")
def test_writeback_on_a_real_file_keeps_its_bytes(tmp_path: Path) -> None:
    assert durable._sync_file_range() is not None
    path = tmp_path / "f"
    data = os.urandom(3 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        wb = durable.Writeback(fd, step=1 << 20)
        for i in range(0, len(data), 700_000):
            os.write(fd, data[i : i + 700_000])
            wb.wrote(len(data[i : i + 700_000]))
    finally:
        os.close(fd)
    durable.sync_filesystem(tmp_path)
    assert path.read_bytes() == data


def test_sync_filesystem_falls_back_to_fsync_of_written_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without syncfs (macOS, Windows) the barrier fsyncs each written file and the folders holding them."""
    from bundler import oscompat

    (tmp_path / "sub").mkdir()
    files = [tmp_path / "a", tmp_path / "sub" / "b"]
    for f in files:
        f.write_bytes(b"x")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(oscompat, "libc_function", lambda name: None)

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    durable.sync_filesystem(tmp_path, files)
    assert sorted(synced) == sorted(
        [str(tmp_path / "a"), str(tmp_path / "sub" / "b"), str(tmp_path), str(tmp_path / "sub")]
    )
