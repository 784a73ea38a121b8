"""The Hugging Face cache layout, written exactly as huggingface_hub writes it.

One repo lives in ``<cache>/<type>s--<org>--<name>/`` with ``blobs/<etag>``, ``snapshots/<commit>/<path>``
(relative symlinks to the blobs, or real files in the copy layout), ``refs/<rev>`` (the commit, no trailing
newline), ``trees/<commit>.json`` and ``.no_exist/<commit>/<path>``. The cache root carries ``CACHEDIR.TAG``
and ``.locks/<repo folder>/<etag>.lock`` (taken in :mod:`bundler.cache.locks`). What names mean (commits,
blobs, temp files) is :mod:`bundler.cache.names`.

Everything here writes atomically: a temp file in the target folder, then ``os.replace``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UnsafePathError
from ..hashing import is_sha1, is_sha256
from ..paths import check_commit, check_ref, check_relpath, check_repo_id, check_repo_type
from ..repofile import TreeEntry
from .names import TEMP_PREFIX, read_ref, temp_name

__all__ = [
    "CACHEDIR_TAG",
    "MAX_TREE_BYTES",
    "TEMP_PREFIX",
    "TREE_FORMAT_VERSION",
    "RepoLayout",
    "atomic_write_bytes",
    "default_cache_dir",
    "ensure_cachedir_tag",
    "iter_repo_folders",
    "parse_repo_folder_name",
    "parse_tree",
    "place_symlink",
    "read_capped",
    "relative_link_target",
    "repo_folder_name",
    "symlinks_supported",
    "tree_json",
    "write_ref",
]

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by huggingface_hub.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)
TREE_FORMAT_VERSION = 1
MAX_TREE_BYTES = 64 * 1024 * 1024  # a trees/ listing longer than this is refused unread


def default_cache_dir() -> Path:
    """The hub cache huggingface_hub would use: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/…``.

    Read from the environment (not from ``huggingface_hub.constants``) so the CLI stays fast and tests can
    point it elsewhere; the precedence is the one of ``huggingface_hub.constants``.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        hf_home = os.path.join(xdg, "huggingface")
    return Path(hf_home).expanduser() / "hub"


def repo_folder_name(repo_type: str, repo_id: str) -> str:
    """``models--org--name`` (same as ``huggingface_hub.file_download.repo_folder_name``)."""
    return "--".join([f"{check_repo_type(repo_type)}s", *check_repo_id(repo_id).split("/")])


def parse_repo_folder_name(name: str) -> tuple[str, str] | None:
    """Inverse of :func:`repo_folder_name`; ``None`` for folders that are not repos."""
    prefix, sep, rest = name.partition("--")
    if not sep or prefix not in ("models", "datasets", "spaces") or not rest:
        return None
    return prefix[:-1], rest.replace("--", "/")


@dataclass(frozen=True)
class RepoLayout:
    """Paths of one repo inside a cache. Every method validates what it is given."""

    cache_dir: Path
    repo_type: str
    repo_id: str

    # Cached: a run asks for them once per file, and each call validated the repo id again (issue 18).
    @functools.cached_property
    def folder(self) -> Path:
        return self.cache_dir / repo_folder_name(self.repo_type, self.repo_id)

    @functools.cached_property
    def blobs(self) -> Path:
        return self.folder / "blobs"

    def blob(self, etag: str) -> Path:
        if not etag or "/" in etag or etag.startswith("."):
            raise UnsafePathError(f"invalid blob name {etag!r}")
        return self.blobs / etag

    def snapshot(self, commit: str) -> Path:
        return self.folder / "snapshots" / check_commit(commit)

    def snapshot_file(self, commit: str, path: str) -> Path:
        return self.snapshot(commit) / check_relpath(path)

    def ref(self, ref: str) -> Path:
        return self.folder / "refs" / check_ref(ref)

    def tree(self, commit: str) -> Path:
        return self.folder / "trees" / f"{check_commit(commit)}.json"

    def no_exist(self, commit: str, path: str) -> Path:
        return self.folder / ".no_exist" / check_commit(commit) / check_relpath(path)

    def lock(self, etag: str) -> Path:
        return self.cache_dir / ".locks" / repo_folder_name(self.repo_type, self.repo_id) / f"{etag}.lock"

    def read_ref(self, ref: str) -> str | None:
        """The commit a ref points at, exactly as stored (no stripping, as huggingface_hub reads it), or None."""
        held = read_ref(self.ref(ref))
        return held.text if held is not None else None


