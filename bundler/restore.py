"""Restore a chain of backups (a full backup and its increments, in any order) into a Hugging Face cache.

The chain is ordered by its base links; the newest backup is installed through
:func:`bundler.install.plan_install` / :func:`~bundler.install.execute` (same verification, dedup, locks and undo
as any install), reading the blobs it does not carry from its bases. Then what the installer does not write
itself comes back: repo blobs that were links into huggingface_hub's shared Xet store are linked into it again.
Refs, ``.no_exist`` markers and ``trees/`` listings are the installer's work (the backup stores listings
verbatim). Formats and decisions: ``docs/BACKUP.md``.

    >>> report = restore(["models-2.hfb", "models.hfb"], Path("/new/hub"))  # doctest: +SKIP
    >>> [link.bundle_id[:8] for link in report.chain]  # newest first  # doctest: +SKIP
    ['5c1e0a9d', '0b7f33c2']

Nothing here imports huggingface_hub or touches the network.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import oscompat
from .bundle.manifest import Manifest, SkippedFile
from .cache.blobwrite import copy_hashed
from .cache.layout import RepoLayout, place_symlink
from .cache.locks import file_lock
from .cache.model import LAYOUT_COPY, SHARED_MARKER
from .cache.names import is_xet_hash, temp_name
from .errors import IntegrityError, UsageError
from .hashing import sha256_file
from .install import LAYOUT_SYMLINK, InstallPlan, InstallReport, ProgressCallback, execute, plan_install
from .records import JsonRecord
from .units import human_size

if TYPE_CHECKING:
    from .bundle.reader import BundleReader

__all__ = ["ChainLink", "RestorePlan", "RestoreReport", "plan_restore", "restore"]

_CHAIN_HINT = (
    "give every backup of the chain (the full backup and each increment, in any order); "
    "`hfbundle inspect FILE` shows a backup's id and its base"
)


# -- the chain -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainLink(JsonRecord):
    """One backup of a restore chain. ``blobs``/``size``: the content this file carries itself."""

    path: str
    bundle_id: str
    base: str | None
    kind: str
    blobs: int
    size: int


@dataclass(frozen=True)
class RestorePlan(JsonRecord):
    """What :func:`restore` would do: the chain (newest first: the one installed, then its bases), the
    installer's plan, and the shared-store links to recreate."""

    cache_dir: Path
    chain: tuple[ChainLink, ...]
    install: InstallPlan
    shared_links: int
    notes: tuple[str, ...] = ()

    def render(self) -> list[str]:
        lines = [f"would restore {len(self.chain)} backup(s) into {self.cache_dir}:"]
        lines += [_chain_line(c) for c in self.chain]
        lines += self.install.render()
        if self.shared_links:
            lines.append(f"  {self.shared_links} blob(s) to link into the shared Xet store")
        lines += [f"note: {n}" for n in self.notes]
        return lines


@dataclass(frozen=True)
class RestoreReport(JsonRecord, rounding={"elapsed": 3}):
    """What :func:`restore` did: the chain, the installer's report, the shared-store links made, and the files
    the backup had left out (so they are not restored)."""

    cache_dir: str
    chain: tuple[ChainLink, ...]
    install: InstallReport
    shared_linked: int
    skipped: tuple[SkippedFile, ...]
    notes: tuple[str, ...]
    elapsed: float

    def render(self) -> list[str]:
        lines = [f"restored {len(self.chain)} backup(s) into {self.cache_dir} in {self.elapsed:.1f} s"]
        lines += [_chain_line(c) for c in self.chain]
        lines += self.install.render()
        if self.shared_linked:
            lines.append(f"{self.shared_linked} blob(s) linked into the shared Xet store")
        lines += [f"not in the backup: {s.repo_id}@{s.commit[:8]}: {s.path} ({s.reason})" for s in self.skipped]
        lines += [f"note: {n}" for n in self.notes]
        return lines


def _chain_line(c: ChainLink) -> str:
    base = f", over {c.base[:12]}…" if c.base else ""
    return f"  {c.path}: {c.kind} {c.bundle_id[:12]}… ({c.blobs} blob(s), {human_size(c.size)}{base})"


