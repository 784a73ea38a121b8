"""Reading a Hugging Face cache: the walks and reads every reader shares, with typed, frozen records.

Each reader of a cache asks its own questions (``scan`` what to pack, ``verify`` what is damaged, ``doctor``
whether a recipe loads, the installer what it can reuse), but they read the same things the same way, here:

- :func:`snapshot_commits`: the commits that have a snapshot folder;
- :func:`walk_entries`: a snapshot's (or any folder's) entries, files and links, links to folders reported and
  never entered, as :class:`Entry` records; :func:`present_files` the paths huggingface_hub sees as present;
- :func:`read_tree`: ``trees/<commit>.json`` as huggingface_hub's ``read_tree_cache`` accepts it
  (:class:`TreeRead`: the bytes and the checked entries);
- :func:`read_ref` / :class:`RefText` (from :mod:`bundler.cache.names`): a ref as the client reads it;
- :func:`index_blobs`: every usable blob of a cache by name (the installer's dedup across repos);
  :func:`index_copies`: the copy layout's snapshot files by the content names their commit's listing or install
  record gives them (what a delta or incremental bundle over a copy-layout cache copies from);
- the records of a repo as a backup reads it (:class:`CachedRepo` → :class:`CachedRevision` →
  :class:`CachedFile`, :class:`CachedTree`, :class:`Leftover`), which :func:`bundler.cache.scan.scan_cache` fills.

Names (commits, blob names, temp files) are :mod:`bundler.cache.names`; the layout's paths and writes are
:mod:`bundler.cache.layout`.

    >>> [e.path for e in walk_entries(snapshot)]  # doctest: +SKIP
    ['model_index.json', 'unet/config.json']
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from .. import oscompat
from ..records import JsonRecord
from ..repofile import TreeEntry
from .layout import MAX_TREE_BYTES, iter_repo_folders, parse_tree, read_capped
from .names import RefText, inside, is_blob_name, is_commit, is_temp, listdir, read_ref

__all__ = [
    "LAYOUT_COPY",
    "LAYOUT_EMPTY",
    "LAYOUT_MIXED",
    "LAYOUT_SYMLINK",
    "SHARED_MARKER",
    "CacheLayout",
    "CachedFile",
    "CachedRepo",
    "CachedRevision",
    "CachedTree",
    "Entry",
    "Leftover",
    "NamedBy",
    "RefText",
    "TreeRead",
    "index_blobs",
    "iter_entries",
    "present_files",
    "read_ref",
    "read_tree",
    "real_root",
    "size_of",
    "snapshot_commits",
    "usable_file",
    "walk_entries",
]


CacheLayout = Literal["symlink", "copy", "mixed", "empty"]  # how a repo folder found in a cache holds its files
LAYOUT_SYMLINK: Final = "symlink"
LAYOUT_COPY: Final = "copy"
LAYOUT_MIXED: Final = "mixed"
LAYOUT_EMPTY: Final = "empty"
NamedBy = Literal["blob", "tree", "none"]  # what gives a snapshot file its content's name (CachedFile.etag)


SHARED_MARKER = ".huggingface-shared-blobs"  # <cache>/blobs/ is huggingface_hub's shared Xet store


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class CachedFile(JsonRecord, skip=("source_path", "inode", "blob_id", "xet_hash")):
    """One snapshot entry and where its content lives.

    ``etag`` is the name the cache gives the content: the blob a link points to (``named_by="blob"``), or the
    ``trees/`` listing's entry for a copy-layout file (``"tree"``); ``None`` for a copy-layout file nothing
    names (``"none"``): the backup computes it from the content. ``source`` is the real file holding the bytes
    (links resolved, always inside the cache) and ``inode`` its ``(st_dev, st_ino)``.
    """

    path: str
    size: int
    source_path: str  # a string, not a Path: a Path per file held for a whole backup costs ~400 bytes (issue 18)
    inode: tuple[int, int]
    etag: str | None
    lfs: bool
    named_by: NamedBy
    linked: bool
    blob_id: str | None = None
    xet_hash: str | None = None

    @property
    def source(self) -> Path:
        return Path(self.source_path)


@dataclass(frozen=True)
class CachedTree:
    """A ``trees/<commit>.json`` listing, kept verbatim: its bytes' sha256 and size."""

    source: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class CachedRevision(JsonRecord, convert={"files": len, "tree": lambda t: None if t is None else t.sha256}):
    """One snapshot: its commit, the refs pointing at it, its files, ``.no_exist`` markers and listing."""

    commit: str
    refs: tuple[str, ...]
    files: tuple[CachedFile, ...]
    no_exist: tuple[str, ...] = ()
    tree: CachedTree | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def json_extra(self) -> dict[str, Any]:
        return {"size": self.size}


