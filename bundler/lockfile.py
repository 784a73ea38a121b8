"""The lock: every repo pinned to a commit and every file the loaders will open, with the Hub's hashes.

A lock is the output of ``resolve`` and the input of ``build``; it is also embedded in every bundle manifest.
Schema: ``docs/LOCK.md``. Records are frozen; ``to_json``/``from_json`` are exact inverses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BundleFormatError
from .paths import check_commit, check_relpath, check_repo_id, check_repo_type
from .records import JsonRecord, expect_keys, json_str
from .repofile import RepoFile, check_listing, files_from_json

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the only way JSON text spells a surrogate

LOCK_VERSION = 2
READABLE_LOCK_VERSIONS = (1, 2)  # 2 added ``listing`` (the Hub's full listing of each commit)


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
        expect_keys(
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
        # files_from_json: RepoFile.from_json's checks and errors, in chunks (issue 18: a repo of many files)
        listing = files_from_json(raw_listing) if raw_listing is not None else None
        repo = cls(
            repo_type=check_repo_type(json_str(data["repo_type"], "repo_type")),
            repo_id=check_repo_id(json_str(data["repo_id"], "repo_id")),
            revision=json_str(data["revision"], "revision"),
            commit=check_commit(json_str(data["commit"], "commit")),
            role=json_str(data["role"], "role"),
            files=files_from_json(files),
            upstream=tuple(check_relpath(json_str(p, "upstream path")) for p in upstream),
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
        expect_keys(data, {"lock_version", "repos"}, {"recipe", "extra"}, "lock")
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
            text.encode("utf-8")  # a lone surrogate in the text itself (UnicodeEncodeError is a ValueError)
            if _SURROGATE_ESCAPE.search(text) is not None:  # a "\ud800" escape: a lone surrogate once parsed
                json.dumps(data, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError) as e:  # RecursionError: "[[[[…" nested too deep
            raise BundleFormatError(f"lock is not valid JSON: {str(e)[:200]}") from e
        return cls.from_json(data)
