"""The canonical manifest text (issue 18: written from the records, not by json's indenting encoder) is byte for
byte what ``json.dumps(manifest.to_json(), sort_keys=True, indent=1, ensure_ascii=False) + "\\n"`` gives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bundler.bundle.manifest import BlobEntry, Manifest, RepoEntry, SkippedFile, SnapshotEntry
from bundler.repofile import RepoFile

SHA = "ab" * 32
SHA2 = "cd" * 32
GIT = "12" * 20


def _reference(m: Manifest) -> bytes:
    return (json.dumps(m.to_json(), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"backup": {"layout": "symlink", "upstream": {"model:a/b": {"c" * 40: ["x", 'ü/"q"\\\n\t']}}}},
        {"nested": [[], {}, [1, 2.5, -0.0, 1e300, True, False, None], {"z": {}, "a": []}]},
        {"float": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "big": 10**30, "\u2028": "\x00\x1f"},
    ],
)
def test_canonical_text_is_json_dumps(extra: dict[str, Any]) -> None:
    files = (
        RepoFile("a.json", 3, GIT, None, None, SHA),
        RepoFile('dir/ünï cødé "q".bin', 0, GIT, SHA2, "e" * 64, SHA2),
        RepoFile("lfs.bin", 7, GIT, SHA, None, SHA2),  # sha256 differs from lfs_sha256: both written
        RepoFile("no_sha", 1, GIT),
    )
    manifest = Manifest(
        repos=(
            RepoEntry("model", "org/x", {"main": "c" * 40, "refs/pr/1": "c" * 40}, (SnapshotEntry("c" * 40, files),)),
            RepoEntry("dataset", "org/empty", {}, (SnapshotEntry("d" * 40, (), ("gone.txt",), "none"),)),
        ),
        blobs=(BlobEntry(SHA2, 7), BlobEntry(SHA, 3)),
        kind="backup",
        skipped=(SkippedFile("model", "org/x", "c" * 40, "bad", "corrupt: …"),),
        extra=extra,
        expects=(BlobEntry("ef" * 32, 1),),
    )
    assert manifest.dumps() == _reference(manifest)


def test_canonical_text_of_an_empty_manifest() -> None:
    manifest = Manifest(repos=(), blobs=())
    assert manifest.dumps() == _reference(manifest)