@dataclass(frozen=True)
class CachedRepo(JsonRecord, skip=("folder",), rename={"shared": "shared_xet_blobs"}, convert={"shared": len}):
    """One repo folder. ``shared`` maps each repo blob that is a link into the shared Xet store to its Xet hash."""

    repo_type: str
    repo_id: str
    folder: Path
    layout: CacheLayout
    revisions: tuple[CachedRevision, ...]
    shared: Mapping[str, str] = field(default_factory=dict)

    @property
    def refs(self) -> dict[str, str]:
        return {ref: r.commit for r in self.revisions for ref in r.refs}

    @property
    def size(self) -> int:
        return sum(r.size for r in self.revisions)


@dataclass(frozen=True)
class Leftover(JsonRecord, skip=("repo_type", "repo_id", "commit", "path")):
    """Something in the cache a backup does not pack, and why. ``where`` is relative to the cache folder;
    ``commit`` and ``path`` are set for a snapshot entry."""

    where: str
    reason: str
    size: int = 0
    repo_type: str | None = None
    repo_id: str | None = None
    commit: str | None = None
    path: str | None = None

    def json_extra(self) -> dict[str, Any]:
        return {"repo": f"{self.repo_type}:{self.repo_id}" if self.repo_id else None}


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class Entry(JsonRecord):
    """One file or link below a folder: ``path`` relative and '/'-joined, ``full`` on disk. ``temp`` when its
    name is a writer's temp (:func:`~bundler.cache.names.is_temp`)."""

    path: str
    full: Path
    link: bool
    temp: bool


@dataclass(frozen=True)
class TreeRead(JsonRecord, skip=("raw", "entries")):
    """A ``trees/<commit>.json`` read from the cache: its bytes, and its entries when huggingface_hub would
    accept it (``entries`` None: invalid, the client ignores it)."""

    path: Path
    raw: bytes
    entries: dict[str, TreeEntry] | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def json_extra(self) -> dict[str, Any]:
        return {"size": len(self.raw), "valid": self.entries is not None}


def snapshot_commits(repo_folder: Path) -> set[str]:
    """Commits with a snapshot folder (``snapshots/<40 hex>/``) in ``repo_folder``."""
    top = repo_folder / "snapshots"
    return {n for n in listdir(top) if is_commit(n) and (top / n).is_dir()}


def iter_entries(top: str) -> Iterator[tuple[str, str, bool]]:
    """``(path, full, link)`` of every file and link (dangling ones too) below ``top``: ``path`` relative and
    '/'-joined, ``full`` on disk. One ``os.scandir`` per folder and no stat per file (the kind comes from the
    listing), plain strings (no ``Path`` per file): :func:`walk_entries`'s engine, and what ``verify`` walks a
    snapshot of many files with (issue 18). Files of a folder come first (sorted), then its sub-folders (sorted);
    links to folders are listed, never entered; FIFOs, sockets and devices are left out; unreadable folders are
    skipped."""
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                listing = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[tuple[str, str]] = []
        for e in listing:
            try:
                if e.is_symlink():
                    yield prefix + e.name, e.path, True
                elif e.is_dir(follow_symlinks=False):
                    subdirs.append((e.path, f"{prefix}{e.name}/"))
                elif e.is_file(follow_symlinks=False):
                    yield prefix + e.name, e.path, False
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def walk_entries(top: Path) -> Iterator[Entry]:
    """Files and links (dangling ones too) below ``top``, sorted; links to folders are listed, not entered."""
    for rel, full, link in iter_entries(str(top)):
        yield Entry(rel, Path(full), link, is_temp(rel.rsplit("/", 1)[-1]))


