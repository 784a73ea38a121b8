"""The bundle manifest: what a bundle installs, and every blob it carries with size and sha256.

The manifest is the first member of every bundle (``docs/FORMAT.md``). It is validated as a whole before
anything is installed: every name passes :mod:`bundler.paths`, every file points at a declared blob of the
same size, no blob is declared twice. A bundle's identity is the sha256 of its manifest bytes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, get_args

from ..errors import BundleFormatError
from ..hashing import all_sha256, is_sha256
from ..lockfile import Lock
from ..paths import check_commit, check_ref, check_relpath, check_repo_id, check_repo_type
from ..records import JsonRecord, expect_keys, json_str, jsonable, record_json
from ..repofile import RepoFile, check_listing, files_from_json

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
    """A sequence of records that reads as a list of their JSON objects, each made by ``convert`` only as it is
    iterated (:func:`_streamed` by default; :func:`_parsed` for the writer's check): never a list of every
    file's object at once (issue 18). :func:`_encode` writes the text from ``_records`` directly."""

    def __init__(self, records: tuple[Any, ...], convert: Callable[[Any], Any] | None = None) -> None:
        super().__init__()
        self._records = records
        self._convert = convert or _streamed

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Any]:
        return map(self._convert, self._records)


def _streamed(value: Any) -> Any:
    """:func:`~bundler.records.jsonable` for the canonical encoding: tuples of records stay lazy."""
    if isinstance(value, JsonRecord):
        return record_json(value, _streamed)
    if isinstance(value, tuple) and value and isinstance(value[0], JsonRecord):
        return _RecordsAsJson(value)
    return jsonable(value)


def _sorted_blobs(blobs: tuple[BlobEntry, ...]) -> list[dict[str, Any]]:
    return [b.to_json() for b in sorted(blobs, key=lambda b: b.sha256)]


# -- the canonical text: json.dumps(..., sort_keys=True, indent=1, ensure_ascii=False), made faster ----------

_json_str: Callable[[str], str] = json.encoder.encode_basestring  # C, as json uses


