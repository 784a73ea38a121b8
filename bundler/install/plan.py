"""Planning an install: what installing a manifest into a cache would do, decided before anything is written.

:func:`plan_install` reads the manifest and the cache (no hashing, no writes, so ``--dry-run`` is free) and
returns an :class:`InstallPlan`: every content with its placements and the action it needs (stream, link,
none), every snapshot entry, snapshot and ref step. Every target path is checked against the cache on disk
first (:class:`Guard`). The records of the plan and of the install's report live here too;
:mod:`bundler.install.run` carries a plan out. See :mod:`bundler.install` for the whole picture.

Longer than ~500 lines: the plan's records and the install report's records live with the planner that builds
them (:mod:`bundler.install.run` fills the report).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from .. import oscompat, winnames
from ..bundle.manifest import TREE_FILES, TREE_HUB, TREE_NONE, Manifest
from ..cache import layout
from ..cache.layout import RepoLayout
from ..cache.listings import MovedListing
from ..cache.model import index_blobs, index_copies, real_root, usable_file
from ..cache.names import inside, listdir
from ..errors import BundleFormatError, InstallError, UnsafePathError
from ..paths import check_relpath
from ..progress import Progress, ProgressCallback
from ..records import JsonRecord

__all__ = [
    "DAMAGED_HINT",
    "LAYOUT_COPY",
    "LAYOUT_SYMLINK",
    "ContentStep",
    "EntryStep",
    "Guard",
    "InstallPlan",
    "InstallReport",
    "InstalledRepo",
    "Placement",
    "Progress",
    "ProgressCallback",
    "RefMove",
    "RefStep",
    "ReplacedBlob",
    "SnapshotStep",
    "plan_install",
    "size_is",
]

logger = logging.getLogger(__name__)

# What each content action means, for ``--debug``.
_ACTION_SAYS: dict[ContentAction, str] = {
    "none": "reuse: every place already holds it (checked before anything is written)",
    "link": "copy from an identical blob elsewhere in the cache (verified while copied)",
    "stream": "write from the bundle",
    "missing": "refuse: neither the bundle nor the cache holds it",
}

Layout = Literal["symlink", "copy"]  # how an install writes snapshots: links into blobs/, or real files
LAYOUT_SYMLINK: Final = "symlink"
LAYOUT_COPY: Final = "copy"
PlacementState = Literal["absent", "present"]
ContentAction = Literal["none", "stream", "link", "missing", "unavailable"]
EntryState = Literal["add", "present", "check"]
RefAction = Literal["write", "same", "keep"]
DAMAGED_HINT = "the bundle is damaged: re-copy it or rebuild it on the online machine"


# -- records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class Placement:
    """One place a content must exist: ``blobs/<etag>`` of a repo (symlink layout), or the snapshot file
    ``commit/path`` itself (copy layout). ``state`` is ``absent`` or ``present`` (to re-hash)."""

    repo_type: str
    repo_id: str
    etag: str
    state: PlacementState
    commit: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class ContentStep:
    """One unique content (by sha256) and everywhere it must land.

    ``action``: ``none`` (all present, only re-hashed), ``stream`` (from the bundle), ``link`` (from an identical
    blob elsewhere in the cache, or in the copy layout a snapshot file its listing or record names: ``cache_copies``,
    each re-hashed before it is used), ``missing`` (neither: an incremental bundle without its base),
    ``unavailable`` (a saved trees listing no source carries: no listing is written, unless the cache holds it).
    """

    sha256: str
    size: int
    placements: tuple[Placement, ...]
    action: ContentAction
    cache_copies: tuple[str, ...] = ()
    git_sha1: str | None = None  # the content's git blob id, when a regular file of the bundle names it
    where: str = ""  # "model org/name: path" of one file using it, for messages


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class EntryStep:
    """One snapshot entry. ``state``: ``add`` (absent), ``present`` (already our exact link) or ``check``
    (something is there: kept if its content verifies, replaced otherwise)."""

    repo_type: str
    repo_id: str
    commit: str
    path: str
    etag: str
    sha256: str
    size: int
    state: EntryState


@dataclass(frozen=True)
class SnapshotStep:
    repo_type: str
    repo_id: str
    commit: str
    new: bool
    tree: str
    no_exist: tuple[str, ...]


@dataclass(frozen=True)
class RefStep:
    """``action``: ``write`` (new or moved), ``same`` (already there) or ``keep`` (differs; ``keep_refs``)."""

    repo_type: str
    repo_id: str
    ref: str
    old: str | None
    new: str
    action: RefAction


@dataclass(frozen=True)
class RefMove(JsonRecord):
    repo_type: str
    repo_id: str
    ref: str
    old: str | None
    new: str


@dataclass(frozen=True)
class ReplacedBlob(JsonRecord):
    """Something the cache held under a content name whose content did not match that name."""

    repo_type: str
    repo_id: str
    path: str  # relative to the repo folder
    expected: str
    actual: str


def _count_actions(contents: tuple[ContentStep, ...]) -> dict[str, int]:
    count: dict[str, int] = {}
    for c in contents:
        count[c.action] = count.get(c.action, 0) + 1
    return count


def _ref_json(r: RefStep) -> dict[str, Any]:
    return {"repo": f"{r.repo_type}:{r.repo_id}", "ref": r.ref, "old": r.old, "new": r.new, "action": r.action}


@dataclass(frozen=True)
class InstallPlan(
    JsonRecord,
    skip=("manifest", "trust_existing", "entries", "snapshots", "verbatim_trees"),
    convert={"contents": _count_actions, "refs": lambda refs: [_ref_json(r) for r in refs]},
):
    """What :func:`execute` will do. Built without hashing or writing anything."""

    cache_dir: Path
    manifest: Manifest
    bundle_id: str
    layout: Layout
    trust_existing: bool
    contents: tuple[ContentStep, ...]
    entries: tuple[EntryStep, ...]
    snapshots: tuple[SnapshotStep, ...]
    refs: tuple[RefStep, ...]
    verbatim_trees: bool = False  # restore --verbatim: saved listings come back byte for byte, traps included
    notes: tuple[str, ...] = ()  # warnings found while planning (names only Windows refuses, no symlinks)

    @property
    def missing(self) -> tuple[ContentStep, ...]:
        return tuple(c for c in self.contents if c.action == "missing")

    @property
    def bytes_to_stream(self) -> int:
        return sum(c.size for c in self.contents if c.action == "stream")

    def json_extra(self) -> dict[str, Any]:
        return {
            "bytes_to_stream": self.bytes_to_stream,
            "missing": [{"sha256": c.sha256, "size": c.size, "file": c.where} for c in self.missing],
            "new_snapshots": [f"{s.repo_type}:{s.repo_id}@{s.commit}" for s in self.snapshots if s.new],
            "entries_to_add": sum(e.state != "present" for e in self.entries),
        }

    def render(self) -> list[str]:
        """Human lines for ``--dry-run`` (the CLI prints them)."""
        by_action: dict[str, int] = {}
        for c in self.contents:
            by_action[c.action] = by_action.get(c.action, 0) + 1
        lines = [
            f"would install into {self.cache_dir} ({self.layout} layout): "
            + ", ".join(f"{n} blob(s) {a}" for a, n in sorted(by_action.items())),
            f"  {self.bytes_to_stream} bytes to stream, "
            f"{sum(e.state != 'present' for e in self.entries)} snapshot entries to add, "
            f"{sum(s.new for s in self.snapshots)} new snapshot(s)",
        ]
        lines += [f"  ref {r.repo_id}:{r.ref}: {r.old or '(new)'} -> {r.new} ({r.action})" for r in self.refs]
        lines += [f"  missing: {c.sha256} ({c.size} bytes, {c.where})" for c in self.missing]
        lines += [f"note: {n}" for n in self.notes]
        return lines


@dataclass(frozen=True)
class InstalledRepo(JsonRecord, convert={"refs": lambda refs: dict(sorted(refs.items()))}):
    repo_type: str
    repo_id: str
    commits: tuple[str, ...]
    refs: Mapping[str, str]


@dataclass(frozen=True)
class InstallReport(JsonRecord, rounding={"elapsed": 3}):
    """What an install did. ``blobs_*`` count placements: repo blobs (symlink layout) or snapshot files (copy)."""

    cache_dir: str
    bundle_id: str
    layout: Layout
    repos: tuple[InstalledRepo, ...]
    refs_moved: tuple[RefMove, ...]
    refs_kept: tuple[RefMove, ...]
    blobs_written: int
    blobs_linked: int
    blobs_present: int
    blobs_replaced: tuple[ReplacedBlob, ...]
    bytes_written: int
    bytes_deduplicated: int
    bytes_hashed: int
    entries_added: int
    trees_written: int
    no_exist_written: int
    elapsed: float
    notes: tuple[str, ...] = ()
    trees_moved: tuple[MovedListing, ...] = ()
    signature: Mapping[str, Any] | None = None  # bundler.trust.TrustReport.to_json(), set by install()

    @property
    def changed(self) -> bool:
        return bool(
            self.blobs_written
            or self.blobs_linked
            or self.blobs_replaced
            or self.entries_added
            or self.trees_written
            or self.no_exist_written
            or self.refs_moved
            or self.trees_moved
        )

    def render(self) -> list[str]:
        """Human lines (the CLI prints them)."""
        lines = [f"installed into {self.cache_dir} ({self.layout} layout) in {self.elapsed:.1f} s"]
        lines += [f"  {r.repo_type}:{r.repo_id} @ {', '.join(c[:12] for c in r.commits)}" for r in self.repos]
        lines.append(
            f"blobs: {self.blobs_written} written, {self.blobs_linked} linked, {self.blobs_present} already "
            f"present, {len(self.blobs_replaced)} replaced; {self.bytes_written} bytes written, "
            f"{self.bytes_deduplicated} deduplicated"
        )
        lines += [f"ref {m.repo_id}:{m.ref} {m.old or '(new)'} -> {m.new}" for m in self.refs_moved]
        lines += [f"ref {m.repo_id}:{m.ref} kept at {m.old} (bundle: {m.new})" for m in self.refs_kept]
        lines += [f"replaced damaged {b.repo_id}:{b.path} ({b.actual})" for b in self.blobs_replaced]
        lines += [f"listing: {m.describe()}" for m in self.trees_moved]
        lines += [f"note: {n}" for n in self.notes]
        if self.signature is not None:
            lines.append(str(self.signature.get("summary", "")))
        return lines


def plan_install(
    manifest: Manifest,
    cache_dir: Path,
    *,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    available: Collection[str] | None = None,
    verbatim_trees: bool = False,
) -> InstallPlan:
    """What installing ``manifest`` into ``cache_dir`` would do. Reads the cache, writes nothing.

    ``available``: sha256 of the blobs the sources carry (default: the manifest's own blobs).
    Raises :class:`UnsafePathError` / :class:`InstallError` if a target path is unsafe or blocked.
    """
    cache_dir = Path(os.path.abspath(Path(cache_dir).expanduser()))
    root = real_root(cache_dir)
    carried = set(available) if available is not None else {b.sha256 for b in manifest.blobs}
    notes = winnames.check_install(manifest, cache_dir)  # refuses names this cache cannot hold, warns of others
    layout_kind = _choose_layout(cache_dir, copy)
    if layout_kind == LAYOUT_COPY and copy is None:
        notes += _no_symlinks_note(cache_dir)
    guard = Guard(cache_dir, root)

    entries: list[EntryStep] = []
    snapshots: list[SnapshotStep] = []
    refs: list[RefStep] = []
    # sha256 -> placements; (repo, etag) -> sha256 to catch inconsistent manifests
    by_content: dict[str, list[Placement]] = {}
    sizes: dict[str, int] = {}
    git_ids: dict[str, str] = {}
    where: dict[str, str] = {}
    etag_owner: dict[tuple[str, str, str], str] = {}
    layouts: dict[tuple[str, str], RepoLayout] = {}  # one per repo, not one per blob (issue 18)

    for repo in manifest.repos:
        lay = layouts.setdefault((repo.repo_type, repo.repo_id), RepoLayout(cache_dir, repo.repo_type, repo.repo_id))
        guard.check(lay.folder, is_dir=True)
        for snap in repo.snapshots:
            snap_dir = lay.snapshot(snap.commit)
            guard.check(snap_dir, is_dir=True)
            new = not os.path.lexists(snap_dir)
            snapshots.append(SnapshotStep(repo.repo_type, repo.repo_id, snap.commit, new, snap.tree, snap.no_exist))
            guard.check(lay.tree(snap.commit))  # any mode may write or move the listing
            for p in snap.no_exist:
                guard.check(lay.no_exist(snap.commit, p))
            for f in snap.files:
                assert f.sha256 is not None  # guaranteed by Manifest parsing
                key = (repo.repo_type, repo.repo_id, f.etag)
                if etag_owner.setdefault(key, f.sha256) != f.sha256:
                    raise BundleFormatError(
                        f"{repo.repo_type} {repo.repo_id}: blob {f.etag} is declared with two different contents",
                        hint=DAMAGED_HINT,
                    )
                sizes[f.sha256] = f.size
                where.setdefault(f.sha256, f"{repo.repo_type} {repo.repo_id}: {f.path}")
                if not f.is_lfs:
                    git_ids[f.sha256] = f.blob_id
                state: EntryState = "add"
                if new:  # below a snapshot folder that does not exist yet, nothing can be in the way
                    check_relpath(f.path)
                    if layout_kind == LAYOUT_SYMLINK:
                        _check_blob_name(f.etag)
                else:
                    target = lay.snapshot_file(snap.commit, f.path)
                    guard.check(target)
                    if os.path.lexists(target):
                        exact = layout_kind == LAYOUT_SYMLINK and _is_link_to(target, lay.blob(f.etag))
                        state = "present" if exact else "check"
                entries.append(
                    EntryStep(repo.repo_type, repo.repo_id, snap.commit, f.path, f.etag, f.sha256, f.size, state)
                )
                if layout_kind == LAYOUT_COPY:
                    by_content.setdefault(f.sha256, []).append(
                        Placement(
                            repo.repo_type,
                            repo.repo_id,
                            f.etag,
                            "absent" if state == "add" else "present",
                            snap.commit,
                            f.path,
                        )
                    )
        for ref, commit in sorted(repo.refs.items()):
            guard.check(lay.ref(ref))
            old = lay.read_ref(ref)
            if old == commit:
                ref_action: RefAction = "same"
            elif keep_refs and old is not None and old.strip() != commit:
                ref_action = "keep"
            else:
                ref_action = "write"
            logger.debug("ref %s:%s %s: %s (now %s)", repo.repo_type, repo.repo_id, ref, ref_action, old)
            refs.append(RefStep(repo.repo_type, repo.repo_id, ref, old, commit, ref_action))

    if layout_kind == LAYOUT_SYMLINK:
        listed: dict[tuple[str, str], frozenset[str]] = {}  # one listing of blobs/ per repo, not a stat per blob
        for (repo_type, repo_id, etag), sha in etag_owner.items():
            lay = layouts[(repo_type, repo_id)]
            in_blobs = listed.get((repo_type, repo_id))
            if in_blobs is None:
                guard.check(lay.blobs, is_dir=True)
                in_blobs = listed[(repo_type, repo_id)] = frozenset(listdir(lay.blobs))
            _check_blob_name(etag)
            blob_state: PlacementState = "absent"
            if etag in in_blobs:  # else not there when listed: no path to check, nothing to stat (issue 18)
                blob = lay.blob(etag)
                guard.check(blob)
                blob_state = "present" if usable_file(blob, root) else "absent"
            by_content.setdefault(sha, []).append(Placement(repo_type, repo_id, etag, blob_state))

    # Tree blobs of backups are contents too: read from the bundle, never placed as blobs.
    tree_contents: dict[str, int] = {}
    declared = {b.sha256: b.size for b in manifest.blobs}
    for repo in manifest.repos:
        for snap in repo.snapshots:
            if snap.tree not in (TREE_HUB, TREE_FILES, TREE_NONE) and snap.tree not in by_content:
                tree_contents[snap.tree] = declared.get(snap.tree, -1)

    wanted = any(p.state == "absent" for ps in by_content.values() for p in ps)
    other_blobs = index_blobs(cache_dir, root) if wanted else {}
    if wanted and layout_kind == LAYOUT_COPY:  # blobs/ is empty there: the content is in other snapshot files
        for name, paths in index_copies(cache_dir, root).items():
            other_blobs.setdefault(name, []).extend(paths)
    contents: list[ContentStep] = []
    for sha in sorted(by_content):
        placements = tuple(by_content[sha])
        size = sizes[sha]
        copies: tuple[str, ...] = ()
        if all(p.state == "present" for p in placements):
            action: ContentAction = "none"
        else:
            names = {sha} | ({git_ids[sha]} if sha in git_ids else set())
            copies = tuple(str(p) for name in sorted(names) for p in other_blobs.get(name, ()) if size_is(p, size))
            action = "link" if copies else "stream" if sha in carried else "missing"
        logger.debug("content %s (%s): %s", sha[:12], where.get(sha, ""), _ACTION_SAYS[action])
        contents.append(ContentStep(sha, size, placements, action, copies, git_ids.get(sha), where.get(sha, "")))
    for sha, size in sorted(tree_contents.items()):
        action = "stream" if sha in carried else "unavailable"  # a listing may be left out, content cannot
        contents.append(ContentStep(sha, size, (), action, (), None, "trees listing"))

    return InstallPlan(
        cache_dir=cache_dir,
        manifest=manifest,
        bundle_id=manifest.bundle_id,
        layout=layout_kind,
        trust_existing=trust_existing,
        contents=tuple(contents),
        entries=tuple(entries),
        snapshots=tuple(snapshots),
        refs=tuple(refs),
        verbatim_trees=verbatim_trees,
        notes=notes,
    )


# -- checks shared with the run ----------------------------------------------------------------------------


class Guard:
    """Checks that a target path stays inside the cache: no component of it that exists is a symlink leading
    outside, a file where a folder must be, or a folder where a file must be."""

    def __init__(self, cache_dir: Path, root: Path) -> None:
        self.cache_dir = cache_dir
        self.root = root
        base = str(cache_dir)
        self._prefix = base if base.endswith(os.sep) else base + os.sep
        # Folders already found to be real folders (or links to folders) inside the cache: a run checks
        # thousands of paths under the same few folders, and re-checking them made each check O(depth) stats.
        # Strings, not Paths: a Path per component cost more than the check (issue 18).
        self._folders_ok: set[str] = set()

    def check(self, path: Path | str, *, is_dir: bool = False) -> None:
        text = str(path)
        if not text.startswith(self._prefix):
            if text == str(self.cache_dir):
                return
            Path(text).relative_to(self.cache_dir)  # ValueError would be a bug: paths come from RepoLayout
        if is_dir and text in self._folders_ok:
            return
        parts = text[len(self._prefix) :].split(os.sep)
        cur = self._prefix[:-1] if len(self._prefix) > 1 else self._prefix
        last_i = len(parts) - 1
        for i, part in enumerate(parts):
            cur = f"{cur}{os.sep}{part}" if cur != os.sep else f"{os.sep}{part}"
            last = i == last_i
            if not last and cur in self._folders_ok:
                continue
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                return
            except NotADirectoryError as err:
                raise _blocked(Path(cur).parent, "a file is where a folder must be") from err
            if stat.S_ISLNK(st.st_mode):
                if last and not is_dir:
                    return  # a link in a file's place is replaced, never written through
                real = Path(os.path.realpath(cur))
                if not inside(real, self.root):
                    raise UnsafePathError(
                        f"{cur} is a symlink leading outside the cache (to {real}); refusing to write through it",
                        hint="remove that link, or point --cache-dir / HF_HUB_CACHE at the real cache location",
                    )
                if not real.is_dir():
                    if not last:
                        raise _blocked(Path(cur), "a link to a file is where a folder must be")
                else:
                    self._folders_ok.add(cur)
            elif stat.S_ISDIR(st.st_mode):
                if last and not is_dir:
                    raise _blocked(Path(cur), "a folder is where a file must be")
                self._folders_ok.add(cur)
            elif not last or is_dir:
                raise _blocked(Path(cur), "a file is where a folder must be")


def _blocked(path: Path, what: str) -> InstallError:
    return InstallError(
        f"cannot install: {path}: {what}", hint="move it away (it is not part of a valid cache) and re-run"
    )


# -- small helpers --------------------------------------------------------------------------------------------


def _choose_layout(cache_dir: Path, copy: bool | None) -> Layout:
    if copy:
        return LAYOUT_COPY
    # Probe inside the cache's .locks/ (scan_cache_dir skips it; a probe folder left in the cache root by a
    # killed install made it warn about that folder forever). A cache that does not exist yet is not created
    # by planning: its nearest existing parent is probed instead.
    probe = cache_dir / ".locks"
    made = cache_dir.is_dir() and not probe.exists()
    if not cache_dir.is_dir():
        probe = cache_dir
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    try:
        supported = layout.symlinks_supported(probe)
    except OSError:  # not writable: the install itself will say so, with a hint
        supported = not _env_disables_symlinks()
    finally:
        if made:  # planning leaves the cache as it found it
            with contextlib.suppress(OSError):
                probe.rmdir()
    if not supported and copy is False:
        raise InstallError(
            f"symlinks cannot be created in {cache_dir} (or HF_HUB_DISABLE_SYMLINKS is set)",
            hint="install with the copy layout (the default when symlinks do not work), or use another disk",
        )
    return LAYOUT_SYMLINK if supported else LAYOUT_COPY


def _no_symlinks_note(cache_dir: Path) -> tuple[str, ...]:
    """huggingface_hub's note when it falls back to copies (and its variable to silence it)."""
    if _env_disables_symlinks() or os.environ.get("HF_HUB_DISABLE_SYMLINKS_WARNING", "").upper() in _TRUE:
        return ()
    note = (
        f"symlinks are not supported in {cache_dir}: installed with the copy layout (real files in snapshots/; "
        "loaders read it the same, it only takes more space when revisions share files). "
        "Set HF_HUB_DISABLE_SYMLINKS_WARNING=1 to hide this note."
    )
    if oscompat.WINDOWS:
        note += " To support symlinks on Windows, turn on Developer Mode (Settings > System > For developers)."
    return (note,)


def _env_disables_symlinks() -> bool:
    return os.environ.get("HF_HUB_DISABLE_SYMLINKS", "").upper() in _TRUE


_TRUE = ("1", "ON", "YES", "TRUE")  # huggingface_hub's constants._is_true


def _is_link_to(link: Path, target: Path) -> bool:
    try:
        return os.readlink(link) == layout.relative_link_target(link, target)
    except OSError:
        return False


def _check_blob_name(etag: str) -> None:
    """What :meth:`RepoLayout.blob` refuses, without making the path."""
    if not etag or "/" in etag or etag.startswith("."):
        raise UnsafePathError(f"invalid blob name {etag!r}")


def size_is(path: Path, size: int) -> bool:
    try:
        return os.path.getsize(oscompat.extended_path(path)) == size
    except OSError:
        return False