def plan_restore(
    bundles: Sequence[Path | str],
    cache_dir: Path | str,
    *,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    verbatim: bool = False,
) -> RestorePlan:
    """What :func:`restore` would do (``--dry-run``): reads the bundles' manifests and the cache, writes nothing."""
    with _open_chain(bundles) as chain:
        plan, notes = chain.plan(Path(cache_dir), copy, keep_refs, trust_existing, verbatim)
        shared = len(_shared_spec(chain.tip.manifest, [])) if plan.layout == LAYOUT_SYMLINK else 0
        return RestorePlan(plan.cache_dir, chain.links, plan, shared, tuple(notes))


def restore(
    bundles: Sequence[Path | str],
    cache_dir: Path | str,
    *,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    verbatim: bool = False,
    on_progress: ProgressCallback | None = None,
) -> RestoreReport:
    """Restore a chain of backups (a full backup and its increments, in any order) into ``cache_dir``.

    The newest backup is installed through :func:`bundler.install.install` (same verification, dedup, locks and
    undo), reading blobs it does not carry from its bases. ``copy``: None restores the layout the backup was
    taken from (copy layout if the cache was), falling back to copies where symlinks do not work; True/False
    force it. Refs, ``.no_exist`` markers and the shared Xet store links come back as they were; a saved
    ``trees/`` listing comes back only under the trees rule (``docs/CACHE.md``: it names no file the snapshot
    lacks and is not a partial listing an older hfbundle wrote), else it is left out with a note; ``verbatim``
    brings every listing back byte for byte, traps included. Raises :class:`UsageError` naming the missing link
    when a base is needed but not given.
    """
    t0 = time.monotonic()
    with _open_chain(bundles) as chain:
        plan, notes = chain.plan(Path(cache_dir), copy, keep_refs, trust_existing, verbatim)
        report = execute(plan, chain.tip, extra_sources=chain.bases, on_progress=on_progress)
        linked = 0
        if plan.layout == LAYOUT_SYMLINK:
            linked = _relink_shared(plan.cache_dir, chain.tip.manifest, notes)
        elif _shared_spec(chain.tip.manifest, []):
            notes.append("copy layout: blobs of the shared Xet store were restored as plain files")
        return RestoreReport(
            cache_dir=str(plan.cache_dir),
            chain=chain.links,
            install=report,
            shared_linked=linked,
            skipped=chain.tip.manifest.skipped,
            notes=tuple(notes),
            elapsed=time.monotonic() - t0,
        )


class _Chain:
    """Backups opened and ordered by their base links: ``tip`` (the newest) then its bases."""

    def __init__(self, opened: list[tuple[str, BundleReader]]) -> None:
        by_id: dict[str, tuple[str, BundleReader]] = {}
        for path, reader in opened:
            by_id.setdefault(reader.bundle_id, (path, reader))
        named_as_base = {r.manifest.base for _, r in by_id.values() if r.manifest.base}
        tips = [i for i in by_id if i not in named_as_base]
        gaps = [(p, r.manifest.base) for p, r in by_id.values() if r.manifest.base and r.manifest.base not in by_id]
        if len(tips) != 1:
            if gaps:
                raise _missing_base(*gaps[0])
            raise UsageError(
                "the backups given are not one chain: "
                + (
                    ", ".join(by_id[t][0] for t in tips) + " each build on nothing the others are" if tips else "a loop"
                ),
                hint=_CHAIN_HINT,
            )
        order: list[tuple[str, BundleReader]] = []
        cur: str | None = tips[0]
        while cur is not None and cur in by_id and by_id[cur] not in order:
            order.append(by_id[cur])
            cur = by_id[cur][1].manifest.base
        self.missing: tuple[str, str] | None = (order[-1][0], cur) if cur is not None else None
        self.tip = order[0][1]
        self.bases = tuple(r for _, r in order[1:])
        self.links = tuple(
            ChainLink(p, r.bundle_id, r.manifest.base, r.manifest.kind, len(r.manifest.blobs), r.manifest.total_size)
            for p, r in order
        )

    def plan(
        self, cache_dir: Path, copy: bool | None, keep_refs: bool, trust_existing: bool, verbatim: bool = False
    ) -> tuple[InstallPlan, list[str]]:
        notes: list[str] = []
        manifest = self.tip.manifest
        if copy is None:
            layout = manifest.extra.get("backup", {}).get("layout") if isinstance(manifest.extra, Mapping) else None
            copy = True if layout == LAYOUT_COPY else None
        available = {b.sha256 for src in (self.tip, *self.bases) for b in src.manifest.blobs}
        plan = plan_install(
            manifest,
            cache_dir,
            copy=copy,
            keep_refs=keep_refs,
            trust_existing=trust_existing,
            available=available,
            verbatim_trees=verbatim,
        )
        if self.missing is not None:
            if plan.missing or not _listings_in_place(plan):
                raise _missing_base(*self.missing)
            notes.append(
                f"base {self.missing[1]} was not given, but the cache already holds every blob it would provide"
            )
        return plan, notes


