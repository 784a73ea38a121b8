"""The lock: every repo pinned to a commit and every file the loaders will open, with the Hub's hashes.

A lock is the output of ``resolve`` and the input of ``build``; it is also embedded in every bundle manifest.
Schema: ``docs/LOCK.md``. Records are frozen; ``to_json``/``from_json`` are exact inverses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BundleFormatError
from .hashing import is_sha1, is_sha256
from .paths import check_commit, check_relpath, check_repo_id, check_repo_type
from .records import JsonRecord

LOCK_VERSION = 2
READABLE_LOCK_VERSIONS = (1, 2)  # 2 added ``listing`` (the Hub's full listing of each commit)


@dataclass(frozen=True)
class RepoFile(JsonRecord, skip_none=("lfs_sha256", "xet_hash"), skip=("sha256",)):
    """One file of a repo at a commit, described as the Hub describes it.

    ``blob_id`` is the git blob sha1 (the Hub's ``oid``); ``lfs_sha256`` is set for LFS files. The HF cache
    names the file's blob by its :attr:`etag`. ``sha256`` is the content's sha256 once known (always, for LFS).
    """

    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None = None
    xet_hash: str | None = None
    sha256: str | None = None

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None

    @property
    def etag(self) -> str:
        """Blob file name in the HF cache: sha256 for LFS files, git blob sha1 otherwise."""
        return self.lfs_sha256 if self.lfs_sha256 is not None else self.blob_id

    @property
    def content_sha256(self) -> str | None:
        return self.lfs_sha256 if self.lfs_sha256 is not None else self.sha256

    def json_extra(self) -> dict[str, Any]:
        # sha256 is written only when it says more than lfs_sha256
        return {"sha256": self.sha256} if self.sha256 is not None and self.sha256 != self.lfs_sha256 else {}

    def same_object(self, other: RepoFile) -> bool:
        """Do both describe the same content at the same path (size, git blob id, LFS/Xet hashes)?"""
        return (self.path, self.size, self.blob_id, self.lfs_sha256) == (
            other.path,
            other.size,
            other.blob_id,
            other.lfs_sha256,
        )

    def tree_entry(self) -> dict[str, Any]:
        """Entry of huggingface_hub's ``trees/<commit>.json`` (``_tree_cache.TreeCacheEntry``)."""
        info: dict[str, Any] = {"size": self.size, "blob_id": self.blob_id}
        if self.lfs_sha256 is not None:
            info["lfs_sha256"] = self.lfs_sha256
            info["lfs_size"] = self.size
        if self.xet_hash is not None:
            info["xet_hash"] = self.xet_hash
        return info

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RepoFile:
        _expect_keys(data, {"path", "size", "blob_id"}, {"lfs_sha256", "xet_hash", "sha256"}, "file")
        path = check_relpath(_str(data["path"], "file path"))
        size = data["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleFormatError(f"file {path!r}: size must be a non-negative integer, got {size!r}")
        blob_id = _str(data["blob_id"], "blob_id")
        if not is_sha1(blob_id):
            raise BundleFormatError(f"file {path!r}: blob_id {blob_id!r} is not 40 hex digits")
        lfs = data.get("lfs_sha256")
        if lfs is not None and not (isinstance(lfs, str) and is_sha256(lfs)):
            raise BundleFormatError(f"file {path!r}: lfs_sha256 {lfs!r} is not 64 hex digits")
        sha = data.get("sha256", lfs)
        if sha is not None and not (isinstance(sha, str) and is_sha256(sha)):
            raise BundleFormatError(f"file {path!r}: sha256 {sha!r} is not 64 hex digits")
        if lfs is not None and sha != lfs:
            raise BundleFormatError(f"file {path!r}: sha256 and lfs_sha256 disagree")
        xet = data.get("xet_hash")
        if xet is not None and not (isinstance(xet, str) and len(xet) == 64 and xet.isalnum()):
            raise BundleFormatError(f"file {path!r}: invalid xet_hash")
        return cls(path=path, size=size, blob_id=blob_id, lfs_sha256=lfs, xet_hash=xet, sha256=sha)


@dataclass(frozen=True)
class LockedRepo(JsonRecord, skip_none=("name", "listing")):
    """One repo pinned to a commit, with the files to bundle and the full upstream file list.

    ``listing`` is the Hub's complete listing of the commit (every file, with its hashes), recorded at resolve
    time: the installer writes it as ``trees/<commit>.json`` only once the snapshot holds every file it names
    (``docs/CACHE.md``). None for locks of version 1, which recorded the paths (``upstream``) only.
    """

    repo_type: str
    repo_id: str
    revision: str
    commit: str
    role: str
    files: tuple[RepoFile, ...]
    upstream: tuple[str, ...] = ()
    name: str | None = None  # the recipe's name for this repo (e.g. "taesd")
    listing: tuple[RepoFile, ...] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LockedRepo:
        _expect_keys(
            data,
            {"repo_type", "repo_id", "revision", "commit", "role", "files"},
            {"upstream", "name", "listing"},
            "repo",
        )
        files = data["files"]
        upstream = data.get("upstream", [])
        raw_listing = data.get("listing")
        if not isinstance(files, list) or not isinstance(upstream, list):
            raise BundleFormatError("repo 'files' and 'upstream' must be lists")
        if raw_listing is not None and not isinstance(raw_listing, list):
            raise BundleFormatError("repo 'listing' must be a list")
        listing = tuple(RepoFile.from_json(f) for f in raw_listing) if raw_listing is not None else None
        repo = cls(
            repo_type=check_repo_type(_str(data["repo_type"], "repo_type")),
            repo_id=check_repo_id(_str(data["repo_id"], "repo_id")),
            revision=_str(data["revision"], "revision"),
            commit=check_commit(_str(data["commit"], "commit")),
            role=_str(data["role"], "role"),
            files=tuple(RepoFile.from_json(f) for f in files),
            upstream=tuple(check_relpath(_str(p, "upstream path")) for p in upstream),
            name=data.get("name"),
            listing=listing,
        )
        if listing is not None:
            check_listing(f"{repo.repo_id}@{repo.commit[:8]}", listing, repo.files)
            if repo.upstream and set(repo.upstream) != {f.path for f in listing}:
                raise BundleFormatError(f"{repo.repo_id}@{repo.commit[:8]}: 'listing' and 'upstream' disagree")
        return repo


@dataclass(frozen=True)
class Lock(JsonRecord, rename={"version": "lock_version"}):
    """Output of ``resolve``: what a recipe needs, pinned."""

    repos: tuple[LockedRepo, ...]
    recipe: str | None = None
    version: int = LOCK_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)  # recipe's runner section, carried along

    @property
    def total_size(self) -> int:
        return sum(f.size for r in self.repos for f in r.files)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lock:
        if not isinstance(data, Mapping):
            raise BundleFormatError("a lock must be a JSON object")
        version = data.get("lock_version")
        if type(version) is not int or version not in READABLE_LOCK_VERSIONS:
            raise BundleFormatError(
                f"unsupported lock version {version!r} (this hfbundle reads version {LOCK_VERSION})",
                hint="re-run `hfbundle resolve` with this version of hfbundle",
            )
        _expect_keys(data, {"lock_version", "repos"}, {"recipe", "extra"}, "lock")
        repos = data["repos"]
        if not isinstance(repos, list):
            raise BundleFormatError("lock 'repos' must be a list")
        extra = data.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise BundleFormatError("lock 'extra' must be an object")
        return cls(repos=tuple(LockedRepo.from_json(r) for r in repos), recipe=data.get("recipe"), extra=extra)

    @classmethod
    def loads(cls, text: str) -> Lock:
        try:
            data = json.loads(text)
            json.dumps(data, ensure_ascii=False).encode("utf-8")  # a "\ud800" escape: a lone surrogate
        except (ValueError, RecursionError) as e:  # RecursionError: "[[[[…" nested too deep
            raise BundleFormatError(f"lock is not valid JSON: {str(e)[:200]}") from e
        return cls.from_json(data)


def check_listing(label: str, listing: tuple[RepoFile, ...], files: tuple[RepoFile, ...]) -> None:
    """A commit's full listing: each path once, and every bundled file described exactly as the listing does."""
    by_path: dict[str, RepoFile] = {}
    for f in listing:
        if f.path in by_path:
            raise BundleFormatError(f"{label}: the listing names {f.path!r} twice")
        by_path[f.path] = f
    for f in files:
        entry = by_path.get(f.path)
        if entry is None:
            raise BundleFormatError(f"{label}: {f.path!r} is bundled but not in the commit's listing")
        if not entry.same_object(f):
            raise BundleFormatError(f"{label}: {f.path!r} disagrees with the commit's listing (size or hashes)")


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BundleFormatError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _expect_keys(data: Mapping[str, Any], required: set[str], optional: set[str], what: str) -> None:
    if not isinstance(data, Mapping):
        raise BundleFormatError(f"{what} must be a JSON object")
    missing = required - data.keys()
    if missing:
        raise BundleFormatError(f"{what} is missing {', '.join(sorted(missing))}")
    unknown = data.keys() - required - optional
    if unknown:
        # repr: the keys come from untrusted JSON and land in a one-line terminal message
        raise BundleFormatError(f"{what} has unknown keys {', '.join(repr(k)[:80] for k in sorted(unknown))}")
