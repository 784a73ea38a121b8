"""Offline verification of a Hugging Face cache, with or without the bundle that filled it.

huggingface_hub checks sizes while it downloads, never hashes, and ``hf cache verify`` needs the Hub. Here every
blob is re-hashed against its own name (64 hex: sha256, 40 hex: git blob id), every snapshot entry must resolve
inside its repo (or the cache's shared Xet store), refs must be a bare 40-hex commit of an existing snapshot,
and a ``trees/<commit>.json`` must not list files the snapshot lacks (the ``IncompleteSnapshotError`` trap)::

    >>> report = verify_cache(Path("~/.cache/huggingface/hub").expanduser())  # doctest: +SKIP
    >>> report.ok, report.counts  # doctest: +SKIP
    (False, {'bad_ref': 1})

Everything is streamed (bounded memory) and each inode is hashed once. Issue kinds: ``docs/CACHE.md``.

Longer than ~500 lines: one issue per way a cache can be wrong, each with its message and fix; the reading
itself is :mod:`bundler.cache.model` and :mod:`bundler.cache.names`.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from . import oscompat
from .bundle.manifest import TREE_NONE, Manifest
from .cache.layout import RepoLayout, iter_repo_folders
from .cache.model import iter_entries, read_tree, snapshot_commits, walk_entries
from .cache.names import (
    inside,
    is_blob_name,
    is_commit,
    is_ours,
    is_shared_payload,
    is_temp,
    listdir,
    read_ref,
)
from .cache.records import InstalledRecord, read_record
from .errors import CacheError
from .hashing import InodeHasher, digest_paths, is_sha1, is_sha256
from .paths import REPO_TYPES, check_relpath
from .records import JsonRecord
from .repofile import RepoFile, TreeEntry

__all__ = [
    "ERROR",
    "INFO",
    "WARNING",
    "Issue",
    "IssueKind",
    "Severity",
    "VerifyReport",
    "verify_cache",
    "verify_installed",
]

Severity = Literal["error", "warning", "info"]
ERROR: Final = "error"
WARNING: Final = "warning"
INFO: Final = "info"
# What a finding is about (docs/CACHE.md explains each).
IssueKind = Literal[
    "abandoned",
    "bad_ref",
    "bad_tree",
    "corrupt",
    "dangling",
    "extra",
    "incomplete_tree",
    "leftover",
    "mismatch",
    "missing",
    "moved_ref",
    "orphan",
    "partial_tree",
    "record",
    "shadowed",
    "unknown",
    "unsafe",
]


_HINT_CORRUPT = (
    "delete it, then re-install the bundle that carries it (hfbundle install), or re-download the file online"
)
_HINT_REINSTALL = "re-run hfbundle install with this bundle"
_HINT_DANGLING = "its blob is gone: re-install the bundle (hfbundle install) or re-download the file online"
_HINT_LEFTOVER = "left by an interrupted download or install: safe to delete once nothing is writing the cache"


@dataclass(frozen=True)
class Issue(JsonRecord, skip_none=True):
    """One finding. ``path`` is relative to the repo folder (``blobs/…``, ``snapshots/<commit>/…``, ``refs/…``)."""

    kind: IssueKind
    severity: Severity
    message: str
    repo_type: str | None = None
    repo: str | None = None
    commit: str | None = None
    path: str | None = None
    expected: str | None = None
    actual: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class VerifyReport(JsonRecord, rounding={"elapsed": 3}):
    cache_dir: str
    issues: tuple[Issue, ...]
    repos: tuple[str, ...]
    blobs_checked: int = 0
    files_checked: int = 0
    refs_checked: int = 0
    trees_checked: int = 0
    bytes_hashed: int = 0  # bytes read to hash them: in the copy layout, every copy of a content
    elapsed: float = 0.0
    content_bytes: int = 0  # bytes of the distinct contents verified (each sha256 once, whatever the layout)

    @property
    def ok(self) -> bool:
        """True when nothing is an error (warnings such as leftovers or orphan blobs do not break loading)."""
        return not any(i.severity == ERROR for i in self.issues)

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == ERROR)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.issues:
            out[i.kind] = out.get(i.kind, 0) + 1
        return dict(sorted(out.items()))

    def json_extra(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts}

    def render(self) -> list[str]:
        """Human lines (the CLI prints them)."""
        lines = []
        for i in self.issues:
            where = ":".join(x for x in (i.repo_type, i.repo) if x) or self.cache_dir
            lines.append(f"{i.severity}: [{i.kind}] {where}: {i.message}")
            if i.hint:
                lines.append(f"  hint: {i.hint}")
        state = "ok" if self.ok else f"{len(self.errors)} error(s)"
        lines.append(
            f"{state}: {len(self.repos)} repo(s), {self.blobs_checked} blobs, {self.files_checked} files, "
            f"{self.refs_checked} refs, {self.trees_checked} trees, {self.bytes_hashed} bytes hashed"
            + (f" ({self.content_bytes} of distinct content)" if self.content_bytes != self.bytes_hashed else "")
        )
        return lines


@dataclass
class _Run:
    cache_dir: Path
    hasher: InodeHasher = field(default_factory=InodeHasher)
    issues: list[Issue] = field(default_factory=list)
    repos: list[str] = field(default_factory=list)
    blobs: int = 0
    files: int = 0
    refs: int = 0
    trees: int = 0

    def report(self, t0: float) -> VerifyReport:
        self.hasher.report_progress()
        return VerifyReport(
            cache_dir=str(self.cache_dir),
            issues=tuple(self.issues),
            repos=tuple(self.repos),
            blobs_checked=self.blobs,
            files_checked=self.files,
            refs_checked=self.refs,
            trees_checked=self.trees,
            bytes_hashed=self.hasher.bytes_hashed,
            elapsed=time.monotonic() - t0,
            content_bytes=self.hasher.content_bytes,
        )


# What a snapshot link at each folder depth starts with when it leads to its repo's blobs/ (depth 0: the
# snapshot's top folder, `../../blobs/`).
_UP_TO_BLOBS: Final = tuple("../" * (depth + 2) + "blobs/" for depth in range(32))
BlobKind = Literal["file", "link", "dir", "other"]


def _scan(folder: Path) -> list[tuple[str, BlobKind, int, int]]:
    """``(name, kind, size, inode)`` of each entry of ``folder``, sorted (none when it is missing or unreadable):
    one ``os.scandir``, the kind and inode from the listing, one ``lstat`` per regular file for its size."""
    out: list[tuple[str, BlobKind, int, int]] = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                try:
                    if e.is_symlink():
                        out.append((e.name, "link", 0, 0))
                    elif e.is_dir(follow_symlinks=False):
                        out.append((e.name, "dir", 0, 0))
                    elif e.is_file(follow_symlinks=False):
                        out.append((e.name, "file", e.stat(follow_symlinks=False).st_size, e.inode()))
                    else:
                        out.append((e.name, "other", 0, 0))
                except OSError:
                    out.append((e.name, "other", 0, 0))
    except OSError:
        return []
    out.sort()
    return out


def _device(folder: Path) -> int:
    try:
        return os.stat(folder).st_dev
    except OSError:
        return -1


# -- verify_cache ----------------------------------------------------------------------------------------------


def verify_cache(
    cache_dir: Path,
    repos: Sequence[str] | None = None,
    *,
    repo_type: str | None = None,
    on_hashed: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check every repo of the cache ``cache_dir`` (or only ``repos``, ids like ``org/name``), offline.
    ``on_hashed(bytes, files)`` is called with what was hashed since its last call (progress)."""
    t0 = time.monotonic()
    cache_dir = Path(cache_dir).expanduser()
    if not cache_dir.is_dir():
        raise CacheError(f"no cache at {cache_dir}", hint="pass the hub cache folder (--cache-dir) or set HF_HUB_CACHE")
    if repo_type is not None and repo_type not in REPO_TYPES:
        raise CacheError(f"unknown repo type {repo_type!r}", hint=f"use one of {', '.join(REPO_TYPES)}")
    run = _Run(cache_dir)
    run.hasher.on_hashed = on_hashed
    wanted = {r.lower() for r in repos} if repos else None
    seen: set[str] = set()
    for rtype, rid, folder in iter_repo_folders(cache_dir):
        if (repo_type is not None and rtype != repo_type) or (wanted is not None and rid.lower() not in wanted):
            continue
        seen.add(rid.lower())
        run.repos.append(f"{rtype}:{rid}")
        _RepoCheck(run, rtype, rid, folder).check()
    for rid in sorted((wanted or set()) - seen):
        run.issues.append(
            Issue("missing", ERROR, f"{rid} is not in this cache", repo=rid, hint="install or download it first")
        )
    return run.report(t0)


