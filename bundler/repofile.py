"""One file of a Hub repo at a commit, as the Hub describes it, and its entry in a ``trees/<commit>.json``.

:class:`RepoFile` is what a lock pins, a bundle manifest carries, an install record keeps and the installer
places; :class:`TreeEntry` is one entry of huggingface_hub's trees listing (``_tree_cache.TreeCacheEntry``),
the shape :func:`bundler.cache.layout.parse_tree` reads and :func:`bundler.cache.layout.tree_json` writes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BundleFormatError
from .hashing import all_sha1, all_sha256, is_sha1, is_sha256
from .paths import check_relpath
from .records import JsonRecord, expect_keys, json_str

__all__ = ["RepoFile", "TreeEntry", "check_listing", "files_from_json"]


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class TreeEntry(JsonRecord, skip_none=True):
    """One file of a ``trees/<commit>.json`` listing, as huggingface_hub writes it (``write_tree_cache``):
    ``{"size", "blob_id"[, "lfs_sha256", "lfs_size"][, "xet_hash"]}``, keys in that order."""

    size: int
    blob_id: str
    lfs_sha256: str | None = None
    lfs_size: int | None = None
    xet_hash: str | None = None

    @property
    def etag(self) -> str:
        """The blob name this entry describes: the LFS sha256, else the git blob id."""
        return self.lfs_sha256 or self.blob_id


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
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

    def tree_entry(self) -> TreeEntry:
        """Entry of huggingface_hub's ``trees/<commit>.json`` (``_tree_cache.TreeCacheEntry``)."""
        lfs_size = self.size if self.lfs_sha256 is not None else None
        return TreeEntry(self.size, self.blob_id, self.lfs_sha256, lfs_size, self.xet_hash)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RepoFile:
        expect_keys(data, {"path", "size", "blob_id"}, {"lfs_sha256", "xet_hash", "sha256"}, "file")
        path = check_relpath(json_str(data["path"], "file path"))
        size = data["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleFormatError(f"file {path!r}: size must be a non-negative integer, got {size!r}")
        blob_id = json_str(data["blob_id"], "blob_id")
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


_REQUIRED: frozenset[str] = frozenset({"path", "size", "blob_id"})
_ALLOWED: frozenset[str] = _REQUIRED | {"lfs_sha256", "xet_hash", "sha256"}
_CHUNK = 1024


def files_from_json(
    raw: Iterable[Any], intern: Callable[[str], str] | None = None, *, consume: bool = False
) -> tuple[RepoFile, ...]:
    """:meth:`RepoFile.from_json` of each object of the JSON list ``raw``, in order, with its checks and its
    errors, at a fraction of its cost per file (issue 18: a manifest of 100,000 files is read on every install
    and checked on every backup). Objects are taken in chunks: a chunk every check passes (the hex digests in one
    match each) becomes records directly; any doubt, and the chunk is read again by ``from_json`` one object at a
    time, which raises the first error as it always did (every earlier chunk passed every check).

    ``intern(sha256)``: an equal string to keep instead (one copy per content, not per file). ``consume``: each
    object of ``raw`` (a list) is replaced by None once its record exists (the parsed text and the records are
    never both whole)."""
    out: list[RepoFile] = []
    items = iter(raw)
    start = 0
    while chunk := list(itertools.islice(items, _CHUNK)):
        records = _fast_chunk(chunk, intern)
        if records is None:
            records = []
            for f in chunk:
                if intern is not None and type(f) is dict:
                    sha = f.get("sha256")
                    if type(sha) is str:
                        f["sha256"] = shared = intern(sha)
                        if f.get("lfs_sha256") == sha:
                            f["lfs_sha256"] = shared
                records.append(RepoFile.from_json(f))
        out += records
        if consume and type(raw) is list:
            raw[start : start + len(chunk)] = [None] * len(chunk)
        start += len(chunk)
        del chunk, records
    return tuple(out)


def _fast_chunk(chunk: list[Any], intern: Callable[[str], str] | None) -> list[RepoFile] | None:
    """The records of ``chunk`` when every object passes every check of :meth:`RepoFile.from_json`; else None."""
    fields: list[tuple[str, int, str, str | None, str | None, str | None]] = []
    ids: list[str] = []
    shas: list[str] = []
    try:
        for f in chunk:
            if type(f) is not dict:
                return None
            keys = f.keys()
            if not (_REQUIRED <= keys <= _ALLOWED):
                return None
            path, size, blob_id = f["path"], f["size"], f["blob_id"]
            lfs = f.get("lfs_sha256")
            sha = f.get("sha256", lfs)
            xet = f.get("xet_hash")
            if type(path) is not str or type(size) is not int or size < 0 or type(blob_id) is not str:
                return None  # (type() is int: neither a bool nor an int subclass, left to from_json)
            if lfs is not None and (type(lfs) is not str or sha != lfs):
                return None
            if sha is not None:
                if type(sha) is not str:
                    return None
                shas.append(sha)
            if xet is not None and not (type(xet) is str and len(xet) == 64 and xet.isalnum()):
                return None
            check_relpath(path)
            ids.append(blob_id)
            fields.append((path, size, blob_id, lfs, xet, sha))
    except BundleFormatError:  # check_relpath's UnsafePathError: from_json raises it, or an earlier error
        return None
    if not (all_sha1(ids) and all_sha256(shas)):
        return None
    records: list[RepoFile] = []
    for path, size, blob_id, lfs, xet, sha in fields:
        if intern is not None and sha is not None:
            shared = intern(sha)
            if lfs is not None:
                lfs = shared
            sha = shared
        records.append(RepoFile(path, size, blob_id, lfs, xet, sha))
    return records


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