@contextlib.contextmanager
def _open_chain(bundles: Sequence[Path | str]) -> Iterator[_Chain]:
    from .bundle.reader import open_bundle

    if not bundles:
        raise UsageError("no backup given", hint=_CHAIN_HINT)
    opened: list[tuple[str, BundleReader]] = []
    try:
        for b in bundles:
            opened.append((str(b), open_bundle("-" if str(b) == "-" else Path(b))))
        yield _Chain(opened)
    finally:
        for _, reader in opened:
            reader.close()


def _listings_in_place(plan: InstallPlan) -> bool:
    """Whether every saved listing no given backup carries is already in the cache, byte for byte."""
    wanted = {c.sha256 for c in plan.contents if c.action == "unavailable"}
    for repo in plan.manifest.repos:
        lay = RepoLayout(plan.cache_dir, repo.repo_type, repo.repo_id)
        for snap in repo.snapshots:
            if snap.tree in wanted:
                try:
                    if sha256_file(str(lay.tree(snap.commit))) != snap.tree:
                        return False
                except OSError:
                    return False
    return True


def _missing_base(path: str, base: str) -> UsageError:
    return UsageError(f"backup {path} needs base {base} which was not given", hint=_CHAIN_HINT)


# -- the shared Xet store ----------------------------------------------------------------------------------------


def _shared_spec(manifest: Manifest, notes: list[str]) -> list[tuple[str, str, str, str]]:
    """``(repo_type, repo_id, etag, xet hash)`` of the repo blobs that were links into the shared store, from an
    untrusted manifest: every entry must name a repo of the manifest and an LFS etag one of its files has."""
    extra = manifest.extra.get("backup") if isinstance(manifest.extra, Mapping) else None
    shared = extra.get("shared_xet") if isinstance(extra, Mapping) else None
    if not isinstance(shared, Mapping):
        return []
    etags = {
        f"{r.repo_type}:{r.repo_id}": {f.etag for s in r.snapshots for f in s.files if f.is_lfs} for r in manifest.repos
    }
    out: list[tuple[str, str, str, str]] = []
    for key, links in sorted(shared.items()):
        if key not in etags or not isinstance(links, Mapping):
            notes.append(f"ignored a shared-store entry for {key!r}: not a repo of this backup")
            continue
        for etag, xet in sorted(links.items()):
            if etag in etags[key] and isinstance(xet, str) and is_xet_hash(xet):
                repo_type, repo_id = key.split(":", 1)
                out.append((repo_type, repo_id, etag, xet))
            else:
                notes.append(f"ignored an invalid shared-store entry {key}: {etag!r}")
    return out


def _relink_shared(cache_dir: Path, manifest: Manifest, notes: list[str]) -> int:
    """Make each repo blob that was a link into huggingface_hub's shared Xet store one again: the payload at
    ``<cache>/blobs/<2hex>/<xet>`` (created from the verified blob, or an identical one kept), the reference
    appended to ``<xet>.refs`` before the link appears, as ``utils/_shared_blobs.py`` does."""
    spec = _shared_spec(manifest, notes)
    if not spec:
        return 0
    store = cache_dir / "blobs"
    if not _prepare_store(store, cache_dir, notes):
        return 0
    linked = 0
    for repo_type, repo_id, etag, xet in spec:
        lay = RepoLayout(cache_dir, repo_type, repo_id)
        blob = lay.blob(etag)
        payload = store / xet[:2] / xet
        try:
            if blob.is_symlink() or not blob.is_file():
                continue  # already a link (huggingface_hub's, or left as the installer found it)
            _mkdir_like(payload.parent, cache_dir)
            if payload.parent.is_symlink():
                notes.append(f"{payload.parent} is a link: left {repo_id}'s blob {etag[:12]}… as a plain file")
                continue
            with _store_lock(payload):
                if os.path.lexists(payload):
                    if not _holds(payload, blob, etag):
                        notes.append(f"shared blob {payload} does not hold {etag[:12]}…: left {repo_id}'s blob as is")
                        continue
                else:
                    _publish(blob, payload, etag, cache_dir)
                _append_reference(payload.with_name(f"{xet}.refs"), f"{lay.folder.name}/blobs/{etag}")
                place_symlink(blob, payload, suffix=".shared")
            linked += 1
        except OSError as e:
            notes.append(f"could not link {repo_id}'s blob {etag[:12]}… into the shared store: {e}")
    return linked


