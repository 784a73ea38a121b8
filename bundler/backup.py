"""Backup of existing caches: cache → plan → bundle (restore: :mod:`bundler.restore`).

:func:`plan_backup` reads a cache (:mod:`bundler.cache.scan`: every real-world shape, no hashing, no network) and
says what a backup would hold; :func:`backup` verifies every blob against its own name while it packs it into a
bundle of kind ``backup``, packing only what a ``base`` backup chain lacks when given one.
:func:`bundler.restore.restore` installs a chain of backups back into a cache. Decisions and formats:
``docs/BACKUP.md``.

    >>> plan = plan_backup(Path("~/.cache/huggingface/hub").expanduser(), ["stabilityai/*"])  # doctest: +SKIP
    >>> report = backup(plan, "models.hfb")  # doctest: +SKIP
    >>> later = backup(plan_backup(cache, base=Path("models.hfb")), "models-2.hfb")  # incremental  # doctest: +SKIP

Nothing here imports huggingface_hub or touches the network: it works with ``HF_HUB_OFFLINE=1``.

Longer than ~500 lines: planning and packing a backup (bases, increments, the scan's findings) are one concept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .bundle.manifest import TREE_NONE, BlobEntry, Manifest, RepoEntry, SkippedFile, SnapshotEntry
from .bundle.source import BundleSource
from .cache.model import LAYOUT_EMPTY, LAYOUT_MIXED, CachedFile, CachedRepo, CachedRevision, Leftover
from .cache.records import read_record
from .cache.scan import scan_cache
from .errors import CacheError, HfBundleError, IntegrityError
from .hashing import Digests, is_sha256, lfs_blob_id
from .progress import STEP_BYTES, files_due
from .records import JsonRecord
from .repofile import RepoFile
from .units import human_size

if TYPE_CHECKING:
    from .bundle.writer import PackedBlob, WriteReport

__all__ = [
    "BackupEstimate",
    "BackupPlan",
    "BackupReport",
    "CorruptFile",
    "backup",
    "plan_backup",
]

logger = logging.getLogger(__name__)

BaseLike = BundleSource | Manifest | Path | str
_MAX_ATTEMPTS = 3
_CORRUPT_HINT = (
    "delete the damaged blob(s) and download those files again (huggingface_hub re-fetches them), or back up with "
    "--skip-corrupt: the backup then leaves them out and its manifest records what was left out"
)


# -- the plan ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupEstimate(JsonRecord):
    """What packing would cost, known without hashing. Copy-layout files nothing names count as to pack (their
    identity is computed while backing up), so ``blobs_to_pack``/``bytes_to_pack`` are upper bounds then."""

    unique_blobs: int
    unique_bytes: int
    blobs_to_pack: int
    bytes_to_pack: int
    blobs_in_base: int
    bytes_in_base: int
    trees: int
    bytes_to_hash: int  # the pre-pass: regular files, unnamed copy-layout files, duplicate copies


@dataclass(frozen=True)
class BackupPlan(
    JsonRecord, skip=("base_blobs", "base_git", "patterns", "repo_type", "revision"), rename={"base_id": "base"}
):
    """What a backup of ``cache_dir`` would hold. Built by :func:`plan_backup` without hashing or writing."""

    cache_dir: Path
    repos: tuple[CachedRepo, ...]
    leftovers: tuple[Leftover, ...]
    notes: tuple[str, ...]
    estimate: BackupEstimate
    base_id: str | None = None
    base_blobs: Mapping[str, int] = field(default_factory=dict)  # sha256 → size of what the base chain holds
    base_git: Mapping[str, str] = field(default_factory=dict)  # git blob id → sha256 of regular files it describes
    patterns: tuple[str, ...] = ()
    repo_type: str | None = None
    revision: str | None = None

    @property
    def revisions(self) -> tuple[tuple[CachedRepo, CachedRevision], ...]:
        return tuple((repo, rev) for repo in self.repos for rev in repo.revisions)

    @property
    def files(self) -> int:
        return sum(len(rev.files) for _, rev in self.revisions)

    @property
    def total_size(self) -> int:
        """Bytes of every snapshot entry (content shared by several entries counts each time)."""
        return sum(rev.size for _, rev in self.revisions)

    def json_extra(self) -> dict[str, Any]:
        return {
            "selection": {"patterns": list(self.patterns), "repo_type": self.repo_type, "revision": self.revision},
            "files": self.files,
            "total_size": self.total_size,
        }

    def render(self) -> list[str]:
        """Human lines for ``backup --dry-run`` (the CLI prints them)."""
        e = self.estimate
        lines = [
            f"backup of {self.cache_dir}: {len(self.repos)} repo(s), {len(self.revisions)} revision(s), "
            f"{self.files} file(s), {human_size(self.total_size)} ({human_size(e.unique_bytes)} unique)"
        ]
        for repo in self.repos:
            lines.append(f"  {repo.repo_type} {repo.repo_id} ({repo.layout} layout)")
            for rev in repo.revisions:
                extras = [f"{len(rev.no_exist)} .no_exist"] if rev.no_exist else []
                extras += ["trees listing"] if rev.tree is not None else []
                lines.append(
                    f"    {rev.commit[:12]}  {', '.join(rev.refs) or '(no ref)'}: {len(rev.files)} file(s), "
                    f"{human_size(rev.size)}" + (f" + {', '.join(extras)}" if extras else "")
                )
        base = (
            f"; {e.blobs_in_base} blob(s), {human_size(e.bytes_in_base)} found in base {self.base_id[:12]}…"
            if (self.base_id)
            else ""
        )
        lines.append(f"would pack {e.blobs_to_pack} blob(s), {human_size(e.bytes_to_pack)}{base}")
        if self.leftovers:
            lines.append(f"leftovers, not packed ({len(self.leftovers)}):")
            lines += [f"  {x.where}: {x.reason}" for x in self.leftovers]
        lines += [f"note: {n}" for n in self.notes]
        return lines


def plan_backup(
    cache_dir: Path | str,
    patterns: Sequence[str] = (),
    *,
    repo_type: str | None = None,
    revision: str | None = None,
    base: BaseLike | None = None,
) -> BackupPlan:
    """Plan a backup of the repos of ``cache_dir`` matching ``patterns`` (repo ids or globs; none: all) of
    ``repo_type``, every revision with its refs or only ``revision`` (a ref name or a commit).

    ``base`` (a previous backup: a path, an open :class:`~bundler.bundle.source.BundleSource` or its
    :class:`~bundler.bundle.manifest.Manifest`) makes the backup incremental: blobs the base chain holds are not packed.
    """
    scan = scan_cache(cache_dir, patterns, repo_type=repo_type, revision=revision)
    base_id, base_blobs, base_git = _read_base(base)
    return BackupPlan(
        cache_dir=scan.cache_dir,
        repos=scan.repos,
        leftovers=scan.leftovers,
        notes=scan.notes,
        estimate=_estimate(scan.repos, base_blobs, base_git),
        base_id=base_id,
        base_blobs=base_blobs,
        base_git=base_git,
        patterns=tuple(patterns),
        repo_type=repo_type,
        revision=revision,
    )


def _read_base(base: BaseLike | None) -> tuple[str | None, dict[str, int], dict[str, str]]:
    """The base's id, every blob its chain holds (what its manifest's files and listings use: the chain holds
    those by construction) and the git blob ids of its regular files."""
    if base is None:
        return None, {}, {}
    if isinstance(base, Manifest):
        manifest, base_id = base, base.bundle_id
    elif isinstance(base, (str, os.PathLike)):
        from .bundle.reader import open_bundle

        with open_bundle(Path(base), threads=1) as reader:
            manifest, base_id = reader.manifest, reader.bundle_id
    else:
        manifest, base_id = base.manifest, hashlib.sha256(base.manifest_bytes).hexdigest()
    held = {b.sha256: b.size for b in manifest.blobs}
    git: dict[str, str] = {}
    for _repo, _snap, f in manifest.iter_files():
        assert f.sha256 is not None  # guaranteed by Manifest parsing
        held.setdefault(f.sha256, f.size)
        if not f.is_lfs:
            git[f.blob_id] = f.sha256
    for repo in manifest.repos:  # listings: their size is declared by the link of the chain that carries them
        for snap in repo.snapshots:
            if is_sha256(snap.tree):
                held.setdefault(snap.tree, -1)
    return base_id, held, git


def _estimate(repos: Sequence[CachedRepo], base: Mapping[str, int], base_git: Mapping[str, str]) -> BackupEstimate:
    contents: dict[str, tuple[int, bool]] = {}  # key → (size, in base)
    seen_inodes: dict[str, set[tuple[int, int]]] = {}
    to_hash = 0
    trees: dict[str, tuple[int, bool]] = {}
    for repo in repos:
        for rev in repo.revisions:
            if rev.tree is not None:
                trees[rev.tree.sha256] = (rev.tree.size, rev.tree.sha256 in base)
            for f in rev.files:
                key = f.etag or f"inode:{f.inode}"
                in_base = f.etag is not None and (f.etag in base if f.lfs else base_git.get(f.etag, "") in base)
                contents.setdefault(key, (f.size, in_base))
                inodes = seen_inodes.setdefault(key, set())
                if f.inode not in inodes:
                    if inodes or not f.lfs or f.etag is None:
                        to_hash += 0 if (f.lfs and in_base) else f.size
                    inodes.add(f.inode)
    pack = [s for s, b in list(contents.values()) + list(trees.values()) if not b]
    based = [s for s, b in contents.values() if b]
    return BackupEstimate(
        unique_blobs=len(contents),
        unique_bytes=sum(s for s, _ in contents.values()),
        blobs_to_pack=len(pack),
        bytes_to_pack=sum(pack),
        blobs_in_base=len(based),
        bytes_in_base=sum(based),
        trees=len(trees),
        bytes_to_hash=to_hash,
    )


# -- the report ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorruptFile(JsonRecord):
    """A snapshot file whose content does not match its name. ``action``: ``skipped`` (left out, recorded in
    the manifest), ``packed from an intact copy`` or ``the base holds the content`` (the file is still backed
    up, with the content its name says)."""

    repo_type: str
    repo_id: str
    commit: str
    path: str
    source: str
    expected: str
    actual: str
    action: str = "skipped"

    def line(self) -> str:
        return (
            f"{self.repo_type} {self.repo_id}@{self.commit[:8]}: {self.path} ({self.source}): "
            f"expected {self.expected}, got {self.actual}"
        )


@dataclass(frozen=True)
class BackupReport(JsonRecord, rename={"base_id": "base"}, rounding={"elapsed": 3}):
    """What :func:`backup` wrote. ``bytes_packed`` is the content stored (uncompressed), ``bytes_out`` the file."""

    output: str
    paths: tuple[str, ...]
    bundle_id: str
    base_id: str | None
    repos: int
    revisions: int
    files: int
    blobs_packed: int
    bytes_packed: int
    bytes_out: int
    blobs_in_base: int
    bytes_in_base: int
    bytes_hashed: int
    corrupt: tuple[CorruptFile, ...]
    skipped: tuple[SkippedFile, ...]
    leftovers: tuple[Leftover, ...]
    notes: tuple[str, ...]
    attempts: int
    elapsed: float

    @property
    def ratio(self) -> float:
        return self.bytes_out / self.bytes_packed if self.bytes_packed else 1.0

    def json_extra(self) -> dict[str, Any]:
        return {"ratio": round(self.ratio, 4)}

    def render(self) -> list[str]:
        rate = self.bytes_packed / self.elapsed / 1e6 if self.elapsed > 0 else 0.0
        lines = [
            f"backup {self.output}: {self.repos} repo(s), {self.revisions} revision(s), {self.files} file(s)",
            f"  {self.blobs_packed} blob(s) packed, {human_size(self.bytes_packed)} -> {human_size(self.bytes_out)} "
            f"({self.ratio:.1%}) in {self.elapsed:.1f} s ({rate:.0f} MB/s)",
            f"  id {self.bundle_id}",
        ]
        if self.base_id:
            lines.append(
                f"  incremental over {self.base_id}: {self.blobs_in_base} blob(s), "
                f"{human_size(self.bytes_in_base)} left to the base"
            )
        lines += [f"corrupt ({c.action}): {c.line()}" for c in self.corrupt]
        lines += [
            f"left out: {s.repo_id}@{s.commit[:8]}: {s.path}: {s.reason}"
            for s in self.skipped
            if not s.reason.startswith("corrupt")
        ]
        if self.leftovers:
            lines.append(f"{len(self.leftovers)} leftover(s) not packed (see --json for the list)")
        lines += [f"note: {n}" for n in self.notes]
        return lines


# -- backing up ----------------------------------------------------------------------------------------------


def backup(
    plan: BackupPlan | Path | str,
    output: Path | str | BinaryIO,
    *,
    skip_corrupt: bool = False,
    level: int | None = None,
    threads: int = 0,
    split_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_files: Callable[[int, int], None] | None = None,
) -> BackupReport:
    """Pack what ``plan`` describes (or the whole cache at the path given) into the bundle ``output`` (a path,
    ``"-"`` for stdout, or a binary file object), verifying every blob against its own name.

    A corrupt blob raises :class:`IntegrityError` naming every corrupt file (repo, path, expected, actual) and
    no output appears, unless ``skip_corrupt``: then those files are left out and recorded in the manifest's
    ``skipped``. ``on_progress(done, total)`` counts bytes hashed and packed, ``on_files(done, total)`` blobs packed.
    """
    if not isinstance(plan, BackupPlan):
        plan = plan_backup(plan)
    run = _Backup(plan, output, skip_corrupt, level, threads, split_size, on_progress)
    run.on_files = on_files
    return run.go()


Inode = tuple[int, int]


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class _Use:
    repo: CachedRepo
    rev: CachedRevision
    file: CachedFile


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class _Pack:
    sha256: str
    size: int
    source: str | Path
    git_sha1: str | None
    claim: tuple[str, Inode] | None  # (etag, inode) verified by this packing, for LFS content
    what: _Use | str  # the file it is packed for (its label is made when needed: not one string per file)
    packed: PackedBlob | None = None  # its frame, made while it was hashed

    @property
    def label(self) -> str:
        if isinstance(self.what, str):
            return self.what
        repo, rev, f = self.what.repo, self.what.rev, self.what.file
        return f"{repo.repo_type} {repo.repo_id}@{rev.commit[:8]}: {f.path}"


class _PackLabel:
    """A file's label for a debug line, made only if the line is logged (not one string per file)."""

    __slots__ = ("use",)

    def __init__(self, use: _Use) -> None:
        self.use = use

    def __str__(self) -> str:
        repo, rev, f = self.use.repo, self.use.rev, self.use.file
        return f"{repo.repo_type} {repo.repo_id}@{rev.commit[:8]}: {f.path}"