def present_files(snapshot: Path) -> set[str]:
    """Repo paths of a snapshot's files as huggingface_hub sees them (``os.path.isfile``: links followed), less
    writers' temp files and staging folders. Links to folders are not entered (as ``os.walk``). One
    ``os.scandir`` per folder, one stat per link and none per regular file, plain strings (issue 18: ``os.walk``
    stat-ed each link twice and ``relpath`` cost ~10 us a file)."""
    out: set[str] = set()
    if not snapshot.is_dir():
        return out
    stack: list[tuple[str, str]] = [(str(snapshot), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError:
            continue
        with it:
            for e in it:
                name = e.name
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    try:
                        entered = not e.is_symlink()
                    except OSError:
                        entered = False
                    if entered and not is_temp(name):
                        stack.append((e.path, f"{prefix}{name}/"))
                    continue
                try:
                    is_file = e.is_file()
                except OSError:
                    is_file = False
                if is_file and not is_temp(name):
                    out.add(prefix + name)
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
        return inside(real, root) and stat.S_ISREG(os.stat(oscompat.extended_path(real)).st_mode)
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


def index_copies(cache_dir: Path, root: Path) -> dict[str, list[Path]]:
    """Content name (sha256, or the etag: LFS sha256 or git blob id) → real snapshot files said to hold it.

    In the copy layout (and the real client's without symlinks) ``blobs/`` is empty and a snapshot file's name
    carries no hash: what it holds is known from its commit's install record (``<repo>/.hfbundle/<commit>.json``:
    sha256 and etag of every file hfbundle installed) or its ``trees/<commit>.json`` (the etag). Only a regular
    file, not a link, of the described size inside the cache is listed. Nothing is hashed here: a candidate is
    evidence, not proof, and the installer re-hashes one before it copies from it (and while it copies)."""
    from ..errors import HfBundleError
    from .records import read_record  # records reads the lock format: imported only when a copy is wanted

    index: dict[str, list[Path]] = {}
    for repo_type, repo_id, folder in iter_repo_folders(cache_dir):
        for commit in sorted(snapshot_commits(folder)):
            described: list[tuple[str, int, str]] = []  # (path, size, content name)
            try:
                tree = read_tree(folder / "trees" / f"{commit}.json")
            except OSError:
                tree = None
            for path, entry in (tree.entries or {}).items() if tree is not None else ():
                described.append((path, entry.size, entry.etag))
            try:
                record = read_record(cache_dir, repo_type, repo_id, commit)
            except HfBundleError:  # a damaged record is doctor's to report; here it vouches for nothing
                record = None
            for f in record.repo.files if record is not None else ():
                described += [(f.path, f.size, name) for name in {f.etag, f.content_sha256} if name]
            snap = folder / "snapshots" / commit
            for path, size, name in described:
                full = snap / path
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_size == size and inside(Path(os.path.realpath(full)), root):
                    paths = index.setdefault(name, [])
                    if full not in paths:
                        paths.append(full)
    return index


def size_of(path: Path) -> int:
    """Bytes of a file, or of the files below a folder (links not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for dirpath, _dirs, filenames in os.walk(path):
        for name in filenames:
            try:
                fst = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(fst.st_mode):
                total += fst.st_size
    return total