def _prepare_store(store: Path, cache_dir: Path, notes: list[str]) -> bool:
    marker = store / SHARED_MARKER
    try:
        if store.is_symlink():
            notes.append(f"{store} is a link: the shared Xet store was not restored (its blobs are plain files)")
            return False
        if store.is_dir():
            if marker.is_file() and not marker.is_symlink() and marker.read_text() == "1\n":
                return True
            if any(store.iterdir()):
                notes.append(f"{store} exists and is not a shared Xet store: its blobs were restored as plain files")
                return False
        _mkdir_like(store, cache_dir)
        tmp = store / temp_name(SHARED_MARKER)
        tmp.write_text("1\n")
        os.chmod(tmp, _payload_mode(cache_dir))
        os.replace(tmp, marker)
        return True
    except OSError as e:
        notes.append(f"could not create the shared Xet store in {store}: {e}")
        return False


def _mkdir_like(folder: Path, cache_dir: Path) -> None:
    """Create ``folder`` with the cache root's access bits, as huggingface_hub does for its store folders."""
    if folder.is_dir():
        return
    folder.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(folder, stat.S_IMODE(cache_dir.stat().st_mode) & (0o777 | stat.S_ISGID | stat.S_ISVTX))


def _payload_mode(cache_dir: Path) -> int:
    """Read-only, readable by whoever can traverse the cache root (``_shared_blob_mode`` upstream)."""
    if os.name == "nt":
        return 0o666
    try:
        mode = stat.S_IMODE(cache_dir.stat().st_mode)
    except OSError:
        return 0o400
    return 0o400 | (0o040 if mode & stat.S_IXGRP else 0) | (0o004 if mode & stat.S_IXOTH else 0)


@contextlib.contextmanager
def _store_lock(payload: Path) -> Iterator[None]:
    """The per-hash lock huggingface_hub takes around publishing, referencing and collecting a shared blob."""
    path = payload.with_name(f"{payload.name}.lock")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    os.close(fd)
    with file_lock(path, mode=0o666):
        yield


def _holds(payload: Path, blob: Path, etag: str) -> bool:
    try:
        if os.path.samefile(payload, blob):
            return True
        st = os.lstat(payload)
        return stat.S_ISREG(st.st_mode) and st.st_size == blob.stat().st_size and sha256_file(str(payload)) == etag
    except OSError:
        return False


def _publish(blob: Path, payload: Path, etag: str, cache_dir: Path) -> None:
    """Put the verified content of ``blob`` at ``payload``: a hard link, else a copy checked against ``etag``."""
    tmp = payload.with_name(temp_name(payload.name))
    try:
        if not oscompat.hard_link(blob, tmp):  # refused (exFAT, FAT32, another device): a checked copy
            size = blob.stat().st_size
            d = copy_hashed(blob, tmp, size, git=False)  # hashed as it is written: one read
            if d.sha256 != etag or d.size != size:
                raise IntegrityError(
                    f"{blob} changed while it was copied into the shared store",
                    path=str(blob),
                    expected=etag,
                    hint="wait until nothing writes the cache, then restore again",
                ) from None
        os.chmod(tmp, _payload_mode(cache_dir))
        os.replace(tmp, payload)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _append_reference(refs: Path, line: str) -> None:
    try:
        known = refs.read_text().splitlines() if refs.is_file() and not refs.is_symlink() else []
    except (OSError, UnicodeError):
        known = []
    if line in known:
        return
    fd = os.open(refs, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{refs} is not a regular file")
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
