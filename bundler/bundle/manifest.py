"""The bundle manifest: what a bundle installs, and every blob it carries with size and sha256.

The manifest is the first member of every bundle (``docs/FORMAT.md``). It is validated as a whole before
anything is installed: every name passes :mod:`bundler.paths`, every file points at a declared blob of the
same size, no blob is declared twice. A bundle's identity is the sha256 of its manifest bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from ..errors import BundleFormatError
from ..hashing import is_sha256
from ..lockfile import Lock
from ..paths import check_commit, check_ref, check_relpath, check_repo_id, check_repo_type
from ..records import JsonRecord, expect_keys, json_str, jsonable, record_json
from ..repofile import RepoFile, check_listing

FORMAT_NAME = "hfbundle"
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)  # 2 added the snapshot's ``listing`` and tree mode "hub"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
BundleKind = Literal["bundle", "backup"]  # built from a lock (build) or from a cache (backup)
KINDS: tuple[BundleKind, ...] = get_args(BundleKind)
# Where trees/<commit>.json may come from; else the sha256 of a saved listing the bundle carries (a backup).
TreeMode = Literal["hub", "files", "none"]
TREE_HUB: Final = "hub"  # ``listing``: the Hub's complete listing, written once the snapshot holds every file it names
TREE_FILES: Final = "files"  # format 1: complete only when the lock's ``upstream`` names exactly the bundled files
TREE_NONE: Final = "none"  # write no trees file


@dataclass(frozen=True, slots=True)  # one per file: no __dict__ (issue 18)
class BlobEntry(JsonRecord):
    """One unique content stored in the bundle, named by its sha256."""

    sha256: str
    size: int


@dataclass(frozen=True)
class SnapshotEntry(JsonRecord, skip_none=("listing",)):
    """The files of one repo at one commit.

    ``tree`` says where ``trees/<commit>.json`` may come from (``docs/CACHE.md``, "Trees"): :data:`TREE_HUB`
    (``listing``, the Hub's complete listing of the commit), :data:`TREE_FILES` (format 1 bundles: ``files``,
    when the lock shows they are the whole commit), :data:`TREE_NONE`, or the sha256 of a blob holding a saved
    listing (backups). Whatever the source, the installer writes a listing only when the snapshot then holds
    every file it names.
    """

    commit: str
    files: tuple[RepoFile, ...]
    no_exist: tuple[str, ...] = ()
    tree: TreeMode | str = TREE_FILES  # or a listing's sha256
    listing: tuple[RepoFile, ...] | None = None


@dataclass(frozen=True)
class RepoEntry(JsonRecord, convert={"refs": lambda refs: dict(sorted(refs.items()))}):
    """One repo: its snapshots and the refs (branch, tag, ``refs/pr/N``) that point at them."""

    repo_type: str
    repo_id: str
    refs: Mapping[str, str]
    snapshots: tuple[SnapshotEntry, ...]


@dataclass(frozen=True)
class SkippedFile(JsonRecord):
    """A file a backup left out (corrupt blob with ``--skip-corrupt``, dangling link…)."""

    repo_type: str
    repo_id: str
    commit: str
    path: str
    reason: str


_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")  # the only way JSON text spells a surrogate


class _RecordsAsJson(list):  # type: ignore[type-arg]
    """A sequence of records that the JSON encoder reads as a list of their JSON objects, made one at a time
    as it iterates (json's pure-Python encoder, the one ``indent`` uses, only iterates and tests emptiness)."""

    def __init__(self, records: tuple[Any, ...]) -> None:
        super().__init__()
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Any]:
        return (_streamed(r) for r in self._records)


def _streamed(value: Any) -> Any:
    """:func:`~bundler.records.jsonable` for the canonical encoding: tuples of records stay lazy."""
    if isinstance(value, JsonRecord):
        return record_json(value, _streamed)
    if isinstance(value, tuple) and value and isinstance(value[0], JsonRecord):
        return _RecordsAsJson(value)
    return jsonable(value)


def _sorted_blobs(blobs: tuple[BlobEntry, ...]) -> list[dict[str, Any]]:
    return [b.to_json() for b in sorted(blobs, key=lambda b: b.sha256)]


