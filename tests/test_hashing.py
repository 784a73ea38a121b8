"""hashing.digest_paths: the batched hasher verify and backup use for many files (issue 18)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bundler.hashing import (
    SMALL_FILE,
    InodeHasher,
    all_sha1,
    all_sha256,
    digest_file,
    digest_path,
    digest_paths,
    git_blob_sha1,
)


def test_digest_paths_matches_digest_file_in_job_order(tmp_path: Path) -> None:
    sizes = [0, 1, 4096, SMALL_FILE, SMALL_FILE + 1, 3 * SMALL_FILE + 7] + [1024 + i for i in range(300)]
    paths = []
    for i, size in enumerate(sizes):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(size))
        paths.append(p)
    jobs = [(str(p), True, True, size) for p, size in zip(paths, sizes, strict=True)]
    for threads in (1, 2):
        got = list(digest_paths(jobs, threads=threads))
        assert len(got) == len(paths)
        for p, g in zip(paths, got, strict=True):
            assert not isinstance(g, OSError)
            assert g.digests == digest_file(str(p))
            assert (g.dev, g.ino) == (os.stat(p).st_dev, os.stat(p).st_ino)


def test_digest_path_computes_only_what_is_asked_unless_hard_linked(tmp_path: Path) -> None:
    data = b"small regular file\n" * 50
    p = tmp_path / "a"
    p.write_bytes(data)
    only_git = digest_path(str(p), sha256=False, git=True).digests
    assert only_git.git_sha1 == git_blob_sha1(data) and only_git.sha256 == ""
    only_sha = digest_path(str(p), sha256=True, git=False).digests
    assert only_sha.sha256 == hashlib.sha256(data).hexdigest() and only_sha.git_sha1 == ""
    os.link(p, tmp_path / "b")  # another name may need the other hash: both, so the inode is read once
    both = digest_path(str(p), sha256=False, git=True)
    assert both.nlink == 2 and both.digests.sha256 == hashlib.sha256(data).hexdigest()
    hasher = InodeHasher()
    hasher.remember(both)
    assert hasher.known((both.dev, both.ino), sha256=True, git=True) == both.digests
    assert hasher.bytes_hashed == len(data)


def test_digest_paths_reports_unreadable_and_odd_files_in_place(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"x" * 10)
    (tmp_path / "folder").mkdir()
    jobs = [(str(tmp_path / "missing"), True, False, 0), (str(tmp_path / "folder"), True, False, 0)]
    jobs.append((str(good), True, False, 10))
    missing, folder, ok = digest_paths(jobs, threads=2)
    assert isinstance(missing, FileNotFoundError)
    assert isinstance(folder, OSError)
    assert not isinstance(ok, OSError) and ok.digests.size == 10


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_digest_path_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        digest_path(str(fifo))


def test_all_sha256_and_all_sha1_check_each_value() -> None:
    assert all_sha256([]) and all_sha1([])
    assert all_sha256(["a" * 64, "0" * 64]) and all_sha1(["a" * 40, "9" * 40])
    assert not all_sha256(["a" * 64, "A" * 64]) and not all_sha1(["a" * 40, "g" * 40])
    assert not all_sha256(["a" * 64, ""]) and not all_sha1(["a" * 41])
    # Joined by newlines to be matched at once: a value holding one is not two good values.
    assert not all_sha1(["a" * 40 + "\n" + "b" * 40]) and not all_sha256(["a" * 64 + "\n"])


def test_inode_hasher_reports_progress_in_batches(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    hasher = InodeHasher(on_hashed=lambda done, files: calls.append((done, files)))
    paths = []
    for i in range(600):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x" * (i + 1))
        paths.append(p)
    for p in paths:
        hasher.digest(p)
    assert calls == [(sum(range(1, 257)), 256), (sum(range(257, 513)), 256)]  # every 256 files, not each
    hasher.report_progress()
    hasher.report_progress()  # nothing more: no empty call
    assert len(calls) == 3 and calls[2] == (sum(range(513, 601)), 88)
    big = tmp_path / "big"
    big.write_bytes(b"y" * (1 << 20))
    hasher.digest(big)  # a MiB is reported at once
    assert calls[3] == (1 << 20, 1) and sum(c[0] for c in calls) == hasher.bytes_hashed
