"""A loopback Hugging Face Hub: the real ``huggingface_hub`` client downloads through it via ``HF_ENDPOINT``.

Repos live in a folder (the *store*), filled by :func:`publish`. :class:`HubServer` serves them on 127.0.0.1 with
the protocol huggingface_hub 2.4 speaks: repo info, paginated tree listings, ``paths-info``, refs, ``resolve``
with the Hub's headers, LFS files redirected to a second origin (the "CDN") that serves byte ranges, and the Hub's
``X-Error-Code`` errors. Every request is logged, so a test can tell which files a loader really fetched.

Example::

    commit = publish(tmp_path / "hub", "org/tiny", folder)
    with HubServer(tmp_path / "hub") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(cache)}
        subprocess.run([sys.executable, "-c", "import huggingface_hub as h; h.snapshot_download('org/tiny')"],
                       env=env, check=True)
        assert "model.safetensors" in hub.downloaded_files("org/tiny")

Store layout (under ``root``)::

    objects/<sha256[:2]>/<sha256>              file contents, stored once whatever the repo
    <type>s/<repo_id>/meta.json                {"gated": false | "auto", "private": false, "createdAt": ...}
    <type>s/<repo_id>/refs.json                {"refs/heads/main": <commit>, "refs/tags/v1": ..., "refs/pr/1": ...}
    <type>s/<repo_id>/commits/<commit>.json    one commit: parent, ref, date and the files with their hashes
    <type>s/<repo_id>/commits/<commit>/<path>  the files (hard links into objects/, copies where links fail)

Command line: ``python -m tests.testing.hub --root DIR [--port N] [--publish ORG/NAME=FOLDER ...]`` prints the
endpoint on stdout and serves until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import json
import mimetypes
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "LFS_EXTENSIONS",
    "LFS_SIZE_THRESHOLD",
    "Commit",
    "HubServer",
    "LoggedRequest",
    "StoredFile",
    "add_ref",
    "is_lfs_path",
    "main",
    "publish",
    "read_commit",
    "resolve_revision",
]

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"

# What the Hub's default .gitattributes sends to LFS (plus `.onnx_data`, ONNX external weights, which repos add).
LFS_EXTENSIONS = frozenset(
    {
        ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gz", ".h5", ".joblib", ".mlmodel", ".model",
        ".msgpack", ".npy", ".npz", ".onnx", ".onnx_data", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt",
        ".pth", ".rar", ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst",
    }
)  # fmt: skip
# The Hub refuses regular git files above 10 MiB: anything larger is LFS whatever its name.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

# The Hub pages tree listings by 1000 entries, by 50 with expand=true (see HfApi._iter_repo_tree_pages).
DEFAULT_PAGE_SIZE = 1000
EXPAND_PAGE_SIZE = 50

_CHUNK = 1024 * 1024
_MAX_BODY = 1024 * 1024
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_REPO_PART_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
_API_ACTIONS = frozenset({"revision", "tree", "paths-info", "refs"})


# --------------------------------------------------------------------------------------------------------------------
# Hashes. Computed here with hashlib on purpose: this module is the oracle that bundler's own hashing is tested
# against, so it must not share code with it.


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _git_blob_id(data: bytes) -> str:
    return _sha1(b"blob %d\0" % len(data) + data)


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return _LFS_POINTER.format(sha256=sha256, size=size).encode()


def is_lfs_path(path: str, size: int) -> bool:
    """Whether the Hub would store ``path`` (of ``size`` bytes) in LFS under its default ``.gitattributes``."""
    name = path.rsplit("/", 1)[-1].lower()
    return (
        size > LFS_SIZE_THRESHOLD
        or any(name.endswith(ext) for ext in LFS_EXTENSIONS)
        or ".tar." in name
        or "tfevents" in name
    )


# --------------------------------------------------------------------------------------------------------------------
# The store.


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit, with the hashes the Hub reports for it."""

    path: str
    size: int
    sha256: str
    blob_id: str
    """Git blob id: of the content for a regular file, of the LFS pointer for an LFS file (the tree ``oid``)."""
    lfs: bool

    @property
    def etag(self) -> str:
        """What the client names the cached blob: sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.blob_id

    @property
    def pointer_size(self) -> int:
        return len(_lfs_pointer(self.sha256, self.size))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "blob_id": self.blob_id, "lfs": self.lfs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredFile:
        return cls(
            path=str(data["path"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            blob_id=str(data["blob_id"]),
            lfs=bool(data["lfs"]),
        )


@dataclass(frozen=True)
class Commit:
    """A published commit. ``files`` maps each repo path to its :class:`StoredFile`, sorted by path."""

    sha: str
    parent: str | None
    ref: str
    title: str
    date: str
    files: Mapping[str, StoredFile]


def _check_repo(repo_id: str, repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")
    parts = repo_id.split("/")
    if (
        not 1 <= len(parts) <= 2
        or not all(_REPO_PART_RE.fullmatch(p) for p in parts)
        or ".." in repo_id
        or "--" in repo_id
    ):
        raise ValueError(f"invalid repo id {repo_id!r}: use 'name' or 'org/name' (letters, digits, '.', '_', '-')")


def _full_ref(name: str) -> str:
    """``main`` → ``refs/heads/main``; names starting with ``refs/`` (tags, ``refs/pr/1``) are kept."""
    if not name or name != name.strip("/") or ".." in name or "//" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid revision name {name!r}")
    if name.startswith("refs/"):
        if name.count("/") < 2:
            raise ValueError(f"invalid ref {name!r}: use refs/heads/<b>, refs/tags/<t> or refs/pr/<n>")
        return name
    if _COMMIT_RE.fullmatch(name):
        raise ValueError(f"a branch cannot be named like a commit: {name!r}")
    return f"refs/heads/{name}"


def _repo_dir(root: Path, repo_id: str, repo_type: str) -> Path:
    _check_repo(repo_id, repo_type)
    return Path(root) / f"{repo_type}s" / repo_id


def _object_path(root: Path, sha256: str) -> Path:
    return Path(root) / "objects" / sha256[:2] / sha256


def _now() -> str:
    # The Hub's timestamp format: ISO 8601, UTC, milliseconds.
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _write_json(path: Path, data: Any) -> None:
    """Write atomically: a server thread may read the file at any moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_refs(repo: Path) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in _read_json(repo / "refs.json").items()}
    except FileNotFoundError:
        return {}


