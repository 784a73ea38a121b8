"""What a name in a Hugging Face cache means, and the few reads every cache reader shares.

One place for the questions each reader of a cache (``scan`` for backup, ``verify``, ``doctor``, the installer's
planning and run, ``listings``, ``leftovers``) asks of a name or a link:

- is it a commit (``snapshots/<commit>``), a blob name (``blobs/<sha1 or sha256>``), a Xet hash?
- is it a temp file (:func:`is_temp`): ours, huggingface_hub's downloads in flight and atomic-write temps;
  and is it *ours* (:func:`is_ours`), which only an install may sweep; new temp names come from
  :func:`temp_name`, the one maker every writer uses;
- what does a ref hold (:func:`read_ref`, read as huggingface_hub reads it);
- which blob does a snapshot link name (:func:`linked_blob`), which shared Xet payload does a blob link to
  (:func:`shared_xet`)?

    >>> is_temp("0123abcd.1f2e3d4c.incomplete"), is_temp("model.safetensors")
    (True, False)
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..hashing import is_sha1, is_sha256

__all__ = [
    "MAX_REF_BYTES",
    "TEMP_PREFIX",
    "RefText",
    "blob_link_name",
    "guess_lfs",
    "inside",
    "is_blob_name",
    "is_commit",
    "is_lock_file",
    "is_our_temp_blob",
    "is_ours",
    "is_shared_payload",
    "is_shared_store_file",
    "is_temp",
    "is_xet_hash",
    "link_target",
    "linked_blob",
    "listdir",
    "read_ref",
    "shared_xet",
    "temp_name",
]

TEMP_PREFIX = ".hfbundle-"  # our temp files and folders (an install sweeps what a killed install left)
MAX_REF_BYTES = 4096  # a ref is 40 bytes; anything longer is not a commit, whatever follows

# The Hub's default .gitattributes for new repos: these go to LFS whatever their size.
_MODEL_LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gz", ".h5", ".joblib", ".mlmodel", ".model", ".msgpack",
    ".npy", ".npz", ".onnx", ".onnx_data", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt", ".pth", ".rar",
    ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst",
)  # fmt: skip
# ... and for datasets, media and a few more archive formats as well.
_DATASET_LFS_SUFFIXES = (
    ".lz4", ".mds", ".pcm", ".sam", ".raw", ".aac", ".flac", ".mp3", ".ogg", ".wav", ".bmp", ".gif", ".png",
    ".tiff", ".jpg", ".jpeg", ".webp", ".mp4", ".webm",
)  # fmt: skip
# The Hub refuses regular git files above 10 MiB: anything larger is LFS whatever its name.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
_SHARED_STORE_FILES = re.compile(r"[0-9a-f]{64}\.(refs|lock|lock\.soft)")  # beside a shared Xet payload

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_XET_RE = re.compile(r"[0-9a-f]{64}")
# Temp files, by whom:
# - ours: `.hfbundle-<name>.<8hex>.tmp` (blobs, staging folders, refs, records), `.hfbundle-<etag>.<8hex>.shared`;
# - huggingface_hub: downloads in flight `<etag>.<8hex>.incomplete`, atomic writes `main.<8hex>.tmp` and
#   `tmpXXXX.tmp`, temporary links into the shared Xet store `.<etag>.<8hex>.shared`;
# - hfbundle < 0.3: `.<name>.<8hex>.tmp` (place_symlink) and mkstemp's `.<name>.<random>.tmp`.
_TEMP_RE = re.compile(r"(\.incomplete|\.tmp|\.[0-9a-f]{8}\.shared)$")
_OUR_TEMP_BLOB_RE = re.compile(r"\.hfbundle-([0-9a-f]{40}|[0-9a-f]{64})\.[0-9a-f]{8}\.tmp")
# filelock's lock files (huggingface_hub's `.locks/<repo>/<etag>.lock`, `<xet>.lock` in the shared store) and
# the soft-lock markers it falls back to where flock is missing.
_LOCK_RE = re.compile(r"\.lock(\.soft)?$")


def is_commit(name: str) -> bool:
    """A 40-hex commit id (lower case, as the Hub writes it)."""
    return _COMMIT_RE.fullmatch(name) is not None


def is_xet_hash(name: str) -> bool:
    return _XET_RE.fullmatch(name) is not None


def is_blob_name(name: str) -> bool:
    """A name a repo's ``blobs/`` can hold: a git blob id (sha1) or an LFS sha256."""
    return is_sha1(name) or is_sha256(name)


def is_temp(name: str) -> bool:
    """A temp file or folder of any writer of the cache (see the comment above ``_TEMP_RE``): never content."""
    return name.startswith(TEMP_PREFIX) or _TEMP_RE.search(name) is not None