class _RepoCheck:
    def __init__(self, run: _Run, repo_type: str, repo_id: str, folder: Path) -> None:
        self.run = run
        self.repo_type = repo_type
        self.repo_id = repo_id
        self.folder = folder
        self.real = Path(os.path.realpath(folder))
        self.shared = Path(os.path.realpath(run.cache_dir / "blobs"))
        self.blob_ok: dict[str, bool] = {}  # blob name -> content matches its name
        self.referenced: set[str] = set()
        self.plain_files: dict[str, int] = {}  # blob name -> size, for regular files of a real blobs/ folder

    def issue(self, kind: IssueKind, severity: Severity, message: str, **kw: Any) -> None:
        self.run.issues.append(Issue(kind, severity, message, self.repo_type, self.repo_id, **kw))

    def check(self) -> None:
        for name in listdir(self.folder):  # an install's staging folders and ref temps (killed installs)
            if is_ours(name):
                self.issue("leftover", WARNING, f"{name} is a temp file or folder", path=name, hint=_HINT_LEFTOVER)
        if not (self.folder / "snapshots").is_dir():
            self.issue(
                "abandoned",
                WARNING,
                f"{self.folder.name} has no snapshots/: an interrupted install or download left it; huggingface_hub's "
                "scan_cache_dir warns about it and lists no repo",
                hint="re-run the install (it resumes from the verified blobs), or `hfbundle doctor SPEC --fix` to "
                "remove what an interrupted install left",
            )
        self.check_blobs()
        commits = self.check_snapshots()
        self.check_refs(commits)
        self.check_no_exist(commits)
        for name in sorted(self.blob_ok):
            if name not in self.referenced:
                self.issue(
                    "orphan",
                    WARNING,
                    f"blob {name} is used by no snapshot",
                    path=f"blobs/{name}",
                    hint="harmless; `hf cache prune` or deleting it frees the space",
                )

    # -- blobs --

    def check_blobs(self) -> None:
        blobs = self.folder / "blobs"
        blobs_real = Path(os.path.realpath(blobs))
        plain_blobs = inside(blobs_real, self.real) and blobs_real.parent == self.real  # blobs/ is a real folder
        # One listing of blobs/ (the kind of each name comes with it: no stat per blob). Regular files of a real
        # blobs/ are hashed first, in batches on all cores, opened once each; links and anything odd take the
        # careful path below, in name order with the rest (issue 18).
        listing = _scan(blobs)
        dev = _device(blobs)
        hasher = self.run.hasher
        direct: list[tuple[str, bool]] = []  # (name, named by its sha256)
        sizes: list[int] = []
        queued: set[int] = set()  # inodes queued here: a second name for one (a hard link) waits for the first
        for name, kind, size, ino in listing:
            if kind == "file" and plain_blobs and (is_sha256(name) or is_sha1(name)):
                lfs = len(name) == 64
                if ino not in queued and hasher.known((dev, ino), sha256=lfs, git=not lfs) is None:
                    queued.add(ino)
                    direct.append((name, lfs))
                    sizes.append(size)
        del queued
        read: dict[str, OSError] = {}  # blobs that could not be read: reported (raised) in order below
        actual_of: dict[str, str] = {}  # only the blobs whose content does not match their name
        base = os.path.join(blobs, "")
        jobs = ((base + n, lfs, not lfs, size) for (n, lfs), size in zip(direct, sizes, strict=True))
        for (name, lfs), got in zip(direct, digest_paths(jobs), strict=True):
            if isinstance(got, OSError):
                read[name] = got
                continue
            hasher.remember(got)
            actual = got.digests.sha256 if lfs else got.digests.git_sha1
            self.blob_ok[name] = actual == name
            self.plain_files[name] = got.digests.size
            if actual != name:
                actual_of[name] = actual
        del direct, sizes
        for name, kind, _size, _ino in listing:
            if name in self.plain_files:  # hashed above (a hash name, a regular file)
                self.run.blobs += 1
                if name in actual_of:
                    self._corrupt_blob(f"blobs/{name}", name, actual_of[name])
                continue
            rel = f"blobs/{name}"
            if is_temp(name):
                self.issue("leftover", WARNING, f"{rel} is a temp file", path=rel, hint=_HINT_LEFTOVER)
                continue
            path = blobs / name
            if not (is_sha256(name) or is_sha1(name)) or kind == "dir" or (kind == "link" and path.is_dir()):
                self.issue(
                    "unknown",
                    WARNING,
                    f"{rel} is not named by a hash: cannot verify it",
                    path=rel,
                    hint="not written by huggingface_hub or hfbundle; move it away if you do not know it",
                )
                continue
            self.run.blobs += 1
            if name in read:
                raise read[name]
            self.check_blob(name, rel, path, kind, blobs_real, plain_blobs)

    def check_blob(self, name: str, rel: str, path: Path, kind: BlobKind, blobs_real: Path, plain_blobs: bool) -> None:
        """A blob that is a link (or not a plain file): where it leads, then its content."""
        if not os.path.exists(path):
            self.blob_ok[name] = False
            # a warning here: the snapshot entries that use it are reported as errors on their own
            self.issue("dangling", WARNING, f"{rel} is a link to nothing", path=rel, hint=_HINT_DANGLING)
            return
        direct = plain_blobs and kind != "link"  # a file in a real blobs/: inside, no realpath
        real = blobs_real / name if direct else Path(os.path.realpath(path))
        if not direct and not (inside(real, self.real) or is_shared_payload(real, self.shared)):
            self.blob_ok[name] = False
            self.issue(
                "unsafe",
                ERROR,
                f"{rel} leads outside the repo and the shared blob store (to {real})",
                path=rel,
                hint="replace it: re-install the bundle or re-download the file",
            )
            return
        lfs = is_sha256(name)
        st = os.stat(path)
        d = self.run.hasher.known((st.st_dev, st.st_ino), sha256=lfs, git=not lfs) or self.run.hasher.digest(
            path, git=not lfs
        )
        actual = d.sha256 if lfs else d.git_sha1
        self.blob_ok[name] = actual == name
        if direct:
            self.plain_files[name] = d.size
        if actual != name:
            self._corrupt_blob(rel, name, actual)

    def _corrupt_blob(self, rel: str, name: str, actual: str) -> None:
        self.issue(
            "corrupt", ERROR, f"{rel}: content does not match its name", path=rel, expected=name, actual=actual,
            hint=_HINT_CORRUPT,
        )  # fmt: skip

    # -- snapshots and trees --

    def check_snapshots(self) -> set[str]:
        commits: set[str] = set()
        for name in listdir(self.folder / "snapshots"):
            path = self.folder / "snapshots" / name
            rel = f"snapshots/{name}"
            if is_temp(name):
                self.issue("leftover", WARNING, f"{rel} is a temp folder", path=rel, hint=_HINT_LEFTOVER)
            elif not path.is_dir():
                self.issue(
                    "extra",
                    ERROR,
                    f"{rel} is a file in snapshots/",
                    path=rel,
                    hint="scan_cache_dir refuses the whole repo: delete that file",
                )
            elif not is_commit(name):
                self.issue(
                    "extra",
                    WARNING,
                    f"{rel} is not named by a commit",
                    path=rel,
                    hint="not written by huggingface_hub or hfbundle; move it away",
                )
            else:
                commits.add(name)
                self.check_snapshot(name, path)
        for name in listdir(self.folder / "trees"):
            rel = f"trees/{name}"
            commit = name[: -len(".json")]
            if name.endswith(".json") and is_commit(commit):
                if commit not in commits:
                    self.issue(
                        "orphan", WARNING, f"{rel} has no snapshot", commit=commit, path=rel, hint="harmless; delete it"
                    )
            elif is_temp(name):
                self.issue("leftover", WARNING, f"{rel} is a temp file", path=rel, hint=_HINT_LEFTOVER)
            else:
                self.issue("extra", WARNING, f"{rel} is not a trees listing", path=rel, hint="move it away")
        return commits

    def check_snapshot(self, commit: str, snap: Path) -> None:
        tree = self.read_tree(commit)
        record = self.read_record(commit)
        # What each file should be: the install record first (hfbundle verified it as it wrote it), then the
        # listing. A copy-layout file carries no hash in its name: without either it cannot be checked.
        expected: dict[str, TreeEntry] = dict(tree or {})
        if record is not None:
            expected.update({p: f.tree_entry() for p, f in record.files.items()})
        present: set[str] = set()
        blobs = os.path.normpath(self.folder / "blobs")
        for rel_path, full, link in iter_entries(str(snap)):  # strings, no stat per file (issue 18)
            if is_temp(rel_path.rsplit("/", 1)[-1]) and rel_path not in expected:
                rel = f"snapshots/{commit}/{rel_path}"
                self.issue("leftover", WARNING, f"{rel} is a temp file", commit=commit, path=rel, hint=_HINT_LEFTOVER)
                continue
            self.run.files += 1
            entry = expected.get(rel_path)
            if link:
                if self.check_link(commit, rel_path, full, entry, blobs):
                    present.add(rel_path)
            else:
                present.add(rel_path)
                self.check_copy(commit, rel_path, Path(full), entry)
        if tree is not None:
            self.run.trees += 1
            missing = sorted(set(tree) - present)
            if missing:
                sample = ", ".join(missing[:3]) + (f", … ({len(missing) - 3} more)" if len(missing) > 3 else "")
                self.issue(
                    "incomplete_tree",
                    ERROR,
                    f"trees/{commit}.json lists {len(missing)} file(s) the snapshot lacks ({sample}): offline, "
                    "snapshot_download and diffusers raise IncompleteSnapshotError",
                    commit=commit,
                    path=f"trees/{commit}.json",
                    expected=f"{len(tree)} files",
                    actual=f"{len(tree) - len(missing)} present",
                    hint="install the missing files (hfbundle install of a bundle that has them), or run "
                    f"`hfbundle doctor --fix`, which moves trees/{commit}.json aside (without a listing "
                    "huggingface_hub trusts the snapshot offline and lists the Hub online)",
                )
            elif record is not None and record.repo.upstream and set(tree) != set(record.repo.upstream):
                self.issue(
                    "partial_tree",
                    ERROR,
                    f"trees/{commit}.json lists {len(tree)} of the commit's {len(record.repo.upstream)} files "
                    "(an older hfbundle wrote it): online, snapshot_download and diffusers trust it and fetch "
                    "only what it names (a variant the bundle left out is reported as not existing)",
                    commit=commit,
                    path=f"trees/{commit}.json",
                    expected=f"{len(record.repo.upstream)} files",
                    actual=f"{len(tree)} listed",
                    hint=f"run `hfbundle doctor --fix` (or install the bundle again), which moves trees/{commit}.json "
                    "aside; offline loading does not need it",
                )

    def read_record(self, commit: str) -> InstalledRecord | None:
        try:
            return read_record(self.run.cache_dir, self.repo_type, self.repo_id, commit)
        except CacheError as e:
            self.issue("record", WARNING, e.message, commit=commit, hint=e.hint)
            return None

    def read_tree(self, commit: str) -> dict[str, TreeEntry] | None:
        path = self.folder / "trees" / f"{commit}.json"
        try:
            read = read_tree(path)
        except OSError as e:
            self.issue("bad_tree", WARNING, f"trees/{commit}.json is unreadable: {e}", commit=commit)
            return None
        if read is None:
            return None
        parsed = read.entries
        if parsed is None:
            self.issue(
                "bad_tree",
                WARNING,
                f"trees/{commit}.json is not a valid format-1 listing: huggingface_hub ignores it",
                commit=commit,
                path=f"trees/{commit}.json",
                hint="delete it; the next online download rewrites it",
            )
        return parsed

    def check_link(self, commit: str, rel_path: str, full_str: str, entry: TreeEntry | None, blobs: str) -> bool:
        rel = f"snapshots/{commit}/{rel_path}"
        target = os.readlink(full_str)
        # linked_blob's rule on strings: the link's own folders are real ones (iter_entries does not enter links).
        # The usual link, `../` once per folder level then `blobs/<etag>`, is recognised without normpath.
        up = _UP_TO_BLOBS[rel_path.count("/")] if rel_path.count("/") < len(_UP_TO_BLOBS) else ""
        if up and target.startswith(up) and is_blob_name(target[len(up) :]):
            blob: str | None = target[len(up) :]
        else:
            head, name = os.path.split(os.path.normpath(os.path.join(os.path.dirname(full_str), target)))
            blob = name if head == blobs and is_blob_name(name) else None
        if blob is not None and blob in self.plain_files:
            # A link straight to a regular file of a real blobs/ (checked above): it exists and stays inside,
            # no realpath needed (the snapshot's folders are real ones: iter_entries does not enter links).
            self.referenced.add(blob)
            if entry is not None:
                etag = entry.etag
                size = self.plain_files[blob]
                if blob != etag or size != entry.size:
                    self.issue(
                        "mismatch",
                        ERROR,
                        f"{rel} disagrees with trees/{commit}.json",
                        commit=commit,
                        path=rel,
                        expected=f"{etag} ({entry.size} bytes)",
                        actual=f"{blob} ({size} bytes)",
                        hint="re-install the bundle (or re-download the file) to repair the entry",
                    )
            return True
        full = Path(full_str)
        if not os.path.exists(full):
            self.issue(
                "dangling",
                ERROR,
                f"{rel} → {target} points at nothing",
                commit=commit,
                path=rel,
                actual=target,
                hint=_HINT_DANGLING,
            )
            return False
        real = Path(os.path.realpath(full))
        if not (inside(real, self.real) or is_shared_payload(real, self.shared)):
            self.issue(
                "unsafe",
                ERROR,
                f"{rel} leads outside the repo (to {real})",
                commit=commit,
                path=rel,
                actual=target,
                hint="re-install the bundle or re-download the file",
            )
            return False
        if blob is not None:
            self.referenced.add(blob)
        if entry is not None:
            etag = entry.etag
            size = os.path.getsize(full)
            if (blob is not None and blob != etag) or size != entry.size:
                self.issue(
                    "mismatch",
                    ERROR,
                    f"{rel} disagrees with trees/{commit}.json or its install record",
                    commit=commit,
                    path=rel,
                    expected=f"{etag} ({entry.size} bytes)",
                    actual=f"{blob or real} ({size} bytes)",
                    hint="re-install the bundle (or re-download the file) to repair the entry",
                )
            elif blob is None:  # not a plain blob link: check the content against the listing
                self.check_content(commit, rel, full, entry)
        return True

    def check_copy(self, commit: str, rel_path: str, full: Path, entry: TreeEntry | None) -> None:
        """A real file (copy layout): verifiable only against an install record or the trees listing."""
        if entry is not None:
            self.check_content(commit, f"snapshots/{commit}/{rel_path}", full, entry)

    def check_content(self, commit: str, rel: str, full: Path, entry: TreeEntry) -> None:
        d = self.run.hasher.digest(full)
        expected = entry.etag
        actual = d.sha256 if entry.lfs_sha256 else d.git_sha1
        if d.size != entry.size or actual != expected:
            self.issue(
                "corrupt",
                ERROR,
                f"{rel}: content does not match trees/{commit}.json or its install record",
                commit=commit,
                path=rel,
                expected=expected,
                actual=actual,
                hint=_HINT_CORRUPT,
            )

    # -- refs and .no_exist --

    def check_refs(self, commits: set[str]) -> None:
        refs_dir = self.folder / "refs"
        for item in walk_entries(refs_dir):
            rel_name, full = item.path, item.full
            rel = f"refs/{rel_name}"
            if item.temp:
                self.issue(
                    "leftover",
                    WARNING,
                    f"{rel} is a temp file (scan_cache_dir reads it as a ref)",
                    path=rel,
                    hint=_HINT_LEFTOVER,
                )
                continue
            self.run.refs += 1
            _check_ref_bytes(self, rel_name, full, commits)

    def check_no_exist(self, commits: set[str]) -> None:
        base = self.folder / ".no_exist"
        for commit in listdir(base):
            for rel_path in (e.path for e in walk_entries(base / commit)):
                if commit in commits and (self.folder / "snapshots" / commit / rel_path).is_file():
                    self.issue(
                        "shadowed",
                        ERROR,
                        f".no_exist/{commit}/{rel_path} marks a file missing that the snapshot has: "
                        "try_to_load_from_cache reports it missing",
                        commit=commit,
                        path=f".no_exist/{commit}/{rel_path}",
                        hint="delete the marker",
                    )