def _walk(folder: Path) -> list[tuple[str, Path]]:
    """Files under ``folder`` as (posix repo path, path), skipping dot-directories (.git, .cache, ...)."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                found.append((path.relative_to(folder).as_posix(), path))
    return found


def _store_object(root: Path, rel: str, src: Path) -> StoredFile:
    """Copy ``src`` into the object store, hashing while copying; return its record."""
    size = src.stat().st_size
    objects = Path(root) / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    fd, tmp = tempfile.mkstemp(dir=objects, prefix=".incoming-")
    try:
        copied = 0
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            while chunk := f.read(_CHUNK):
                sha256.update(chunk)
                sha1.update(chunk)
                out.write(chunk)
                copied += len(chunk)
        if copied != size:
            raise RuntimeError(f"{src} changed size while it was published ({size} → {copied} bytes)")
        digest = sha256.hexdigest()
        dest = _object_path(root, digest)
        dest.parent.mkdir(exist_ok=True)
        if not dest.exists():
            os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    lfs = is_lfs_path(rel, size)
    blob_id = _git_blob_id(_lfs_pointer(digest, size)) if lfs else sha1.hexdigest()
    return StoredFile(path=rel, size=size, sha256=digest, blob_id=blob_id, lfs=lfs)


def _commit_sha(files: Iterable[StoredFile], parent: str | None, ref: str) -> str:
    payload = {"files": sorted([f.path, f.blob_id] for f in files), "parent": parent, "ref": ref}
    return _sha1(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:  # no hard links on this filesystem (or across devices)
        shutil.copyfile(src, dest)


def read_commit(root: Path, repo_id: str, commit: str, *, repo_type: str = "model") -> Commit:
    """Load a published commit; raises ``FileNotFoundError`` if the repo has no such commit."""
    if not _COMMIT_RE.fullmatch(commit):
        raise FileNotFoundError(f"not a commit id: {commit!r}")
    data = _read_json(_repo_dir(root, repo_id, repo_type) / "commits" / f"{commit}.json")
    files = [StoredFile.from_json(f) for f in data["files"]]
    return Commit(
        sha=str(data["sha"]),
        parent=data.get("parent"),
        ref=str(data["ref"]),
        title=str(data["title"]),
        date=str(data["date"]),
        files={f.path: f for f in sorted(files, key=lambda f: f.path)},
    )


def resolve_revision(root: Path, repo_id: str, revision: str, *, repo_type: str = "model") -> str | None:
    """The commit ``revision`` (branch, tag, ``refs/...`` or full commit id) points to, or ``None``."""
    repo = _repo_dir(root, repo_id, repo_type)
    refs = _read_refs(repo)
    for candidate in (revision, f"refs/heads/{revision}", f"refs/tags/{revision}"):
        if candidate in refs:
            return refs[candidate]
    if _COMMIT_RE.fullmatch(revision) and (repo / "commits" / f"{revision}.json").is_file():
        return revision
    return None


def publish(
    root: Path,
    repo_id: str,
    folder: Path,
    *,
    repo_type: str = "model",
    revision: str = DEFAULT_BRANCH,
    gated: bool = False,
) -> str:
    """Publish the files of ``folder`` as a new commit of ``repo_id`` and point ``revision`` at it.

    ``revision`` is a branch name (``main``) or a full ref (``refs/tags/v1``, ``refs/pr/1``). The commit's parent
    is what ``revision`` pointed to, else the head of ``main``. Its id is the sha1 of the sorted (path, git blob
    id) list, the parent and the ref, so publishing the same folders in the same order gives the same ids; a
    folder identical to the parent commit makes no new commit (like ``git commit`` with nothing to commit).
    Dot-directories (``.git``, ``.cache``) are skipped. ``gated`` sets the repo's gate (it applies to the repo,
    so the last publish wins). Returns the 40-hex commit id.

    >>> publish(tmp_path / "hub", "org/tiny", model_folder, revision="refs/pr/1")  # doctest: +SKIP
    '3f0c...'
    """
    root = Path(root)
    folder = Path(folder)
    repo = _repo_dir(root, repo_id, repo_type)
    ref = _full_ref(revision)
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot publish {folder}: not a directory")
    files = [_store_object(root, rel, path) for rel, path in _walk(folder)]
    refs = _read_refs(repo)
    parent = refs.get(ref, refs.get(_full_ref(DEFAULT_BRANCH)))
    ids = sorted((f.path, f.blob_id) for f in files)
    if parent is not None and ids == sorted(
        (f.path, f.blob_id) for f in read_commit(root, repo_id, parent, repo_type=repo_type).files.values()
    ):
        sha = parent
    else:
        sha = _commit_sha(files, parent, ref)
        manifest = repo / "commits" / f"{sha}.json"
        if not manifest.is_file():
            for f in files:
                _link_or_copy(_object_path(root, f.sha256), repo / "commits" / sha / f.path)
            record = {
                "format_version": 1,
                "sha": sha,
                "parent": parent,
                "ref": ref,
                "title": f"Publish {folder.name} to {ref}",
                "date": _now(),
                "files": [f.to_json() for f in sorted(files, key=lambda f: f.path)],
            }
            _write_json(manifest, record)  # last: a commit exists once its manifest does
    refs[ref] = sha
    _write_json(repo / "refs.json", refs)
    try:
        meta = dict(_read_json(repo / "meta.json"))
    except FileNotFoundError:
        meta = {"private": False, "createdAt": _now()}
    meta["gated"] = "auto" if gated else False
    _write_json(repo / "meta.json", meta)
    return sha


def add_ref(root: Path, repo_id: str, ref: str, commit: str, *, repo_type: str = "model") -> None:
    """Point ``ref`` (branch name, or full ``refs/tags/<t>`` / ``refs/pr/<n>``) at an existing ``commit``."""
    read_commit(root, repo_id, commit, repo_type=repo_type)  # must exist
    repo = _repo_dir(root, repo_id, repo_type)
    refs = _read_refs(repo)
    refs[_full_ref(ref)] = commit
    _write_json(repo / "refs.json", refs)


# --------------------------------------------------------------------------------------------------------------------
# What the server derives from a commit (immutable, so cached).


@dataclass(frozen=True)
class _Snapshot:
    commit: Commit
    trees: Mapping[str, str]  # directory ("" for the root) → git tree id
    library: str | None


def _tree_ids(files: Iterable[StoredFile]) -> dict[str, str]:
    """Git tree ids of every directory, computed like ``git write-tree`` (LFS files count as their pointer)."""
    children: dict[str, dict[str, tuple[bool, str]]] = {"": {}}
    blob_ids: dict[str, str] = {}
    for f in files:
        blob_ids[f.path] = f.blob_id
        parts = f.path.split("/")
        for i, name in enumerate(parts):
            is_dir = i < len(parts) - 1
            full = "/".join(parts[: i + 1])
            children.setdefault("/".join(parts[:i]), {})[name] = (is_dir, full)
            if is_dir:
                children.setdefault(full, {})
    ids: dict[str, str] = {}

    def tree_id(directory: str) -> str:
        entries: list[tuple[bytes, bytes]] = []
        for name, (is_dir, full) in children[directory].items():
            oid = tree_id(full) if is_dir else blob_ids[full]
            mode = b"40000" if is_dir else b"100644"
            # git sorts a tree's entries by name, a sub-tree's name compared as if it ended with "/".
            key = (name + "/" if is_dir else name).encode()
            entries.append((key, mode + b" " + name.encode() + b"\0" + bytes.fromhex(oid)))
        data = b"".join(entry for _, entry in sorted(entries))
        ids[directory] = _sha1(b"tree %d\0" % len(data) + data)
        return ids[directory]

    tree_id("")
    return ids


def _library(root: Path, commit: Commit) -> str | None:
    if "model_index.json" in commit.files:
        return "diffusers"
    config = commit.files.get("config.json")
    if config is None or config.size > _MAX_BODY:
        return None
    try:
        data = _read_json(_object_path(root, config.sha256))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict):
        if "_diffusers_version" in data:
            return "diffusers"
        if "transformers_version" in data:
            return "transformers"
    return None


# --------------------------------------------------------------------------------------------------------------------
# HTTP.


class LoggedRequest(NamedTuple):
    """One request the hub (or its CDN) answered."""

    method: str
    path: str
    """The request target as sent: path and query string."""
    status: int


class _HttpError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = list(headers)


def _not_found() -> _HttpError:
    return _HttpError(404, "Not Found")


def _latin1(value: str) -> str:
    # http.server encodes header values as latin-1 and raises on anything else.
    return value.encode("latin-1", "replace").decode("latin-1")


def _truthy(values: Sequence[str] | None) -> bool:
    if not values:
        return False
    return values[-1].lower() in {"1", "true", "yes"}


def _disposition(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return f"inline; filename*=UTF-8''{quote(name)}; filename=\"{_latin1(name)}\";"


def _content_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def _take_revision(tail: list[str]) -> tuple[str, list[str]]:
    """Split ``{rev}/{rest...}`` off a raw path; the client sends ``refs%2Fpr%2F1``, but accept it unencoded."""
    if not tail or not tail[0]:
        raise _not_found()
    first = unquote(tail[0])
    if first == "refs" and len(tail) >= 3:
        return "/".join(unquote(s) for s in tail[:3]), tail[3:]
    return first, tail[1:]


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte range asked for, ``None`` to send everything; 416 if unsatisfiable."""
    if header is None:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None or not any(match.groups()):
        return None  # several ranges or another unit: serving the whole file is allowed (RFC 9110 §14.2)
    first, last = match.groups()
    unsatisfiable = _HttpError(416, "Range Not Satisfiable", headers=[("Content-Range", f"bytes */{size}")])
    if not first:  # suffix range: the last N bytes
        if int(last) == 0 or size == 0:
            raise unsatisfiable
        return max(size - int(last), 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid range: ignored
    if start >= size:
        raise unsatisfiable
    return start, (min(int(last), size - 1) if last else size - 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # snapshot_download opens 8 connections at once; a full backlog costs 1 s SYN retries

    def __init__(
        self, port: int, handler: type[BaseHTTPRequestHandler], hub: HubServer, host: str = "127.0.0.1"
    ) -> None:
        self.hub = hub
        self.host = host
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, port), handler)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Unblock handler threads idling on keep-alive connections: they then close their sockets."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Common plumbing: dispatch, error pages, byte ranges, logging."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub; every response carries Content-Length
    server_version = "hfbundle-loopback-hub"
    timeout = 30  # an idle keep-alive connection ends instead of holding its thread
    origin = "hub"

    @property
    def hub(self) -> HubServer:
        return cast(_Server, self.server).hub

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the hub keeps its own log (:attr:`HubServer.requests`)."""

    def route(self, method: str, body: bytes) -> None:
        raise NotImplementedError

    def _handle(self, method: str) -> None:
        self._method = method
        self._status = 0
        self._started = False
        self._logged = False
        try:
            try:
                body = self._read_body()
                self.route(method, body)
            except _HttpError as error:
                if self._started:
                    raise
                self._send_error(error, method)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client went away (an aborted download): nothing to answer
        except Exception:
            self.close_connection = True
            self.hub._log_error(f"{self.command} {self.path}\n{traceback.format_exc()}")
            if not self._started:
                self._send_bytes(500, b'{"error": "Internal Error"}', [("Content-Type", "application/json")], method)
        finally:
            self._log_once()  # status 0 if nothing could be answered

    def _log_once(self) -> None:
        if not self._logged:
            self._logged = True
            self.hub._log(self.origin, LoggedRequest(self._method, self.path, self._status))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # chunked bodies are not parsed: do not reuse the connection
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            raise _HttpError(413, "Payload Too Large")
        return self.rfile.read(length) if length > 0 else b""

    def _start(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, _latin1(value))
        self._status = status
        self._started = True
        # Log before the headers leave (end_headers flushes them): once a client has its answer, the entry
        # is already in the log a test reads.
        self._log_once()
        self.end_headers()

    def _send_bytes(self, status: int, body: bytes, headers: Sequence[tuple[str, str]], method: str) -> None:
        self._start(status, [*headers, ("Content-Length", str(len(body)))])
        if method != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, method: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        body = json.dumps(payload).encode()
        self._send_bytes(status, body, [("Content-Type", "application/json; charset=utf-8"), *headers], method)

    def _send_error(self, error: _HttpError, method: str) -> None:
        # The Hub's error shape: X-Error-Code picks the client's exception class, X-Error-Message carries the
        # message for HEAD requests (no body), and GET bodies repeat it as {"error": ...} (utils/_http.py _format).
        headers = [*error.headers, ("X-Error-Message", error.message)]
        if error.code is not None:
            headers.append(("X-Error-Code", error.code))
        self._send_json(error.status, {"error": error.message}, method, headers)

    def _send_object(
        self, method: str, repo: tuple[str, str], f: StoredFile, headers: Sequence[tuple[str, str]]
    ) -> None:
        """Send a stored file of ``repo`` (type, id), honouring ``Range`` (the client resumes downloads with it)."""
        size, sha256 = f.size, f.sha256
        span = _byte_range(self.headers.get("Range"), size)
        first, last = span if span is not None else (0, size - 1)
        length = last - first + 1
        status = 206 if span is not None else 200
        extra = [("Content-Range", f"bytes {first}-{last}/{size}")] if span is not None else []
        if method == "GET":
            self.hub._log_download(repo[0], repo[1], f.path)
        self._start(status, [*headers, *extra, ("Content-Length", str(length))])
        if method == "GET" and length > 0:
            with open(_object_path(self.hub.root, sha256), "rb") as stream:
                stream.seek(first)
                remaining = length
                while remaining > 0:
                    chunk = stream.read(min(_CHUNK, remaining))
                    if not chunk:  # the store lost bytes: end the connection rather than lie about the length
                        self.close_connection = True
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)


class _HubHandler(_Handler):
    """The Hub origin (``HF_ENDPOINT``): ``/api/...`` and ``/{repo}/resolve/...``."""

    origin = "hub"

    def route(self, method: str, body: bytes) -> None:
        split = urlsplit(self.path)
        segments = split.path.split("/")[1:]
        query = parse_qs(split.query, keep_blank_values=True)
        if segments and segments[0] == "api":
            self._api(method, segments[1:], query, body, split.path)
        else:
            self._resolve(method, segments)

    # -- helpers -----------------------------------------------------------------------------------------------------

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, credentials = auth.partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None

    def _check_credentials(self) -> None:
        # The Hub rejects a wrong token outright; huggingface_hub keys on this exact message to *not* turn the 401
        # into RepositoryNotFoundError (utils/_http.py hf_raise_for_status).
        bearer = self._bearer()
        if bearer is not None and self.hub.token is not None and bearer != self.hub.token:
            raise _HttpError(401, "Invalid credentials in Authorization header")

    def _split_repo(
        self, repo_type: str, rest: list[str], actions: frozenset[str], *, bare: bool
    ) -> tuple[str, str | None, list[str]]:
        """Split ``{repo_id}[/{action}/...]``; repo ids have one or two segments, an existing repo wins."""
        options: list[tuple[str, str | None, list[str]]] = []
        for n in (2, 1):
            if len(rest) < n or not all(rest[:n]):
                continue
            repo_id = "/".join(unquote(s) for s in rest[:n])
            tail = rest[n:]
            if not tail or tail == [""]:
                if bare:
                    options.append((repo_id, None, []))
            elif unquote(tail[0]) in actions:
                options.append((repo_id, unquote(tail[0]), tail[1:]))
        if not options:
            raise _not_found()
        for option in options:
            if self.hub._repo_exists(repo_type, option[0]):
                return option
        return options[0]

    def _open_repo(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        """The repo's meta.json, or RepoNotFound."""
        self._check_credentials()
        if not self.hub._repo_exists(repo_type, repo_id):
            # The Hub answers 401 to anonymous requests for a missing repo (it will not tell missing from private)
            # and 404 to authenticated ones; both carry RepoNotFound.
            status = 404 if self._bearer() is not None else 401
            raise _HttpError(status, "Repository not found", code="RepoNotFound")
        try:
            return dict(_read_json(_repo_dir(self.hub.root, repo_id, repo_type) / "meta.json"))
        except FileNotFoundError:
            return {}

    def _check_gate(self, repo_type: str, repo_id: str, meta: Mapping[str, Any]) -> None:
        # Gated repos show their info and file list to everyone; only file contents need a granted token. With no
        # token configured on the server, any token counts as granted.
        if not meta.get("gated"):
            return
        bearer = self._bearer()
        if bearer is not None and (self.hub.token is None or bearer == self.hub.token):
            return
        raise _HttpError(
            401,
            f"Access to {repo_type} {repo_id} is restricted. You must have access to it and be authenticated to "
            "access it. Please log in.",
            code="GatedRepo",
        )

    def _at_revision(self, repo_type: str, repo_id: str, revision: str) -> _Snapshot:
        commit = resolve_revision(self.hub.root, repo_id, revision, repo_type=repo_type)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return self.hub._snapshot(repo_type, repo_id, commit)

    # -- /api --------------------------------------------------------------------------------------------------------

    def _api(self, method: str, segments: list[str], query: dict[str, list[str]], body: bytes, raw_path: str) -> None:
        if segments and segments[0] == "resolve-cache":
            self._resolve_cache(method, segments[1:])
            return
        if len(segments) < 2 or segments[0] not in {"models", "datasets", "spaces"}:
            raise _not_found()  # /api/whoami-v2, /api/agent-harnesses, telemetry...: not a repo route
        repo_type = segments[0][:-1]
        repo_id, action, tail = self._split_repo(repo_type, segments[1:], _API_ACTIONS, bare=True)
        read = method in {"GET", "HEAD"}
        if action is None and read:
            self._info(method, repo_type, repo_id, DEFAULT_BRANCH, query)
        elif action == "revision" and read:
            revision, rest = _take_revision(tail)
            if rest and rest != [""]:
                raise _not_found()
            self._info(method, repo_type, repo_id, revision, query)
        elif action == "tree" and read:
            revision, rest = _take_revision(tail)
            self._tree(method, repo_type, repo_id, revision, unquote("/".join(rest)).strip("/"), query, raw_path)
        elif action == "paths-info" and method == "POST":
            revision, _ = _take_revision(tail)
            self._paths_info(repo_type, repo_id, revision, body)
        elif action == "refs" and read:
            self._refs(method, repo_type, repo_id, query)
        else:
            raise _not_found()

    def _info(self, method: str, repo_type: str, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        meta = self._open_repo(repo_type, repo_id)
        snap = self._at_revision(repo_type, repo_id, revision)
        commit = snap.commit
        blobs = _truthy(query.get("blobs"))
        siblings: list[dict[str, Any]] = []
        for f in commit.files.values():
            sibling: dict[str, Any] = {"rfilename": f.path}
            if blobs:  # files_metadata=True
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.lfs:  # note: "sha256" here, "oid" in tree entries
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(sibling)
        tags = [t for t in (snap.library,) if t]
        if any(p.endswith(".safetensors") for p in commit.files):
            tags.append("safetensors")
        full: dict[str, Any] = {
            "_id": _sha1(f"{repo_type}s/{repo_id}".encode())[:24],
            "id": repo_id,
            "private": bool(meta.get("private", False)),
            "gated": meta.get("gated", False),
            "disabled": False,
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": meta.get("createdAt", commit.date),
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "siblings": siblings,
            "usedStorage": sum(f.size for f in commit.files.values()),
        }
        if "/" in repo_id:
            full["author"] = repo_id.split("/", 1)[0]
        if repo_type == "model":
            full["modelId"] = repo_id
            full["spaces"] = []
            if snap.library is not None:
                full["library_name"] = snap.library
        if _truthy(query.get("securityStatus")):
            full["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        expand = [*query.get("expand", []), *query.get("expand[]", [])]
        if expand:  # only the asked properties (the Hub always adds the ids)
            full = {k: v for k, v in full.items() if k in {"_id", "id", *expand}}
        self._send_json(200, full, method)

    def _tree(
        self,
        method: str,
        repo_type: str,
        repo_id: str,
        revision: str,
        path: str,
        query: dict[str, list[str]],
        raw_path: str,
    ) -> None:
        self._open_repo(repo_type, repo_id)
        snap = self._at_revision(repo_type, repo_id, revision)
        if path and path not in snap.trees:
            raise _HttpError(
                404,
                f'{path} does not exist on "{revision}"',
                code="EntryNotFound",
                headers=[("X-Repo-Commit", snap.commit.sha)],
            )
        recursive = _truthy(query.get("recursive"))
        expand = _truthy(query.get("expand"))
        prefix = f"{path}/" if path else ""
        paths = [p for p in (*snap.trees, *snap.commit.files) if p and p.startswith(prefix)]
        if recursive:
            # git ls-tree -r -t order: each directory just before its contents.
            paths.sort(key=lambda p: p.split("/"))
        else:
            # One level, directories first (what the Hub returns).
            paths = [p for p in paths if "/" not in p[len(prefix) :]]
            paths.sort(key=lambda p: (p not in snap.trees, p))
        page_size = max(1, min(self.hub.page_size, EXPAND_PAGE_SIZE) if expand else self.hub.page_size)
        offset = _decode_cursor(query.get("cursor"))
        page = [self.hub._entry(repo_type, repo_id, snap, p, expand=expand) for p in paths[offset : offset + page_size]]
        headers: list[tuple[str, str]] = []
        if offset + page_size < len(paths):
            # Cursor pagination with a GitHub-style Link header; the next URL carries every query parameter.
            params = {k: v for k, v in query.items() if k != "cursor"}
            params["cursor"] = [_encode_cursor(offset + page_size)]
            headers.append(("Link", f'<{self.hub.endpoint}{raw_path}?{urlencode(params, doseq=True)}>; rel="next"'))
        self._send_json(200, page, method, headers)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str, body: bytes) -> None:
        self._open_repo(repo_type, repo_id)
        snap = self._at_revision(repo_type, repo_id, revision)
        # HfApi.get_paths_info posts a form (paths=a&paths=b&expand=false); accept JSON too.
        if "json" in (self.headers.get("Content-Type") or ""):
            data = json.loads(body or b"{}")
            paths = [str(p) for p in data.get("paths", [])]
            expand = bool(data.get("expand"))
        else:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = _truthy(form.get("expand"))
        seen: set[str] = set()
        entries: list[dict[str, Any]] = []
        for raw in paths:
            p = raw.strip("/")
            if p and p not in seen and (p in snap.commit.files or p in snap.trees):  # missing paths: left out
                seen.add(p)
                entries.append(self.hub._entry(repo_type, repo_id, snap, p, expand=expand))
        self._send_json(200, entries, "POST")

    def _refs(self, method: str, repo_type: str, repo_id: str, query: dict[str, list[str]]) -> None:
        self._open_repo(repo_type, repo_id)
        refs = _read_refs(_repo_dir(self.hub.root, repo_id, repo_type))
        listing: dict[str, list[dict[str, str]]] = {"branches": [], "converts": [], "tags": []}
        if _truthy(query.get("include_prs")):
            listing["pullRequests"] = []
        kinds = {"heads": "branches", "tags": "tags", "convert": "converts", "pr": "pullRequests"}
        for ref, commit in sorted(refs.items()):
            kind, _, name = ref.removeprefix("refs/").partition("/")
            key = kinds.get(kind)
            if key in listing:
                listing[key].append({"name": ref if kind == "pr" else name, "ref": ref, "targetCommit": commit})
        self._send_json(200, listing, method)

    # -- /{repo}/resolve ---------------------------------------------------------------------------------------------

    def _resolve(self, method: str, segments: list[str]) -> None:
        if method not in {"GET", "HEAD"}:
            raise _not_found()
        repo_type, rest = "model", segments
        if segments and segments[0] in {"datasets", "spaces"}:
            repo_type, rest = segments[0][:-1], segments[1:]
        repo_id, _, tail = self._split_repo(repo_type, rest, frozenset({"resolve"}), bare=False)
        revision, rest = _take_revision(tail)
        self._serve_file(method, repo_type, repo_id, revision, unquote("/".join(rest)), cached=False)

    def _resolve_cache(self, method: str, segments: list[str]) -> None:
        """``/api/resolve-cache/{type}s/{repo_id}/{commit}/{path}``: where ``resolve_cache=True`` sends git files."""
        if method not in {"GET", "HEAD"} or len(segments) < 4 or segments[0] not in {"models", "datasets", "spaces"}:
            raise _not_found()
        repo_type, rest = segments[0][:-1], segments[1:]
        options = [
            ("/".join(unquote(s) for s in rest[:n]), rest[n], rest[n + 1 :])
            for n in (2, 1)
            if len(rest) > n + 1 and _COMMIT_RE.fullmatch(rest[n])
        ]
        if not options:
            raise _not_found()
        repo_id, commit, path = next((o for o in options if self.hub._repo_exists(repo_type, o[0])), options[0])
        self._serve_file(method, repo_type, repo_id, commit, unquote("/".join(path)), cached=True)

    def _serve_file(self, method: str, repo_type: str, repo_id: str, revision: str, path: str, *, cached: bool) -> None:
        meta = self._open_repo(repo_type, repo_id)
        self._check_gate(repo_type, repo_id, meta)
        snap = self._at_revision(repo_type, repo_id, revision)
        commit = snap.commit
        f = commit.files.get(path)
        if f is None:
            # X-Repo-Commit on the 404 is what lets the client write .no_exist/<commit>/<path> markers.
            raise _HttpError(404, "Entry not found", code="EntryNotFound", headers=[("X-Repo-Commit", commit.sha)])
        if f.lfs:
            # LFS: 302 to a signed URL on another origin. The client reads the file's identity from this response
            # (X-Linked-Etag = sha256, X-Linked-Size) and drops Authorization before following it. The Hub sends no
            # plain ETag alongside X-Linked-Etag (huggingface_hub#1406).
            location = self.hub._cdn_url(repo_type, repo_id, commit.sha, path)
            self._send_bytes(
                302,
                f"Found. Redirecting to {location}".encode(),
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Location", location),
                    ("X-Repo-Commit", commit.sha),
                    ("X-Linked-Etag", f'"{f.sha256}"'),
                    ("X-Linked-Size", str(f.size)),
                ],
                method,
            )
            return
        # A regular file comes from git: ETag = git blob id, which names the blob in the client's cache.
        etag = f'"{f.blob_id}"'
        if self.hub.resolve_cache and not cached:
            # Since mid-2025 the Hub answers git files with a *relative* redirect to a cacheable, commit-pinned URL
            # (huggingface/swift-transformers#209); huggingface_hub follows same-origin redirects, keeping auth.
            location = f"/api/resolve-cache/{repo_type}s/{repo_id}/{commit.sha}/{quote(path)}?etag={quote(etag)}"
            self._send_bytes(
                307,
                f"Temporary Redirect. Redirecting to {location}".encode(),
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Location", location),
                    ("X-Repo-Commit", commit.sha),
                    ("ETag", etag),
                ],
                method,
            )
            return
        self._send_object(
            method,
            (repo_type, repo_id),
            f,
            [
                ("Content-Type", _content_type(path)),
                ("Content-Disposition", _disposition(path)),
                ("ETag", etag),
                ("X-Repo-Commit", commit.sha),
                ("Accept-Ranges", "bytes"),
            ],
        )


