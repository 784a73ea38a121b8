"""The shared reads of a cache (``bundler.cache.model``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bundler.cache import model
from bundler.cache.layout import RepoLayout, tree_json
from bundler.repofile import TreeEntry

C = "c" * 40
SHA1 = "b" * 40


def _repo(tmp_path: Path) -> RepoLayout:
    lay = RepoLayout(tmp_path, "model", "org/m")
    lay.blobs.mkdir(parents=True)
    (lay.blobs / SHA1).write_bytes(b"{}")
    snap = lay.snapshot(C)
    (snap / "sub").mkdir(parents=True)
    os.symlink(f"../../blobs/{SHA1}", snap / "config.json")
    (snap / "plain.txt").write_text("x")
    (snap / ".hfbundle-plain.txt.0a1b2c3d.tmp").write_text("half")
    os.symlink("sub", snap / "folder-link")
    os.symlink("../../blobs/gone", snap / "dangling.bin")
    return lay


def test_walk_entries_lists_links_never_enters_them(tmp_path: Path) -> None:
    lay = _repo(tmp_path)
    entries = {e.path: e for e in model.walk_entries(lay.snapshot(C))}
    assert set(entries) == {
        "config.json",
        "plain.txt",
        ".hfbundle-plain.txt.0a1b2c3d.tmp",
        "folder-link",
        "dangling.bin",
    }
    assert entries["folder-link"].link and entries["config.json"].link and not entries["plain.txt"].link
    assert entries[".hfbundle-plain.txt.0a1b2c3d.tmp"].temp and not entries["plain.txt"].temp


def test_present_files_as_the_client_sees_them(tmp_path: Path) -> None:
    lay = _repo(tmp_path)
    assert model.present_files(lay.snapshot(C)) == {"config.json", "plain.txt"}  # no temp, no dangling, no folder
    assert model.present_files(lay.snapshot("d" * 40)) == set()


def test_snapshot_commits(tmp_path: Path) -> None:
    lay = _repo(tmp_path)
    (lay.folder / "snapshots" / "not-a-commit").mkdir()
    (lay.folder / "snapshots" / ("e" * 40)).write_text("a file")
    assert model.snapshot_commits(lay.folder) == {C}


def test_read_tree(tmp_path: Path) -> None:
    lay = _repo(tmp_path)
    assert model.read_tree(lay.tree(C)) is None
    lay.tree(C).parent.mkdir()
    lay.tree(C).write_bytes(tree_json({"config.json": TreeEntry(2, SHA1)}))
    read = model.read_tree(lay.tree(C))
    assert read is not None and read.entries == {"config.json": TreeEntry(2, SHA1)}
    assert len(read.sha256) == 64 and read.to_json()["valid"]
    lay.tree(C).write_text(json.dumps({"format_version": 2, "files": {}}))
    read = model.read_tree(lay.tree(C))
    assert read is not None and read.entries is None  # huggingface_hub ignores it


def test_index_blobs(tmp_path: Path) -> None:
    lay = _repo(tmp_path)
    (lay.blobs / "not-a-hash").write_text("x")
    os.symlink("/etc/hostname", lay.blobs / ("f" * 40))  # leads outside the cache: not usable
    root = model.real_root(tmp_path)
    assert model.index_blobs(tmp_path, root) == {SHA1: [lay.blobs / SHA1]}


def test_size_of(tmp_path: Path) -> None:
    lay = _repo(tmp_path)
    assert model.size_of(lay.blobs / SHA1) == 2
    assert model.size_of(lay.folder) == 2 + 1 + 4  # files below, links not followed
