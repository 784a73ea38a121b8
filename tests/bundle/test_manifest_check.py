"""The writer's check of a caller's own manifest (``check_encoded``, issue 18) refuses exactly what
``Manifest.loads`` refuses in its bytes, with the same message, without parsing the whole text."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bundler.bundle.manifest import BlobEntry, Manifest, RepoEntry, SnapshotEntry, check_encoded
from bundler.bundle.writer import BundleWriter
from bundler.errors import BundleFormatError, UsageError
from bundler.repofile import RepoFile

COMMIT = "c" * 40
SHA_A, SHA_B = "a" * 64, "b" * 64


def _file(path: str, sha: str = SHA_A, size: int = 3, **more: Any) -> RepoFile:
    return RepoFile(path, size, "1" * 40, sha256=sha, **more)


def _manifest(
    files: tuple[RepoFile, ...], blobs: tuple[BlobEntry, ...] = (BlobEntry(SHA_A, 3),), **more: Any
) -> Manifest:
    snap = SnapshotEntry(COMMIT, files, tree="none")
    return Manifest(repos=(RepoEntry("model", "org/x", {"main": COMMIT}, (snap,)),), blobs=blobs, **more)


GOOD = _manifest((_file("a.txt"), _file("b/c.txt")))
BAD = {
    "undeclared blob": _manifest((_file("a.txt", SHA_B),)),
    "size differs": _manifest((_file("a.txt", size=4),)),
    "case": _manifest((_file("A.txt"), _file("a.txt"))),
    "twice": _manifest((_file("a.txt"), _file("a.txt"))),
    "below a file": _manifest((_file("a"), _file("a/b"))),
    "deep below a file": _manifest((_file("x/y.txt"), _file("a/b"), _file("a/b/c/d.txt"), _file("a/b2"))),
    "bad path": _manifest((_file("../a"),)),
    "bad sha": _manifest((_file("a.txt", "z" * 64),)),
    "blob twice": _manifest((_file("a.txt"),), blobs=(BlobEntry(SHA_A, 3), BlobEntry(SHA_A, 3))),
    "bad blob sha": _manifest((_file("a.txt"),), blobs=(BlobEntry(SHA_A, 3), BlobEntry("A" * 64, 3))),
    "negative blob": _manifest((), blobs=(BlobEntry(SHA_A, -1),)),
    "nan in extra": _manifest((_file("a.txt"),), extra={"x": float("nan")}),
    "bad base": _manifest((_file("a.txt"),), base="nope"),
    "bad kind": _manifest((_file("a.txt"),), kind="other"),
    "bad repo": dataclasses.replace(GOOD, repos=(RepoEntry("model", "../x", {}, ()),)),
    "expects unused": _manifest((_file("a.txt"),), expects=(BlobEntry(SHA_B, 1),)),
}


def _loads_error(manifest: Manifest) -> str | None:
    try:
        Manifest.loads(manifest.dumps())
    except BundleFormatError as e:
        return e.message
    return None


def test_a_good_manifest_passes() -> None:
    assert _loads_error(GOOD) is None
    check_encoded(GOOD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_refused_as_loads_refuses_its_bytes(name: str, tmp_path: Path) -> None:
    manifest = BAD[name]
    expected = _loads_error(manifest)
    assert expected is not None
    with pytest.raises(BundleFormatError) as info:
        check_encoded(manifest)
    assert info.value.message == expected
    writer = BundleWriter(tmp_path / "b.hfb")
    with pytest.raises(UsageError, match="invalid manifest") as refused:
        writer.write_manifest(manifest.dumps(), manifest=manifest)
    assert expected in refused.value.message
    writer.abort()
    assert not (tmp_path / "b.hfb").exists()
