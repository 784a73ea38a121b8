"""``BundleWriter.add_files`` (issue 18): small blobs packed in batches, or from a frame made while hashing, give
the bytes ``add_blob`` gives, and every check of ``add_blob`` is made."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from bundler.bundle.manifest import BlobEntry, Manifest
from bundler.bundle.writer import BundleWriter, PackedBlob, pack_blob
from bundler.errors import IntegrityError


@dataclass(frozen=True)
class _Job:
    sha256: str
    size: int
    source: str
    git_sha1: str | None
    label: str
    packed: PackedBlob | None = None


def _files(tmp_path: Path, sizes: list[int]) -> list[tuple[str, bytes]]:
    out = []
    for i, size in enumerate(sizes):
        text = (b"text %06d " % i) * (size // 12 + 1)
        data = text[:size] if i % 2 and size >= 12 else os.urandom(size)
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        out.append((str(path), data))
    return out


def _git(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _write(target: Path, files: list[tuple[str, bytes]], *, threads: int, how: str) -> bytes:
    shas = [hashlib.sha256(d).hexdigest() for _, d in files]
    manifest = Manifest(repos=(), blobs=tuple(BlobEntry(s, len(d)) for s, (_, d) in zip(shas, files, strict=True)))
    with BundleWriter(target, threads=threads) as w:
        w.write_manifest(manifest.dumps(), manifest=manifest)
        if how == "add_blob":
            for sha, (path, data) in zip(shas, files, strict=True):
                with open(path, "rb") as stream:
                    w.add_blob(sha, len(data), stream, expected_git_sha1=_git(data))
        else:
            jobs = [
                _Job(
                    sha, len(data), path, _git(data), path, pack_blob(data, None, git=True) if how == "packed" else None
                )
                for sha, (path, data) in zip(shas, files, strict=True)
            ]
            assert list(w.add_files(jobs)) == jobs
    return target.read_bytes()


def test_add_files_gives_the_bytes_of_add_blob(tmp_path: Path) -> None:
    files = _files(tmp_path, [0, 1, *[100, 1023, 1024, 3000, 70_000, 300_000, 2500, 5000] * 8])
    reference = _write(tmp_path / "a.hfb", files, threads=1, how="add_blob")
    for threads in (1, 3):
        for how in ("files", "packed"):
            assert _write(tmp_path / f"{how}{threads}.hfb", files, threads=threads, how=how) == reference


@pytest.mark.parametrize("damage", ["content", "shorter", "longer", "git"])
def test_add_files_checks_each_blob(tmp_path: Path, damage: str) -> None:
    files = _files(tmp_path, [3000] * 5)
    path, data = files[3]
    sha = hashlib.sha256(data).hexdigest()
    git = _git(data)
    if damage == "content":
        Path(path).write_bytes(b"x" + data[1:])
    elif damage == "shorter":
        Path(path).write_bytes(data[:-1])
    elif damage == "longer":
        Path(path).write_bytes(data + b"x")
    else:
        git = "0" * 40
    manifest = Manifest(repos=(), blobs=tuple(BlobEntry(hashlib.sha256(d).hexdigest(), len(d)) for _, d in files))
    jobs = [_Job(hashlib.sha256(d).hexdigest(), len(d), p, _git(d), p) for p, d in files]
    jobs[3] = _Job(sha, len(data), path, git, path)
    target = tmp_path / "out.hfb"
    stored: list[_Job] = []
    with pytest.raises(IntegrityError), BundleWriter(target, threads=2) as w:
        w.write_manifest(manifest.dumps(), manifest=manifest)
        stored.extend(w.add_files(jobs))
    assert stored == jobs[:3]  # the one that failed is the one after the last stored
    assert not target.exists()