class _CdnHandler(_Handler):
    """The second origin LFS downloads are redirected to, like the Hub's S3/CloudFront buckets."""

    origin = "cdn"

    def route(self, method: str, body: bytes) -> None:
        if method not in {"GET", "HEAD"}:
            raise _HttpError(405, "MethodNotAllowed", headers=[("Allow", "GET, HEAD")])
        if self.headers.get("Authorization"):
            # S3 refuses a presigned URL that also carries an Authorization header; huggingface_hub strips it when
            # the redirect leaves the Hub's origin. Refusing it here proves the client did.
            raise _HttpError(400, "InvalidArgument: Only one auth mechanism allowed")
        segments = urlsplit(self.path).path.split("/")[1:]
        # /lfs/<type>s/<quoted repo id>/<commit>/<path...>
        if len(segments) < 5 or segments[0] != "lfs" or segments[1] not in {"models", "datasets", "spaces"}:
            raise _HttpError(404, "NoSuchKey")
        repo_type, repo_id, commit = segments[1][:-1], unquote(segments[2]), segments[3]
        path = unquote("/".join(segments[4:]))
        try:
            snap = self.hub._snapshot(repo_type, repo_id, commit)
        except (OSError, ValueError, KeyError) as error:
            raise _HttpError(404, "NoSuchKey") from error
        f = snap.commit.files.get(path)
        if f is None or not f.lfs:
            raise _HttpError(404, "NoSuchKey")
        self._send_object(
            method,
            (repo_type, repo_id),
            f,
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", _disposition(path)),
                ("ETag", f'"{f.sha256}"'),
                ("Accept-Ranges", "bytes"),
            ],
        )

    def _send_error(self, error: _HttpError, method: str) -> None:
        code, _, message = error.message.partition(": ")
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message or code}</Message>"
        body += "</Error>"
        self._send_bytes(error.status, body.encode(), [*error.headers, ("Content-Type", "application/xml")], method)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(values: Sequence[str] | None) -> int:
    if not values:
        return 0
    raw = values[-1]
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return max(0, int(data["offset"]))
    except (ValueError, KeyError, TypeError) as error:
        raise _HttpError(400, f"Invalid cursor: {raw}") from error


