"""The install record: what a bundle put into a cache, kept beside the repo so ``doctor`` can judge it offline.

One small JSON file per repo and commit, ``<repo folder>/.hfbundle/<commit>.json``::

    models--org--name/
        blobs/  refs/  snapshots/<commit>/  trees/<commit>.json
        .hfbundle/<commit>.json      <- {"record_version": 1, "bundle_id": ..., "repo": <LockedRepo>, ...}
        .hfbundle/<commit>.<key>.sig <- a signed bundle's OMS signature of that snapshot (bundler.trust)

It holds that repo's lock entry (every file the loaders read, with the Hub's hashes, and the full upstream file
list), the id of the bundle that installed it and the recipe's meta and runner sections. Why there:

- per repo, so ``hf cache delete`` (which removes a whole repo folder) takes the record with it;
- not at the cache root, where huggingface_hub's ``scan_cache_dir`` reports every unknown entry as a warning;
  inside a repo folder it reads only ``refs/`` and ``snapshots/`` and ignores other folders (as it ignores
  ``trees/`` and ``.no_exist/``), and ``hfbundle verify`` does too.

    >>> record_install(cache, manifest)  # doctest: +SKIP
    >>> read_record(cache, "model", "org/name", commit).bundle_id  # doctest: +SKIP
    '132ea3e8…'
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..bundle.manifest import Manifest
from ..errors import BundleFormatError, CacheError, InstallError, UnsafePathError
from ..hashing import is_sha256
from ..lockfile import LockedRepo
from ..records import JsonRecord
from ..repofile import RepoFile
from .layout import RepoLayout, atomic_write_bytes, read_capped

__all__ = ["RECORD_DIR", "RECORD_VERSION", "InstalledRecord", "read_record", "record_install", "record_path"]

RECORD_DIR = ".hfbundle"
RECORD_VERSION = 1
MAX_RECORD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class InstalledRecord(JsonRecord, rename={"version": "record_version"}):
    """What one install put in one repo at one commit: the lock entry, the bundle and its recipe."""

    repo: LockedRepo
    bundle_id: str
    recipe: Mapping[str, Any] = field(default_factory=dict)  # the recipe's meta: name, version, description…
    runner: Mapping[str, Any] = field(default_factory=dict)  # the recipe's [runner] section
    installed_at: str = ""
    creator: str = ""
    version: int = RECORD_VERSION

    @property
    def recipe_name(self) -> str | None:
        name = self.recipe.get("name")
        return name if isinstance(name, str) else None

    @property
    def files(self) -> dict[str, RepoFile]:
        """The files the bundle installed for this repo, by path."""
        return {f.path: f for f in self.repo.files}

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: Any) -> InstalledRecord:
        if not isinstance(data, dict):
            raise BundleFormatError("an install record must be a JSON object")
        version = data.get("record_version")
        if version != RECORD_VERSION:
            raise BundleFormatError(
                f"install record version {version!r} is not supported (this reads {RECORD_VERSION})"
            )
        bundle_id = data.get("bundle_id")
        if not (isinstance(bundle_id, str) and is_sha256(bundle_id)):
            raise BundleFormatError("install record: bundle_id is not a sha256")
        recipe, runner = data.get("recipe") or {}, data.get("runner") or {}
        if not isinstance(recipe, dict) or not isinstance(runner, dict):
            raise BundleFormatError("install record: 'recipe' and 'runner' must be objects")
        repo = data.get("repo")
        if not isinstance(repo, dict):
            raise BundleFormatError("install record: 'repo' must be an object")
        return cls(
            repo=LockedRepo.from_json(repo),
            bundle_id=bundle_id,
            recipe=recipe,
            runner=runner,
            installed_at=str(data.get("installed_at", "")),
            creator=str(data.get("creator", "")),
        )


def record_path(cache_dir: Path, repo_type: str, repo_id: str, commit: str) -> Path:
    """``<cache>/<repo folder>/.hfbundle/<commit>.json`` (every part validated)."""
    layout = RepoLayout(Path(cache_dir), repo_type, repo_id)
    return layout.folder / RECORD_DIR / f"{layout.snapshot(commit).name}.json"


def record_install(cache_dir: Path, manifest: Manifest) -> None:
    """Write one record per repo and commit of ``manifest.lock`` (atomically). A manifest without a lock
    (a backup) records nothing. Call it after the install succeeded: a record claims the files are there."""
    lock = manifest.lock
    if lock is None:
        return
    installed = {(r.repo_type, r.repo_id, s.commit) for r in manifest.repos for s in r.snapshots}
    merged: dict[tuple[str, str, str], LockedRepo] = {}
    for repo in lock.repos:
        key = (repo.repo_type, repo.repo_id, repo.commit)
        if key not in installed:  # the lock may list a repo whose file set was empty: nothing was installed
            continue
        merged[key] = _merge(merged[key], repo) if key in merged else repo
    extra = lock.extra or {}
    recipe = extra.get("recipe") if isinstance(extra.get("recipe"), Mapping) else None
    runner = extra.get("runner") if isinstance(extra.get("runner"), Mapping) else None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    bundle_id = manifest.bundle_id
    for (repo_type, repo_id, commit), repo in sorted(merged.items()):
        record = InstalledRecord(
            repo=repo,
            bundle_id=bundle_id,
            recipe=dict(recipe or {"name": lock.recipe}),
            runner=dict(runner or {}),
            installed_at=stamp,
            creator=f"hfbundle {__version__}",
        )
        path = record_path(cache_dir, repo_type, repo_id, commit)
        try:
            atomic_write_bytes(path, record.dumps())
        except OSError as e:
            raise InstallError(
                f"cannot write the install record {path}: {e.strerror or e}",
                hint="the files are installed; `hfbundle doctor` works without the record, from the recipe's rules",
            ) from e


def read_record(cache_dir: Path, repo_type: str, repo_id: str, commit: str) -> InstalledRecord | None:
    """The record of ``repo_id`` at ``commit``, or None when nothing hfbundle installed is recorded there.
    A damaged record is a :class:`~bundler.errors.CacheError` (the caller may go on without it)."""
    try:
        path = record_path(cache_dir, repo_type, repo_id, commit)
    except UnsafePathError:
        return None
    try:
        raw = read_capped(path, MAX_RECORD_BYTES + 1)
    except OSError as e:
        raise CacheError(f"cannot read the install record {path}: {e.strerror or e}", hint="check permissions") from e
    if raw is None:
        return None
    try:
        record = InstalledRecord.from_json(json.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, ValueError, RecursionError, BundleFormatError, UnsafePathError) as e:
        raise CacheError(
            f"the install record {path} is damaged: {str(e)[:200]}",
            hint=f"delete it (rm '{path}') or re-install the bundle; doctor then judges from the recipe's rules",
        ) from e
    if (record.repo.repo_type, record.repo.repo_id, record.repo.commit) != (repo_type, repo_id, commit):
        raise CacheError(
            f"the install record {path} describes {record.repo.repo_id}@{record.repo.commit[:8]}",
            hint=f"it was copied from elsewhere: delete it (rm '{path}')",
        )
    return record


def _merge(a: LockedRepo, b: LockedRepo) -> LockedRepo:
    """Two lock entries for one repo and commit (a lock joined from several recipes): the union of files."""
    files = {f.path: f for f in a.files}
    for f in b.files:
        files.setdefault(f.path, f)
    return LockedRepo(
        repo_type=a.repo_type,
        repo_id=a.repo_id,
        revision=a.revision,
        commit=a.commit,
        role=a.role,
        files=tuple(files[p] for p in sorted(files)),
        upstream=tuple(sorted(set(a.upstream) | set(b.upstream))),
        name=a.name,
    )
