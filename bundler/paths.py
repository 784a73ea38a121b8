"""Validation of every name that comes from outside: repo ids, commits, refs, paths inside a repo.

Nothing from a bundle, a manifest or a lock is used as a path before it passes these checks. They are
deliberately stricter than the Hub (which never produces such names), so a crafted name is refused rather
than interpreted.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import UnsafePathError

REPO_TYPES = ("model", "dataset", "space")
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REF_PART = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255
# Bidirectional controls reorder how a name is *shown* ("\u202etxt.exe" prints as "exe.txt"): refused, like
# control characters (C0, DEL and C1, whose CSI starts terminal escapes) and lone surrogates (not encodable).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_repo_type(repo_type: str) -> str:
    if repo_type not in REPO_TYPES:
        raise UnsafePathError(f"unknown repo type {repo_type!r}; expected one of {', '.join(REPO_TYPES)}")
    return repo_type


def check_repo_id(repo_id: str) -> str:
    """``name`` or ``org/name`` with the Hub's characters; no ``..``, no leading dot or dash."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if not 1 <= len(parts) <= 2 or not all(_REPO_PART.fullmatch(p) for p in parts):
        raise UnsafePathError(
            f"invalid repo id {repo_id!r}",
            hint="a repo id is 'name' or 'org/name' made of letters, digits, '.', '_' and '-'",
        )
    if any(".." in p or p.endswith(".") for p in parts) or "--" in repo_id:
        raise UnsafePathError(f"invalid repo id {repo_id!r}: '..', a trailing '.' or '--' are not allowed")
    return repo_id


def check_commit(commit: str) -> str:
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        raise UnsafePathError(f"invalid commit {commit!r}: expected 40 lowercase hex digits")
    return commit


def check_ref(ref: str) -> str:
    """A ref name as stored under ``refs/``: ``main``, ``v1.0``, ``refs/pr/1``."""
    parts = ref.split("/") if isinstance(ref, str) else []
    if not parts or not all(_REF_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise UnsafePathError(f"invalid ref name {ref!r}")
    return ref


# Printable ASCII: no control or bidi characters, already NFC, nothing NFKC folds (issue 18: the per-character
# checks below cost ~0.1 ms a path, paid for every file of a 100,000-file repo several times).
_PLAIN_RE = re.compile(r"[\x20-\x7e]*")
_DRIVE_RE = re.compile(r"(?:^|/)[A-Za-z]:")


def check_relpath(path: str) -> str:
    """A file path inside a repo: relative, '/'-separated, no '.', '..', empty parts, backslashes, control,
    bidirectional-override or surrogate characters, look-alikes of '.', '/' and '\\', or non-NFC Unicode
    (which would create twins on some filesystems)."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"invalid path {path!r}: empty")
    plain = _PLAIN_RE.fullmatch(path) is not None  # printable ASCII: NFC, no look-alikes, 1 byte a char
    if len(path if plain else path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafePathError(f"invalid path {path[:80]!r}…: longer than {MAX_PATH_BYTES} bytes")
    # A drive letter in any component too: huggingface_hub reads each component under Windows rules (1.26+).
    if path.startswith("/") or "\\" in path or _DRIVE_RE.search(path):
        raise UnsafePathError(f"unsafe path {path!r}: absolute, with a drive letter or with backslashes")
    if not plain and any(unicodedata.category(c) in ("Cc", "Cs") or c in _BIDI_CONTROLS for c in path):
        raise UnsafePathError(f"unsafe path {path!r}: control, bidirectional-override or surrogate characters")
    if not plain and unicodedata.normalize("NFC", path) != path:
        raise UnsafePathError(f"unsafe path {path!r}: not in Unicode NFC form")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"unsafe path {path!r}: empty, '.' or '..' component")
        if plain:
            if len(part) > MAX_COMPONENT_BYTES:
                raise UnsafePathError(f"unsafe path {path[:80]!r}: a component is longer than 255 bytes")
            continue
        # Look-alikes that compatibility normalisation (NFKC, and "best fit" code page conversions on
        # Windows) turns into '.', '..', '/' or '\\': "\uff0e\uff0e" or "a\uff0fb" would escape there.
        folded = unicodedata.normalize("NFKC", part)
        if folded in (".", "..") or "/" in folded or "\\" in folded:
            raise UnsafePathError(f"unsafe path {path!r}: a look-alike of '.', '..', '/' or '\\'")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(f"unsafe path {path[:80]!r}: a component is longer than 255 bytes")
    return path