# -- atomic writes ---------------------------------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``.

    ``tmp_dir`` (on the same filesystem) holds the temp file instead: refs use their repo folder, because
    ``scan_cache_dir`` reads every file below ``refs/`` as a ref, and the empty temp a crash leaves there made
    it refuse the whole repo ("Reference(s) refer to missing commit hashes"); ``CACHEDIR.TAG`` uses ``.locks/``
    (a stray file in the cache root is a "repo" scan_cache_dir warns about)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent if tmp_dir is None else tmp_dir
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / temp_name(path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_capped(path: Path, limit: int) -> bytes | None:
    """At most ``limit`` bytes of ``path`` (pass a cap + 1 to tell an over-long file); None when it does not
    exist. Any other ``OSError`` is the caller's to report."""
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except (FileNotFoundError, NotADirectoryError):
        return None


def write_ref(layout: RepoLayout, ref: str, commit: str) -> bool:
    """Point ``ref`` at ``commit`` (no trailing newline, as huggingface_hub writes it). True if it changed."""
    check_commit(commit)
    if layout.read_ref(ref) == commit:
        return False
    atomic_write_bytes(layout.ref(ref), commit.encode(), tmp_dir=layout.folder)
    return True


def tree_json(files: Mapping[str, TreeEntry]) -> bytes:
    """Bytes of a ``trees/<commit>.json`` listing, formatted as huggingface_hub's ``write_tree_cache``."""
    data = {"format_version": TREE_FORMAT_VERSION, "files": {p: files[p].to_json() for p in sorted(files)}}
    return json.dumps(data, indent=1).encode()


def parse_tree(raw: bytes) -> dict[str, TreeEntry] | None:
    """A ``trees/<commit>.json`` as huggingface_hub's ``read_tree_cache`` accepts it (format 1), with every entry
    checked (safe path, sizes, hashes); ``None`` if anything is off."""
    if len(raw) > MAX_TREE_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format_version") != TREE_FORMAT_VERSION:
        return None
    files = data.get("files")
    if not isinstance(files, dict):
        return None
    out: dict[str, TreeEntry] = {}
    for path, info in files.items():
        entry = _tree_entry(path, info)
        if entry is None:
            return None
        out[path] = entry
    return out


def _tree_entry(path: Any, info: Any) -> TreeEntry | None:
    try:
        check_relpath(path)
    except UnsafePathError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("size"), int) or isinstance(info.get("size"), bool):
        return None
    if info["size"] < 0 or not (isinstance(info.get("blob_id"), str) and is_sha1(info["blob_id"])):
        return None
    lfs = info.get("lfs_sha256")
    lfs_size = None
    if lfs is not None:
        if not (isinstance(lfs, str) and is_sha256(lfs)):
            return None
        lfs_size = info.get("lfs_size", info["size"])
    xet = info.get("xet_hash")
    if xet is not None and not (
        isinstance(xet, str) and len(xet) == 64 and all(ch in "0123456789abcdef" for ch in xet)
    ):
        return None
    return TreeEntry(info["size"], info["blob_id"], lfs, lfs_size, xet)


def ensure_cachedir_tag(cache_dir: Path) -> None:
    tag = cache_dir / "CACHEDIR.TAG"
    if not tag.exists():
        with contextlib.suppress(OSError):
            atomic_write_bytes(tag, CACHEDIR_TAG.encode(), tmp_dir=cache_dir / ".locks")


def relative_link_target(link: Path, target: Path) -> str:
    """Relative path from ``link``'s folder to ``target`` (``../../blobs/<etag>`` and deeper)."""
    return os.path.relpath(target, link.parent)


def place_symlink(link: Path, target: Path, *, suffix: str = ".tmp") -> None:
    """Create (or atomically replace) a relative symlink ``link`` → ``target``. ``suffix`` of its temp name:
    ``.shared`` for a repo blob's link into the shared Xet store (as huggingface_hub names those temps; an
    install's sweep of ``blobs/`` takes only ``.tmp``)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    rel = relative_link_target(link, target)
    if link.is_symlink() and os.readlink(link) == rel:
        return
    tmp = link.with_name(temp_name(link.name, suffix=suffix))
    os.symlink(rel, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def symlinks_supported(folder: Path) -> bool:
    """Whether relative symlinks can be created in ``folder`` (and ``HF_HUB_DISABLE_SYMLINKS`` is unset)."""
    if os.environ.get("HF_HUB_DISABLE_SYMLINKS", "").upper() in ("1", "ON", "YES", "TRUE"):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".symlink-test.") as tmp:
        src = Path(tmp) / "src"
        src.touch()
        try:
            os.symlink("src", Path(tmp) / "dst")
        except OSError:
            return False
        return True


def iter_repo_folders(cache_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """``(repo_type, repo_id, folder)`` for every repo folder of a cache, sorted."""
    if not cache_dir.is_dir():
        return
    for entry in sorted(cache_dir.iterdir()):
        parsed = parse_repo_folder_name(entry.name)
        if parsed is not None and entry.is_dir() and not entry.is_symlink():
            yield parsed[0], parsed[1], entry