def _json_float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return _json_float(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")


def _encode(value: Any, level: int, emit: Callable[[str], None]) -> None:
    """Emit the text json's indenting encoder (``indent=1``, ``sort_keys``, ``ensure_ascii=False``) writes for
    ``value`` at nesting ``level``, in the same pieces' order. Lists of files and blobs (:class:`_RecordsAsJson`)
    are written from their records (:func:`_record_text`), without a dict per record."""
    if isinstance(value, str):
        emit(_json_str(value))
    elif value is None:
        emit("null")
    elif value is True:
        emit("true")
    elif value is False:
        emit("false")
    elif isinstance(value, int):
        emit(int.__repr__(value))
    elif isinstance(value, float):
        emit(_json_float(value))
    elif isinstance(value, (list, tuple)):
        if not value:
            emit("[]")
            return
        inner = "\n" + " " * (level + 1)
        emit("[" + inner)
        records = value._records if isinstance(value, _RecordsAsJson) else None
        first = True
        for item in records if records is not None else value:
            if not first:
                emit("," + inner)
            first = False
            text = _record_text(item, level + 1) if records is not None else None
            if text is not None:
                emit(text)
            else:
                _encode(_streamed(item) if records is not None else item, level + 1, emit)
        emit("\n" + " " * level + "]")
    elif isinstance(value, dict):
        if not value:
            emit("{}")
            return
        inner = "\n" + " " * (level + 1)
        emit("{" + inner)
        first = True
        for key, item in sorted(value.items()):
            if not first:
                emit("," + inner)
            first = False
            emit(_json_str(_json_key(key)) + ": ")
            _encode(item, level + 1, emit)
        emit("\n" + " " * level + "}")
    else:
        raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _record_text(record: Any, level: int) -> str | None:
    """The canonical text of a :class:`RepoFile` or :class:`BlobEntry` (exactly those classes, with plain field
    types) at ``level``, made from its fields: what :meth:`RepoFile.to_json` and ``json`` would write (sorted
    keys; ``lfs_sha256``/``xet_hash`` left out when None, ``sha256`` only when it differs from ``lfs_sha256``).
    None for anything else, which the generic path writes."""
    if not _is_plain(record):
        return None
    if type(record) is BlobEntry:
        pad = "\n" + " " * (level + 1)
        return f'{{{pad}"sha256": {_json_str(record.sha256)},{pad}"size": {int.__repr__(record.size)}\n{" " * level}}}'
    path, size, blob_id, lfs, xet, sha = (
        record.path,
        record.size,
        record.blob_id,
        record.lfs_sha256,
        record.xet_hash,
        record.sha256,
    )
    pad = "\n" + " " * (level + 1)
    parts = [f'{{{pad}"blob_id": {_json_str(blob_id)}']
    if lfs is not None:
        parts.append(f'"lfs_sha256": {_json_str(lfs)}')
    parts.append(f'"path": {_json_str(path)}')
    if sha is not None and sha != lfs:
        parts.append(f'"sha256": {_json_str(sha)}')
    parts.append(f'"size": {int.__repr__(size)}')
    if xet is not None:
        parts.append(f'"xet_hash": {_json_str(xet)}')
    return ("," + pad).join(parts) + "\n" + " " * level + "}"


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

    def _text_tree(self) -> dict[str, Any]:
        """What :func:`_encode` writes as the canonical text: :meth:`to_json`, with the lists of files and blobs
        left as records (no dict per file)."""
        # The lists of blobs are left out of record_json (its convert makes a dict per blob) and put back lazy.
        top = record_json(replace(self, blobs=(), expects=()), _streamed)
        top["blobs"] = _RecordsAsJson(tuple(sorted(self.blobs, key=lambda b: b.sha256)))
        if self.expects:  # skip_empty: written only when there are some
            top["expects"] = _RecordsAsJson(tuple(sorted(self.expects, key=lambda b: b.sha256)))
        return top

    @functools.cached_property
    def _canonical(self) -> bytes:
        # Once per (immutable) manifest. The bytes of json.dumps(self.to_json(), sort_keys=True, indent=1,
        # ensure_ascii=False) + "\n", written by :func:`_encode` (json's own indenting encoder is pure Python and
        # took seconds for 100,000 files, issue 18): each file's text is made from its record directly, no dict
        # in between, and the text is gathered as UTF-8 every few thousand pieces (bounded memory: json.dumps
        # holds the whole tree of dicts and a list of every piece at once). A BytesIO hands over its buffer as
        # the bytes (getvalue: no second copy of the whole text, as bytes(bytearray) made).
        out = io.BytesIO()
        pieces: list[str] = []

        def emit(piece: str) -> None:
            pieces.append(piece)
            if len(pieces) >= 4096:
                out.write("".join(pieces).encode())
                pieces.clear()

        _encode(self._text_tree(), 0, emit)
        pieces.append("\n")
        out.write("".join(pieces).encode())
        return out.getvalue()

    def forget_text(self) -> None:
        """Let go of the canonical bytes kept by :meth:`dumps` (made again if asked for): for a writer's caller
        that has stored them and keeps the manifest while it packs (issue 18: tens of MB for 100,000 files)."""
        self.__dict__.pop("_canonical", None)

    def is_canonical(self, raw: bytes) -> bool:
        """``raw`` is exactly :meth:`dumps`; if so the manifest keeps ``raw`` as its bytes (one copy, not two,
        of a text that is tens of MB for 100,000 files).

        Compared in slices as :func:`_encode` writes the text (:func:`_same_text`), stopping at the first
        difference and never holding a second copy of it (issue 18)."""
        same = _same_text(self._text_tree(), raw) if "_canonical" not in self.__dict__ else self.dumps() == raw
        if not same:
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
        return cls.from_json(_parse_json(raw), _consume=True)

    @classmethod
    def from_json(cls, data: Any, *, _consume: bool = False) -> Manifest:
        """``_consume`` (:meth:`loads`, whose parsed JSON nobody else holds): each blob's and file's JSON object is
        let go as soon as its record exists, so the parsed tree and the records never both exist whole (issue 18:
        the peak memory of opening a 100,000-file manifest)."""
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
        if _consume and isinstance(data["blobs"], list):
            data["blobs"].clear()
        repos = _parse_repos(data["repos"], blobs, consume=_consume)
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


class _Differs(Exception):
    """The text so far already differs from the bytes compared with (:class:`_Compare`)."""


class _Compare:
    """An ``emit`` for :func:`_encode` that compares the text with ``raw`` in slices as it comes: a manifest that
    differs early is refused early, and only a slice of the text is held at once."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0
        self.out: list[str] = []

    def emit(self, piece: str) -> None:
        self.out.append(piece)
        if len(self.out) >= 8192:
            self.flush()

    def flush(self) -> None:
        part = "".join(self.out).encode()
        self.out.clear()
        if self.raw[self.pos : self.pos + len(part)] != part:
            raise _Differs
        self.pos += len(part)


def _same_text(data: Any, raw: bytes) -> bool:
    """Whether ``raw`` is exactly the canonical text of ``data`` (see :meth:`Manifest.dumps`)."""
    cmp = _Compare(raw)
    try:
        _encode(data, 0, cmp.emit)
        cmp.emit("\n")
        cmp.flush()
    except _Differs:
        return False
    return cmp.pos == len(raw)


def _parsed(record: Any) -> dict[str, Any]:
    """The JSON object ``json.loads`` reads back from :func:`_record_text`'s text of ``record`` (same keys, same
    values: its fields are plain ``str``/``int``/None, which the text holds exactly)."""
    if type(record) is BlobEntry:
        return {"sha256": record.sha256, "size": record.size}
    out: dict[str, Any] = {"blob_id": record.blob_id}
    if record.lfs_sha256 is not None:
        out["lfs_sha256"] = record.lfs_sha256
    out["path"] = record.path
    if record.sha256 is not None and record.sha256 != record.lfs_sha256:
        out["sha256"] = record.sha256
    out["size"] = record.size
    if record.xet_hash is not None:
        out["xet_hash"] = record.xet_hash
    return out


def _elided(records: Any) -> _RecordsAsJson | None:
    """A lazy parsed view of ``records`` when it is a non-empty tuple of records :func:`_record_text` writes."""
    if not isinstance(records, tuple) or not records:
        return None
    return _RecordsAsJson(records, _parsed) if all(map(_is_plain, records)) else None


def _is_plain(record: Any) -> bool:
    """Whether :func:`_record_text` writes ``record`` (a :class:`RepoFile` or :class:`BlobEntry` of plain fields)."""
    cls = type(record)
    if cls is BlobEntry:
        return type(record.sha256) is str and type(record.size) is int
    return (
        cls is RepoFile
        and type(record.path) is str
        and type(record.size) is int
        and type(record.blob_id) is str
        and (record.lfs_sha256 is None or type(record.lfs_sha256) is str)
        and (record.xet_hash is None or type(record.xet_hash) is str)
        and (record.sha256 is None or type(record.sha256) is str)
    )


def check_encoded(manifest: Manifest) -> None:
    """Refuse ``manifest`` (:class:`BundleFormatError`) exactly when :meth:`Manifest.loads` refuses its
    :meth:`~Manifest.dumps` bytes, without parsing the whole text into a tree of JSON objects (issue 18: the
    writer checking a backup's manifest of 100,000 files held that tree, tens of MB, at the run's peak).

    The lists of files, listings and blobs are read back from their records (:func:`_parsed`: the very objects
    their text parses to); the rest, small, is written and parsed as :meth:`~Manifest.loads` parses it. The same
    checks then run on the same values (:meth:`Manifest.from_json`), in the same order, with the same errors.
    Any manifest of another shape is checked by parsing its bytes."""
    raw = manifest.dumps()
    if len(raw) > MAX_MANIFEST_BYTES or not isinstance(manifest.repos, tuple):
        Manifest.loads(raw)
        return
    lazy: dict[tuple[Any, ...], _RecordsAsJson] = {}
    top = manifest._text_tree()
    for key in ("blobs", "expects"):
        value = top.get(key)
        if isinstance(value, _RecordsAsJson) and (view := _elided(value._records)) is not None:
            lazy[(key,)] = view
            top[key] = []
    repos: list[Any] = []
    for i, repo in enumerate(manifest.repos):
        if type(repo) is not RepoEntry or not isinstance(repo.snapshots, tuple):
            Manifest.loads(raw)
            return
        repo_json = _streamed(repo)
        snapshots: list[Any] = []
        for j, snap in enumerate(repo.snapshots):
            if type(snap) is not SnapshotEntry:
                Manifest.loads(raw)
                return
            snap_json = _streamed(snap)
            for name in ("files", "listing"):
                if name in snap_json and (view := _elided(getattr(snap, name))) is not None:
                    lazy[(i, j, name)] = view
                    snap_json[name] = []
            snapshots.append(snap_json)
        repo_json["snapshots"] = snapshots
        repos.append(repo_json)
    if repos:
        top["repos"] = repos
    pieces: list[str] = []
    _encode(top, 0, pieces.append)
    del top, repos
    skeleton = "".join(pieces)
    del pieces
    data = _parse_json(skeleton.encode())  # dumps() encoded: so does its skeleton
    for where, view in lazy.items():
        if len(where) == 1:
            data[where[0]] = view
        else:
            data["repos"][where[0]]["snapshots"][where[1]][where[2]] = view
    Manifest.from_json(data)


def _parse_json(raw: bytes) -> Any:
    """The JSON value of a manifest's UTF-8 text, refused as :meth:`Manifest.loads` refuses it: not UTF-8, not
    JSON (``NaN`` too), or a lone surrogate escape."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
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
    return data