@dataclass(frozen=True)
class Manifest(JsonRecord, skip_empty=("expects",), convert={"blobs": _sorted_blobs, "expects": _sorted_blobs}):
    """Everything a bundle holds. ``blobs`` are the contents stored in *this* file; with ``base`` set
    (incremental backup) files may also point at blobs of the base chain."""

    repos: tuple[RepoEntry, ...]
    blobs: tuple[BlobEntry, ...]
    kind: BundleKind = "bundle"
    creator: str = "hfbundle"
    lock: Lock | None = None
    recipe: Mapping[str, Any] | None = None
    base: str | None = None
    skipped: tuple[SkippedFile, ...] = ()
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)
    # A delta bundle (``build --have``): contents its files use that it does not carry, because the target cache
    # holds them already. Written only when non-empty, so every other manifest keeps its bytes and its id.
    expects: tuple[BlobEntry, ...] = ()

    # -- derived -----------------------------------------------------------------------------------------

    def iter_files(self) -> Iterator[tuple[RepoEntry, SnapshotEntry, RepoFile]]:
        for repo in self.repos:
            for snap in repo.snapshots:
                for f in snap.files:
                    yield repo, snap, f

    @property
    def is_delta(self) -> bool:
        """Built with ``--have``: it relies on blobs the target cache holds (``expects``)."""
        return bool(self.expects)

    @property
    def total_size(self) -> int:
        """Bytes of unique content stored in this bundle."""
        return sum(b.size for b in self.blobs)

    def json_extra(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME}

    def dumps(self) -> bytes:
        """Canonical bytes: sorted keys, fixed separators, so equal manifests hash equal."""
        return self._canonical

    @functools.cached_property
    def _canonical(self) -> bytes:
        # Once per (immutable) manifest: a 100,000-file manifest takes seconds to encode (issue 18). The bytes of
        # json.dumps(self.to_json(), sort_keys=True, indent=1, ensure_ascii=False) + "\n", made in pieces: each
        # file's JSON object exists only while the encoder writes it, and the text is gathered as UTF-8 every
        # few thousand pieces. json.dumps holds the whole tree of dicts and a list of every piece at once, the
        # peak memory of a backup or restore of many files.
        encoder = json.JSONEncoder(sort_keys=True, indent=1, ensure_ascii=False)
        out = bytearray()
        pieces: list[str] = []
        for piece in encoder.iterencode(record_json(self, _streamed)):
            pieces.append(piece)
            if len(pieces) >= 4096:
                out += "".join(pieces).encode()
                pieces.clear()
        pieces.append("\n")
        out += "".join(pieces).encode()
        return bytes(out)

    def is_canonical(self, raw: bytes) -> bool:
        """``raw`` is exactly :meth:`dumps`; if so the manifest keeps ``raw`` as its bytes (one copy, not two,
        of a text that is tens of MB for 100,000 files)."""
        if self.dumps() != raw:
            return False
        self.__dict__["_canonical"] = raw  # what functools.cached_property reads back
        return True

    @functools.cached_property
    def bundle_id(self) -> str:
        return hashlib.sha256(self.dumps()).hexdigest()

    # -- parsing -----------------------------------------------------------------------------------------

    @classmethod
    def loads(cls, raw: bytes) -> Manifest:
        """Parse and validate manifest bytes from an untrusted bundle."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise BundleFormatError(f"manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES} limit")
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise BundleFormatError(
                f"manifest is not valid JSON: {str(e)[:200]}", hint="the bundle is damaged; rebuild or re-copy it"
            ) from e
        try:  # a "\ud800" escape parses to a lone surrogate, which no UTF-8 text (nor dumps()) can hold
            if _SURROGATE_ESCAPE.search(raw) is not None:  # else none can be there: no copy of the text to check
                json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as err:
            raise BundleFormatError(
                "manifest holds an invalid Unicode escape (a lone surrogate)",
                hint="the bundle was not written by hfbundle; do not use it",
            ) from err
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise BundleFormatError('not an hfbundle manifest (missing "format": "hfbundle")')
        version = data.get("format_version")
        if type(version) is not int or version not in READABLE_FORMAT_VERSIONS:  # true and 1.0 equal 1 in Python
            raise BundleFormatError(
                f"bundle format version {version!r} is not supported (this hfbundle reads "
                f"{' and '.join(map(str, READABLE_FORMAT_VERSIONS))})",
                hint="install a newer hfbundle on this machine, or rebuild the bundle with this version",
            )
        expect_keys(
            data,
            {"format", "format_version", "repos", "blobs"},
            {"kind", "creator", "base", "recipe", "lock", "skipped", "extra", "expects"},
            "manifest",
        )
        kind = data.get("kind", "bundle")
        if kind not in KINDS:
            raise BundleFormatError(f"unknown bundle kind {kind!r}")
        base = data.get("base")
        if base is not None and not (isinstance(base, str) and is_sha256(base)):
            raise BundleFormatError("manifest 'base' must be a bundle id (64 hex digits)")
        blobs = _parse_blobs(data["blobs"])
        repos = _parse_repos(data["repos"])
        recipe = data.get("recipe")
        if recipe is not None and not isinstance(recipe, dict):
            raise BundleFormatError("manifest 'recipe' must be an object")
        lock_data = data.get("lock")
        skipped = data.get("skipped") or []
        if not isinstance(skipped, list):
            raise BundleFormatError("manifest 'skipped' must be a list")
        extra = data.get("extra") or {}
        if not isinstance(extra, dict):
            raise BundleFormatError("manifest 'extra' must be an object")
        expects = _parse_blobs(data.get("expects", []), "expects")
        both = expects.keys() & blobs.keys()
        if both:
            raise BundleFormatError(f"blob {min(both)} is both carried and expected from the cache")
        manifest = cls(
            repos=repos,
            blobs=tuple(blobs.values()),
            kind=kind,
            creator=json_str(data.get("creator", "hfbundle"), "creator"),
            lock=Lock.from_json(lock_data) if lock_data is not None else None,
            recipe=recipe,
            base=base,
            skipped=tuple(_parse_skipped(s) for s in skipped),
            format_version=version,
            extra=extra,
            expects=tuple(expects.values()),
        )
        _check_consistency(manifest, blobs | expects)
        if expects.keys() - {f.sha256 for _, _, f in manifest.iter_files()}:
            raise BundleFormatError("the manifest expects a blob that no file uses")
        return manifest


def _refuse_constant(name: str) -> Any:
    """``NaN``, ``Infinity``: Python's json reads them, JSON does not have them (``--json`` output would be invalid)."""
    raise ValueError(f"{name} is not JSON")