def is_ours(name: str) -> bool:
    """One of our temp files or folders (:func:`temp_name`); only these may an install sweep."""
    return name.startswith(TEMP_PREFIX) and _TEMP_RE.search(name) is not None


def is_our_temp_blob(name: str) -> bool:
    """Our temp blob while it streams: ``.hfbundle-<etag>.<8hex>.tmp`` (never mistaken for ``<etag>``)."""
    return _OUR_TEMP_BLOB_RE.fullmatch(name) is not None


def guess_lfs(path: str, size: int, repo_type: str = "model") -> bool:
    """Whether the Hub would store ``path`` in LFS under its default ``.gitattributes`` (or for its size).

    Used only for copy-layout files no ``trees/`` listing describes: it decides whether the file is named by
    its sha256 (LFS) or its git blob id (regular) when the backup is restored into the symlink layout.
    """
    name = path.rsplit("/", 1)[-1].lower()
    suffixes = _MODEL_LFS_SUFFIXES + (_DATASET_LFS_SUFFIXES if repo_type == "dataset" else ())
    return (
        size > LFS_SIZE_THRESHOLD
        or name.endswith(suffixes)
        or ".tar." in name
        or ".lfs." in name
        or "tfevents" in name
        or path.startswith("saved_model/")
    )


def is_shared_store_file(name: str) -> bool:
    """``<xet>.refs`` and the lock files huggingface_hub keeps beside a payload of the shared Xet store."""
    return _SHARED_STORE_FILES.fullmatch(name) is not None


def is_lock_file(name: str) -> bool:
    return _LOCK_RE.search(name) is not None


def temp_name(target: str, *, suffix: str = ".tmp") -> str:
    """A fresh temp name for writing ``target`` beside it: ``.hfbundle-<target>.<8hex><suffix>``. Every writer
    of the cache takes its temp names here, so :func:`is_temp` knows them and :func:`is_ours` can sweep them."""
    return f"{TEMP_PREFIX}{target}.{secrets.token_hex(4)}{suffix}"


def inside(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or below it (both already resolved)."""
    return path == root or root in path.parents


def listdir(folder: Path) -> list[str]:
    """The sorted names in ``folder``; none when it is missing or unreadable."""
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


@dataclass(frozen=True)
class RefText:
    """What a ``refs/<name>`` file holds. huggingface_hub reads a ref as text without stripping it, so only a
    ``clean`` ref (the bare commit) works offline; ``commit`` is the commit once stripped, if it is one."""

    text: str
    commit: str | None

    @property
    def clean(self) -> bool:
        return self.commit is not None and self.text == self.commit


def read_ref(path: Path) -> RefText | None:
    """Read a ref as huggingface_hub does (UTF-8 text, not stripped), at most :data:`MAX_REF_BYTES`. None when
    it does not exist; any other ``OSError`` is the caller's to report."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_REF_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return None
    text = raw.decode("utf-8", "replace")
    stripped = text.strip()
    return RefText(text, stripped if is_commit(stripped) else None)


def link_target(link: Path) -> Path | None:
    """Where the symlink ``link`` points, normalised as the kernel resolves it when ``link``'s folders are real
    ones; None when ``link`` is not a link."""
    try:
        return Path(os.path.normpath(link.parent / os.readlink(link)))
    except OSError:
        return None


def linked_blob(link: Path, blobs: Path) -> str | None:
    """``<etag>`` if ``link`` is a symlink to ``blobs/<etag>`` (a hash name), else None."""
    target = link_target(link)
    if target is None or target.parent != blobs or not is_blob_name(target.name):
        return None
    return target.name


def blob_link_name(link: str, blobs: str) -> str | None:
    """:func:`linked_blob` on plain strings (no ``Path`` per file, issue 18): ``<etag>`` if ``link`` is a symlink
    to ``blobs/<etag>``; ``blobs`` as ``os.path.normcase(os.path.normpath(...))`` gives it."""
    try:
        text = os.readlink(link)
    except (OSError, ValueError):
        return None
    folder, name = os.path.split(os.path.normpath(os.path.join(os.path.dirname(link), text)))
    return name if os.path.normcase(folder) == blobs and is_blob_name(name) else None


def is_shared_payload(path: Path, store: Path) -> bool:
    """``path`` is ``<cache>/blobs/<2hex>/<xet hash>``: huggingface_hub's cache-wide Xet store
    (``utils/_shared_blobs.py``); ``store`` is ``<cache>/blobs``."""
    return path.parent.parent == store and is_xet_hash(path.name) and path.parent.name == path.name[:2]


def shared_xet(blob: Path, store: Path) -> str | None:
    """The Xet hash when the repo blob ``blob`` is a link into the shared store ``store``."""
    target = link_target(blob)
    return target.name if target is not None and is_shared_payload(target, store) else None