class _CorruptWhilePacking(Exception):
    def __init__(self, claim: tuple[str, Inode] | None, error: IntegrityError) -> None:
        super().__init__(str(error))
        self.claim = claim
        self.error = error


class _Backup:
    def __init__(
        self,
        plan: BackupPlan,
        output: Path | str | BinaryIO,
        skip_corrupt: bool,
        level: int | None,
        threads: int,
        split_size: int | None,
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        self.plan = plan
        self.output = output
        self.skip_corrupt = skip_corrupt
        self.level = level
        self.threads = threads
        self.split_size = split_size
        self.on_progress = on_progress
        self.on_files: Callable[[int, int], None] | None = None
        # A path can be written again after an abort; a stream cannot, so with skip_corrupt LFS blobs are
        # pre-hashed for a stream and packed optimistically (a corrupt one restarts the backup) for a path.
        self.retryable = isinstance(output, (str, os.PathLike)) and str(output) != "-"
        self.prehash_lfs = skip_corrupt and not self.retryable
        self.uses: list[_Use] = []
        self.named: dict[str, list[Inode]] = {}  # etag → distinct inodes claiming it, in first-use order
        self.unnamed: dict[Inode, None] = {}  # an ordered set
        self.lfs_etag: dict[str, bool] = {}  # etag → named by an LFS sha256 (else a git blob id)
        self.sources: dict[Inode, str] = {}
        self.sizes: dict[Inode, int] = {}
        self.digests: dict[Inode, Digests] = {}
        self.packed: dict[Inode, PackedBlob] = {}  # small files' frames made while hashing (bounded: PACKED_BUDGET)
        self.spent = 0
        self.bad: dict[tuple[str, Inode], str] = {}  # claim → actual, found while packing
        self.verified: set[tuple[str, Inode]] = set()
        self.hashed = 0
        self.done = 0
        self.total = 0
        self._lock = threading.Lock()

    # -- driver --

    def go(self) -> BackupReport:
        t0 = time.monotonic()
        for repo in self.plan.repos:
            for rev in repo.revisions:
                for f in rev.files:
                    self.uses.append(_Use(repo, rev, f))
                    self.sources.setdefault(f.inode, f.source_path)
                    self.sizes.setdefault(f.inode, f.size)
                    if f.etag is None:
                        self.unnamed.setdefault(f.inode)
                    else:
                        inodes = self.named.get(f.etag)
                        if inodes is None:
                            inodes = self.named[f.etag] = []
                            self.lfs_etag[f.etag] = is_sha256(f.etag)  # once per content, not per use
                        if f.inode not in inodes:
                            inodes.append(f.inode)
        attempts = 0
        while True:
            attempts += 1
            self._prehash()
            manifest, packs, corrupt = self._decide()
            try:
                written = self._write(manifest, packs)
                break
            except _CorruptWhilePacking as e:
                if not (self.skip_corrupt and self.retryable) or e.claim is None or attempts >= _MAX_ATTEMPTS:
                    raise e.error from None
                logger.debug("attempt %d: %s changed or is corrupt; packing again without it", attempts, e.claim[0])
                self.bad[e.claim] = e.error.actual or "?"
                self.prehash_lfs = True  # find every other corrupt one before the next attempt
        packed = {b.sha256 for b in manifest.blobs}  # the packs' blobs (packs was emptied once written)
        in_base = {f.sha256 for _, _, f in manifest.iter_files() if f.sha256 is not None and f.sha256 not in packed}
        return BackupReport(
            output=str(self.output) if isinstance(self.output, (str, os.PathLike)) else "-",
            paths=tuple(str(p) for p in written.paths),
            bundle_id=written.bundle_id,
            base_id=self.plan.base_id,
            repos=len(manifest.repos),
            revisions=sum(len(r.snapshots) for r in manifest.repos),
            files=sum(1 for _ in manifest.iter_files()),
            blobs_packed=len(manifest.blobs),
            bytes_packed=manifest.total_size,
            bytes_out=written.bytes_out,
            blobs_in_base=len(in_base),
            bytes_in_base=sum(max(self.plan.base_blobs.get(s, 0), 0) for s in in_base),
            bytes_hashed=self.hashed,
            corrupt=tuple(corrupt),
            skipped=manifest.skipped,
            leftovers=self.plan.leftovers,
            notes=self.plan.notes,
            attempts=attempts,
            elapsed=time.monotonic() - t0,
        )

    def _progress(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self.on_progress is not None:
                self.on_progress(self.done, self.total)

    # -- 1. hash what the manifest needs before it is written --

    def _prehash(self) -> None:
        todo: list[Inode] = []
        for etag, inodes in self.named.items():
            if self.lfs_etag[etag]:
                if etag in self.plan.base_blobs:
                    continue  # the base holds it: not read (see docs/BACKUP.md)
                todo += [i for i in (inodes if self.prehash_lfs else inodes[1:]) if (etag, i) not in self.verified]
            else:
                todo += inodes  # regular files: their sha256 is needed for the manifest
        todo += list(self.unnamed)
        todo = [i for i in dict.fromkeys(todo) if i not in self.digests]
        self.total += sum(self.sizes[i] for i in todo)
        if not todo:
            return
        from .bundle.writer import PACKED_BUDGET, auto_threads, fits_one_frame, frame_bound, hash_files

        workers = max(1, min(len(todo), auto_threads(self.threads), 8))
        # The first copy of each content may be packed while it is hashed: a small file's frame is made from
        # the bytes read for its hash, kept (up to PACKED_BUDGET bytes) until the writer stores it, so it is
        # read once, not twice (issue 18). Past the budget, files are read again when packed.
        first = {inodes[0] for inodes in self.named.values() if inodes}
        wanted = {i for i in todo if fits_one_frame(self.sizes[i]) and (i in first or i in self.unnamed)}
        # All or none: when every small file's frame fits the budget, each is read once; else none is kept (a
        # partial budget would only add its size to the peak memory of a backup of very many files).
        if sum(frame_bound(self.sizes[i]) for i in wanted) > PACKED_BUDGET - self.spent:
            wanted.clear()

        def jobs() -> Iterator[tuple[str, int, bool]]:
            for i in todo:
                yield self.sources[i], self.sizes[i], i in wanted

        results = hash_files(jobs(), self.level, workers)
        unreported = 0
        for inode, got in zip(todo, results, strict=True):
            if isinstance(got, OSError):
                path = self.sources[inode]
                raise CacheError(
                    f"cannot read {path}: {got.strerror or got}",
                    hint="check the cache's permissions, and that nothing deletes files while backing up",
                ) from got
            digests, packed = got
            if packed is not None:
                self.packed[inode] = packed
                self.spent += len(packed.frame)
            self.digests[inode] = digests
            self.hashed += digests.size
            unreported += digests.size
            if unreported >= STEP_BYTES:  # not once per 3 KB file (issue 18)
                self._progress(unreported)
                unreported = 0
        if unreported:
            self._progress(unreported)

    # -- 2. decide what goes in, build the manifest --

    def _status(self, etag: str, inode: Inode) -> tuple[str, str]:
        """(``ok`` | ``bad`` | ``unchecked``, actual) of one inode claiming content ``etag``."""
        if (etag, inode) in self.bad:
            return "bad", self.bad[(etag, inode)]
        d = self.digests.get(inode)
        if d is None:
            held = self.plan.base_blobs.get(etag, -1) if self.lfs_etag[etag] else -1
            if held >= 0 and self.sizes[inode] != held:
                return "bad", f"{self.sizes[inode]} bytes (the base holds {held})"
            return "unchecked", ""
        if self.lfs_etag[etag]:
            return ("ok", "") if d.sha256 == etag else ("bad", f"sha256 {d.sha256}")
        return ("ok", "") if d.git_sha1 == etag else ("bad", f"git blob {d.git_sha1}")

    def _decide(self) -> tuple[Manifest, list[_Pack], list[CorruptFile]]:
        base = self.plan.base_blobs
        # content of each etag: (sha256, size, source inode or None when only the base holds it)
        content: dict[str, tuple[str, int, Inode | None]] = {}
        for etag, inodes in self.named.items():
            states = [(i, self._status(etag, i)[0]) for i in inodes]
            # An unchecked copy must be the one packed: the writer verifies it in the same read.
            good = [i for i, s in states if s == "unchecked"] + [i for i, s in states if s == "ok"]
            if self.lfs_etag[etag]:
                if etag in base:  # -1: only known as a listing of the base; the size is then our own
                    content[etag] = (etag, base[etag] if base[etag] >= 0 else self.sizes[inodes[0]], None)
                elif good:
                    d = self.digests.get(good[0])
                    content[etag] = (etag, d.size if d is not None else self.sizes[good[0]], good[0])
            else:
                ok = [i for i, s in states if s == "ok"]
                if ok:
                    d = self.digests[ok[0]]
                    content[etag] = (d.sha256, d.size, None if d.sha256 in base else ok[0])
                elif (sha := self.plan.base_git.get(etag)) is not None and sha in base:
                    content[etag] = (sha, base[sha], None)

        files: dict[tuple[str, str, str], list[RepoFile]] = {}
        corrupt: list[CorruptFile] = []
        skipped: list[SkippedFile] = []
        packs: dict[str, _Pack] = {}
        for use in self.uses:
            repo, rev, f = use.repo, use.rev, use.file
            key = (repo.repo_type, repo.repo_id, rev.commit)
            if f.etag is None:
                d = self.digests[f.inode]
                rf = _repo_file(f, d.sha256, d.size, d.git_sha1)
                if d.sha256 not in base:
                    packs.setdefault(
                        d.sha256, _Pack(d.sha256, d.size, f.source_path, None, None, use, self.packed.get(f.inode))
                    )
                files.setdefault(key, []).append(rf)
                continue
            state, actual = self._status(f.etag, f.inode)
            got = content.get(f.etag)
            if state == "bad":
                kind = "sha256" if self.lfs_etag[f.etag] else "git blob"
                record = CorruptFile(
                    repo.repo_type, repo.repo_id, rev.commit, f.path, f.source_path, f"{kind} {f.etag}", actual
                )
                if got is None:
                    logger.debug("leave out %s: its content is %s, not its name %s", _PackLabel(use), actual, f.etag)
                    corrupt.append(record)
                    skipped.append(
                        SkippedFile(
                            repo.repo_type,
                            repo.repo_id,
                            rev.commit,
                            f.path,
                            f"corrupt: expected {record.expected}, got {actual}",
                        )
                    )
                    continue
                how = "the base holds the content" if got[2] is None else "packed from an intact copy"
                corrupt.append(CorruptFile(**{**record.__dict__, "action": how}))
            if got is None:  # unreachable: an etag with no usable instance has only bad ones
                continue
            sha, size, inode = got
            git = None if self.lfs_etag[f.etag] else f.etag
            files.setdefault(key, []).append(_repo_file(f, sha, size, git))
            if sha in base:
                logger.debug("skip %s (%s): the base backup holds it", sha[:12], _PackLabel(use))
            if inode is not None and sha not in base:
                claim = (f.etag, inode) if self.lfs_etag[f.etag] else None
                packs.setdefault(sha, _Pack(sha, size, self.sources[inode], git, claim, use, self.packed.get(inode)))
        self.packed.clear()  # the packs hold the frames they use; the others are freed
        if corrupt and not self.skip_corrupt:
            raise _corrupt_error(corrupt)

        for repo in self.plan.repos:
            for rev in repo.revisions:
                if rev.tree is not None and rev.tree.sha256 not in base:
                    label = f"{repo.repo_type} {repo.repo_id}: trees/{rev.commit}.json"
                    packs.setdefault(
                        rev.tree.sha256, _Pack(rev.tree.sha256, rev.tree.size, rev.tree.source, None, None, label)
                    )
        skipped += [
            SkippedFile(x.repo_type, x.repo_id, x.commit, x.path, x.reason)
            for x in self.plan.leftovers
            if x.repo_type is not None and x.repo_id is not None and x.commit is not None and x.path is not None
        ]
        manifest = Manifest(
            repos=tuple(
                RepoEntry(
                    repo.repo_type,
                    repo.repo_id,
                    dict(sorted(repo.refs.items())),
                    tuple(
                        SnapshotEntry(
                            rev.commit,
                            tuple(
                                sorted(files.get((repo.repo_type, repo.repo_id, rev.commit), []), key=lambda f: f.path)
                            ),
                            rev.no_exist,
                            rev.tree.sha256 if rev.tree is not None else TREE_NONE,
                        )
                        for rev in repo.revisions
                    ),
                )
                for repo in self.plan.repos
            ),
            blobs=tuple(BlobEntry(p.sha256, p.size) for p in packs.values()),
            kind="backup",
            base=self.plan.base_id,
            skipped=tuple(skipped),
            extra={"backup": _backup_extra(self.plan.repos, Path(self.plan.cache_dir))},
        )
        return manifest, list(packs.values()), corrupt

    # -- 3. write --

    def _write(self, manifest: Manifest, packs: list[_Pack]) -> WriteReport:
        from .bundle.writer import BundleWriter

        start = self.done
        self.total += sum(p.size for p in packs)
        if not (self.skip_corrupt and self.retryable):
            # No second attempt can come: what was gathered per inode to decide is done with (the packs hold
            # what they need), freed before the manifest's text is made (issue 18: the peak of 100,000 files).
            for gathered in (self.named, self.unnamed, self.lfs_etag, self.sources, self.sizes, self.digests):
                gathered.clear()

        def progress(n: int) -> None:
            with self._lock:
                self.done = start + n
                if self.on_progress is not None:
                    self.on_progress(self.done, self.total)

        with BundleWriter(
            self.output, level=self.level, threads=self.threads, split_size=self.split_size, on_progress=progress
        ) as writer:
            writer.write_manifest(manifest.dumps(), manifest=manifest)
            manifest.forget_text()  # stored: not held while packing (issue 18)
            # Small blobs are read, verified and compressed in batches on the writer's workers (issue 18); the
            # pack being stored when an error comes is the one after the last stored.
            n = 0
            try:
                for p in writer.add_files(packs):
                    n += 1
                    if p.claim is not None:
                        self.verified.add(p.claim)
                    if self.on_files is not None and files_due(n, len(packs), p.size):
                        self.on_files(n, len(packs))
            except IntegrityError as e:
                p = packs[n]
                raise _CorruptWhilePacking(p.claim, self._packing_error(p, e)) from e
            except OSError as e:
                p = packs[n]
                raise CacheError(
                    f"cannot read {p.source} ({p.label}): {e.strerror or e}",
                    hint="check the cache's permissions, and that nothing deletes files while backing up",
                ) from e
            # Every blob is stored: the packs and the uses that name them on an error are done with, freed before
            # the index is made (issue 18: the peak of 100,000 files). The manifest's blobs are the packs' own.
            packs.clear()
            self.uses.clear()
            return writer.finish()

    def _packing_error(self, p: _Pack, e: IntegrityError) -> IntegrityError:
        if p.claim is None:  # content hashed moments ago, or a trees listing: it changed while we read it
            return IntegrityError(
                f"{p.label} ({p.source}) changed while it was backed up: {e.message}; no backup was written",
                path=p.label,
                expected=e.expected,
                actual=e.actual,
                hint="wait until nothing downloads into the cache, then back up again",
            )
        use = next(u for u in self.uses if (u.file.etag, u.file.inode) == p.claim)
        actual = f"sha256 {e.actual}" if e.actual and is_sha256(e.actual) else f"size {e.actual}"
        record = CorruptFile(
            use.repo.repo_type,
            use.repo.repo_id,
            use.rev.commit,
            use.file.path,
            str(p.source),
            f"sha256 {p.sha256}",
            actual,
        )
        error = _corrupt_error([record])
        error.actual = actual
        return error


def _repo_file(f: CachedFile, sha256: str, size: int, git_sha1: str | None) -> RepoFile:
    if f.lfs:
        blob_id = f.blob_id if f.blob_id is not None and f.etag == sha256 else lfs_blob_id(sha256, size)
        return RepoFile(f.path, size, blob_id, sha256, f.xet_hash, sha256)
    assert git_sha1 is not None
    return RepoFile(f.path, size, git_sha1, None, None, sha256)


def _corrupt_error(items: Sequence[CorruptFile]) -> IntegrityError:
    bad = [c for c in items if c.action == "skipped"] or list(items)
    first = bad[0]
    lines = [f"  {c.line()}" for c in bad[:10]]
    if len(bad) > 10:
        lines.append(f"  … and {len(bad) - 10} more")
    return IntegrityError(
        f"{len(bad)} corrupt file(s) in the cache; no backup was written:\n" + "\n".join(lines),
        path=f"{first.repo_type} {first.repo_id}@{first.commit}: {first.path}",
        expected=first.expected,
        actual=first.actual,
        hint=_CORRUPT_HINT,
    )


def _backup_extra(repos: Sequence[CachedRepo], cache_dir: Path) -> dict[str, Any]:
    """What a restore needs beyond the manifest's repos: the cache's layout, its shared-store links and, for
    listings of commits an hfbundle install recorded, the commit's full file list (``upstream``), so that restore
    can tell a complete listing from a partial one an older hfbundle wrote (the trees rule, docs/CACHE.md)."""
    layouts = {r.layout for r in repos} - {LAYOUT_EMPTY}
    layout = layouts.pop() if len(layouts) == 1 else LAYOUT_MIXED if layouts else LAYOUT_EMPTY
    out: dict[str, Any] = {"layout": layout}
    shared = {f"{r.repo_type}:{r.repo_id}": dict(sorted(r.shared.items())) for r in repos if r.shared}
    if shared:
        out["shared_xet"] = shared
    upstream: dict[str, dict[str, list[str]]] = {}
    for r in repos:
        for rev in r.revisions:
            if rev.tree is None:
                continue
            try:
                record = read_record(cache_dir, r.repo_type, r.repo_id, rev.commit)
            except HfBundleError:
                record = None
            if record is not None and record.repo.upstream:
                upstream.setdefault(f"{r.repo_type}:{r.repo_id}", {})[rev.commit] = list(record.repo.upstream)
    if upstream:
        out["upstream"] = upstream
    return out