def _parse_blobs(raw: Any, what: str = "blobs") -> dict[str, BlobEntry]:
    if not isinstance(raw, list):
        raise BundleFormatError(f"manifest '{what}' must be a list")
    blobs: dict[str, BlobEntry] = {}
    for b in raw:
        expect_keys(b, {"sha256", "size"}, set(), "blob")
        sha, size = b["sha256"], b["size"]
        if not (isinstance(sha, str) and is_sha256(sha)):
            raise BundleFormatError(f"blob sha256 {sha!r} is not 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleFormatError(f"blob {sha}: size must be a non-negative integer")
        if sha in blobs:
            raise BundleFormatError(f"blob {sha} is listed twice in the manifest")
        blobs[sha] = BlobEntry(sha, size)
    return blobs


def _parse_repos(raw: Any) -> tuple[RepoEntry, ...]:
    if not isinstance(raw, list):
        raise BundleFormatError("manifest 'repos' must be a list")
    repos: list[RepoEntry] = []
    seen: set[tuple[str, str]] = set()
    for r in raw:
        expect_keys(r, {"repo_type", "repo_id", "refs", "snapshots"}, set(), "repo")
        repo_type = check_repo_type(json_str(r["repo_type"], "repo_type"))
        repo_id = check_repo_id(json_str(r["repo_id"], "repo_id"))
        if (repo_type, repo_id.lower()) in seen:
            raise BundleFormatError(f"repo {repo_type}:{repo_id} is listed twice in the manifest")
        seen.add((repo_type, repo_id.lower()))
        if not isinstance(r["snapshots"], list) or not isinstance(r["refs"], dict):
            raise BundleFormatError(f"repo {repo_id}: 'snapshots' must be a list and 'refs' an object")
        snapshots = tuple(_parse_snapshot(repo_id, s) for s in r["snapshots"])
        commits = {s.commit for s in snapshots}
        if len(commits) != len(snapshots):
            raise BundleFormatError(f"repo {repo_id}: a commit is listed twice")
        refs: dict[str, str] = {}
        for ref, commit in r["refs"].items():
            check_ref(ref)
            check_commit(json_str(commit, "ref target"))
            if commit not in commits:
                raise BundleFormatError(f"repo {repo_id}: ref {ref!r} points at {commit}, not in the bundle")
            refs[ref] = commit
        repos.append(RepoEntry(repo_type, repo_id, refs, snapshots))
    return tuple(repos)


def _parse_snapshot(repo_id: str, s: Any) -> SnapshotEntry:
    expect_keys(s, {"commit", "files"}, {"no_exist", "tree", "listing"}, "snapshot")
    commit = check_commit(json_str(s["commit"], "commit"))
    if not isinstance(s["files"], list) or not isinstance(s.get("no_exist", []), list):
        raise BundleFormatError(f"repo {repo_id}@{commit}: 'files' and 'no_exist' must be lists")
    files = tuple(RepoFile.from_json(f) for f in s["files"])
    folded: dict[str, str] = {}  # casefolded path -> its first spelling
    for f in files:
        if f.sha256 is None:
            raise BundleFormatError(f"repo {repo_id}@{commit}: file {f.path!r} has no sha256")
        key = f.path.casefold()
        other = folded.get(key)
        if other == f.path:
            raise BundleFormatError(f"repo {repo_id}@{commit}: path {f.path!r} is listed twice")
        if other is not None:
            raise BundleFormatError(
                f"repo {repo_id}@{commit}: paths {other!r} and {f.path!r} differ only in case "
                "(one file on Windows, macOS and exFAT)",
                hint=f"rebuild leaving one out (hfbundle build SPEC --exclude '{f.path}')",
            )
        folded[key] = f.path
    paths = {f.path for f in files}
    for f in files:  # a file may not also be a folder of another file
        parts = f.path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise BundleFormatError(f"repo {repo_id}@{commit}: {f.path!r} is below the file {parts[0]!r}")
    no_exist = tuple(check_relpath(json_str(p, "no_exist path")) for p in s.get("no_exist", []))
    tree = json_str(s.get("tree", TREE_FILES), "tree")
    if tree not in (TREE_HUB, TREE_FILES, TREE_NONE) and not is_sha256(tree):
        raise BundleFormatError(f"repo {repo_id}@{commit}: 'tree' must be 'hub', 'files', 'none' or a blob sha256")
    raw_listing = s.get("listing")
    if (raw_listing is not None) != (tree == TREE_HUB):
        raise BundleFormatError(f"repo {repo_id}@{commit}: a 'listing' comes with tree mode 'hub', and only with it")
    listing = None
    if raw_listing is not None:
        if not isinstance(raw_listing, list):
            raise BundleFormatError(f"repo {repo_id}@{commit}: 'listing' must be a list")
        listing = tuple(RepoFile.from_json(f) for f in raw_listing)
        check_listing(f"repo {repo_id}@{commit[:8]}", listing, files)
    return SnapshotEntry(commit, files, no_exist, tree, listing)


def _parse_skipped(s: Any) -> SkippedFile:
    expect_keys(s, {"repo_type", "repo_id", "commit", "path", "reason"}, set(), "skipped entry")
    return SkippedFile(
        check_repo_type(json_str(s["repo_type"], "repo_type")),
        check_repo_id(json_str(s["repo_id"], "repo_id")),
        json_str(s["commit"], "commit"),
        json_str(s["path"], "path"),
        json_str(s["reason"], "reason"),
    )


def _check_consistency(manifest: Manifest, blobs: Mapping[str, BlobEntry]) -> None:
    """Every file points at a declared blob of its size (unless an incremental base may hold it)."""
    for repo, snap, f in manifest.iter_files():
        assert f.sha256 is not None
        blob = blobs.get(f.sha256)
        if blob is None:
            if manifest.base is None:
                raise BundleFormatError(
                    f"{repo.repo_id}@{snap.commit[:8]}: {f.path!r} points at blob {f.sha256[:12]}… "
                    "that the bundle does not declare"
                )
        elif blob.size != f.size:
            raise BundleFormatError(
                f"{repo.repo_id}: {f.path!r} has size {f.size} but its blob {f.sha256[:12]}… has {blob.size}"
            )
    for repo in manifest.repos:
        for snap in repo.snapshots:
            if snap.tree not in (TREE_HUB, TREE_FILES, TREE_NONE) and snap.tree not in blobs and manifest.base is None:
                raise BundleFormatError(f"{repo.repo_id}@{snap.commit[:8]}: trees blob is not declared")
