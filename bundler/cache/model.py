"""Reading a Hugging Face cache: the walks and reads every reader shares, with typed, frozen records.

Each reader of a cache asks its own questions (``scan`` what to pack, ``verify`` what is damaged, ``doctor``
whether a recipe loads, the installer what it can reuse), but they read the same things the same way, here:

- :func:`snapshot_commits`: the commits that have a snapshot folder;
- :func:`walk_entries`: a snapshot's (or any folder's) entries, files and links, links to folders reported and
  never entered, as :class:`Entry` records; :func:`present_files` the paths huggingface_hub sees as present;
- :func:`read_tree`: ``trees/<commit>.json`` as huggingface_hub's ``read_tree_cache`` accepts it
  (:class:`TreeRead`: the bytes and the checked entries);
- :func:`read_ref` / :class:`RefText` (from :mod:`bundler.cache.names`): a ref as the client reads it;
- :func:`index_blobs`: every usable blob of a cache by name (the installer's dedup across repos).

Names (commits, blob names, temp files) are :mod:`bundler.cache.names`; the layout's paths and writes are
:mod:`bundler.cache.layout`.

    >>> [e.path for e in walk_entries(snapshot)]  # doctest: +SKIP
    ['model_index.json', 'unet/config.json']
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layout import MAX_TREE_BYTES, iter_repo_folders, parse_tree, read_capped
from .names import RefText, inside, is_blob_name, is_commit, is_temp, listdir, read_ref

__all__ = [
    "Entry",
    "RefText",
    "TreeRead",
    "index_blobs",
    "present_files",
    "read_ref",
    "read_tree",
    "real_root",
    "snapshot_commits",
    "usable_file",
    "walk_entries",
]


@dataclass(frozen=True)
class Entry:
    """One file or link below a folder: ``path`` relative and '/'-joined, ``full`` on disk. ``temp`` when its
    name is a writer's temp (:func:`~bundler.cache.names.is_temp`)."""

    path: str
    full: Path
    link: bool
    temp: bool

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "full": str(self.full), "link": self.link, "temp": self.temp}


@dataclass(frozen=True)
class TreeRead:
    """A ``trees/<commit>.json`` read from the cache: its bytes, and its entries when huggingface_hub would
    accept it (``entries`` None: invalid, the client ignores it)."""

    path: Path
    raw: bytes
    entries: dict[str, dict[str, Any]] | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "size": len(self.raw), "valid": self.entries is not None}


def snapshot_commits(repo_folder: Path) -> set[str]:
    """Commits with a snapshot folder (``snapshots/<40 hex>/``) in ``repo_folder``."""
    top = repo_folder / "snapshots"
    return {n for n in listdir(top) if is_commit(n) and (top / n).is_dir()}


def walk_entries(top: Path) -> Iterator[Entry]:
    """Files and links (dangling ones too) below ``top``, sorted; links to folders are listed, not entered."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        keep = []
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):  # os.walk lists links to folders here, never descends
                filenames.append(d)
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                mode = os.lstat(full).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                rel = os.path.relpath(full, top).replace(os.sep, "/")
                yield Entry(rel, Path(full), stat.S_ISLNK(mode), is_temp(name))


def present_files(snapshot: Path) -> set[str]:
    """Repo paths of a snapshot's files as huggingface_hub sees them (``os.path.isfile``: links followed), less
    writers' temp files and staging folders."""
    out: set[str] = set()
    if not snapshot.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(snapshot):
        dirnames[:] = [d for d in dirnames if not is_temp(d)]
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not is_temp(name) and os.path.isfile(full):
                out.add(os.path.relpath(full, snapshot).replace(os.sep, "/"))
    return out


def read_tree(path: Path) -> TreeRead | None:
    """``trees/<commit>.json``, at most :data:`~bundler.cache.layout.MAX_TREE_BYTES` + 1 bytes read (a longer
    one is invalid); None when it does not exist. Any other ``OSError`` is the caller's to report."""
    raw = read_capped(path, MAX_TREE_BYTES + 1)
    if raw is None:
        return None
    return TreeRead(path, raw, parse_tree(raw))


def real_root(cache_dir: Path) -> Path:
    return Path(os.path.realpath(cache_dir))


def usable_file(path: Path, root: Path) -> bool:
    """A regular file (or a link to one) inside the cache whose resolved root is ``root``."""
    try:
        real = Path(os.path.realpath(path))
        return inside(real, root) and stat.S_ISREG(os.stat(real).st_mode)
    except OSError:
        return False


def index_blobs(cache_dir: Path, root: Path) -> dict[str, list[Path]]:
    """Blob name → blob files of every repo in the cache (links into the shared Xet store included)."""
    index: dict[str, list[Path]] = {}
    for _type, _id, folder in iter_repo_folders(cache_dir):
        blobs = folder / "blobs"
        for name in listdir(blobs):
            if is_blob_name(name) and usable_file(blobs / name, root):
                index.setdefault(name, []).append(blobs / name)
    return index