_CDN_HOST = "127.0.0.2"


class HubServer:
    """A Hub-compatible HTTP server on 127.0.0.1 serving the repos published under ``root``.

    Two origins on free ports (or ``port``/``cdn_port``): :attr:`endpoint` (set ``HF_ENDPOINT`` to it) and
    :attr:`cdn_endpoint`, where LFS files are redirected. Gated repos need ``Authorization: Bearer <token>``
    (any token when ``token`` is ``None``); with a ``token`` set, a different one is refused like the Hub does.
    ``page_size`` bounds tree listing pages (lower it to force pagination); it can be changed while serving.
    ``resolve_cache=True`` answers git (non-LFS) files with the relative 307 to ``/api/resolve-cache/...`` that
    the real Hub sends nowadays, instead of a direct 200. The logs (:attr:`requests`, :attr:`cdn_requests`,
    :meth:`downloaded_files`, :attr:`errors`) are written before each response leaves, so they are complete as
    soon as the client has its answer. Serving threads are daemons; :meth:`close` (or leaving the ``with``
    block) stops both servers.

    >>> with HubServer(tmp_path / "hub") as hub:  # doctest: +SKIP
    ...     run_client(env={"HF_ENDPOINT": hub.endpoint})
    ...     assert hub.downloaded_files("org/tiny") == ["config.json", "model.safetensors"]
    """

    def __init__(
        self,
        root: Path,
        *,
        token: str | None = None,
        port: int = 0,
        cdn_port: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
        resolve_cache: bool = False,
    ) -> None:
        self.root = Path(root)
        self.token = token
        self.page_size = page_size
        self.resolve_cache = resolve_cache
        self._lock = threading.Lock()
        self._requests: list[LoggedRequest] = []
        self._cdn_requests: list[LoggedRequest] = []
        self._downloads: list[tuple[str, str, str]] = []
        self._errors: list[str] = []
        self._snapshots: dict[tuple[str, str, str], _Snapshot] = {}
        self._hub = _Server(port, _HubHandler, self)
        try:
            # The CDN is another *host*, as on the real Hub (cas-bridge.xethub.hf.co): huggingface_hub 1.x follows a
            # HEAD redirect to the same host name (whatever the port) and stops at one to another host, reading the
            # file's identity from the 302 itself. Linux routes all of 127.0.0.0/8 to the loopback device.
            try:
                self._cdn = _Server(cdn_port, _CdnHandler, self, host=_CDN_HOST)
            except OSError:  # a system without 127.0.0.2 (macOS): the same host, as before
                self._cdn = _Server(cdn_port, _CdnHandler, self)
        except BaseException:
            self._hub.server_close()
            raise
        self._threads = [
            threading.Thread(target=server.serve_forever, args=(0.05,), name=f"loopback-hub-{name}", daemon=True)
            for name, server in (("hub", self._hub), ("cdn", self._cdn))
        ]
        for thread in self._threads:
            thread.start()
        self._closed = False

    @property
    def endpoint(self) -> str:
        """The Hub URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash): the value for ``HF_ENDPOINT``."""
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn_endpoint(self) -> str:
        """The origin LFS downloads are redirected to."""
        return f"http://{self._cdn.host}:{self._cdn.server_address[1]}"

    @property
    def requests(self) -> list[LoggedRequest]:
        """A copy of the Hub origin's log, oldest first: (method, path with query, status)."""
        with self._lock:
            return list(self._requests)

    @property
    def cdn_requests(self) -> list[LoggedRequest]:
        """A copy of the CDN origin's log (LFS contents), oldest first."""
        with self._lock:
            return list(self._cdn_requests)

    def downloaded_files(self, repo_id: str, *, repo_type: str = "model") -> list[str]:
        """Repo paths whose contents a GET was answered with (200/206, on either origin), in order, repeats kept.

        The Hub origin sends regular files, the CDN origin LFS files; a HEAD or a 302 is not a download.
        """
        with self._lock:
            return [p for t, r, p in self._downloads if (t, r) == (repo_type, repo_id)]

    @property
    def errors(self) -> list[str]:
        """Tracebacks of requests the server failed on (answered 500): a test may assert there are none."""
        with self._lock:
            return list(self._errors)

    def clear_log(self) -> None:
        """Forget every logged request, download and error."""
        with self._lock:
            self._requests.clear()
            self._cdn_requests.clear()
            self._downloads.clear()
            self._errors.clear()

    def publish(
        self,
        repo_id: str,
        folder: Path,
        *,
        repo_type: str = "model",
        revision: str = DEFAULT_BRANCH,
        gated: bool = False,
    ) -> str:
        """:func:`publish` into this server's store; it is served at once."""
        return publish(self.root, repo_id, folder, repo_type=repo_type, revision=revision, gated=gated)

    def close(self) -> None:
        """Stop both servers and close their sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        # shutdown() waits for the serving loop to notice; stop both loops at once.
        stopper = threading.Thread(target=self._cdn.shutdown, daemon=True)
        stopper.start()
        self._hub.shutdown()
        stopper.join(timeout=5)
        for server in (self._hub, self._cdn):
            server.server_close()
            server.drop_connections()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- used by the handlers ----------------------------------------------------------------------------------------

    def _log(self, origin: str, entry: LoggedRequest) -> None:
        with self._lock:
            (self._cdn_requests if origin == "cdn" else self._requests).append(entry)

    def _log_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def _log_download(self, repo_type: str, repo_id: str, path: str) -> None:
        with self._lock:
            self._downloads.append((repo_type, repo_id, path))

    def _repo_exists(self, repo_type: str, repo_id: str) -> bool:
        try:
            return (_repo_dir(self.root, repo_id, repo_type) / "refs.json").is_file()
        except ValueError:
            return False

    def _snapshot(self, repo_type: str, repo_id: str, commit: str) -> _Snapshot:
        key = (repo_type, repo_id, commit)
        with self._lock:
            cached = self._snapshots.get(key)
        if cached is not None:
            return cached
        loaded = read_commit(self.root, repo_id, commit, repo_type=repo_type)
        snap = _Snapshot(commit=loaded, trees=_tree_ids(loaded.files.values()), library=_library(self.root, loaded))
        with self._lock:
            self._snapshots[key] = snap
        return snap

    def _cdn_url(self, repo_type: str, repo_id: str, commit: str, path: str) -> str:
        return f"{self.cdn_endpoint}/lfs/{repo_type}s/{quote(repo_id, safe='')}/{commit}/{quote(path)}"

    def _oid(self, snap: _Snapshot, path: str) -> str | None:
        f = snap.commit.files.get(path)
        return f.blob_id if f is not None else snap.trees.get(path)

    def _last_commit(self, repo_type: str, repo_id: str, snap: _Snapshot, path: str) -> dict[str, str]:
        """The oldest commit in the first-parent chain since which ``path`` is unchanged."""
        oid = self._oid(snap, path)
        current = snap
        while current.commit.parent is not None:
            try:
                parent = self._snapshot(repo_type, repo_id, current.commit.parent)
            except (OSError, ValueError):
                break
            if self._oid(parent, path) != oid:
                break
            current = parent
        return {"id": current.commit.sha, "title": current.commit.title, "date": current.commit.date}

    def _entry(self, repo_type: str, repo_id: str, snap: _Snapshot, path: str, *, expand: bool) -> dict[str, Any]:
        """A tree / paths-info entry, shaped like the Hub's."""
        f = snap.commit.files.get(path)
        entry: dict[str, Any]
        if f is None:
            entry = {"type": "directory", "oid": snap.trees[path], "size": 0, "path": path}
        else:
            entry = {"type": "file", "oid": f.blob_id, "size": f.size, "path": path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        if expand:
            entry["lastCommit"] = self._last_commit(repo_type, repo_id, snap, path)
            if f is not None:
                entry["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
        return entry


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.testing.hub``: serve a store in the foreground; the endpoint goes to stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.testing.hub",
        description="Serve the repos of a store folder with the Hugging Face Hub protocol, on 127.0.0.1.",
        epilog="Example: python -m tests.testing.hub --root /tmp/hub --publish org/tiny=./tiny-model",
    )
    parser.add_argument("--root", type=Path, required=True, help="store folder (created if missing)")
    parser.add_argument("--port", type=int, default=0, help="Hub port (default: a free one)")
    parser.add_argument("--cdn-port", type=int, default=0, help="CDN port for LFS files (default: a free one)")
    parser.add_argument("--token", help="token that opens gated repos (default: any token)")
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="tree listing page size")
    parser.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="ORG/NAME=FOLDER",
        help="publish FOLDER as model ORG/NAME (branch main) before serving; repeatable",
    )
    args = parser.parse_args(argv)
    for spec in args.publish:
        repo_id, sep, folder = spec.partition("=")
        if not sep or not repo_id or not folder:
            parser.error(f"--publish wants ORG/NAME=FOLDER, got {spec!r}")
        try:
            commit = publish(args.root, repo_id, Path(folder))
        except (OSError, ValueError) as error:
            parser.error(f"cannot publish {spec}: {error}")
        print(f"published {repo_id} at {commit}", file=sys.stderr)
    args.root.mkdir(parents=True, exist_ok=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    with HubServer(
        args.root, token=args.token, port=args.port, cdn_port=args.cdn_port, page_size=args.page_size
    ) as hub:
        print(hub.endpoint, flush=True)
        print(f"CDN at {hub.cdn_endpoint}; serving {args.root} until interrupted", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.5):
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