def _refuse_constant(name: str) -> Any:
    """``NaN``, ``Infinity``: Python's json reads them, JSON does not have them (``--json`` output would be invalid)."""
    raise ValueError(f"{name} is not JSON")


def _parse_blobs(raw: Any, what: str = "blobs") -> dict[str, BlobEntry]:
    if not isinstance(raw, list):
        raise BundleFormatError(f"manifest '{what}' must be a list")
    fast = _blobs_fast(raw)
    if fast is not None:
        return fast
    blobs: dict[str, BlobEntry] = {}
    for b in raw:  # one at a time: the first error, named
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


def _blobs_fast(raw: Any) -> dict[str, BlobEntry] | None:
    """:func:`_parse_blobs` of a list every check passes (the digests in one match), else None (issue 18)."""
    shas: list[str] = []
    sizes: list[int] = []
    for b in raw:
        if type(b) is not dict or len(b) != 2:
            return None
        sha, size = b.get("sha256"), b.get("size")
        if type(sha) is not str or type(size) is not int or size < 0:
            return None
        shas.append(sha)
        sizes.append(size)
    if not all_sha256(shas):
        return None
    blobs = {sha: BlobEntry(sha, size) for sha, size in zip(shas, sizes, strict=True)}
    return blobs if len(blobs) == len(shas) else None


