"""RepoFile and its trees entry (bundler.repofile): the shape huggingface_hub writes, read back unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bundler.cache.layout import parse_tree, tree_json
from bundler.errors import BundleFormatError
from bundler.repofile import RepoFile, TreeEntry, files_from_json

LFS = "a" * 64
GIT = "b" * 40
XET = "c" * 64


def test_tree_entry_keys_and_order_are_huggingface_hubs() -> None:
    lfs = RepoFile("unet/w.safetensors", 10, GIT, lfs_sha256=LFS, xet_hash=XET).tree_entry()
    plain = RepoFile("config.json", 3, GIT).tree_entry()
    assert list(lfs.to_json()) == ["size", "blob_id", "lfs_sha256", "lfs_size", "xet_hash"]
    assert plain.to_json() == {"size": 3, "blob_id": GIT}
    assert (lfs.etag, plain.etag) == (LFS, GIT)


def test_tree_json_round_trips_through_parse_tree() -> None:
    entries = {"b.json": TreeEntry(3, GIT), "a.bin": TreeEntry(10, GIT, LFS, 10, XET)}
    raw = tree_json(entries)
    assert list(json.loads(raw)["files"]) == ["a.bin", "b.json"]  # sorted, as write_tree_cache does
    assert parse_tree(raw) == entries


def test_parse_tree_refuses_a_bad_entry() -> None:
    raw = json.dumps({"format_version": 1, "files": {"x": {"size": -1, "blob_id": GIT}}}).encode()
    assert parse_tree(raw) is None


# -- files_from_json: many objects at once, the same records and the same first error as from_json ----------

SHA = "d" * 64


def _good(i: int) -> dict[str, object]:
    if i % 3 == 0:
        return {"path": f"data/{i}.bin", "size": i, "blob_id": GIT, "lfs_sha256": LFS, "xet_hash": XET}
    if i % 3 == 1:
        return {"path": f"data/{i}.json", "size": i, "blob_id": GIT, "sha256": SHA}
    return {"path": f"t/{i}.txt", "size": i, "blob_id": GIT}


def _copy(items: list[Any]) -> list[Any]:
    return [dict(f) if isinstance(f, dict) else f for f in items]


def _one_by_one(items: list[Any]) -> tuple[RepoFile, ...] | str:
    try:
        return tuple(RepoFile.from_json(f) for f in _copy(items))
    except BundleFormatError as e:
        return e.message


def _together(items: list[Any]) -> tuple[RepoFile, ...] | str:
    try:
        return files_from_json(_copy(items))
    except BundleFormatError as e:
        return e.message


def test_files_from_json_reads_what_from_json_reads() -> None:
    items = [_good(i) for i in range(2500)]  # more than one chunk
    got = files_from_json(_copy(items))
    assert got == _one_by_one(items)
    assert len(got) == 2500 and got[0].lfs_sha256 == LFS and got[1].sha256 == SHA and got[2].sha256 is None


BAD = [
    {"size": 1, "blob_id": GIT},  # missing path
    {"path": "a", "size": 1, "blob_id": GIT, "extra": 1},  # unknown key
    {"path": "../a", "size": 1, "blob_id": GIT},  # unsafe path
    {"path": "a", "size": -1, "blob_id": GIT},
    {"path": "a", "size": True, "blob_id": GIT},  # a bool is not a size
    {"path": "a", "size": 1, "blob_id": GIT.upper()},
    {"path": "a", "size": 1, "blob_id": GIT[:39] + "\n"},  # a newline must not pass the one-match check
    {"path": "a", "size": 1, "blob_id": GIT + "\n" + GIT},
    {"path": "a", "size": 1, "blob_id": GIT, "lfs_sha256": LFS[:-1]},
    {"path": "a", "size": 1, "blob_id": GIT, "lfs_sha256": LFS, "sha256": SHA},  # they disagree
    {"path": "a", "size": 1, "blob_id": GIT, "sha256": 7},
    {"path": "a", "size": 1, "blob_id": GIT, "xet_hash": "x"},
    ["not", "an", "object"],
]


@pytest.mark.parametrize("bad", BAD, ids=range(len(BAD)))
@pytest.mark.parametrize("where", [0, 1500, 2999])  # first chunk, a later one, the last object
def test_files_from_json_refuses_as_from_json_does(bad: object, where: int) -> None:
    items: list[Any] = [_good(i) for i in range(3000)]
    items[where] = bad
    expected = _one_by_one(items)
    assert isinstance(expected, str)  # every case is refused
    assert _together(items) == expected


def test_files_from_json_interns_and_consumes() -> None:
    items = [_good(i) for i in range(1500)]
    shared = "".join(["d"] * 64)  # an equal string, not the same object
    raw = [dict(f) for f in items]
    got = files_from_json(raw, lambda s: shared if s == SHA else s, consume=True)
    assert raw == [None] * 1500
    assert all(f.sha256 is shared for f in got if f.sha256 == SHA)
