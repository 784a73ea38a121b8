"""What an offline cache holds, small enough to carry back across the air gap (``have.json``).

``hfbundle inventory`` writes it on the offline machine: per repo its refs, commits and blobs (content name
and size). Nothing else: no path, no cache location, no user or host name. ``build --have`` reads it on the
online machine to make a *delta* bundle (:mod:`bundler.build`). It crossed the air gap, so :meth:`Inventory.loads`
treats it as untrusted input: a size cap, a version field, every key and name checked. Schema: docs/INVENTORY.md.

>>> inv = take_inventory(Path("~/.cache/huggingface/hub").expanduser())  # doctest: +SKIP
>>> Path("have.json").write_bytes(inv.dumps())  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import BundleFormatError, UnsafePathError
from .hashing import digest_file, is_sha1, is_sha256
from .paths import check_commit, check_ref, check_repo_id, check_repo_type
from .records import JsonRecord, expect_keys

INVENTORY_FORMAT = "hfbundle-inventory"
INVENTORY_VERSION = 1
MAX_INVENTORY_BYTES = 64 * 1024 * 1024
MAX_REPOS = 100_000
MAX_BLOBS = 2_000_000
MAX_SIZE = 1 << 50  # 1 PiB: no single file is larger

RepoType = Literal["model", "dataset", "space"]


@dataclass(frozen=True)
class HeldBlob(JsonRecord):
    """A content the cache holds under ``blobs/<name>``: ``name`` is its sha256 (LFS) or git blob sha1."""

    name: str
    size: int


@dataclass(frozen=True)
class HeldRepo(
    JsonRecord,
    convert={
        "refs": lambda refs: dict(sorted(refs.items())),
        "commits": sorted,
        "blobs": lambda blobs: [b.to_json() for b in sorted(blobs, key=lambda b: b.name)],
    },
):
    repo_type: str
    repo_id: str
    refs: Mapping[str, str]
    commits: tuple[str, ...]
    blobs: tuple[HeldBlob, ...]


@dataclass(frozen=True)
class Inventory(
    JsonRecord,
    convert={"repos": lambda repos: [r.to_json() for r in sorted(repos, key=lambda r: (r.repo_type, r.repo_id))]},
):
    """The repos of one cache. ``verified``: every listed blob was re-hashed against its name."""

    repos: tuple[HeldRepo, ...]
    verified: bool = False

    def names(self) -> dict[str, int]:
        """Every blob name the cache holds, with its size (what a delta may leave out)."""
        return {b.name: b.size for r in self.repos for b in r.blobs}

    @property
    def blob_count(self) -> int:
        return len(self.names())

    @property
    def total_size(self) -> int:
        return sum(self.names().values())

    def json_extra(self) -> dict[str, Any]:
        return {"format": INVENTORY_FORMAT, "inventory_version": INVENTORY_VERSION}

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), sort_keys=True, indent=1) + "\n").encode()

    def render(self) -> list[str]:
        lines = [
            f"{len(self.repos)} repo(s), {self.blob_count} blob(s), {self.total_size} bytes"
            + (" (every blob re-hashed)" if self.verified else "")
        ]
        lines += [f"  {r.repo_type}:{r.repo_id} @ {', '.join(c[:12] for c in r.commits)}" for r in self.repos]
        return lines

    @classmethod
    def loads(cls, raw: bytes) -> Inventory:
        """Parse an inventory that crossed the air gap: refuse anything not exactly as documented."""
        if len(raw) > MAX_INVENTORY_BYTES:
            raise BundleFormatError(
                f"inventory is {len(raw)} bytes, over the {MAX_INVENTORY_BYTES} limit",
                hint="give the have.json written by `hfbundle inventory`",
            )
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise BundleFormatError(f"inventory is not valid JSON: {str(e)[:200]}", hint=_HINT) from e
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> Inventory:
        if not isinstance(data, dict) or data.get("format") != INVENTORY_FORMAT:
            raise BundleFormatError(f'not an hfbundle inventory (missing "format": "{INVENTORY_FORMAT}")', hint=_HINT)
        version = data.get("inventory_version")
        if type(version) is not int or version != INVENTORY_VERSION:
            raise BundleFormatError(
                f"inventory version {version!r} is not supported (this hfbundle reads {INVENTORY_VERSION})",
                hint="use the same hfbundle version on both machines",
            )
        expect_keys(data, {"format", "inventory_version", "repos"}, {"verified"}, "inventory")
        verified = data.get("verified", False)
        if not isinstance(verified, bool):
            raise BundleFormatError("inventory 'verified' must be true or false", hint=_HINT)
        raw_repos = data["repos"]
        if not isinstance(raw_repos, list) or len(raw_repos) > MAX_REPOS:
            raise BundleFormatError(f"inventory 'repos' must be a list of at most {MAX_REPOS}", hint=_HINT)
        repos: list[HeldRepo] = []
        seen: set[tuple[str, str]] = set()
        n_blobs = 0
        for r in raw_repos:
            repo = _parse_repo(r)
            key = (repo.repo_type, repo.repo_id.lower())
            if key in seen:
                raise BundleFormatError(f"inventory lists {repo.repo_type}:{repo.repo_id} twice", hint=_HINT)
            seen.add(key)
            n_blobs += len(repo.blobs)
            if n_blobs > MAX_BLOBS:
                raise BundleFormatError(f"inventory lists over {MAX_BLOBS} blobs", hint=_HINT)
            repos.append(repo)
        return cls(tuple(repos), verified)


_HINT = "give the have.json written by `hfbundle inventory` on the offline machine (re-copy it if damaged)"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_repo(r: Any) -> HeldRepo:
    expect_keys(r, {"repo_type", "repo_id", "refs", "commits", "blobs"}, set(), "inventory repo")
    try:
        repo_type = check_repo_type(_text(r["repo_type"]))
        repo_id = check_repo_id(_text(r["repo_id"]))
        if not isinstance(r["commits"], list) or not isinstance(r["refs"], dict) or not isinstance(r["blobs"], list):
            raise BundleFormatError(f"inventory repo {repo_id}: commits and blobs must be lists, refs an object")
        commits = tuple(check_commit(_text(c)) for c in r["commits"])
        if len(set(commits)) != len(commits):
            raise BundleFormatError(f"inventory repo {repo_id}: a commit is listed twice")
        refs = {check_ref(_text(k)): check_commit(_text(v)) for k, v in r["refs"].items()}
        if not set(refs.values()) <= set(commits):
            raise BundleFormatError(f"inventory repo {repo_id}: a ref points at a commit it does not list")
    except UnsafePathError as e:
        raise BundleFormatError(f"inventory: {e.message}", hint=_HINT) from e
    blobs: dict[str, HeldBlob] = {}
    for b in r["blobs"]:
        expect_keys(b, {"name", "size"}, set(), "inventory blob")
        name, size = b["name"], b["size"]
        if not isinstance(name, str) or not (is_sha256(name) or is_sha1(name)):
            raise BundleFormatError(f"inventory repo {repo_id}: blob name {str(name)[:80]!r} is not a hash", hint=_HINT)
        if type(size) is not int or not 0 <= size <= MAX_SIZE:
            raise BundleFormatError(f"inventory repo {repo_id}: blob {name}: bad size {size!r}", hint=_HINT)
        if name in blobs:
            raise BundleFormatError(f"inventory repo {repo_id}: blob {name} is listed twice", hint=_HINT)
        blobs[name] = HeldBlob(name, size)
    return HeldRepo(repo_type, repo_id, refs, commits, tuple(blobs.values()))


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 1024:
        raise BundleFormatError("inventory: a name is not a string (or is over 1024 characters)", hint=_HINT)
    return value


def take_inventory(cache_dir: Path, *, verify: bool = False) -> Inventory:
    """List what ``cache_dir`` holds: blobs in ``blobs/`` (what an install can link from) and copy-layout snapshot
    files their ``trees/`` listing names (what an install copies from, :func:`bundler.cache.model.index_copies`);
    ``verify`` re-hashes each one and leaves out those whose content does not match their name."""
    from .cache.scan import scan_cache

    scan = scan_cache(cache_dir)
    repos: list[HeldRepo] = []
    for repo in scan.repos:
        blobs: dict[str, HeldBlob] = {}
        for rev in repo.revisions:
            for f in rev.files:
                if f.named_by == "none" or f.etag is None or f.etag in blobs:
                    continue
                if verify and not _matches(f.source, f.etag):
                    continue
                blobs[f.etag] = HeldBlob(f.etag, f.size)
        repos.append(
            HeldRepo(
                repo.repo_type,
                repo.repo_id,
                dict(repo.refs),
                tuple(r.commit for r in repo.revisions),
                tuple(blobs.values()),
            )
        )
    return Inventory(tuple(repos), verified=verify)


def _matches(path: Path, name: str) -> bool:
    try:
        d = digest_file(str(path), git=is_sha1(name))
    except OSError:
        return False
    return d.sha256 == name if is_sha256(name) else d.git_sha1 == name


def read_inventory(path: str | Path) -> Inventory:
    """Read ``have.json`` (capped before parsing)."""
    from .errors import UsageError

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_INVENTORY_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read inventory {path}: {e.strerror}", hint=_HINT) from e
    return Inventory.loads(raw)
