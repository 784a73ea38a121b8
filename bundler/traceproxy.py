"""The recording reverse proxy behind ``hfbundle trace``: loopback in front of the Hub, recording what is asked.

An app run with ``HF_ENDPOINT`` at :attr:`RecordingProxy.endpoint` talks to the Hub through it. Every request is
forwarded to the upstream Hub as it came (method, path, query, body, headers — ``Authorization`` included) and
every answer comes back as it went (status, ``ETag``, ``X-Repo-Commit``, ``X-Linked-Etag``/``-Size``,
``X-Error-Code``, ``Content-Range``…), bodies streamed in 1 MiB chunks. Two things are rewritten, as any reverse
proxy does (Apache's ``ProxyPassReverse``): the hop-by-hop headers, and URLs in ``Location``,
``Content-Location`` and ``Link`` that point at the upstream itself, so pagination and same-origin redirects
keep coming through here. A redirect to another origin (the Hub's 302 to its CDN for LFS files) is passed as
it is: the client follows it without its token, straight to the CDN.

What is recorded is the protocol, not a library: any client (Python or not) is traced.

- ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` (and ``/datasets/…``, ``/spaces/…``, and the
  ``/api/resolve-cache/…`` URLs the Hub redirects git files to): the repo, the revision asked, the path, the
  status and the commit the Hub answered with (``X-Repo-Commit``). An LFS file is attributed at its 302, which
  names the repo, the path and the commit: the CDN fetch that follows cannot be told apart anyway.
- ``GET /api/{type}s/{repo}/revision/{revision}`` and ``GET /api/{type}s/{repo}`` (the default branch, which
  the client caches as ``refs/main``): the commit a branch or tag name resolved to (``sha`` of the JSON answer,
  read from a copy of at most 16 MiB of the body), so the names the client writes under ``refs/`` are kept.

Nothing else is kept: no header, no token, no body. :class:`Observation` records are frozen.

    >>> with RecordingProxy("https://huggingface.co") as proxy:  # doctest: +SKIP
    ...     subprocess.run(cmd, env={**os.environ, "HF_ENDPOINT": proxy.endpoint})
    ...     proxy.observations()

Longer than ~500 lines: one reverse proxy: forwarding, redaction and recording of each Hub call.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from .errors import UsageError

__all__ = ["Observation", "RecordingProxy", "parse_hub_path"]

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_JSON_COPY = 16 * 1024 * 1024
UPSTREAM_TIMEOUT = 120.0
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "expect",  # 100-continue is answered to the client by http.server; upstream gets the body at once
    }
)
_URL_HEADERS = frozenset({"location", "content-location", "link"})
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


@dataclass(frozen=True)
class Observation:
    """One request the proxy saw that names a repo: a file (``path``) or a revision lookup (``path`` None)."""

    repo_type: str
    repo_id: str
    revision: str  # as asked (a branch, tag, ``refs/pr/1`` or a commit id)
    path: str | None
    method: str
    status: int
    commit: str | None  # what the Hub said the revision is (X-Repo-Commit, or the revision info's sha)
    size: int | None = None  # X-Linked-Size, else Content-Length of a whole-file answer


@dataclass(frozen=True)
class _Target:
    repo_type: str
    repo_id: str
    revision: str
    path: str | None  # None: a revision lookup (/api/.../revision/{rev})


def _take_revision(tail: list[str]) -> tuple[str, list[str]] | None:
    """``{rev}/{rest}`` from raw path segments; ``refs%2Fpr%2F1`` is one segment, a raw ``refs/pr/1`` three."""
    if not tail or not tail[0]:
        return None
    first = unquote(tail[0])
    if first == "refs" and len(tail) >= 3:
        return "/".join(unquote(s) for s in tail[:3]), tail[3:]
    return first, tail[1:]


def _repo_split(rest: list[str], action: str) -> tuple[str, list[str]] | None:
    """``{repo_id}/{action}/{tail}``: a repo id has one segment (legacy ids) or two (``org/name``)."""
    for n in (1, 2):
        if len(rest) > n and rest[n] == action and all(rest[:n]) and (n == 2 or rest[2:3] != [action]):
            return "/".join(unquote(s) for s in rest[:n]), rest[n + 1 :]
    return None


def parse_hub_path(path: str) -> _Target | None:
    """The repo, revision and file a Hub URL path names, or None when it names none.

    >>> t = parse_hub_path("/org/name/resolve/main/unet/config.json?download=true")
    >>> (t.repo_type, t.repo_id, t.revision, t.path)
    ('model', 'org/name', 'main', 'unet/config.json')
    >>> parse_hub_path("/api/datasets/org/set/revision/refs%2Fpr%2F1").revision
    'refs/pr/1'
    """
    segments = urlsplit(path).path.split("/")[1:]
    if not segments:
        return None
    if segments[0] == "api":
        if len(segments) > 2 and segments[1] == "resolve-cache" and segments[2] in _TYPES:
            rest = segments[3:]
            for n in (2, 1):  # /api/resolve-cache/{type}s/{repo_id}/{commit}/{path}
                if len(rest) > n + 1 and _COMMIT_RE.match(rest[n]) and all(rest[:n]):
                    file = unquote("/".join(rest[n + 1 :]))
                    repo = "/".join(unquote(s) for s in rest[:n])
                    return _Target(_TYPES[segments[2]], repo, rest[n], file) if file else None
            return None
        if len(segments) > 2 and segments[1] in _TYPES:
            rest = segments[2:]
            if 1 <= len(rest) <= 2 and all(rest):
                # Repo info without a revision (``resolve_revision(repo)``, diffusers' first call): the default
                # branch, which the client caches as refs/main whatever the Hub calls it.
                return _Target(_TYPES[segments[1]], "/".join(unquote(s) for s in rest), "main", None)
            split = _repo_split(rest, "revision")
            if split is None:
                return None
            repo_id, tail = split
            taken = _take_revision(tail)
            if taken is None or (taken[1] and taken[1] != [""]):
                return None
            return _Target(_TYPES[segments[1]], repo_id, taken[0], None)
        return None
    repo_type, rest = "model", segments
    if segments[0] in ("datasets", "spaces"):
        repo_type, rest = _TYPES[segments[0]], segments[1:]
    split = _repo_split(rest, "resolve")
    if split is None:
        return None
    repo_id, tail = split
    taken = _take_revision(tail)
    if taken is None:
        return None
    file = unquote("/".join(taken[1]))
    return _Target(repo_type, repo_id, taken[0], file) if file else None


class _Upstream:
    """Where requests go: scheme, host, port and base path of the upstream Hub, and how to connect to it
    (through ``HTTPS_PROXY``/``HTTP_PROXY`` when the environment sets one, as huggingface_hub would)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"upstream {url!r} is not an http(s) URL", hint="e.g. --upstream https://huggingface.co")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.url = self.origin + self.base_path
        default_port = (self.scheme == "https" and self.port == 443) or (self.scheme == "http" and self.port == 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not default_port:
            self.host_header = f"[{self.host}]:{self.port}"
        proxies = urllib.request.getproxies()
        proxy = proxies.get(self.scheme)
        self.proxy = None if proxy is None or urllib.request.proxy_bypass(self.host) else urlsplit(proxy)
        self._ssl = ssl.create_default_context() if self.scheme == "https" else None

    def connect(self) -> http.client.HTTPConnection:
        if self.proxy is not None and self.proxy.hostname:
            port = self.proxy.port or 80
            conn: http.client.HTTPConnection
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(
                    self.proxy.hostname, port, timeout=UPSTREAM_TIMEOUT, context=self._ssl
                )
                conn.set_tunnel(self.host, self.port)
            else:
                conn = http.client.HTTPConnection(self.proxy.hostname, port, timeout=UPSTREAM_TIMEOUT)
            return conn
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=UPSTREAM_TIMEOUT, context=self._ssl)
        return http.client.HTTPConnection(self.host, self.port, timeout=UPSTREAM_TIMEOUT)

    def target(self, path: str) -> str:
        """The request target upstream (absolute URL when talking to a plain-HTTP proxy)."""
        if self.proxy is not None and self.scheme == "http":
            return self.url + path
        return self.base_path + path


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # snapshot_download opens 8 connections at once

    def __init__(self, proxy: RecordingProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection ends instead of holding its thread

    _conn: http.client.HTTPConnection | None = None

    @property
    def recording(self) -> RecordingProxy:
        return cast(_Server, self.server).proxy

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: requests are logged at debug level, without their headers (they carry the token)."""

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def finish(self) -> None:
        with contextlib.suppress(Exception):
            super().finish()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- forwarding --

    def _request_body(self) -> Iterator[bytes] | None:
        """The request body as chunks: Content-Length bodies streamed, chunked ones re-chunked."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return None

        def fixed() -> Iterator[bytes]:
            left = length
            while left > 0:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    raise ConnectionResetError("the client closed the request body early")
                left -= len(data)
                yield data

        return fixed()

    def _chunked_body(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(1024)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            left = size
            while left > 0:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    raise ConnectionResetError("the client closed the request body early")
                left -= len(data)
                yield data
            self.rfile.readline(16)

    def _send_upstream(self, body: Iterator[bytes] | None) -> http.client.HTTPResponse:
        up = self.recording.upstream
        method = self.command
        # A reused upstream connection may have been closed by the upstream meanwhile: retry once on a fresh
        # one, for requests without a body (every GET and HEAD a Hub client sends).
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = up.connect()
            conn = self._conn
            try:
                conn.putrequest(method, up.target(self.path), skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", up.host_header)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        conn.putheader(name, value)
                if body is not None and "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    conn.putheader("Transfer-Encoding", "chunked")
                    conn.endheaders()
                    for data in body:
                        conn.send(b"%x\r\n%s\r\n" % (len(data), data))
                    conn.send(b"0\r\n\r\n")
                else:
                    if body is not None:
                        conn.putheader("Content-Length", self.headers.get("Content-Length") or "0")
                    conn.endheaders()
                    for data in body or ():
                        conn.send(data)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                self._conn = None
                if attempt or body is not None:
                    raise
        raise AssertionError("unreachable")

    def _forward(self) -> None:
        proxy = self.recording
        try:
            body = self._request_body()
            try:
                resp = self._send_upstream(body)
            except (OSError, http.client.HTTPException) as e:
                self._conn = None
                logger.debug("upstream %s unreachable for %s %s: %s", proxy.upstream.url, self.command, self.path, e)
                proxy._note_error(f"{self.command} {urlsplit(self.path).path}: {type(e).__name__}: {e}")
                self._answer_bad_gateway(f"hfbundle trace: cannot reach the Hub at {proxy.upstream.url}: {e}")
                return
            headers = resp.getheaders()
            target = parse_hub_path(self.path)
            wants_sha = target is not None and target.path is None and resp.status == 200 and self.command == "GET"
            copy = bytearray() if wants_sha else None
            proxy._note_credentials(self.headers.get("Authorization"))
            try:
                self._relay(resp, headers, copy)
            finally:
                resp.close()  # a response read to its end frees the upstream connection for the next request
            if target is not None:
                proxy._observe(target, self.command, resp.status, headers, copy)
            if resp.will_close:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def _relay(self, resp: http.client.HTTPResponse, headers: list[tuple[str, str]], copy: bytearray | None) -> None:
        """Send the upstream answer on: status, headers (URLs of the upstream rewritten), body streamed."""
        proxy = self.recording
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        chunked = "chunked" in (resp.getheader("Transfer-Encoding") or "").lower()
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        for name, value in headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue
            if lower in _URL_HEADERS:
                value = proxy._rewrite_urls(value)
            self.send_header(name, value)
        if not no_body and length is None:
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:  # close-delimited body: the client reads it to the end of the connection
                self.close_connection = True
                self.send_header("Connection", "close")
        self.end_headers()
        if no_body:
            resp.read()
            return
        while True:
            data = resp.read1(CHUNK)
            if not data:
                break
            if copy is not None:
                if len(copy) + len(data) <= MAX_JSON_COPY:
                    copy.extend(data)
                else:
                    copy.clear()
                    copy.extend(b"-")  # too large: not parsed
            if length is None and chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if length is None and chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _answer_bad_gateway(self, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response_only(502, "Bad Gateway")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class RecordingProxy:
    """A loopback reverse proxy to ``upstream`` recording what Hub clients ask (see the module docstring).

    Serves from construction on a free port of 127.0.0.1 until :meth:`close` (or the ``with`` block ends).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = _Upstream(upstream)
        self._lock = threading.Lock()
        self._observations: list[Observation] = []
        self._errors: list[str] = []
        self._secrets: set[str] = set()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="hfbundle-trace-proxy", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def endpoint(self) -> str:
        """The value for ``HF_ENDPOINT``: ``http://127.0.0.1:<port>`` (the upstream's base path is added upstream)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def observations(self) -> list[Observation]:
        """What was recorded so far, oldest first."""
        with self._lock:
            return list(self._observations)

    @property
    def errors(self) -> list[str]:
        """Requests the upstream could not be reached for (answered 502)."""
        with self._lock:
            return list(self._errors)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- used by the handler --

    def secrets(self) -> frozenset[str]:
        """Credentials clients sent (``Authorization`` values): held in memory only, so that the tracer can
        redact them from the command line it records. Never written, logged or returned in a report."""
        with self._lock:
            return frozenset(self._secrets)

    def _note_credentials(self, authorization: str | None) -> None:
        if not authorization:
            return
        credentials = authorization.strip().partition(" ")[2]
        with self._lock:
            self._secrets.add(authorization.strip())
            if credentials.strip():
                self._secrets.add(credentials.strip())

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def _rewrite_urls(self, value: str) -> str:
        """URLs at the upstream (its origin and base path) become URLs at this proxy; others stay as they are."""
        base = self.upstream.url
        if base not in value:
            return value
        return re.sub(re.escape(base) + r"(?=[/?#>;\s\"]|$)", self.endpoint, value)

    def _observe(
        self, target: _Target, method: str, status: int, headers: list[tuple[str, str]], copy: bytearray | None
    ) -> None:
        found = {name.lower(): value for name, value in headers}
        commit = found.get("x-repo-commit")
        if target.path is None and copy is not None and copy != b"-":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                info = json.loads(copy.decode("utf-8"))
                sha = info.get("sha") if isinstance(info, dict) else None
                commit = sha if isinstance(sha, str) else commit
        if commit is None and _COMMIT_RE.match(target.revision):
            commit = target.revision
        if commit is not None and not _COMMIT_RE.match(commit):
            commit = None
        size: int | None = None
        raw_size = found.get("x-linked-size") or (found.get("content-length") if status == 200 else None)
        if raw_size is not None and raw_size.isdigit():
            size = int(raw_size)
        seen = Observation(
            repo_type=target.repo_type,
            repo_id=target.repo_id,
            revision=target.revision,
            path=target.path,
            method=method,
            status=status,
            commit=commit,
            size=size if target.path is not None else None,
        )
        logger.debug("trace: %s %s %s@%s %s → %s", method, target.repo_type, target.repo_id, target.revision,
                     target.path or "(revision)", status)  # fmt: skip
        with self._lock:
            self._observations.append(seen)