def _parse_repos(
    raw: Any, blobs: Mapping[str, BlobEntry] | None = None, *, consume: bool = False
) -> tuple[RepoEntry, ...]:
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
        snapshots = tuple(_parse_snapshot(repo_id, s, blobs, consume=consume) for s in r["snapshots"])
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


def _parse_snapshot(
    repo_id: str, s: Any, blobs: Mapping[str, BlobEntry] | None = None, *, consume: bool = False
) -> SnapshotEntry:
    expect_keys(s, {"commit", "files"}, {"no_exist", "tree", "listing"}, "snapshot")
    commit = check_commit(json_str(s["commit"], "commit"))
    if not isinstance(s["files"], list) or not isinstance(s.get("no_exist", []), list):
        raise BundleFormatError(f"repo {repo_id}@{commit}: 'files' and 'no_exist' must be lists")
    intern: Callable[[str], str] | None = None
    if blobs:  # a file's sha256 shares its blob's string: one copy, not two, per file (issue 18: 100k files)

        def intern(sha: str) -> str:
            blob = blobs.get(sha)
            return blob.sha256 if blob is not None else sha

    files = files_from_json(s["files"], intern, consume=consume)
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
    if not paths.isdisjoint(_folders(paths)):  # a file may not also be a folder of another file
        for f in files:  # the first one, named as it always was
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
        listing = files_from_json(raw_listing)
        check_listing(f"repo {repo_id}@{commit[:8]}", listing, files)
    return SnapshotEntry(commit, files, no_exist, tree, listing)


def _folders(paths: set[str]) -> set[str]:
    """Every folder the files ``paths`` are in (``a``, ``a/b`` for ``a/b/c``), each found once: files of one
    folder share its parents (one set lookup per file, not a join per level)."""
    folders: set[str] = set()
    for path in paths:
        end = path.rfind("/")
        while end > 0:
            folder = path[:end]
            if folder in folders:
                break
            folders.add(folder)
            end = path.rfind("/", 0, end)
    return folders


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
