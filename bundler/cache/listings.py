"""The ``trees/<commit>.json`` rule, in one place: when a listing may exist in a cache, and what to do with one
that may not.

huggingface_hub trusts a cached listing of a commit both ways (``docs/CACHE.md``, "Trees"): offline it raises
``IncompleteSnapshotError`` when a listed file is missing from the snapshot; online it downloads only what the
listing names instead of listing the Hub again. So the only listing that is true offline *and* online is the
Hub's complete listing of a commit whose snapshot holds every file it names. The rule hfbundle keeps:

    after any hfbundle command, ``trees/<commit>.json`` exists only if it is the Hub's complete listing of that
    commit and every file it names is in the snapshot. In every other case there is no listing.

A listing that breaks the rule is never cut down: it is moved aside to ``<repo>/.hfbundle/trees/`` (which no
huggingface_hub code reads) and the report says so. The installer, ``restore``, ``verify`` and ``doctor`` all
judge listings through this module.

    >>> trap_of({"a": {...}, "b": {...}}, present={"a"}, full=None)  # doctest: +SKIP
    'offline'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..bundle.manifest import TREE_FILES, TREE_HUB, Manifest, RepoEntry, SnapshotEntry
from ..errors import HfBundleError
from ..paths import check_relpath
from ..records import JsonRecord
from ..repofile import RepoFile, TreeEntry
from .layout import RepoLayout, iter_repo_folders
from .model import present_files, read_tree
from .names import is_commit, linked_blob, listdir
from .records import RECORD_DIR, read_record

logger = logging.getLogger(__name__)

ASIDE_DIR = (RECORD_DIR, "trees")  # <repo>/.hfbundle/trees/: beside the install records

Trap = Literal["offline", "online"]
TreeEntries = Mapping[str, TreeEntry]


def hub_listing(manifest: Manifest, repo: RepoEntry, snap: SnapshotEntry) -> dict[str, TreeEntry] | None:
    """The Hub's complete listing of ``snap``'s commit as trees entries, when the manifest knows it.

    Format 2 bundles carry it (tree mode ``hub``). A format 1 bundle (mode ``files``) knows it only when its lock
    says the bundled files are the whole commit (``upstream`` equal to them): then they are the listing."""
    if snap.tree == TREE_HUB and snap.listing is not None:
        return {f.path: f.tree_entry() for f in snap.listing}
    if snap.tree == TREE_FILES and manifest.lock is not None:
        paths = {f.path for f in snap.files}
        for locked in manifest.lock.repos:
            same = (locked.repo_type, locked.repo_id, locked.commit) == (repo.repo_type, repo.repo_id, snap.commit)
            if same and locked.upstream and set(locked.upstream) == paths:
                return {f.path: f.tree_entry() for f in snap.files}
    return None


def backup_upstream(manifest: Manifest, repo_type: str, repo_id: str, commit: str) -> set[str] | None:
    """The commit's full file list a backup carries (``extra.backup.upstream``, from the install records of the
    cache it was taken from), validated as untrusted input; None when it carries none."""
    extra = manifest.extra.get("backup") if isinstance(manifest.extra, Mapping) else None
    table = extra.get("upstream") if isinstance(extra, Mapping) else None
    by_commit = table.get(f"{repo_type}:{repo_id}") if isinstance(table, Mapping) else None
    paths = by_commit.get(commit) if isinstance(by_commit, Mapping) else None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return None
    try:
        return {check_relpath(p) for p in paths}
    except HfBundleError:
        return None


def trap_of(listing: TreeEntries, present: Collection[str], full: Collection[str] | None) -> Trap | None:
    """What a listing already in the cache does wrong, if anything.

    ``offline``: it names files the snapshot lacks (``IncompleteSnapshotError`` offline). ``online``: the commit's
    full file list is known (``full``) and the listing names other files than that, so an online client trusting
    it fetches the wrong set (an older hfbundle wrote such partial listings)."""
    if not set(listing) <= set(present):
        return "offline"
    if full is not None and set(listing) != set(full):
        return "online"
    return None


def unconfirmed(
    lay: RepoLayout,
    commit: str,
    entries: TreeEntries,
    *,
    known: Mapping[str, RepoFile],
    others: TreeEntries | None = None,
    confirm: Callable[[Path, TreeEntry], bool] | None = None,
) -> list[str]:
    """Paths of ``entries`` the snapshot does not hold with the listed content, sorted.

    A file counts as held when ``known`` (files just installed and verified, or recorded by an earlier install)
    describes it as the entry does and it exists; a link into this repo's ``blobs/`` when the blob it names is
    the entry's etag and the size matches; a copy-layout file with neither when ``others`` (a listing already in
    the cache) describes it identically and the size matches, or else when ``confirm(file, entry)`` says so (the
    install hashes it: a copy-layout file's name carries no hash). ``confirm`` is asked only once every other
    file is held, so nothing is hashed for a listing that cannot be written anyway."""
    snap_dir = lay.snapshot(commit)
    out: list[str] = []
    to_confirm: list[tuple[str, Path, TreeEntry]] = []
    for path, entry in entries.items():
        full = snap_dir / path
        try:
            size = os.path.getsize(full)  # follows links: a dangling one is missing
        except OSError:
            out.append(path)
            continue
        if size != entry.size:
            out.append(path)
            continue
        etag = entry.etag
        blob = linked_blob(full, lay.blobs)
        if blob is not None:
            if blob != etag:
                out.append(path)
            continue
        f = known.get(path)
        if f is not None and f.etag == etag and f.size == size:
            continue
        if others is not None and others.get(path) == entry:
            continue
        if confirm is not None and not os.path.islink(full):
            to_confirm.append((path, full, entry))
            continue
        out.append(path)
    if out or confirm is None:  # no listing anyway: the files left to confirm are not hashed
        out += [path for path, _full, _entry in to_confirm]
    else:
        out = [path for path, full, entry in to_confirm if not confirm(full, entry)]
    return sorted(out)


def aside_path(lay: RepoLayout, commit: str) -> Path:
    """Where a listing that breaks the rule is moved: ``<repo>/.hfbundle/trees/<commit>.json`` (``.1``… if
    taken). ``scan_cache_dir`` and the loaders never read there."""
    folder = lay.folder.joinpath(*ASIDE_DIR)
    target = folder / f"{lay.tree(commit).name}"
    n = 0
    while os.path.lexists(target):
        n += 1
        target = folder / f"{commit}.{n}.json"
    return target


@dataclass(frozen=True)
class MovedListing(JsonRecord):
    """A listing moved out of ``trees/`` because it broke the rule."""

    repo_type: str
    repo_id: str
    commit: str
    trap: Trap
    moved_to: str

    def describe(self) -> str:
        why = (
            "it names files the snapshot lacks (offline, the client would raise IncompleteSnapshotError)"
            if self.trap == "offline"
            else "it is not the commit's complete listing (online, the client would fetch only what it names)"
        )
        return f"{self.repo_id}@{self.commit[:8]}: moved trees/{self.commit}.json to {self.moved_to}: {why}"


def move_aside(lay: RepoLayout, commit: str, trap: Trap) -> MovedListing:
    """Move ``trees/<commit>.json`` aside (never cut down: its bytes are kept)."""
    source = lay.tree(commit)
    target = aside_path(lay, commit)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    logger.debug("moved %s to %s (%s trap)", source, target, trap)
    return MovedListing(lay.repo_type, lay.repo_id, commit, trap, str(target.relative_to(lay.folder)))


def settle_cache(
    cache_dir: Path, *, repos: Collection[tuple[str, str]] | None = None, recorded_only: bool = False
) -> list[MovedListing]:
    """Move aside every listing of the cache (or of ``repos``) that breaks the rule: the offline trap (it names
    files the snapshot lacks) and, where an install record knows the commit's full file list, the online trap
    (what hfbundle < 0.2 wrote: a listing of the bundled files only). ``doctor --fix`` runs it on the whole
    cache; every install with ``recorded_only`` (the commits an hfbundle install recorded: cheap, and ours)."""
    moved: list[MovedListing] = []
    for repo_type, repo_id, folder in iter_repo_folders(cache_dir):
        if repos is not None and (repo_type, repo_id) not in repos:
            continue
        trees = folder / "trees"
        if recorded_only and not (folder / RECORD_DIR).is_dir():
            continue
        lay = RepoLayout(cache_dir, repo_type, repo_id)
        for name in listdir(trees):
            commit = name[: -len(".json")]
            if not (name.endswith(".json") and is_commit(commit)):
                continue
            try:
                read = read_tree(trees / name)
            except OSError:
                continue
            parsed = read.entries if read is not None else None
            if parsed is None:
                continue  # huggingface_hub ignores an invalid listing (with a warning): no trap
            try:
                record = read_record(cache_dir, repo_type, repo_id, commit)
            except HfBundleError:
                record = None
            if recorded_only and record is None:
                continue
            full = set(record.repo.upstream) if record is not None and record.repo.upstream else None
            trap = trap_of(parsed, present_files(lay.snapshot(commit)), full)
            if trap is not None:
                moved.append(move_aside(lay, commit, trap))
    return moved