def _check_ref_bytes(chk: _RepoCheck, name: str, full: Path, commits: set[str], expected: str | None = None) -> None:
    rel = f"refs/{name}"
    try:
        held = read_ref(full)
        if held is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(full))
    except OSError as e:
        chk.issue("bad_ref", ERROR, f"{rel} is unreadable: {e}", path=rel, hint="fix its permissions")
        return
    text = held.text
    stripped = text.strip()
    if is_commit(text):
        if text not in commits:
            chk.issue(
                "bad_ref",
                ERROR,
                f"{rel} points at {text}, which has no snapshot",
                commit=text,
                path=rel,
                hint=f"install that revision again, or delete {rel} (scan_cache_dir refuses the repo meanwhile)",
            )
        elif expected is not None and text != expected:
            chk.issue(
                "moved_ref",
                INFO,
                f"{rel} points at {text[:12]}…, the bundle at {expected[:12]}…",
                commit=text,
                path=rel,
                expected=expected,
                actual=text,
                hint="kept by --keep-refs or moved by a later download; re-install without --keep-refs to move it",
            )
    elif is_commit(stripped):
        chk.issue(
            "bad_ref",
            ERROR,
            f"{rel} has whitespace around the commit: hf_hub_download and snapshot_download fail offline",
            commit=stripped,
            path=rel,
            expected=stripped,
            actual=repr(text),
            hint=f"rewrite it without the newline: printf %s {stripped} > '{full}'",
        )
    else:
        chk.issue(
            "bad_ref",
            ERROR,
            f"{rel} does not hold a commit id",
            path=rel,
            actual=repr(text[:80]),
            hint=f"delete {rel}; the next online download rewrites it",
        )


