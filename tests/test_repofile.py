"""RepoFile and its trees entry (bundler.repofile): the shape huggingface_hub writes, read back unchanged."""

from __future__ import annotations

import json

from bundler.cache.layout import parse_tree, tree_json
from bundler.repofile import RepoFile, TreeEntry

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
