"""Build a bundle: lock → fetch into the cache → verify every byte against the Hub's hashes → pack.

Regular (git) files are small: they are hashed first, because the manifest (written first) names every blob
by sha256 and the Hub gives only their git blob id. LFS files are large: their sha256 comes from the Hub and
is checked *while* they are compressed, so each of their bytes is read once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from . import __version__
from .bundle.manifest import TREE_FILES, TREE_HUB, BlobEntry, Manifest, RepoEntry, SnapshotEntry
from .errors import IntegrityError
from .fetch import FetchedFile, fetch
from .lockfile import Lock
from .oscompat import extended_path
from .progress import files_due
from .records import JsonRecord
from .repofile import RepoFile
from .winnames import refuse_case_twins

if TYPE_CHECKING:
    from .bundle.writer import Hashed, PackedBlob


@dataclass(frozen=True)
class BuildReport(
    JsonRecord,
    skip=("lock",),
    rename={"expected": "blobs_expected"},
    rounding={"seconds": 3},
    convert={"repos": lambda repos: [{"repo_type": t, "repo_id": r, "commit": c} for t, r, c in repos]},
):
    """What ``build`` wrote."""

    output: str
    bundle_id: str
    repos: tuple[tuple[str, str, str], ...]  # (repo_type, repo_id, commit)
    files: int
    blobs: int
    bytes_in: int
    bytes_out: int
    seconds: float
    lock: Lock
    signed_by: str | None = None  # the fingerprint of --sign-key
    expected: int = 0  # blobs left out of a delta (the target holds them)
    bytes_expected: int = 0

    def json_extra(self) -> dict[str, Any]:
        return {"delta": self.expected > 0}


def verify_regular_files(
    fetched: list[FetchedFile],
    *,
    packed: dict[str, PackedBlob] | None = None,
    level: int | None = None,
    threads: int = 0,
) -> list[FetchedFile]:
    """Hash every non-LFS file (git blob sha1 against the Hub's ``oid``) and fill in its sha256: in batches on
    all cores, checked in order (issue 18: a repo of many small files). ``packed``: when given, each small file's
    frame (at ``level``, as the writer makes it) is made from the very bytes hashed and put there by its sha256,
    for :meth:`~bundler.bundle.writer.BundleWriter.add_files` to store as it is, so the file is read once; none
    are made when they would not all fit ``PACKED_BUDGET`` (then the writer reads those files again)."""
    from .bundle.writer import PACKED_BUDGET, auto_threads, fits_one_frame, frame_bound, hash_files

    regular = [item for item in fetched if not item.file.is_lfs]
    small = [item.file.size for item in regular if fits_one_frame(item.file.size)]
    pack = packed is not None and sum(frame_bound(size) for size in small) <= PACKED_BUDGET
    jobs = ((extended_path(i.local_path), i.file.size, pack and fits_one_frame(i.file.size)) for i in regular)
    results = hash_files(jobs, level, max(1, min(len(regular), auto_threads(threads), 8)))
    try:
        return [_verified(item, results, packed) for item in fetched]
    finally:
        results.close()  # a mismatch stops it: its workers end now, not when it is collected


def _verified(item: FetchedFile, results: Iterator[Hashed], packed: dict[str, PackedBlob] | None) -> FetchedFile:
    f = item.file
    if f.is_lfs:
        size = item.local_path.stat().st_size
        if size != f.size:
            raise _mismatch(item, "size", str(f.size), str(size))
        return item
    got = next(results)
    if isinstance(got, OSError):
        raise got
    d, frame = got
    if d.git_sha1 != f.blob_id or d.size != f.size:
        raise _mismatch(item, "git blob sha1", f.blob_id, d.git_sha1)
    if frame is not None and packed is not None:
        packed.setdefault(d.sha256, frame)
    return FetchedFile(item.repo, _with_sha256(f, d.sha256), item.local_path)


def manifest_for(lock: Lock, files: list[FetchedFile], *, recipe: dict[str, Any] | None = None) -> Manifest:
    """The manifest of a bundle holding exactly ``files`` (all with a known sha256)."""
    by_repo: dict[tuple[str, str], dict[str, Any]] = {}
    for item in files:
        r = item.repo
        entry = by_repo.setdefault((r.repo_type, r.repo_id), {"refs": {}, "snaps": {}})
        if r.revision != r.commit:
            entry["refs"][r.revision] = r.commit
        entry["snaps"].setdefault(r.commit, {})[item.file.path] = item.file
    for r in lock.repos:  # repos whose resolved file set is empty still get their ref and snapshot
        entry = by_repo.setdefault((r.repo_type, r.repo_id), {"refs": {}, "snaps": {}})
        entry["snaps"].setdefault(r.commit, {})
        if r.revision != r.commit:
            entry["refs"][r.revision] = r.commit
    # The Hub's listing of each commit travels once, in its snapshot entry (the embedded lock drops it).
    listings = {(r.repo_type, r.repo_id, r.commit): r.listing for r in lock.repos if r.listing is not None}
    repos: list[RepoEntry] = []
    blobs: dict[str, BlobEntry] = {}
    for (repo_type, repo_id), entry in by_repo.items():
        snaps = []
        for commit, paths in entry["snaps"].items():
            snap_files = tuple(paths[p] for p in sorted(paths))
            for f in snap_files:
                assert f.content_sha256 is not None
                blobs.setdefault(f.content_sha256, BlobEntry(f.content_sha256, f.size))
            listing = listings.get((repo_type, repo_id, commit))
            tree = TREE_HUB if listing is not None else TREE_FILES
            snaps.append(SnapshotEntry(commit=commit, files=snap_files, tree=tree, listing=listing))
        repos.append(RepoEntry(repo_type, repo_id, dict(entry["refs"]), tuple(snaps)))
    return Manifest(
        repos=tuple(repos),
        blobs=tuple(blobs.values()),
        kind="bundle",
        creator=f"hfbundle {__version__}",
        lock=Lock(
            repos=tuple(dataclasses.replace(r, listing=None) for r in lock.repos),
            recipe=lock.recipe,
            extra=lock.extra,
        ),
        recipe=recipe,
    )


def delta_of(manifest: Manifest, have: Mapping[str, int]) -> Manifest:
    """The same manifest without the blobs ``have`` (blob name → size, from an inventory) holds: they move to
    ``expects``. A blob counts as held under its sha256 or a file's cache name (git blob id, LFS sha256)."""
    held: set[str] = set()
    for _repo, _snap, f in manifest.iter_files():
        assert f.sha256 is not None
        if any(have.get(name) == f.size for name in (f.sha256, f.etag)):
            held.add(f.sha256)
    if not held:
        return manifest
    return replace(
        manifest,
        blobs=tuple(b for b in manifest.blobs if b.sha256 not in held),
        expects=tuple(b for b in manifest.blobs if b.sha256 in held),
    )


def build(
    lock: Lock,
    output: str | Path | BinaryIO,
    *,
    cache_dir: Path | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    recipe: dict[str, Any] | None = None,
    level: int | None = None,
    threads: int = 0,
    split_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    sign_key: Path | None = None,
    have: Mapping[str, int] | None = None,
    on_files: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Fetch, verify and pack ``lock`` into ``output`` (a path, ``-`` handled by the caller as a stream).

    ``on_progress(done, total)`` counts bytes packed, ``on_files(done, total)`` blobs packed.
    The output appears only when everything verified: a mismatch raises :class:`IntegrityError` naming the
    repo, path, expected and actual hash, and leaves no file behind. ``sign_key`` (an EC private key PEM)
    adds OMS signatures (:mod:`bundler.trust`). ``have`` (blob name → size, from the target's inventory) makes a
    delta: every file's record, only the blobs the target lacks.
    """
    from .bundle.writer import BundleWriter

    key = None
    if sign_key is not None:  # before any download: a missing extra or a bad key fails at once
        from .signing import key_fingerprint, load_private_key

        key = load_private_key(sign_key)
    refuse_case_twins(lock)  # before any download: the bundle format could not hold both
    start = time.monotonic()
    packed: dict[str, PackedBlob] = {}  # small files' frames, made from the bytes that were hashed (read once)
    fetched = verify_regular_files(
        fetch(lock, cache_dir=cache_dir, token=token, endpoint=endpoint), packed=packed, level=level, threads=threads
    )
    manifest = manifest_for(lock, fetched, recipe=recipe)
    if have is not None:
        manifest = delta_of(manifest, have)
    carried = {b.sha256 for b in manifest.blobs}
    # One source file per blob, in lock order (files of one repo together: better locality on disk).
    sources: dict[str, FetchedFile] = {}
    for item in fetched:
        assert item.file.content_sha256 is not None
        if item.file.content_sha256 in carried:
            sources.setdefault(item.file.content_sha256, item)
    total = sum(item.file.size for item in sources.values())

    def progress(done: int) -> None:
        if on_progress is not None:
            on_progress(done, total)

    with BundleWriter(output, level=level, threads=threads, split_size=split_size, on_progress=progress) as writer:
        writer.write_manifest(manifest.dumps(), manifest=manifest)
        if key is not None:  # the manifest is known before any blob: sign now, stored after the data
            from .trust import BundleSignatures, make_signatures

            writer.set_signatures(BundleSignatures(make_signatures(manifest, key)).dumps())
        # Small blobs read, hashed and compressed in batches on the writer's workers, as a backup's (issue 18:
        # a repo of many small files); the job being stored when an error comes is the one after the last stored.
        jobs = [_Job(sha, item, packed=packed.pop(sha, None)) for sha, item in sources.items()]
        packed.clear()  # frames of blobs a delta leaves out
        n = 0
        try:
            for job in writer.add_files(jobs):
                n += 1
                if on_files is not None and files_due(n, len(jobs), job.size):
                    on_files(n, len(jobs))
        except IntegrityError as e:
            raise _mismatch(jobs[n].item, "sha256", e.expected or jobs[n].sha256, e.actual or "?") from e
        jobs.clear()  # every blob is stored: their frames are not held while the index is written
        written = writer.finish()
    return BuildReport(
        output=str(output) if isinstance(output, (str, Path)) else "-",
        bundle_id=manifest.bundle_id,
        repos=tuple((r.repo_type, r.repo_id, s.commit) for r in manifest.repos for s in r.snapshots),
        files=sum(len(s.files) for r in manifest.repos for s in r.snapshots),
        blobs=len(manifest.blobs),
        bytes_in=total,
        bytes_out=written.bytes_out,
        seconds=time.monotonic() - start,
        lock=lock,
        signed_by=key_fingerprint(key.public_key()) if key is not None else None,
        expected=len(manifest.expects),
        bytes_expected=sum(b.size for b in manifest.expects),
    )


@dataclass(frozen=True, slots=True)
class _Job:
    """One blob to pack from its fetched file (a :class:`~bundler.bundle.writer.FileBlob`)."""

    sha256: str
    item: FetchedFile
    git_sha1: None = None
    packed: PackedBlob | None = None  # its frame, made from the bytes verify_regular_files hashed

    @property
    def size(self) -> int:
        return self.item.file.size

    @property
    def source(self) -> Path:
        return self.item.local_path

    @property
    def label(self) -> str:
        return f"{self.item.repo.repo_id}@{self.item.repo.commit[:8]}: {self.item.file.path}"


def _with_sha256(f: RepoFile, sha256: str) -> RepoFile:
    return RepoFile(f.path, f.size, f.blob_id, f.lfs_sha256, f.xet_hash, sha256)


def _mismatch(item: FetchedFile, what: str, expected: str, actual: str) -> IntegrityError:
    r = item.repo
    return IntegrityError(
        f"{r.repo_id}@{r.commit[:8]}: {item.file.path} does not match the Hub's {what} "
        f"(expected {expected}, got {actual}); nothing was packed",
        path=item.file.path,
        expected=expected,
        actual=actual,
        hint=f"the cached copy is damaged: delete {item.local_path} (or run `hf cache delete`) and build again",
    )
