"""Carrying out an install plan: blobs streamed and verified, then snapshot entries, trees, refs.

:func:`execute` runs an :class:`~bundler.install.plan.InstallPlan` from a
:class:`~bundler.bundle.source.BundleSource` in the order :mod:`bundler.install` describes, with an undo journal for
the steps after the blobs and one durability barrier (:mod:`bundler.cache.durable`) before any snapshot entry names
a new blob. Blobs of a bundle file stream on parallel lanes when several are large (:meth:`_Run._lanes`).

Longer than ~500 lines: one run is one object (:class:`_Run`) whose phases share its journal, claims, temps and
counters; the cache reading it needs is :mod:`bundler.cache.model`, the blob write :mod:`bundler.cache.blobwrite`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypedDict

from .. import oscompat
from ..bundle.manifest import TREE_FILES, TREE_HUB, TREE_NONE, BlobEntry, RepoEntry, SnapshotEntry
from ..bundle.source import BundleSource, RandomAccessSource
from ..cache import layout, listings
from ..cache.blobwrite import copy_hashed, write_hashed
from ..cache.durable import sync_filesystem
from ..cache.layout import MAX_TREE_BYTES, RepoLayout, parse_tree
from ..cache.locks import RepoClaim, file_lock
from ..cache.model import present_files, real_root, usable_file
from ..cache.names import TEMP_PREFIX, is_our_temp_blob, listdir, temp_name
from ..cache.records import InstalledRecord, read_record
from ..errors import BundleFormatError, HfBundleError, InstallError, IntegrityError
from ..hashing import CHUNK, Digests, StreamHasher, digest_file, is_sha1, is_sha256
from ..repofile import RepoFile, TreeEntry
from .plan import (
    DAMAGED_HINT,
    LAYOUT_COPY,
    ContentStep,
    EntryStep,
    Guard,
    InstalledRepo,
    InstallPlan,
    InstallReport,
    Placement,
    Progress,
    ProgressCallback,
    RefMove,
    ReplacedBlob,
    size_is,
)

logger = logging.getLogger(__name__)

__all__ = ["LANE_MIN_BYTES", "MAX_LANES", "execute"]


class _ChunkHooks(TypedDict):
    on_chunk: Callable[[int], None]
    cancelled: Callable[[], bool]


STALE_SECONDS = 24 * 3600  # our staging folders older than this are a killed install's
LANE_MIN_BYTES = 64 << 20  # blobs this large are worth a lane of their own (see _Run._lanes)
MAX_LANES = 4
LOCKS_RELIST_SECONDS = 1.0  # symlink layout: a repo's lock folder is listed again after this long (see _locked)


def execute(
    plan: InstallPlan,
    source: BundleSource,
    *,
    extra_sources: Sequence[BundleSource] = (),
    on_progress: ProgressCallback | None = None,
) -> InstallReport:
    """Carry out ``plan`` reading blobs from ``source`` (and ``extra_sources`` for an incremental bundle)."""
    if source.manifest.bundle_id != plan.bundle_id:
        raise InstallError("this plan was made for another bundle", hint="plan and execute with the same bundle source")
    run = _Run(plan, source, tuple(extra_sources), on_progress)
    try:
        return run.go()
    except TimeoutError as e:  # a cache lock still held (cache.locks.LockTimeout)
        raise InstallError(
            f"timed out waiting for a lock in {plan.cache_dir / '.locks'} ({e})",
            hint="another download or install is writing the same file: wait for it to finish and re-run",
        ) from e
    except HfBundleError:
        raise
    except OSError as e:
        raise _os_error(e, run.doing) from e


# -- the run -------------------------------------------------------------------------------------------------


@dataclass
class _Journal:
    """Undo log of snapshot/tree/no_exist/ref writes, replayed backwards if a later step fails."""

    created: list[Path] = field(default_factory=list)  # files, links or whole new snapshot folders
    overwritten: list[tuple[Path, bytes | None, Path | None]] = field(default_factory=list)  # path, old, tmp dir
    dirs: list[Path] = field(default_factory=list)

    def mkdirs(self, folder: Path) -> None:
        _make_dirs(folder, self.dirs)

    def undo(self) -> None:
        for path, old, tmp_dir in reversed(self.overwritten):
            with contextlib.suppress(OSError):
                if old is None:
                    path.unlink(missing_ok=True)
                else:
                    layout.atomic_write_bytes(path, old, tmp_dir=tmp_dir)
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        for d in reversed(self.dirs):
            with contextlib.suppress(OSError):
                d.rmdir()


class _Run:
    def __init__(
        self,
        plan: InstallPlan,
        source: BundleSource,
        extras: tuple[BundleSource, ...],
        on_progress: ProgressCallback | None,
    ) -> None:
        self.plan = plan
        self.cache_dir = plan.cache_dir
        self.root = real_root(plan.cache_dir)
        self.guard = Guard(plan.cache_dir, self.root)
        self.source = source
        self.extras = extras
        self.on_progress = on_progress
        self.copy_layout = plan.layout == LAYOUT_COPY
        self._tls = threading.local()
        self.doing = "preparing the install"
        self.mutex = threading.RLock()  # guards the run's state while lanes stream blobs in parallel
        self.abort = threading.Event()  # set when one lane failed: the others stop at their next chunk
        self.t0 = time.monotonic()
        # content sha256 -> a verified file holding it (a placed blob, a staged temp, or a cache copy)
        # Strings, not Paths: one per blob, and a Path costs ~4x the memory of its text (issue 18: 100k files).
        self.local: dict[str, str] = {}
        self.staged: set[str] = set()  # our temp files to move or remove
        self.temps: set[Path | str] = set()
        self.tree_blobs: dict[str, bytes] = {}
        self.streamed: set[str] = set()
        self.need: dict[str, list[Placement]] = {}  # sha -> placements still to materialize
        self.entry_ok: dict[tuple[str, str, str, str], bool] = {}
        self.replaced: list[ReplacedBlob] = []
        self.notes: list[str] = list(plan.notes)
        self.journal = _Journal()
        self.created_dirs: list[Path] = []
        # blobs/<etag> files this run put in place, by the placement they fill (its path is made when needed:
        # a path string per blob cost ~20 MB at 100,000 files; issue 18)
        self.placed: list[Placement] = []
        self.interrupted = False
        self.n_written = self.n_linked = self.n_present = 0
        self.bytes_written = self.bytes_dedup = self.bytes_hashed = 0
        self.entries_added = self.trees_written = self.no_exist_written = 0
        self.trees_moved: list[listings.MovedListing] = []
        self.records: dict[tuple[str, str, str], InstalledRecord | None] = {}
        self.moved: list[RefMove] = []
        self.kept: list[RefMove] = []
        self.done_bytes = 0
        self.total_bytes = 0
        self.done_files = self.total_files = 0  # progress in files too: many small files are long runs
        self.prehashed: dict[Path, Digests] = {}
        # Per-repo work done once, not once per blob (issue 18: a 5,000-file restore listed blobs/ 5,013 times).
        self._layouts: dict[tuple[str, str], RepoLayout] = {}
        self._swept: set[Path] = set()  # blobs/ folders whose leftovers were removed before writing
        self._made: set[Path] = set()  # folders known to exist (made or seen by us)
        self._listed: dict[Path, frozenset[str]] = {}  # blobs/ folder -> its names when the run first wrote there
        self._blobs_dir: dict[Path, str] = {}  # blobs/ folders checked (Guard), as strings
        self._lock_dirs: dict[Path, str] = {}  # repo folder -> its folder of blob locks, as a string
        self._lock_names: dict[str, tuple[float, frozenset[str]]] = {}  # lock folder -> (when listed, names)
        self._claims: dict[Path, RepoClaim] = {}  # repo folder -> our shared claim on it (see RepoClaim)
        self._movers: set[tuple[str, str, str, str]] = set()  # copy layout: entries that take a staged temp
        # Contents that are also a saved trees listing: after streaming, the only ones whose verified file is
        # looked up again in the symlink layout (the copy layout looks every one up: see _receive).
        self._tree_shas = {s.tree for r in plan.manifest.repos for s in r.snapshots}

    # -- driver --

    def go(self) -> InstallReport:
        ok = False
        try:
            self._verify_existing()
            self._stream_and_place()
            if self.bytes_written:
                # One barrier before anything points at the new blobs (an fsync per blob cost ~1.1 s/GB here):
                # after a power cut a snapshot entry or ref never names a blob whose data did not reach the disk.
                placed = (self._placement_path(p) for p in self.placed)
                _sync_filesystem(self.cache_dir, itertools.chain(placed, map(Path, self.staged)))
            self._snapshots()
            self._trees_and_markers()
            self._refs()
            layout.ensure_cachedir_tag(self.cache_dir)
            ok = True
            with contextlib.suppress(OSError):  # housekeeping: never fails an install that succeeded
                self._sweep()
            with contextlib.suppress(OSError):  # migration: partial listings an older hfbundle wrote elsewhere
                self.trees_moved += listings.settle_cache(self.cache_dir, recorded_only=True)
        except BaseException as e:  # Ctrl-C or a lost source: an interruption, not a refusal (see _cleanup)
            self.interrupted = isinstance(e, KeyboardInterrupt) or getattr(e, "interrupted", False)
            raise
        finally:
            self._cleanup(ok)
        return self._report()

    @property
    def doing(self) -> str:
        """What this thread is doing, for an error message (each lane has its own)."""
        return getattr(self._tls, "doing", "streaming blobs")

    @doing.setter
    def doing(self, value: str) -> None:
        self._tls.doing = value

    def _progress(self, phase: str, n: int, item: str | None = None, *, files: int = 0, emit: bool = True) -> None:
        """Count ``n`` bytes and ``files`` files done; tell ``on_progress`` unless ``emit`` is False (the counts
        stay exact: the next report carries them)."""
        with self.mutex:
            self.done_bytes += n
            self.done_files += files
            if emit and self.on_progress is not None:
                self.on_progress(
                    Progress(phase, self.done_bytes, self.total_bytes, item, self.done_files, self.total_files)
                )

    def _layout(self, repo_type: str, repo_id: str) -> RepoLayout:
        lay = self._layouts.get((repo_type, repo_id))
        if lay is None:
            lay = self._layouts[(repo_type, repo_id)] = RepoLayout(self.cache_dir, repo_type, repo_id)
        return lay

    def _prepare_repo(self, lay: RepoLayout) -> None:
        """Once per repo before its first blob: its folders, our shared claim on it (:class:`RepoClaim`) and,
        when no other install holds one, the temp blobs killed installs left in blobs/ (one listing)."""
        if lay.blobs in self._swept:
            return
        # No snapshots/ yet: a repo folder with one is a repo to scan_cache_dir and `hf cache ls`, even empty.
        self._mkdirs(lay.blobs)
        claim = self._claims[lay.folder] = RepoClaim(lay)
        if claim.exclusive():  # no other install writes here: every temp blob is a dead one's
            _sweep_temp_blobs(lay, stale_only=not claim.supported)
        claim.share()
        self._listed[lay.blobs] = frozenset(listdir(lay.blobs))
        self._swept.add(lay.blobs)

    def _placement_path(self, p: Placement) -> Path:
        lay = self._layout(p.repo_type, p.repo_id)
        if p.commit is not None and p.path is not None:
            return lay.snapshot_file(p.commit, p.path)
        return lay.blob(p.etag)

    # -- 1. verify what is there --

    def _check_file(
        self, path: Path, sha256: str, size: int, etag: str | None, *, always_hash: bool = False
    ) -> tuple[bool, str]:
        """Does ``path`` hold this content? Returns (ok, actual-description). Never reads outside the cache.
        ``always_hash``: even with ``trust_existing`` (a file whose name carries no hash is evidence, not proof)."""
        if not usable_file(path, self.root):
            return False, "missing, or outside the cache"
        try:
            actual_size = os.path.getsize(_long(path))
        except OSError:
            return False, "missing"
        if actual_size != size:
            return False, f"size {actual_size}"
        if self.plan.trust_existing and not always_hash:
            return True, ""
        self.doing = f"re-hashing {path}"
        pre = self.prehashed.pop(path, None)
        d = pre or digest_file(str(path), git=etag is not None and not is_sha256(etag))
        self.bytes_hashed += d.size
        if pre is None:  # a pre-hashed file was counted when its hash finished
            self._progress("verify", d.size, str(path))
        ok = d.sha256 == sha256 and (etag is None or _digest_matches(d, etag))
        return ok, f"sha256 {d.sha256}"

    def _will_hash(self, path: Path, size: int, *, always_hash: bool = False) -> bool:
        """Whether :meth:`_check_file` will hash ``path`` (and report its bytes as verify progress)."""
        trusted = self.plan.trust_existing and not always_hash
        return not trusted and usable_file(path, self.root) and size_is(path, size)

    def _prehash(self) -> None:
        """Re-hash the blobs already present on every core at once (hashlib releases the GIL); the checks
        below then read the results. Only sha256 for content named by sha256."""
        jobs: dict[Path, bool] = {}
        for c in self.plan.contents:
            for p in c.placements:
                if p.state == "present":
                    path = self._placement_path(p)
                    if usable_file(path, self.root) and size_is(path, c.size):
                        jobs[path] = jobs.get(path, False) or not is_sha256(p.etag)
        if len(jobs) < 2:
            return

        def one(job: tuple[Path, bool]) -> Digests:
            d = digest_file(str(job[0]), git=job[1])
            self._progress("verify", d.size, str(job[0]))  # as each finishes: a multi-GB re-hash shows progress
            return d

        with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            digests = pool.map(one, jobs.items())
            self.prehashed = dict(zip(jobs, digests, strict=True))

    def _verify_existing(self) -> None:
        plan = self.plan
        self.total_bytes = sum(
            c.size
            for c in plan.contents
            for p in c.placements
            if p.state == "present" and self._will_hash(self._placement_path(p), c.size)
        )
        if not plan.trust_existing:
            self._prehash()
        for c in plan.contents:
            need: list[Placement] = []
            for p in c.placements:
                if p.state != "present":
                    need.append(p)
                    continue
                path = self._placement_path(p)
                ok, actual = self._check_file(path, c.sha256, c.size, p.etag)
                if ok:
                    logger.debug("reuse %s: already there, content checked", path)
                    self.n_present += 1
                    self.bytes_dedup += c.size
                    self.local.setdefault(c.sha256, str(path))
                    if p.commit is not None and p.path is not None:
                        self.entry_ok[(p.repo_type, p.repo_id, p.commit, p.path)] = True
                else:
                    rel = str(path.relative_to(self._layout(p.repo_type, p.repo_id).folder))
                    logger.debug("replace %s: its content is %s, the bundle's is sha256 %s", path, actual, c.sha256)
                    self.replaced.append(ReplacedBlob(p.repo_type, p.repo_id, rel, f"sha256 {c.sha256}", actual))
                    need.append(p)
            if need:
                self.need[c.sha256] = need
            elif not c.placements:  # a trees blob
                self.need[c.sha256] = []
        # Foreign-shaped entries in symlink layout (a real file, a link elsewhere): keep them if they verify.
        if not self.copy_layout:
            blob_used: dict[tuple[str, str, str], bool] = {}  # (repo, etag) -> an entry will link to it
            for e in plan.entries:
                ok = False
                if e.state == "check":
                    path = self._layout(e.repo_type, e.repo_id).snapshot_file(e.commit, e.path)
                    ok, _ = self._check_file(path, e.sha256, e.size, None)
                    self.entry_ok[(e.repo_type, e.repo_id, e.commit, e.path)] = ok
                key = (e.repo_type, e.repo_id, e.etag)
                blob_used[key] = blob_used.get(key, False) or not ok
            for sha, placements in list(self.need.items()):  # no orphan blob behind entries we keep
                kept = [p for p in placements if blob_used.get((p.repo_type, p.repo_id, p.etag), True)]
                if kept or not placements:
                    self.need[sha] = kept
                else:
                    del self.need[sha]
        # Contents still needed: an identical verified blob elsewhere in the cache beats streaming.
        for c in plan.contents:
            if c.sha256 in self.need and c.sha256 not in self.local:
                for cand in c.cache_copies:
                    # A blob must match its name too; a copy-layout snapshot file has none: its sha256 is checked,
                    # even with trust_existing (only its listing or record names it).
                    is_blob = Path(cand).parent.name == "blobs"
                    if self._will_hash(Path(cand), c.size, always_hash=not is_blob):  # verify work: total grows
                        with self.mutex:
                            self.total_bytes += c.size
                    etag = Path(cand).name if is_blob else None
                    ok, _ = self._check_file(Path(cand), c.sha256, c.size, etag, always_hash=not is_blob)
                    if ok:
                        logger.debug("copy sha256 %s from %s (an identical file in the cache)", c.sha256[:12], cand)
                        self.local[c.sha256] = cand
                        break
                    what = "its name" if is_blob else "its trees listing or install record"
                    logger.debug("skip %s: its content does not match %s", cand, what)
                    self.notes.append(f"ignored {cand}: its content does not match {what}")

    # -- 2. stream and place blobs --

    def _stream_and_place(self) -> None:
        plan = self.plan
        contents = {c.sha256: c for c in plan.contents}
        wanted = {sha for sha in self.need if sha not in self.local}
        # Pick a source for each wanted blob: the bundle itself, then the base bundles in order.
        assignment: list[tuple[BundleSource, set[str]]] = []
        left = set(wanted)
        for src in (self.source, *self.extras):
            carried = {b.sha256 for b in src.manifest.blobs} & left
            if carried:
                assignment.append((src, carried))
                left -= carried
        trees_missing = {sha for sha in left if not contents[sha].placements}
        left -= trees_missing
        if left:
            c = contents[min(left)]
            raise InstallError(
                f"{len(left)} blob(s) are neither in this bundle nor in the cache, e.g. {c.sha256} "
                f"({c.size} bytes, {c.where})",
                hint=(
                    "this delta bundle was built for a cache holding that blob: run `hfbundle inventory` here, "
                    "carry have.json to the online machine and build the delta again (or a full bundle)"
                    if plan.manifest.is_delta
                    else "this is an incremental bundle: pass its base bundle(s) too, or install the base first"
                ),
            )
        for sha in trees_missing:  # no listing then (see _saved_tree)
            self.need.pop(sha, None)

        # The stream phase's bytes: the blobs written from a bundle, and (symlink layout) every other placement
        # filled from a verified copy, counted whole when hard-linked and chunk by chunk when copied.
        placed = 0
        if not self.copy_layout:
            for sha, ps in self.need.items():
                if ps and sha not in trees_missing:
                    placed += max(contents[sha].size, 0) * (len(ps) - (1 if sha in wanted else 0))
        self.total_bytes = sum(max(contents[s].size, 0) for s in wanted - trees_missing) + placed
        self.done_bytes = 0
        self.total_files, self.done_files = len(wanted - trees_missing), 0
        for src, shas in assignment:
            lanes = self._lanes(src, shas, contents)
            if isinstance(src, RandomAccessSource) and lanes > 1:
                self._stream_lanes(src, shas, contents, lanes)
            else:
                self._stream_in_order(src, shas, contents)
        # Contents with a verified local copy: link or copy into the placements that need them.
        if not self.copy_layout:
            for sha, placements in self.need.items():
                if sha not in self.streamed:
                    for p in placements:
                        self._place_blob(contents[sha], p, self.local[sha])

    def _stream_in_order(self, src: BundleSource, shas: set[str], contents: dict[str, ContentStep]) -> None:
        got: set[str] = set()
        for entry, stream in src.iter_blobs(wanted=shas):
            if entry.sha256 not in shas or entry.sha256 in got:
                continue  # the source broke its contract: never trust it
            self._take(entry, stream, contents)
            got.add(entry.sha256)
        if got != shas:
            lost = contents[min(shas - got)]
            raise BundleFormatError(
                f"the bundle does not contain blob {lost.sha256} ({lost.where}) its manifest declares",
                hint=DAMAGED_HINT,
            )

    def _lanes(self, src: BundleSource, shas: set[str], contents: dict[str, ContentStep]) -> int:
        """How many blobs to stream at once: one per core, when the source can read blobs in any order and
        at least two are large (sha256 of one blob is sequential: two blobs hash on two cores). A source whose
        reads wait on another machine (a registry) may ask for more through ``preferred_lanes``."""
        if not isinstance(src, RandomAccessSource) or not src.random_access:
            return 1
        large = sum(1 for sha in shas if contents[sha].size >= LANE_MIN_BYTES)
        wanted = max(os.cpu_count() or 1, getattr(src, "preferred_lanes", 0))
        return max(1, min(wanted, MAX_LANES, large))

    def _stream_lanes(
        self, src: RandomAccessSource, shas: set[str], contents: dict[str, ContentStep], lanes: int
    ) -> None:
        """Stream ``shas`` on ``lanes`` threads, largest first, each blob through its own reader. The first
        failure stops the other lanes at their next chunk and is raised once all have stopped."""
        entries = {b.sha256: b for b in src.manifest.blobs}
        queue = deque(sorted(shas, key=lambda sha: (-contents[sha].size, sha)))

        def lane() -> None:
            while not self.abort.is_set():
                with self.mutex:
                    if not queue:
                        return
                    sha = queue.popleft()
                self.doing = f"writing {contents[sha].where}"
                try:
                    self._take(entries[sha], src.read_blob(sha, verify=False), contents)
                except TimeoutError:  # a cache lock still held: execute() explains it
                    raise
                except OSError as e:  # with this lane's context, not the main thread's
                    raise _os_error(e, self.doing) from e

        with ThreadPoolExecutor(lanes, thread_name_prefix="hfbundle-lane") as pool:
            futures = [pool.submit(lane) for _ in range(lanes)]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                self.abort.set()
                raise

    def _take(self, entry: BlobEntry, stream: BinaryIO, contents: dict[str, ContentStep]) -> None:
        """Receive one blob the source hands over (any thread)."""
        with self.mutex:
            c = contents[entry.sha256]
            if c.size < 0:  # a trees listing only a base bundle declares
                c = contents[entry.sha256] = ContentStep(c.sha256, entry.size, (), c.action, where=c.where)
        if entry.size != c.size:
            raise IntegrityError(
                f"{c.where}: the bundle declares blob {c.sha256[:12]}… with size {entry.size}, "
                f"the manifest with {c.size}",
                path=c.where,
                expected=str(c.size),
                actual=str(entry.size),
                hint=DAMAGED_HINT,
            )
        if c.placements:
            self._receive(c, stream)
        else:
            raw = self._read_tree_blob(c, stream)
            with self.mutex:
                self.tree_blobs[c.sha256] = raw
        with self.mutex:
            self.streamed.add(entry.sha256)
            # Many small files: a report every 32 of them (issue 18); the last one always reports.
            emit = c.size >= CHUNK or (self.done_files + 1) % 32 == 0 or self.done_files + 1 >= self.total_files
        self._progress("stream", 0, c.where, files=1, emit=emit)

    def _receive(self, c: ContentStep, stream: BinaryIO) -> None:
        """Stream one content into a temp file next to its first placement, verify it, then place it. Safe
        on several lanes at once: only the copy runs outside :attr:`mutex`."""
        with self.mutex:
            placements = self.need[c.sha256]
            first = placements[0]
            lay = self._layout(first.repo_type, first.repo_id)
            self.doing = f"writing {c.where}"
            self._prepare_repo(lay)
            blob = self._check_blob(lay, first.etag)
        # The copy layout waits for that lock too: without symlinks huggingface_hub writes the snapshot file
        # itself under it (it moves its download into snapshots/), so a writer of this content may be at work.
        with self._locked(lay, first.etag, False):
            tmp_name = temp_name(first.etag)
            if self.copy_layout:  # kept until the snapshot phase, after the lock: a name others never sweep
                tmp_name = tmp_name[: -len(".tmp")] + ".stage.tmp"
            tmp = f"{blob[: -len(first.etag)]}{tmp_name}"
            with self.mutex:
                self.temps.add(tmp)
                needs_git = c.git_sha1 is not None or any(
                    not is_sha256(p.etag) for p in (*c.placements, *self.need.get(c.sha256, ()))
                )
            d = self._copy_stream(stream, tmp, c.size, git=needs_git)
            with self.mutex:
                self._check_digest(c, d)
                self.bytes_written += d.size
                if self.copy_layout:
                    self.staged.add(tmp)
                    self.local[c.sha256] = tmp
                    return
                self._replace(tmp, blob)
                self.temps.discard(tmp)
                self.placed.append(first)
                self.n_written += 1
        with self.mutex:
            if c.sha256 in self._tree_shas:  # later read back as a saved trees listing (_saved_tree)
                self.local[c.sha256] = blob
            for p in placements[1:]:
                self._place_blob(c, p, blob)

    def _check_blob(self, lay: RepoLayout, etag: str) -> str:
        """``blobs/<etag>`` of ``lay`` as a string, its path checked (:class:`Guard`). The folders are checked
        once per run; the name itself only when the listing of blobs/ taken before writing holds it (issue 18:
        an lstat of a name that is not there cost ~70 us a blob in a folder of 20,000)."""
        blobs = self._blobs_dir.get(lay.blobs)
        if blobs is None:
            self.guard.check(lay.blobs, is_dir=True)
            blobs = self._blobs_dir[lay.blobs] = str(lay.blobs)
        if not etag or "/" in etag or etag.startswith(".") or etag in self._listed.get(lay.blobs, ()):
            self.guard.check(lay.blob(etag))  # refuses a bad name too
        return f"{blobs}{os.sep}{etag}"

    def _check_digest(self, c: ContentStep, d: Digests) -> None:
        if d.size != c.size:
            kind = "longer than" if d.size > c.size else "shorter than"
            raise IntegrityError(
                f"{c.where}: blob {c.sha256[:12]}… is {kind} the {c.size} bytes the manifest declares",
                path=c.where,
                expected=f"{c.size} bytes",
                actual=f"{d.size}{'+' if d.size > c.size else ''} bytes",
                hint=DAMAGED_HINT,
            )
        if d.sha256 != c.sha256:
            raise IntegrityError(
                f"{c.where}: content does not match the manifest (expected sha256 {c.sha256}, got {d.sha256})",
                path=c.where,
                expected=c.sha256,
                actual=d.sha256,
                hint=DAMAGED_HINT,
            )
        for p in self.need.get(c.sha256, ()):
            if not _digest_matches(d, p.etag):
                raise IntegrityError(
                    f"{p.repo_type} {p.repo_id}: {p.path or c.where}: content hashes to git blob {d.git_sha1}, "
                    f"the manifest names it {p.etag}",
                    path=c.where,
                    expected=p.etag,
                    actual=d.git_sha1,
                    hint=DAMAGED_HINT,
                )

    def _copy_stream(self, stream: BinaryIO, tmp: str, size: int, *, git: bool = True) -> Digests:
        return write_hashed(stream, tmp, size, git=git, **self._chunks(tmp, emit=size >= CHUNK))

    def _chunks(self, tmp: Path | str, phase: str = "stream", *, emit: bool = True) -> _ChunkHooks:
        """Progress per chunk written to ``tmp``, and the stop signal of a failed lane. ``emit=False``: counted
        only (a small blob's one chunk: :meth:`_take` reports the file)."""
        name = os.path.basename(tmp)
        return {"on_chunk": lambda n: self._progress(phase, n, name, emit=emit), "cancelled": self.abort.is_set}

    def _place_blob(self, c: ContentStep, p: Placement, src: str) -> None:
        """Make ``blobs/<etag>`` of ``p``'s repo hold the verified content ``src``: hard link, else copy."""
        lay = self._layout(p.repo_type, p.repo_id)
        dst = lay.blob(p.etag)
        if src == str(dst):
            self._progress("link", c.size, str(dst))
            return
        self.doing = f"linking {c.where} into {lay.folder.name}"
        self._prepare_repo(lay)
        self.guard.check(dst)
        with self._locked(lay, p.etag, False):
            tmp = lay.blobs / temp_name(p.etag)
            self.temps.add(tmp)
            linked = self._link_or_copy(c, p.etag, src, tmp)  # a copy reports its bytes chunk by chunk
            if linked:
                self.n_linked += 1
                self.bytes_dedup += c.size
            else:
                self.n_written += 1
            self._replace(tmp, dst)
            self.temps.discard(tmp)
            self.placed.append(p)
        self._progress("link", c.size if linked else 0, str(dst))

    def _link_or_copy(self, c: ContentStep, etag: str | None, src: str, tmp: Path) -> bool:
        """Hard-link ``src`` at ``tmp`` (True), or copy it while hashing (False). Never a symlink."""
        real = Path(os.path.realpath(src))
        if oscompat.hard_link(real, tmp):  # refused on exFAT/FAT32, across devices: copied below
            return True
        d = copy_hashed(real, tmp, c.size, git=etag is not None and not is_sha256(etag), **self._chunks(tmp))
        self._check_digest_simple(c, d, etag)
        self.bytes_written += d.size
        return False

    def _check_digest_simple(self, c: ContentStep, d: Digests, etag: str | None) -> None:
        if d.size != c.size or d.sha256 != c.sha256 or (etag is not None and not _digest_matches(d, etag)):
            raise IntegrityError(
                f"{c.where}: a cache file changed while it was copied (expected sha256 {c.sha256}, got {d.sha256})",
                path=c.where,
                expected=c.sha256,
                actual=d.sha256,
                hint="something else is writing the cache: wait for it to finish and re-run the install",
            )

    def _read_tree_blob(self, c: ContentStep, stream: BinaryIO) -> bytes:
        if c.size > MAX_TREE_BYTES:
            raise BundleFormatError(f"trees blob {c.sha256[:12]}… is {c.size} bytes, over the {MAX_TREE_BYTES} limit")
        parts: list[bytes] = []
        hasher = StreamHasher(c.size)
        while hasher.size <= c.size and (chunk := stream.read(min(CHUNK, c.size + 1 - hasher.size))):
            hasher.update(chunk)
            parts.append(chunk)
        self._check_digest(c, hasher.digests())
        return b"".join(parts)

    # -- 3. snapshots --

    def _snapshots(self) -> None:
        plan = self.plan
        self.doing = "writing snapshot entries"
        by_snap: dict[tuple[str, str, str], list[EntryStep]] = {}
        for e in plan.entries:
            by_snap.setdefault((e.repo_type, e.repo_id, e.commit), []).append(e)
        if self.copy_layout:
            self._plan_copies([e for s in plan.snapshots for e in by_snap.get((s.repo_type, s.repo_id, s.commit), [])])
        for s in plan.snapshots:
            entries = by_snap.get((s.repo_type, s.repo_id, s.commit), [])
            lay = self._layout(s.repo_type, s.repo_id)
            final = lay.snapshot(s.commit)
            if s.new and not os.path.lexists(final) and self._assemble_new(lay, final, entries):
                continue
            for e in entries:
                self._add_entry(lay, e)

    def _entry_done(self, e: EntryStep) -> bool:
        """Already there as it must be: our exact link, or a file whose content was verified."""
        return e.state == "present" or bool(self.entry_ok.get((e.repo_type, e.repo_id, e.commit, e.path)))

    def _plan_copies(self, ordered: list[EntryStep]) -> None:
        """Copy layout: which entry takes each staged temp (the last to need that content, so the copies before
        it read the temp), and the ``copy`` phase's totals: every other entry written is a copy."""
        todo = [e for e in ordered if not self._entry_done(e)]
        last: dict[str, EntryStep] = {}
        for e in todo:
            last[e.sha256] = e
        self._movers = {
            (e.repo_type, e.repo_id, e.commit, e.path) for sha, e in last.items() if self.local.get(sha) in self.staged
        }
        with self.mutex:
            self.total_bytes = sum(
                e.size for e in todo if (e.repo_type, e.repo_id, e.commit, e.path) not in self._movers
            )
            self.done_bytes = 0
            self.total_files, self.done_files = len(todo), 0

    def _assemble_new(self, lay: RepoLayout, final: Path, entries: list[EntryStep]) -> bool:
        """Build a brand-new snapshot under a temp name in the repo folder and rename it into ``snapshots/``.

        Not inside ``snapshots/``: ``scan_cache_dir`` lists every folder there as a revision, so a staging
        folder (left by a killed install, or seen while one runs) showed up as a bogus revision. A repo without
        ``snapshots/`` yet gets the whole folder staged and renamed into place with its first snapshot: an empty
        ``snapshots/`` would list the repo (with no revision) if the install were killed there."""
        self._mkdirs(lay.folder)
        if os.path.isdir(final.parent):
            _remove_stale_dirs(final.parent, final.name)  # where older versions staged
        _remove_stale_dirs(lay.folder, final.name)
        whole: Path | None = None
        if not os.path.lexists(final.parent):
            whole = lay.folder / temp_name("snapshots")
            whole.mkdir()
            self.temps.add(whole)
            staging = whole / final.name  # the same depth as the final place: relative links resolve already
        else:
            staging = lay.folder / temp_name(final.name)
            self.temps.add(staging)
        staging.mkdir()
        # Strings, not Paths, and each folder made once (issue 18: ~24 Path objects and a makedirs per entry).
        # Link targets are those of the final place (they dangle while staged): from snapshots/<commit>/<path>
        # up to the repo folder, then blobs/<etag>: the text os.path.relpath gives, by counting.
        top = str(staging)
        made = {top}
        for e in entries:
            if not e.etag or "/" in e.etag or e.etag.startswith("."):
                lay.blob(e.etag)  # refuses it
            tmp_dst = f"{top}/{e.path}"
            sub = e.path.rpartition("/")[0]
            folder = f"{top}/{sub}" if sub else top
            if folder not in made:
                os.makedirs(_long(folder), exist_ok=True)
                made.add(folder)
            if self.copy_layout:
                self._materialize_file(e, Path(tmp_dst))
            else:
                os.symlink(_link_to_blob(e.path, e.etag), _long(tmp_dst))
            self.entries_added += 1
        if whole is not None:
            try:
                os.rename(whole, final.parent)
                self.temps.discard(whole)
                self.journal.created.append(final.parent)
                return True
            except OSError as err:  # snapshots/ appeared meanwhile (a concurrent download): the usual way
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                    raise
        try:
            os.rename(staging, final)
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                raise
            self._merge_staging(lay, staging, final, entries)  # created meanwhile (a concurrent download)
            return True
        self.temps.discard(staging)
        self.journal.created.append(final)
        return True

    def _merge_staging(self, lay: RepoLayout, staging: Path, final: Path, entries: list[EntryStep]) -> None:
        """Move the verified entries of ``staging`` one by one into the snapshot someone else created."""
        for e in entries:
            dst = final / e.path
            self.guard.check(dst)
            self.journal.mkdirs(dst.parent)
            with self._locked(lay, e.etag, False):
                if not os.path.lexists(dst):
                    self.journal.created.append(dst)
                os.replace(_long(staging / e.path), _long(dst))

    def _add_entry(self, lay: RepoLayout, e: EntryStep) -> None:
        if self._entry_done(e):
            return
        dst = lay.snapshot_file(e.commit, e.path)
        self.guard.check(dst)
        self.journal.mkdirs(dst.parent)
        with self._locked(lay, e.etag, False):
            existed = os.path.lexists(dst)
            if self.copy_layout:
                tmp = dst.with_name(temp_name(dst.name))
                self.temps.add(tmp)
                self._materialize_file(e, tmp)
                self._replace(tmp, dst)
                self.temps.discard(tmp)
            else:
                layout.place_symlink(dst, lay.blob(e.etag))
        if existed:
            if e.state == "check" and not self.copy_layout:  # copy layout: reported when re-hashed
                rel = str(dst.relative_to(lay.folder))
                self.replaced.append(ReplacedBlob(e.repo_type, e.repo_id, rel, f"sha256 {e.sha256}", "mismatch"))
        else:
            self.journal.created.append(dst)
        self.entries_added += 1

    def _materialize_file(self, e: EntryStep, dst: Path) -> None:
        """Copy layout: put the verified content at ``dst``: our staged temp moved on its last use
        (:meth:`_plan_copies`), else a copy hashed while it is written."""
        src = self.local[e.sha256]
        c = ContentStep(e.sha256, e.size, (), "none", where=f"{e.repo_type} {e.repo_id}: {e.path}")
        if (e.repo_type, e.repo_id, e.commit, e.path) in self._movers and src in self.staged:
            os.replace(_long(src), _long(dst))
            self.staged.discard(src)
            self.temps.discard(src)
        else:
            self._copy_file(c, Path(src), dst)
        self.n_written += 1
        self._progress("copy", 0, c.where, files=1)

    def _copy_file(self, c: ContentStep, src: Path, dst: Path) -> None:
        d = copy_hashed(src, dst, c.size, git=False, **self._chunks(dst, "copy"))
        self._check_digest_simple(c, d, None)
        self.bytes_written += d.size

    # -- 4. trees and .no_exist --

    def _trees_and_markers(self) -> None:
        self.doing = "writing trees/ and .no_exist/"
        for repo in self.plan.manifest.repos:
            lay = self._layout(repo.repo_type, repo.repo_id)
            for snap in repo.snapshots:
                snap_dir = lay.snapshot(snap.commit)
                present = present_files(snap_dir)
                present |= {f.path for f in snap.files if f.path not in present and os.path.isfile(snap_dir / f.path)}
                self._settle_tree(lay, repo, snap, present)
                self._write_markers(lay, snap, present)

    def _settle_tree(self, lay: RepoLayout, repo: RepoEntry, snap: SnapshotEntry, present: set[str]) -> None:
        """Apply the trees rule (:mod:`bundler.cache.listings`) to this snapshot: write the commit's complete listing
        when the snapshot holds every file it names; otherwise write none, and move aside one that breaks it."""
        label = f"{repo.repo_id}@{snap.commit[:8]}"
        target = lay.tree(snap.commit)
        old = _read_bytes(target)
        parsed_old = parse_tree(old) if old is not None else None
        known = self._known_files(repo, snap)
        data: bytes | None = None
        full: dict[str, TreeEntry] | None = None
        if snap.tree in (TREE_HUB, TREE_FILES, TREE_NONE):
            full = listings.hub_listing(self.plan.manifest, repo, snap)
            if full is not None:
                lacking = listings.unconfirmed(
                    lay, snap.commit, full, known=known, others=parsed_old, confirm=self._confirm_copy
                )
                if not lacking:
                    data = layout.tree_json(full)
                else:
                    logger.debug("%s: no trees listing, the snapshot lacks %d file(s)", label, len(lacking))
        else:
            data = self._saved_tree(lay, label, snap, known, old)
        known_full = set(full) if full is not None else self._recorded_upstream(lay, snap.commit)
        if data is not None:
            if data == old or (parsed_old is not None and parsed_old == parse_tree(data)):
                return  # the same listing (another client's formatting is kept as it is)
            self.guard.check(target)
            self.journal.mkdirs(target.parent)
            self.journal.overwritten.append((target, old, None))
            if parsed_old is not None:  # a different listing is kept aside, never overwritten unseen
                replaced = listings.trap_of(parsed_old, present, known_full) or "online"
                self.trees_moved.append(listings.move_aside(lay, snap.commit, replaced))
            layout.atomic_write_bytes(target, data)
            self.trees_written += 1
            return
        if old is None:
            return
        if parsed_old is None:
            self.notes.append(f"{label}: trees/{snap.commit}.json is not a valid listing (huggingface_hub ignores it)")
            return
        trap = listings.trap_of(parsed_old, present, known_full)
        if trap is not None:
            self.guard.check(target)
            self.journal.overwritten.append((target, old, None))
            self.trees_moved.append(listings.move_aside(lay, snap.commit, trap))

    def _saved_tree(
        self, lay: RepoLayout, label: str, snap: SnapshotEntry, known: Mapping[str, RepoFile], old: bytes | None
    ) -> bytes | None:
        """A backup's saved listing: its exact bytes when the rule allows (or ``--verbatim``), else None."""
        raw = self.tree_blobs.get(snap.tree)
        if raw is None and snap.tree in self.local:  # the listing is also a file's content
            raw = _read_bytes(Path(self.local[snap.tree]))
        if raw is None and old is not None and _sha256_bytes(old) == snap.tree:
            raw = old
        if raw is None:
            self.notes.append(f"{label}: the saved trees listing is in no backup given: none written")
            return None
        if self.plan.verbatim_trees:
            return raw
        parsed = parse_tree(raw)
        if parsed is None:
            self.notes.append(f"{label}: the saved trees listing is invalid: left out")
            return None
        lacking = listings.unconfirmed(lay, snap.commit, parsed, known=known, confirm=self._confirm_copy)
        full = self._recorded_upstream(lay, snap.commit)
        if lacking or not _agrees(parsed, snap.files):
            self.notes.append(
                f"{label}: the saved trees listing names {len(lacking) or 'some'} file(s) this snapshot lacks or "
                f"holds otherwise (e.g. {lacking[0] if lacking else 'a changed file'}): left out, as a listing "
                "would break offline loading (restore --verbatim keeps it)"
            )
            return None
        if full is not None and set(parsed) != set(full):
            self.notes.append(
                f"{label}: the saved trees listing is not the commit's complete listing (an older hfbundle wrote "
                "it): left out, as online the client would trust it (restore --verbatim keeps it)"
            )
            return None
        return raw

    def _confirm_copy(self, path: Path, entry: TreeEntry) -> bool:
        """Does a real snapshot file (copy layout, or the real client's copy) hold what a listing says? Hashed:
        its name carries no hash. Only inside the cache, and only when nothing else confirms it."""
        if not usable_file(path, self.root):
            return False
        self.doing = f"hashing {path} to confirm the trees listing"
        d = digest_file(str(path), git=entry.lfs_sha256 is None)
        self.bytes_hashed += d.size
        ok = d.size == entry.size and _digest_matches(d, entry.etag)
        logger.debug("listing: %s %s its entry (content hashed)", path, "matches" if ok else "does not match")
        return ok

    def _known_files(self, repo: RepoEntry, snap: SnapshotEntry) -> dict[str, RepoFile]:
        """Files whose content is known without hashing: this bundle's (verified now), then those an earlier
        install recorded for this commit (copy-layout files carry no hash in their names)."""
        known: dict[str, RepoFile] = {}
        record = self._record(repo.repo_type, repo.repo_id, snap.commit)
        if record is not None:
            known.update(record.files)
        known.update({f.path: f for f in snap.files})
        return known

    def _recorded_upstream(self, lay: RepoLayout, commit: str) -> set[str] | None:
        """The commit's full file list as an hfbundle install recorded it: in this cache, or (restore) in the
        cache the backup was taken from."""
        record = self._record(lay.repo_type, lay.repo_id, commit)
        if record is not None and record.repo.upstream:
            return set(record.repo.upstream)
        return listings.backup_upstream(self.plan.manifest, lay.repo_type, lay.repo_id, commit)

    def _record(self, repo_type: str, repo_id: str, commit: str) -> InstalledRecord | None:
        key = (repo_type, repo_id, commit)
        if key not in self.records:
            try:
                self.records[key] = read_record(self.cache_dir, repo_type, repo_id, commit)
            except HfBundleError:  # a damaged record is doctor's to report; here it just tells nothing
                self.records[key] = None
        return self.records[key]

    def _write_markers(self, lay: RepoLayout, snap: SnapshotEntry, present: set[str]) -> None:
        for path in snap.no_exist:
            if path in present:
                self.notes.append(f"{lay.repo_id}@{snap.commit[:8]}: no .no_exist marker for {path}: the file exists")
                continue
            marker = lay.no_exist(snap.commit, path)
            if os.path.lexists(marker):
                continue
            self.guard.check(marker)
            self.journal.mkdirs(marker.parent)
            self.journal.overwritten.append((marker, None, None))
            layout.atomic_write_bytes(marker, b"")
            self.no_exist_written += 1
        # A marker for a file that now exists would make try_to_load_from_cache report it missing. None can be
        # there without .no_exist/<commit>/ (one check, not one per file: issue 18).
        if not os.path.isdir(lay.folder / ".no_exist" / snap.commit):
            return
        for f in snap.files:
            marker = lay.no_exist(snap.commit, f.path)
            if os.path.isfile(marker) and not os.path.islink(marker):
                self.journal.overwritten.append((marker, b"", None))
                marker.unlink()
                self.notes.append(f"{lay.repo_id}@{snap.commit[:8]}: removed a stale .no_exist marker for {f.path}")

    # -- 5. refs --

    def _refs(self) -> None:
        self.doing = "writing refs"
        for r in self.plan.refs:
            lay = self._layout(r.repo_type, r.repo_id)
            if r.action == "keep":
                logger.debug("keep ref %s of %s at %s (--keep-refs; the bundle has %s)", r.ref, r.repo_id, r.old, r.new)
                self.kept.append(RefMove(r.repo_type, r.repo_id, r.ref, r.old, r.new))
                continue
            if r.action == "same":
                continue
            target = lay.ref(r.ref)
            self.guard.check(target)
            old = _read_bytes(target)
            self.journal.mkdirs(target.parent)
            self.journal.overwritten.append((target, old, lay.folder))
            logger.debug("write ref %s of %s: %s -> %s", r.ref, r.repo_id, r.old, r.new)
            if layout.write_ref(lay, r.ref, r.new):
                self.moved.append(RefMove(r.repo_type, r.repo_id, r.ref, r.old, r.new))

    # -- helpers --

    def _replace(self, tmp: Path | str, dst: Path | str) -> None:
        try:
            os.replace(_long(tmp), _long(dst))
        except IsADirectoryError as err:
            raise InstallError(
                f"{dst} is a folder where a file belongs", hint="move that folder away and re-run the install"
            ) from err

    def _locked(self, lay: RepoLayout, etag: str, skip: bool) -> contextlib.AbstractContextManager[object]:
        """``blobs/<etag>``'s lock, the one huggingface_hub takes while it writes that blob, when its lock
        file exists: huggingface_hub creates it before writing the blob (and leaves it). Where it does not
        exist nobody is writing that blob, and creating one lock file per blob cost ~0.7 ms a file here,
        more than writing a 4 KB blob (issue 18). Our own temps are protected by :class:`RepoClaim`.

        Symlink layout: the repo's lock folder is listed, not probed once per blob (a stat per blob; issue 18),
        and listed again at most :data:`LOCKS_RELIST_SECONDS` later, so a lock made by a download that starts
        meanwhile is seen within that time (the blob both write then holds the same verified content: each
        side moves a complete file into place). The copy layout probes each lock: there huggingface_hub
        writes the snapshot file itself under it."""
        locks = self._lock_dirs.get(lay.folder)
        if locks is None:
            locks = self._lock_dirs[lay.folder] = str(lay.lock("x").parent)
        name = f"{etag}.lock"
        if skip:
            return contextlib.nullcontext()
        if self.copy_layout:
            held = os.path.exists(f"{locks}{os.sep}{name}")
        else:
            now = time.monotonic()
            seen = self._lock_names.get(locks)
            if seen is None or now - seen[0] > LOCKS_RELIST_SECONDS:
                seen = self._lock_names[locks] = (now, frozenset(listdir(Path(locks))))
            held = name in seen[1] and os.path.exists(f"{locks}{os.sep}{name}")
        if not held:
            return contextlib.nullcontext()
        path = lay.lock(etag)
        logger.debug("lock %s: huggingface_hub's lock for this blob exists, waiting for it", path)
        return file_lock(path, mode=0o664)

    def _mkdirs(self, folder: Path) -> None:
        if folder not in self._made:
            _make_dirs(folder, self.created_dirs)
            self._made.add(folder)

    def _sweep(self) -> None:
        """Remove what killed installs left in the repos we touched: temp blobs (under their etag's lock, which
        any writer of that blob holds) and staging folders older than a day."""
        for repo in self.plan.manifest.repos:
            lay = self._layout(repo.repo_type, repo.repo_id)
            claim = self._claims.get(lay.folder)
            if claim is None:  # a repo we wrote no blob into: ask the same question (released in _cleanup)
                claim = self._claims[lay.folder] = RepoClaim(lay)
            if claim.exclusive():  # no other install is writing there now
                _sweep_temp_blobs(lay, stale_only=not claim.supported)
            _remove_stale_dirs(lay.folder / "snapshots", None)
            _remove_stale_dirs(lay.folder, None)
            _remove_stale_dirs(lay.blobs, None, suffix=".stage.tmp")  # copy layout: staged outside any lock

    def _cleanup(self, ok: bool) -> None:
        for claim in self._claims.values():
            claim.release()
        for tmp in self.temps:
            with contextlib.suppress(OSError):
                if os.path.isdir(tmp) and not os.path.islink(tmp):
                    shutil.rmtree(tmp)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
        if not ok:
            self.journal.undo()
            # A repo folder this run created goes again, with the blobs placed in it: scan_cache_dir warns about a
            # repo folder without snapshots/ and lists one with an empty snapshots/ as a repo (a phantom). Blobs
            # placed in repos that existed stay for the retry: scan_cache_dir counts only blobs snapshots use.
            # An interrupted run (Ctrl-C, the registry gone) keeps them for the re-run instead, as a kill does: verify
            # reports such a folder and `doctor --fix` removes it (bundler.cache.leftovers).
            new_repos = {d for d in self.created_dirs if d.parent == self.cache_dir and d.name.count("--") >= 2}
            for blob in [] if self.interrupted else map(self._placement_path, self.placed):
                if blob.parent.parent in new_repos:
                    with contextlib.suppress(OSError):
                        blob.unlink()
            for d in reversed(self.created_dirs):  # only the empty ones: what others wrote meanwhile stays
                with contextlib.suppress(OSError):
                    d.rmdir()

    def _report(self) -> InstallReport:
        repos = tuple(
            InstalledRepo(r.repo_type, r.repo_id, tuple(s.commit for s in r.snapshots), dict(r.refs))
            for r in self.plan.manifest.repos
        )
        return InstallReport(
            cache_dir=str(self.cache_dir),
            bundle_id=self.plan.bundle_id,
            layout=self.plan.layout,
            repos=repos,
            refs_moved=tuple(self.moved),
            refs_kept=tuple(self.kept),
            blobs_written=self.n_written,
            blobs_linked=self.n_linked,
            blobs_present=self.n_present,
            blobs_replaced=tuple(self.replaced),
            bytes_written=self.bytes_written,
            bytes_deduplicated=self.bytes_dedup,
            bytes_hashed=self.bytes_hashed,
            entries_added=self.entries_added,
            trees_written=self.trees_written,
            no_exist_written=self.no_exist_written,
            elapsed=time.monotonic() - self.t0,
            notes=tuple(self.notes),
            trees_moved=tuple(self.trees_moved),
        )


# -- path safety -----------------------------------------------------------------------------------------------


def _long(path: Path | str) -> str:
    """``path`` as this install's own reads and writes give it to the OS: past 255 characters on Windows in the
    extended-length form (``\\\\?\\``), as huggingface_hub does for its own writes; unchanged elsewhere. Our staging
    names are longer than the final ones, so a snapshot path that fits can be staged at a path that does not."""
    return oscompat.extended_path(path)


def _link_to_blob(path: str, etag: str) -> str:
    """The relative link ``snapshots/<commit>/<path>`` holds to ``blobs/<etag>``: what
    :func:`~bundler.cache.layout.relative_link_target` gives for a checked ``path`` (no '.', '..' or empty
    component: :func:`~bundler.paths.check_relpath`), by counting folders instead of comparing two paths."""
    return os.sep.join([*([".."] * (path.count("/") + 2)), "blobs", etag])


def _make_dirs(folder: Path, created: list[Path]) -> None:
    """Create ``folder`` and its missing parents, outermost first, appending each to ``created`` as soon as it
    exists (so an undo knows it even when a later one fails)."""
    missing: list[Path] = []
    p = folder
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        created.append(d)


def _sync_filesystem(folder: Path, written: Iterable[Path] = ()) -> None:
    """The durability barrier (its own name: the kill-point tests hook it). ``written``: the files to fsync
    one by one where the system has no ``syncfs``."""
    sync_filesystem(folder, written)


def _digest_matches(d: Digests, etag: str) -> bool:
    if is_sha256(etag):
        return d.sha256 == etag
    if is_sha1(etag):
        return d.git_sha1 == etag
    return False


def _sweep_temp_blobs(lay: RepoLayout, *, stale_only: bool) -> None:
    """Our temp blobs in ``lay``'s blobs/ left by killed installs, from one listing of the folder; called
    only while no other install holds :class:`RepoClaim` (where the claim does not work: only those over a day
    old, ``stale_only``)."""
    now = time.time()
    for name in listdir(lay.blobs):
        if is_our_temp_blob(name):
            path = lay.blobs / name
            with contextlib.suppress(OSError):
                if not stale_only or now - path.lstat().st_mtime > STALE_SECONDS:
                    path.unlink()


def _remove_stale_dirs(folder: Path, commit: str | None, *, suffix: str = ".tmp") -> None:
    """Staging folders (and ref temps, staged copy-layout blobs) of a killed install in ``folder``, older than a
    day so a concurrent install's are spared."""
    now = time.time()
    prefix = f"{TEMP_PREFIX}{commit}." if commit else TEMP_PREFIX
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if name.startswith(prefix) and name.endswith(suffix):
                path = folder / name
                with contextlib.suppress(OSError):
                    if now - path.lstat().st_mtime > STALE_SECONDS:
                        if path.is_dir() and not path.is_symlink():
                            shutil.rmtree(path)
                        else:
                            path.unlink()


def _read_bytes(path: Path) -> bytes | None:
    try:
        return layout.read_capped(path, MAX_TREE_BYTES + 1)
    except IsADirectoryError:
        return None


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _agrees(parsed: Mapping[str, TreeEntry], files: Sequence[RepoFile]) -> bool:
    for f in files:
        e = parsed.get(f.path)
        if e is not None and (e.size != f.size or e.etag != f.etag):
            return False
    return True


def _os_error(e: OSError, doing: str) -> InstallError:
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return InstallError(
            f"disk full while {doing}{where}",
            hint="free some space (blobs written so far are kept, so a re-run resumes), or install into a cache "
            "on another disk with --cache-dir / HF_HUB_CACHE",
        )
    if e.errno in (errno.EACCES, errno.EPERM):
        return InstallError(
            f"permission denied while {doing}{where}",
            hint="run as the owner of the cache or fix its permissions, or choose a writable cache with "
            "--cache-dir / HF_HUB_CACHE",
        )
    if e.errno == errno.EROFS:
        return InstallError(
            f"the cache is on a read-only filesystem ({doing}{where})",
            hint="remount it read-write, or choose a writable cache with --cache-dir / HF_HUB_CACHE",
        )
    return InstallError(
        f"could not write the cache while {doing}: {e.strerror or e}{where}",
        hint="check the disk and re-run: blobs already verified are kept and the install resumes",
    )
