"""Read a Hugging Face hub cache as it really is on disk, into records a backup can pack.

Every shape huggingface_hub leaves behind is understood (``docs/BACKUP.md``):

- symlink layout: ``snapshots/<commit>/<path>`` → ``../../blobs/<etag>``, the blob named by its content hash;
- copy layout (no symlinks: Windows, some network filesystems, ``HF_HUB_DISABLE_SYMLINKS=1``): real files in
  ``snapshots/``, ``blobs/`` empty. The file's name carries no hash: its etag comes from ``trees/<commit>.json``
  when that lists it, else the backup computes it from the content (:func:`guess_lfs` decides which kind);
- the cache-wide shared Xet store: ``blobs/<etag>`` is itself a link to ``<cache>/blobs/<2hex>/<xet hash>``;
- several snapshots sharing blobs, ``refs/<name>`` and ``refs/refs/pr/N``, ``.no_exist/<commit>/<path>`` markers,
  ``trees/<commit>.json`` listings;
- leftovers, which are reported and never packed: downloads in flight (``*.incomplete``), temp files of
  interrupted writes (ours and huggingface_hub's), dangling links, links leading outside the cache, orphan blobs,
  refs to commits without a snapshot, names the Hub cannot produce.

Nothing here hashes content (so ``backup --dry-run`` costs a directory walk), writes anything, uses the network
or imports huggingface_hub.

Longer than ~500 lines: one walk of a whole cache, every shape huggingface_hub leaves, into the records of
:mod:`bundler.cache.model`.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import CacheError, UnsafePathError, UsageError
from ..hashing import is_sha256
from ..paths import REPO_TYPES, check_ref, check_relpath, check_repo_id
from ..records import JsonRecord
from ..repofile import TreeEntry
from .layout import iter_repo_folders
from .leftovers import root_leftovers
from .model import (
    LAYOUT_COPY,
    LAYOUT_EMPTY,
    LAYOUT_MIXED,
    LAYOUT_SYMLINK,
    CachedFile,
    CachedRepo,
    CachedRevision,
    CachedTree,
    CacheLayout,
    Leftover,
    read_tree,
    size_of,
)
from .names import (
    guess_lfs,
    inside,
    is_blob_name,
    is_commit,
    is_temp,
    linked_blob,
    listdir,
    read_ref,
    shared_xet,
)

__all__ = ["CacheScan", "guess_lfs", "scan_cache"]

_REPO_PARTS = ("blobs", "snapshots", "refs", "trees", ".no_exist")


@dataclass(frozen=True)
class CacheScan(JsonRecord):
    """What :func:`scan_cache` found: the selected repos, leftovers, and notes for the user."""

    cache_dir: Path
    repos: tuple[CachedRepo, ...]
    leftovers: tuple[Leftover, ...]
    notes: tuple[str, ...] = ()


# -- scanning ------------------------------------------------------------------------------------------------


def scan_cache(
    cache_dir: Path | str,
    patterns: Sequence[str] = (),
    *,
    repo_type: str | None = None,
    revision: str | None = None,
) -> CacheScan:
    """Read the repos of ``cache_dir`` matching ``patterns`` (repo ids or ``fnmatch`` globs on them, case
    insensitive; none: every repo) of ``repo_type``, with every revision, or only ``revision`` (a ref name or a
    commit) and the refs pointing at it.

    Raises :class:`UsageError` when a pattern matches no cached repo or no repo has ``revision``, and
    :class:`CacheError` when ``cache_dir`` is not a folder.

    >>> scan = scan_cache("~/.cache/huggingface/hub", ["stabilityai/*"])  # doctest: +SKIP
    >>> [(r.repo_id, [v.commit[:8] for v in r.revisions]) for r in scan.repos]  # doctest: +SKIP
    [('stabilityai/sd-turbo', ['b261bac6'])]
    """
    cache = Path(os.path.abspath(Path(cache_dir).expanduser()))
    if not cache.is_dir():
        raise CacheError(
            f"no cache at {cache}", hint="point --cache-dir (or HF_HUB_CACHE) at a Hugging Face hub cache folder"
        )
    if repo_type is not None and repo_type not in REPO_TYPES:
        raise UsageError(f"unknown repo type {repo_type!r}", hint=f"use one of {', '.join(REPO_TYPES)}")
    root = Path(os.path.realpath(cache))
    leftovers: list[Leftover] = []
    folders: list[tuple[str, str, Path]] = []
    for rtype, rid, folder in iter_repo_folders(cache):
        try:
            check_repo_id(rid)
        except UnsafePathError:
            leftovers.append(Leftover(folder.name, "not a repo folder the Hub can produce (invalid repo id)"))
            continue
        folders.append((rtype, rid, folder))
    unfiltered = not patterns and repo_type is None
    chosen = _select([f for f in folders if repo_type is None or f[0] == repo_type], patterns, repo_type)

    repos: list[CachedRepo] = []
    notes: list[str] = []
    used_xet: set[str] = set()
    missing_revision: list[str] = []
    for rtype, rid, folder in chosen:
        scanner = _RepoScanner(cache, root, rtype, rid, folder)
        repo = scanner.scan(revision)
        used_xet.update(scanner.all_shared.values())
        leftovers += scanner.leftovers
        notes += scanner.notes
        if repo is None:
            missing_revision.append(rid)
        else:
            repos.append(repo)
    if revision is not None and not repos:
        raise UsageError(
            f"no selected repo has revision {revision!r} in {cache}",
            hint="give a ref name (main, v1.0, refs/pr/1) or a full 40-hex commit that is cached",
        )
    if missing_revision:
        notes.append(f"revision {revision!r} is not cached for {', '.join(missing_revision)}: left out")
    if unfiltered:
        leftovers += root_leftovers(cache, root, used_xet)
    return CacheScan(cache, tuple(repos), tuple(leftovers), tuple(notes))


def _select(
    folders: list[tuple[str, str, Path]], patterns: Sequence[str], repo_type: str | None
) -> list[tuple[str, str, Path]]:
    if not patterns:
        if not folders:
            raise UsageError(
                f"nothing to back up: the cache holds no {repo_type + ' ' if repo_type else ''}repos",
                hint="check --cache-dir / HF_HUB_CACHE and --type",
            )
        return folders
    chosen: dict[Path, tuple[str, str, Path]] = {}
    for pattern in patterns:
        pat = pattern.lower()
        hits = [f for f in folders if fnmatch.fnmatchcase(f[1].lower(), pat)]
        if not hits:
            ids = sorted({f[1] for f in folders})
            close = difflib.get_close_matches(pattern, ids, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"cached: {', '.join(ids[:8]) or 'nothing'}"
            raise UsageError(f"no cached {repo_type or 'repo'} matches {pattern!r}", hint=hint)
        for f in hits:
            chosen.setdefault(f[2], f)
    return sorted(chosen.values(), key=lambda f: f[2].name)


class _RepoScanner:
    """Reads one repo folder. Collects leftovers (tagged with their commit, so a ``revision`` filter can drop
    those of other snapshots) and notes."""

    def __init__(self, cache: Path, root: Path, repo_type: str, repo_id: str, folder: Path) -> None:
        self.cache = cache
        self.root = root
        self.repo_type = repo_type
        self.repo_id = repo_id
        self.folder = folder
        self.blobs = folder / "blobs"
        self._blobs_str = str(self.blobs)
        self.store = cache / "blobs"
        # blobs/ resolved once, when it is a real folder inside the cache: a link to blobs/<name> then resolves
        # with one readlink and one lstat instead of a realpath (an lstat per component) per file (issue 18).
        real_blobs = Path(os.path.realpath(self.blobs))
        self._blobs_real = real_blobs if inside(real_blobs, root) and real_blobs.is_dir() else None
        self._blobs_prefix = os.path.join(self._blobs_real, "") if self._blobs_real is not None else None
        self.leftovers: list[Leftover] = []
        self.notes: list[str] = []
        self.all_shared: dict[str, str] = {}  # every snapshot's, for orphan detection in the shared store
        self._pending: list[Leftover] = []

    @property
    def label(self) -> str:
        return f"{self.repo_type} {self.repo_id}"

    def _left(self, path: Path, reason: str, *, commit: str | None = None, file: str | None = None) -> None:
        self._pending.append(
            Leftover(
                os.path.relpath(path, self.cache).replace(os.sep, "/"),
                reason,
                size_of(path),
                self.repo_type,
                self.repo_id,
                commit,
                file,
            )
        )

    def scan(self, revision: str | None) -> CachedRepo | None:
        for name in listdir(self.folder):
            if name not in _REPO_PARTS:
                self._left(self.folder / name, "not part of the cache layout")
        refs = self._refs()
        commits = self._snapshot_folders()
        trees = self._trees(commits)
        markers = self._markers(commits)
        revisions: dict[str, tuple[CachedFile, ...]] = {c: self._snapshot(c, trees.get(c)) for c in sorted(commits)}
        for ref, commit in sorted(refs.items()):
            if commit not in commits:
                self._left(self.folder / "refs" / ref, f"ref {ref!r} points at {commit}, which has no snapshot")
        self._blob_leftovers(revisions)

        selected = sorted(commits)
        if revision is not None:
            if is_commit(revision) and revision in commits:
                selected = [revision]
            elif revision in refs and refs[revision] in commits:
                selected = [refs[revision]]
            else:
                selected = []
        self.leftovers = [x for x in self._pending if x.commit is None or x.commit in selected]
        if revision is not None and not selected:
            return None
        out: list[CachedRevision] = []
        for commit in selected:
            tree = trees.get(commit)
            cached_tree = tree[0] if tree is not None else None
            if tree is not None:
                present = {f.path for f in revisions[commit]}
                lacking = sorted(set(tree[1]) - present)
                if lacking:
                    self.notes.append(
                        f"{self.label}@{commit[:8]}: trees/{commit}.json lists {len(lacking)} file(s) the snapshot "
                        f"lacks (e.g. {lacking[0]}): a restore writes a listing of the files present instead"
                    )
            out.append(
                CachedRevision(
                    commit,
                    tuple(sorted(r for r, c in refs.items() if c == commit)),
                    revisions[commit],
                    tuple(sorted(markers.get(commit, ()))),
                    cached_tree,
                )
            )
        chosen_files = [f for r in out for f in r.files]
        linked = sum(f.linked for f in chosen_files)
        layout: CacheLayout = (
            LAYOUT_EMPTY
            if not chosen_files
            else LAYOUT_SYMLINK
            if linked == len(chosen_files)
            else LAYOUT_COPY
            if linked == 0
            else LAYOUT_MIXED
        )
        etags = {f.etag for f in chosen_files if f.linked}
        shared = {e: x for e, x in self.all_shared.items() if e in etags}
        return CachedRepo(self.repo_type, self.repo_id, self.folder, layout, tuple(out), shared)

    # -- refs --

    def _refs(self) -> dict[str, str]:
        refs: dict[str, str] = {}
        top = self.folder / "refs"
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            for d in list(dirnames):
                if os.path.islink(here / d):
                    dirnames.remove(d)
                    self._left(here / d, "a link where a folder of refs belongs")
            for name in sorted(filenames):
                path = here / name
                rel = path.relative_to(top).as_posix()
                if is_temp(name):
                    self._left(path, "temp file of an interrupted write")
                    continue
                if path.is_symlink() or not path.is_file():
                    self._left(path, "a ref must be a regular file")
                    continue
                try:
                    check_ref(rel)
                except UnsafePathError:
                    self._left(path, "not a ref name the Hub can produce")
                    continue
                try:
                    held = read_ref(path)
                except OSError:
                    held = None
                commit = held.commit if held is not None else None
                if held is None or commit is None:
                    self._left(path, "not a 40-hex commit")
                    continue
                if not held.clean:
                    self.notes.append(
                        f"{self.label}: refs/{rel} has whitespace around its commit (loaders fail on it offline); "
                        "the backup records the bare commit"
                    )
                refs[rel] = commit
        return refs

    # -- snapshots --

    def _snapshot_folders(self) -> set[str]:
        commits: set[str] = set()
        top = self.folder / "snapshots"
        for name in listdir(top):
            path = top / name
            if is_commit(name) and path.is_dir() and not path.is_symlink():
                commits.add(name)
            elif name.startswith(".hfbundle-"):
                self._left(path, "staging folder of an interrupted install")
            else:
                self._left(path, "not a snapshot (a folder named by a 40-hex commit)")
        return commits

    def _snapshot(self, commit: str, tree: tuple[CachedTree, Mapping[str, TreeEntry]] | None) -> tuple[CachedFile, ...]:
        top = os.path.join(str(self.folder), "snapshots", commit)
        listing = tree[1] if tree is not None else {}
        files: list[CachedFile] = []
        folded: set[str] = set()
        # os.walk's order and findings, with one os.scandir per folder: the kind of each entry comes from the
        # listing, and a link straight to blobs/<name> is resolved once (readlink + lstat of the blob), not
        # stat-ed by os.walk, lstat-ed again and resolved (issue 18). Strings, not Paths, per file.
        stack: list[tuple[str, str]] = [(top, "")]
        while stack:
            dirpath, prefix = stack.pop()
            try:
                with os.scandir(dirpath) as it:
                    listed_here = list(it)
            except OSError:
                continue
            up = "../" * (2 + prefix.count("/")) + "blobs/"  # how huggingface_hub's links from here start
            dirnames: dict[str, bool] = {}  # name → is a link (to a folder)
            filenames: dict[str, tuple[str, tuple[str, os.stat_result] | None]] = {}  # name → (path, its blob)
            for e in listed_here:
                try:
                    if e.is_dir(follow_symlinks=False):
                        dirnames[e.name] = False
                        continue
                    link = e.is_symlink()
                except OSError:
                    link = False
                fast = self._direct_blob(e.path, dirpath, up) if link else None
                if link and fast is None and os.path.isdir(e.path):
                    dirnames[e.name] = True
                else:
                    filenames[e.name] = (e.path, fast)
            subdirs: list[tuple[str, str]] = []
            for d in sorted(dirnames):
                here_d = os.path.join(dirpath, d)
                if dirnames[d] or is_temp(d):
                    why = "a link to a folder" if dirnames[d] else "temp folder of an interrupted write"
                    self._left(Path(here_d), why, commit=commit, file=prefix + d)
                else:
                    subdirs.append((here_d, f"{prefix}{d}/"))
            for name in sorted(filenames):
                path, fast = filenames[name]
                rel = prefix + name
                if is_temp(name):
                    self._left(Path(path), "temp file of an interrupted write", commit=commit, file=rel)
                    continue
                try:
                    check_relpath(rel)
                except UnsafePathError:
                    self._left(Path(path), "a name the Hub cannot produce", commit=commit, file=rel)
                    continue
                if rel.casefold() in folded:
                    self._left(Path(path), "differs from another entry only by case", commit=commit, file=rel)
                    continue
                entry = self._entry(commit, path, rel, listing.get(rel), fast)
                if entry is not None:
                    folded.add(rel.casefold())
                    files.append(entry)
            stack.extend(reversed(subdirs))
        return tuple(sorted(files, key=lambda f: f.path))

    def _entry(
        self, commit: str, path: str, rel: str, listed: TreeEntry | None, fast: tuple[str, os.stat_result] | None
    ) -> CachedFile | None:
        """``fast``: what :meth:`_direct_blob` found for ``path`` (then it is a link to that blob)."""
        if fast is None:
            try:
                st = os.lstat(path)
            except OSError:
                return None
            linked = stat.S_ISLNK(st.st_mode)
            if not linked and not stat.S_ISREG(st.st_mode):
                self._left(Path(path), "neither a file nor a link", commit=commit, file=rel)
                return None
        else:
            linked = True
        if fast is not None:
            real_str, rst = fast
            real = None
        else:
            real = Path(os.path.realpath(path))
            real_str = str(real)
            try:
                rst = os.stat(real)
            except OSError:
                self._left(Path(path), "dangling link: its blob is missing", commit=commit, file=rel)
                return None
        if real is not None and not inside(real, self.root):
            self._left(Path(path), f"link leading outside the cache (to {real})", commit=commit, file=rel)
            return None
        if not stat.S_ISREG(rst.st_mode):
            self._left(Path(path), "link to something that is not a file", commit=commit, file=rel)
            return None
        size, inode = rst.st_size, (rst.st_dev, rst.st_ino)
        if fast is not None:  # a link straight to the regular file blobs/<name>: no second readlink and lstat
            name = os.path.basename(real_str)
            blob_name = name if is_blob_name(name) else None
        else:
            blob_name = self._linked_blob(Path(path)) if linked else None
        if blob_name is not None:
            lfs = is_sha256(blob_name)
            blob_id = xet = None
            if listed is not None:
                if listed.etag == blob_name and listed.size == size:
                    blob_id, xet = listed.blob_id, listed.xet_hash
                else:
                    self.notes.append(
                        f"{self.label}@{commit[:8]}: {rel}: trees/{commit}.json disagrees with the blob it links to "
                        "(the blob's name is trusted)"
                    )
            if lfs and xet is None:
                xet = self.all_shared.get(blob_name)  # the store names the payload by its Xet hash
            return CachedFile(rel, size, real_str, inode, blob_name, lfs, "blob", True, blob_id, xet)
        if listed is not None:
            lfs = listed.lfs_sha256 is not None
            etag, blob_id, xet = listed.etag, listed.blob_id, listed.xet_hash
            return CachedFile(rel, size, real_str, inode, etag, lfs, "tree", linked, blob_id, xet)
        return CachedFile(rel, size, real_str, inode, None, guess_lfs(rel, size, self.repo_type), "none", linked)

    def _direct_blob(self, link: str, folder_of_link: str, up: str) -> tuple[str, os.stat_result] | None:
        """The real path and stat of the regular file ``blobs/<name>`` that ``link`` points at directly (the
        layout huggingface_hub writes), else None (then realpath decides). The snapshot's folders are real ones
        (os.walk does not enter links), so normalising the link's text resolves it as the kernel would. ``up``:
        the text of such a link from ``folder_of_link`` before the name (``../../../blobs/``): a link of that
        form is read without normalising paths (issue 18)."""
        if self._blobs_prefix is None:
            return None
        try:
            text = os.readlink(link)
        except OSError:
            return None
        name = text[len(up) :]
        if text.startswith(up) and "/" not in name and "\\" not in name:
            target = self._blobs_str + "/" + name
        else:
            target = os.path.normpath(os.path.join(folder_of_link, text))
            folder, name = os.path.split(target)
            if folder != self._blobs_str:
                return None
        if not name or name in (".", ".."):
            return None
        try:
            st = os.lstat(target)
        except OSError:
            return None
        return (self._blobs_prefix + name, st) if stat.S_ISREG(st.st_mode) else None

    def _linked_blob(self, link: Path) -> str | None:
        """``<etag>`` when ``link`` points at this repo's ``blobs/<etag>`` (a hash name); records the blob's
        link into the shared Xet store, if it is one."""
        name = linked_blob(link, self.blobs)
        if name is None:
            return None
        target = self.blobs / name
        if name not in self.all_shared and target.is_symlink():
            xet = shared_xet(target, self.store)
            if xet is not None:
                self.all_shared[name] = xet
        return name

    # -- trees, markers, blobs --

    def _trees(self, commits: set[str]) -> dict[str, tuple[CachedTree, Mapping[str, TreeEntry]]]:
        out: dict[str, tuple[CachedTree, Mapping[str, TreeEntry]]] = {}
        top = self.folder / "trees"
        for name in listdir(top):
            path = top / name
            commit = name[:-5] if name.endswith(".json") else ""
            if is_temp(name):
                self._left(path, "temp file of an interrupted write")
            elif not is_commit(commit) or path.is_symlink() or not path.is_file():
                self._left(path, "not a trees listing (trees/<commit>.json)")
            elif commit not in commits:
                self._left(path, "listing of a commit with no snapshot")
            else:
                try:
                    read = read_tree(path)
                except OSError:
                    read = None
                if read is None or read.entries is None:
                    self._left(path, "unreadable trees listing (huggingface_hub ignores it)", commit=commit)
                else:
                    out[commit] = (CachedTree(path, read.sha256, len(read.raw)), read.entries)
        return out

    def _markers(self, commits: set[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        top = self.folder / ".no_exist"
        for commit in listdir(top):
            folder = top / commit
            if commit not in commits or folder.is_symlink() or not folder.is_dir():
                self._left(folder, ".no_exist markers of a commit with no snapshot")
                continue
            snapshot = self.folder / "snapshots" / commit
            for dirpath, dirnames, filenames in os.walk(folder):
                here = Path(dirpath)
                for d in list(dirnames):
                    if os.path.islink(here / d):
                        dirnames.remove(d)
                        self._left(here / d, "a link where a folder of markers belongs", commit=commit)
                for name in filenames:
                    path = here / name
                    rel = path.relative_to(folder).as_posix()
                    if is_temp(name):
                        self._left(path, "temp file of an interrupted write", commit=commit)
                        continue
                    try:
                        check_relpath(rel)
                    except UnsafePathError:
                        self._left(path, "a marker name the Hub cannot produce", commit=commit)
                        continue
                    if path.is_symlink() or not path.is_file():
                        self._left(path, "a marker must be an empty file", commit=commit)
                    elif os.path.isfile(snapshot / rel):
                        self._left(path, "marker hiding a file the snapshot has (loaders skip the file)", commit=commit)
                    else:
                        out.setdefault(commit, []).append(rel)
        return out

    def _blob_leftovers(self, revisions: Mapping[str, tuple[CachedFile, ...]]) -> None:
        used = {f.etag for files in revisions.values() for f in files if f.linked and f.named_by == "blob"}
        for name in listdir(self.blobs):
            if name in used:  # the common case, first: no Path per blob (issue 18)
                continue
            path = self.blobs / name
            if name.endswith(".incomplete"):
                self._left(path, "download in flight or interrupted")
            elif is_temp(name):
                self._left(path, "temp file of an interrupted write")
            elif not is_blob_name(name):
                self._left(path, "not a blob (its name is not a content hash)")
            elif name not in used:
                self._left(path, "orphan blob: no snapshot uses it")