# -- verify_installed ------------------------------------------------------------------------------------------


def _check_installed_files(
    chk: _RepoCheck, snap_dir: Path, commit: str, files: Sequence[RepoFile], rehash: bool
) -> set[str]:
    """Each of ``files`` present in ``snap_dir``, of its size and (``rehash``) its sha256; issues in file order.
    One lstat and one stat a file on plain strings, then the contents hashed in batches on all cores, each inode
    once (issue 18: a Path and four stats a file, hashed one by one on the calling thread). Returns the paths
    present."""
    run = chk.run
    base = os.path.join(snap_dir, "")
    present: set[str] = set()
    # each file, what was found ("missing", "dangling", "size", "content", "ok"), its size, its inode
    looked: list[tuple[RepoFile, str, int, tuple[int, int]]] = []
    todo: dict[tuple[int, int], tuple[str, int]] = {}  # inodes whose content is checked: a path, the size
    for f in files:
        run.files += 1
        check_relpath(f.path)
        long = oscompat.extended_path(base + f.path.replace("/", os.sep))  # the OS's form of a long path (Windows)
        try:
            os.lstat(long)
        except (OSError, ValueError):
            looked.append((f, "missing", 0, (0, 0)))
            continue
        try:
            st: os.stat_result | None = os.stat(long)
        except (OSError, ValueError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            looked.append((f, "dangling", 0, (0, 0)))
            continue
        present.add(f.path)
        key = (st.st_dev, st.st_ino)
        if st.st_size != f.size:
            looked.append((f, "size", st.st_size, key))
        elif rehash:
            todo.setdefault(key, (long, st.st_size))
            looked.append((f, "content", st.st_size, key))
        else:
            looked.append((f, "ok", st.st_size, key))
    digests = run.hasher.digest_inodes(todo, git=False)
    for f, found, size, key in looked:
        rel = f"snapshots/{commit}/{f.path}"
        if found == "missing":
            chk.issue("missing", ERROR, f"{rel} is missing", commit=commit, path=rel, hint=_HINT_REINSTALL)
        elif found == "dangling":
            chk.issue("dangling", ERROR, f"{rel} points at nothing", commit=commit, path=rel, hint=_HINT_REINSTALL)
        elif found == "size":
            chk.issue(
                "corrupt",
                ERROR,
                f"{rel} has the wrong size",
                commit=commit,
                path=rel,
                expected=str(f.size),
                actual=str(size),
                hint=_HINT_CORRUPT,
            )
        elif found == "content":
            d = digests[key]
            if isinstance(d, OSError):
                chk.issue(
                    "corrupt",
                    ERROR,
                    f"{rel} cannot be read ({d.strerror or d})",
                    commit=commit,
                    path=rel,
                    hint=_HINT_CORRUPT,
                )
            elif d.sha256 != f.sha256:
                chk.issue(
                    "corrupt",
                    ERROR,
                    f"{rel}: content does not match the bundle",
                    commit=commit,
                    path=rel,
                    expected=f.sha256,
                    actual=d.sha256,
                    hint=_HINT_CORRUPT,
                )
    return present


def verify_installed(
    manifest: Manifest,
    cache_dir: Path,
    *,
    rehash: bool = True,
    on_hashed: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Is everything ``manifest`` installs present and intact in ``cache_dir``? Contents are re-hashed
    against the manifest's sha256 (``rehash=False``: sizes only); refs that point elsewhere are *info*.
    ``on_hashed(bytes, files)`` is called with what was hashed since its last call (progress)."""
    t0 = time.monotonic()
    cache_dir = Path(cache_dir).expanduser()
    run = _Run(cache_dir)
    run.hasher.on_hashed = on_hashed
    for repo in manifest.repos:
        run.repos.append(f"{repo.repo_type}:{repo.repo_id}")
        lay = RepoLayout(cache_dir, repo.repo_type, repo.repo_id)
        chk = _RepoCheck(run, repo.repo_type, repo.repo_id, lay.folder)
        commits: set[str] = set()
        for snap in repo.snapshots:
            snap_dir = lay.snapshot(snap.commit)
            if snap_dir.is_dir():
                commits.add(snap.commit)
            present = _check_installed_files(chk, snap_dir, snap.commit, snap.files, rehash)
            for path in snap.no_exist:
                if not lay.no_exist(snap.commit, path).is_file() and path not in present:
                    chk.issue(
                        "missing",
                        WARNING,
                        f".no_exist/{snap.commit}/{path} marker is missing",
                        commit=snap.commit,
                        path=f".no_exist/{snap.commit}/{path}",
                        hint="harmless offline (the loader finds no file either); re-install to restore it",
                    )
            if snap.tree != TREE_NONE:
                _check_installed_tree(chk, lay, snap.commit, snap.files, present)
        for ref, commit in sorted(repo.refs.items()):
            run.refs += 1
            full = lay.ref(ref)
            if not full.is_file():
                chk.issue(
                    "missing",
                    ERROR,
                    f"refs/{ref} is missing: loading by name fails offline",
                    path=f"refs/{ref}",
                    expected=commit,
                    hint=_HINT_REINSTALL,
                )
                continue
            _check_ref_bytes(chk, ref, full, commits | snapshot_commits(lay.folder), expected=commit)
    return run.report(t0)


def _check_installed_tree(chk: _RepoCheck, lay: RepoLayout, commit: str, files: Any, present: set[str]) -> None:
    tree = chk.read_tree(commit)
    if tree is None:
        return
    chk.run.trees += 1
    snap_dir = lay.snapshot(commit)
    missing = sorted(p for p in tree if p not in present and not (snap_dir / p).is_file())
    if missing:
        chk.issue(
            "incomplete_tree",
            ERROR,
            f"trees/{commit}.json lists {len(missing)} file(s) the snapshot lacks (e.g. {missing[0]})",
            commit=commit,
            path=f"trees/{commit}.json",
            hint=f"re-run hfbundle install, or delete trees/{commit}.json",
        )
    for f in files:
        e = tree.get(f.path)
        if e is not None and (e.size != f.size or e.etag != f.etag):
            chk.issue(
                "mismatch",
                ERROR,
                f"trees/{commit}.json describes {f.path} differently from the bundle",
                commit=commit,
                path=f"trees/{commit}.json",
                expected=f.etag,
                actual=e.etag,
                hint="re-run hfbundle install to rewrite the listing",
            )
