"""A small OCI distribution client on the standard library's ``http.client``.

What hfbundle needs of the distribution spec and nothing more: manifests by tag or digest, blobs streamed in
bounded memory (``GET`` resumed with ``Range`` after a dropped connection), ``HEAD`` to skip blobs the registry
has, cross-repository mount, monolithic uploads for small blobs and chunked ``PATCH`` uploads for large ones.
Basic and bearer-token auth answer the registry's 401 challenge (:mod:`bundler.oci.auth`); 5xx, 429 and dropped
connections are retried with exponential backoff. Upload bodies stream from the source (1 MiB reads); only blobs up
to :data:`SMALL_UPLOAD` are held in memory, so that a retry can resend them.

Why not an OCI library: oras-py sits on ``requests`` and reads a chunk-less upload into memory, and neither it
nor the others resume a GET or give the typed, bounded streams the installer consumes; huggingface_hub's own
transport changed between our supported majors (httpx in 1.x, httpx2 in 2.x). ``http.client`` is always there.
Secrets never leave :class:`_Auth`: no header is logged and no message quotes one.

Longer than ~500 lines: the distribution API's calls (manifests, blobs, chunked uploads, mounts) share one
connection, auth and retry policy; they are one client.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from ..errors import IntegrityError, RegistryError
from .auth import Challenge, Credentials, parse_challenge

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 << 20  # bytes per PATCH request (streamed from the source, never held in memory)
SMALL_UPLOAD = 4 << 20  # blobs up to this size go up in one PUT from memory
READ_SIZE = 1 << 20
MAX_MANIFEST = 4 << 20  # distribution's own limit for a manifest
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECT = frozenset({301, 302, 303, 307, 308})
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


@dataclass
class TransferStats:
    """What a client moved, for reports and tests (thread-safe through :attr:`lock`)."""

    fetched: list[str] = field(default_factory=list)  # blob digests whose GET started, in order
    bytes_fetched: int = 0
    uploaded: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    existing: list[str] = field(default_factory=list)  # HEAD said the registry has it
    mounted: list[str] = field(default_factory=list)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, what: str, digest: str = "", nbytes: int = 0) -> None:
        with self.lock:
            if what == "fetched":
                self.fetched.append(digest)
            elif what == "bytes_fetched":
                self.bytes_fetched += nbytes
            elif what == "uploaded":
                self.uploaded.append(digest)
                self.bytes_uploaded += nbytes
            elif what == "existing":
                self.existing.append(digest)
            elif what == "mounted":
                self.mounted.append(digest)
            elif what == "retry":
                self.retries += 1


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class _Auth:
    """Authorization headers per scope; the only holder of credentials and tokens."""

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self._headers: dict[str, str] = {}
        self._lock = threading.Lock()

    def header(self, scope: str) -> str | None:
        with self._lock:
            return self._headers.get(scope)

    def set(self, scope: str, value: str) -> None:
        with self._lock:
            self._headers[scope] = value


class RegistryClient:
    """One repository (``name``) on one registry (``host``), as ``actions`` (``pull`` or ``pull,push``)."""

    def __init__(
        self,
        host: str,
        name: str,
        *,
        credentials: Credentials | None = None,
        plain_http: bool = False,
        push: bool = False,
        retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 60.0,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.host = host
        self.name = name
        self.base = f"{'http' if plain_http else 'https'}://{host}"
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.stats = TransferStats()
        self._auth = _Auth(credentials)
        self._scope = f"repository:{name}:{'pull,push' if push else 'pull'}"
        self._local = threading.local()
        self._conns: set[http.client.HTTPConnection] = set()  # every connection opened, closed by close()
        self._conns_lock = threading.Lock()

    # -- manifests --------------------------------------------------------------------------------------------

    def get_manifest(self, reference: str) -> tuple[bytes, str, str]:
        """``(bytes, media type, digest)`` of the manifest at a tag or digest; a digest is checked."""
        r = self._request("GET", self._path(f"manifests/{reference}"), headers={"Accept": MANIFEST_ACCEPT})
        if r.status == 404:
            raise RegistryError(
                f"{self.host}/{self.name}: {reference} not found",
                status=404,
                hint=f"check the name and tag (`skopeo list-tags docker://{self.host}/{self.name}`)",
            )
        self._expect(r, (200,), f"reading manifest {reference}")
        digest = "sha256:" + hashlib.sha256(r.body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise IntegrityError(
                f"{self.host}/{self.name}: the manifest served for {reference} has digest {digest}",
                expected=reference,
                actual=digest,
                hint="the registry's storage is damaged: re-push the artifact",
            )
        return r.body, r.headers.get("content-type", "").split(";")[0].strip(), digest

    def put_manifest(self, data: bytes, media_type: str, reference: str) -> str:
        """Store a manifest under a tag (or its digest); return its digest."""
        r = self._request("PUT", self._path(f"manifests/{reference}"), headers={"Content-Type": media_type}, body=data)
        self._expect(r, (200, 201), f"writing manifest {reference}")
        return "sha256:" + hashlib.sha256(data).hexdigest()

    # -- blobs ------------------------------------------------------------------------------------------------

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        r = self._request("HEAD", self._path(f"blobs/{digest}"))
        if r.status == 404:
            return False
        self._expect(r, (200,), f"checking blob {digest[:19]}")
        length = r.headers.get("content-length")
        return size is None or length is None or length == str(size)

    def open_blob(self, digest: str, size: int, *, verify: bool = True) -> BinaryIO:
        """A stream of exactly ``size`` bytes of the blob; a dropped connection resumes with ``Range``. With
        ``verify`` the stream raises :class:`IntegrityError` at its end if the bytes' sha256 differs."""
        self.stats.add("fetched", digest)
        return cast(BinaryIO, io.BufferedReader(_BlobStream(self, digest, size, verify), buffer_size=READ_SIZE))

    def push_blob(
        self, digest: str, size: int, open_stream: Callable[[], BinaryIO], *, mount_from: Iterable[str] = ()
    ) -> str:
        """Make the registry hold the blob: ``existing`` (HEAD found it), ``mounted`` (from another repository
        of the same registry) or ``uploaded`` (streamed from ``open_stream()``, in chunks when large)."""
        if self.has_blob(digest, size):
            logger.debug("skip %s: %s/%s has it", digest[:19], self.host, self.name)
            self.stats.add("existing", digest)
            return "existing"
        for source in mount_from:
            if source != self.name and self._mount(digest, source):
                logger.debug("mount %s from %s", digest[:19], source)
                self.stats.add("mounted", digest)
                return "mounted"
        for attempt in range(self.retries + 1):
            try:
                logger.debug("upload %s (%d bytes)", digest[:19], size)
                self._upload(digest, size, open_stream)
                self.stats.add("uploaded", digest, size)
                return "uploaded"
            except _Restart as e:  # the registry lost the session: start the upload over
                if attempt == self.retries:
                    raise RegistryError(
                        f"{self.host}/{self.name}: upload of {digest[:19]} kept failing ({e})",
                        hint="check the registry's logs and free space, then push again (finished blobs are kept)",
                    ) from e
                self._sleep(attempt)
        raise AssertionError("unreachable")

    def _mount(self, digest: str, source: str) -> bool:
        scope = f"{self._scope} repository:{source}:pull"
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        r = self._request("POST", self._path(f"blobs/uploads/?{query}"), scope=scope, body=b"")
        if r.status == 201:
            return True
        if r.status == 202:  # mount refused, an upload session opened instead: cancel it
            self._request("DELETE", self._location(r))
        return False

    def _upload(self, digest: str, size: int, open_stream: Callable[[], BinaryIO]) -> None:
        """Small blobs: one PUT from a buffer. Larger ones: PATCH chunks of ``chunk_size`` streamed from the
        source in 1 MiB reads (nothing buffered). A chunk that fails asks the session how far it got, then the
        source is opened again and read on from there. The registry checks the digest at commit."""
        r = self._request("POST", self._path("blobs/uploads/"), body=b"")
        self._expect(r, (202,), f"starting upload of {digest[:19]}")
        location = self._location(r)
        if size <= SMALL_UPLOAD:
            with open_stream() as stream:
                data = _read_exact(stream, bytearray(size), size, digest)
                _check_end(stream, digest, size)
            put = _with_query(location, digest=digest)
            r = self._request("PUT", put, headers={"Content-Type": "application/octet-stream"}, body=data)
            self._commit(r, digest)
            return
        stream = open_stream()
        try:
            pos = 0
            failures = 0
            while pos < size:
                n = min(self.chunk_size, size - pos)
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{pos}-{pos + n - 1}",
                    "Content-Length": str(n),
                }
                answer: _Response | None
                try:
                    answer = self._request("PATCH", location, headers=headers, body=_Limited(stream, n), retry=False)
                except RegistryError:
                    answer = None
                if answer is not None and answer.status == 202:
                    location = self._location(answer)
                    pos += n
                    continue
                if answer is not None and answer.status not in (400, 416) and answer.status < 500:
                    self._expect(answer, (202,), f"uploading blob {digest[:19]}")
                # The chunk may have landed in part or in full: ask the session where it stands.
                failures += 1
                if failures > self.retries:
                    raise _Restart("chunks kept failing")
                self._sleep(failures - 1)
                status = self._request("GET", location)
                if status.status != 204:
                    raise _Restart(f"the upload session answered {status.status}")
                got = _range_end(status.headers.get("range")) + 1
                location = self._location(status, location)
                if not 0 <= got <= pos + n:
                    raise _Restart(f"the upload session is at byte {got}")
                logger.debug("upload of %s resumes at byte %d", digest[:19], got)
                stream.close()
                stream = open_stream()
                _skip(stream, got, digest)
                pos = got
            _check_end(stream, digest, size)
        finally:
            stream.close()
        r = self._request("PUT", _with_query(location, digest=digest), body=b"")
        self._commit(r, digest)

    def _commit(self, r: _Response, digest: str) -> None:
        if r.status == 400 and b"DIGEST_INVALID" in r.body:
            raise IntegrityError(
                f"{self.host} refused blob {digest}: the bytes sent have another digest; nothing was committed",
                expected=digest,
                hint="the source changed or is damaged: rebuild the bundle (or fix the cache) and push again",
            )
        self._expect(r, (201,), f"uploading blob {digest[:19]}")

    # -- HTTP -------------------------------------------------------------------------------------------------

    def _path(self, rest: str) -> str:
        return f"{self.base}/v2/{self.name}/{rest}"

    def _location(self, r: _Response, default: str | None = None) -> str:
        loc = r.headers.get("location")
        if not loc:
            if default is not None:
                return default
            raise RegistryError(f"{self.host} answered {r.status} without a Location", status=r.status)
        return urllib.parse.urljoin(r.url, loc)

    def _sleep(self, attempt: int) -> None:
        self.stats.add("retry")
        time.sleep(min(8.0, self.backoff * (2**attempt)) * (0.5 + random.random() / 2))  # noqa: S311 (jitter)

    def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | memoryview | _Limited | None = None,
        scope: str | None = None,
        retry: bool = True,
        stream: bool = False,
    ) -> _Response:
        """One request with auth, retries and redirects; the body is read (up to MAX_MANIFEST bytes for
        anything but a blob) unless ``stream``, when :attr:`_Response.body` is empty and the open response is
        kept in ``self._local.response`` for the caller."""
        scope = scope or self._scope
        authed = False
        attempt = 0
        redirects = 0
        while True:
            send = dict(headers or {})
            same_host = urllib.parse.urlsplit(url).netloc == self.host
            auth = self._auth.header(scope) if same_host else None
            if auth is not None:
                send["Authorization"] = auth
            try:
                resp = self._send(method, url, send, body, fresh=stream)
            except _NETWORK_ERRORS as e:
                self._drop(url)
                if not retry or attempt >= self.retries:
                    raise _unreachable(self.host, e) from e
                logger.debug("%s %s: %s; retrying", method, _redact(url), e.__class__.__name__)
                self._sleep(attempt)
                attempt += 1
                continue
            status = resp.status
            if status in _RETRY_STATUS and retry and attempt < self.retries:
                self._finish(resp, url)
                logger.debug("%s %s: %d; retrying", method, _redact(url), status)
                self._sleep(attempt)
                attempt += 1
                continue
            if status == 401 and not authed and same_host:
                challenge = parse_challenge(resp.getheader("www-authenticate") or "")
                self._finish(resp, url)
                self._answer(challenge, scope)
                authed = True
                continue
            if status in _REDIRECT and method in ("GET", "HEAD") and redirects < 5:
                location = resp.getheader("location") or ""
                self._finish(resp, url)
                url = urllib.parse.urljoin(url, location)
                redirects += 1
                continue
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
            if status == 401:
                self._finish(resp, url)
                raise _denied(self.host, self.name, 401, self._auth.credentials)
            if stream and status in (200, 206):
                self._local.response = resp
                return _Response(status, resp_headers, b"", url)
            try:
                data = b"" if method == "HEAD" else resp.read(MAX_MANIFEST + 1)
                if len(data) > MAX_MANIFEST:
                    raise RegistryError(f"{self.host} sent an answer over {MAX_MANIFEST} bytes to {method}")
                self._finish(resp, url)
            except _NETWORK_ERRORS as e:
                self._drop(url)
                if not retry or attempt >= self.retries:
                    raise _unreachable(self.host, e) from e
                self._sleep(attempt)
                attempt += 1
                continue
            return _Response(status, resp_headers, data, url)

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | memoryview | _Limited | None,
        *,
        fresh: bool = False,
    ) -> http.client.HTTPResponse:
        conn = self._conn(url, fresh=fresh)
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers.setdefault("User-Agent", "hfbundle")
        if body is not None and not isinstance(body, _Limited):
            headers["Content-Length"] = str(len(body))
        conn.request(method, target, body=body, headers=headers)
        return conn.getresponse()

    def _conn(self, url: str, *, fresh: bool = False) -> http.client.HTTPConnection:
        """A kept-alive connection per thread and origin; ``fresh``: a new one of its own (a blob stream,
        which may be read on another thread while this one sends other requests)."""
        parts = urllib.parse.urlsplit(url)
        pool: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        key = f"{parts.scheme}://{parts.netloc}"
        conn = None if fresh else pool.get(key)
        if conn is None:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    parts.netloc, timeout=self.timeout, context=ssl.create_default_context()
                )
            elif parts.scheme == "http":
                conn = http.client.HTTPConnection(parts.netloc, timeout=self.timeout, blocksize=READ_SIZE)
            else:
                raise RegistryError(f"unsupported URL scheme in a registry answer: {parts.scheme!r}")
            if not fresh:
                pool[key] = conn
            with self._conns_lock:
                self._conns.add(conn)
        if fresh:
            self._local.fresh = conn
        return conn

    def _drop(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        pool: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        conn = pool.pop(f"{parts.scheme}://{parts.netloc}", None)
        if conn is not None:
            self._forget(conn)

    def _forget(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._conns_lock:
            self._conns.discard(conn)

    def _finish(self, resp: http.client.HTTPResponse, url: str) -> None:
        """Drain a small answer so the connection can be reused; close it when the answer is large."""
        length = resp.getheader("content-length")
        if length is not None and length.isdigit() and int(length) <= 65536:
            resp.read()
        else:
            resp.close()
            self._drop(url)

    def close(self) -> None:
        """Close every connection, whichever thread opened it."""
        with self._conns_lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            conn.close()
        self._local.__dict__.get("pool", {}).clear()

    # -- auth -------------------------------------------------------------------------------------------------

    def _answer(self, challenge: Challenge | None, scope: str) -> None:
        creds = self._auth.credentials
        if challenge is None:
            raise _denied(self.host, self.name, 401, creds)
        if challenge.scheme == "basic":
            if creds is None:
                raise _denied(self.host, self.name, 401, None)
            if creds.is_identity_token:
                raise RegistryError(
                    f"{self.host}/{self.name}: the registry asks for a password, and the credentials found "
                    f"({creds.source or 'the command line'}) hold an identity token",
                    status=401,
                    hint=f"log in with a user name and password (`docker login {self.host}`), or pass "
                    "--username NAME --password-stdin",
                )
            self._auth.set(scope, creds.basic_header())
            return
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{self.host} asked for a token from an unusable realm", status=401)
        service = challenge.params.get("service", "")
        if creds is not None and creds.is_identity_token:
            # OAuth2 refresh-token grant, as distribution's client sends it (registry/client/auth/session.go).
            method, url, headers = "POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}
            form = {"grant_type": "refresh_token", "refresh_token": creds.password, "service": service,
                    "scope": scope, "client_id": "hfbundle", "access_type": "offline"}  # fmt: skip
            body: bytes | None = urllib.parse.urlencode(form).encode()
        else:
            query = [("service", service)] + [("scope", s) for s in scope.split(" ")]
            method, url, body = "GET", realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query), None
            headers = {"Authorization": creds.basic_header()} if creds is not None else {}
        try:
            resp = self._send(method, url, headers, body)
            raw = resp.read(MAX_MANIFEST)
        except _NETWORK_ERRORS as e:
            self._drop(url)
            raise _unreachable(urllib.parse.urlsplit(url).netloc, e) from e
        if resp.status != 200:
            raise _denied(self.host, self.name, resp.status, creds)
        try:
            data = json.loads(raw)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service of {self.host} answered without a token", status=401)
        self._auth.set(scope, f"Bearer {token}")

    def _expect(self, r: _Response, ok: tuple[int, ...], doing: str) -> None:
        if r.status in ok:
            return
        if r.status in (401, 403):
            raise _denied(self.host, self.name, r.status, self._auth.credentials)
        raise RegistryError(
            f"{self.host}/{self.name}: {doing} failed: HTTP {r.status}{_error_text(r.body)}",
            status=r.status,
            hint="check the registry's logs; re-run the command (finished blobs are not sent again)",
        )


class _Restart(Exception):
    pass


class _Limited:
    """The next ``n`` bytes of a stream, as an HTTP request body (http.client reads it in ``blocksize`` pieces);
    a source that ends early raises rather than sending a short body."""

    def __init__(self, stream: BinaryIO, n: int) -> None:
        self._stream, self._left = stream, n

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(want)
        if not data:
            raise IntegrityError(f"the source ended {self._left} bytes early", actual=str(self._left))
        self._left -= len(data)
        return data


class _BlobStream(io.RawIOBase):
    """One blob's bytes over GET, resumed from the last byte received after a dropped connection."""

    def __init__(self, client: RegistryClient, digest: str, size: int, verify: bool) -> None:
        self.client, self.digest, self.size = client, digest, size
        self.pos = 0
        self.hasher = hashlib.sha256() if verify else None
        self.resp: http.client.HTTPResponse | None = None
        self.conn: http.client.HTTPConnection | None = None
        self.failures = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            self._done()
            return 0
        while True:
            if self.resp is None:
                self._open()
            assert self.resp is not None
            err: BaseException | None = None
            try:
                n = self.resp.readinto(memoryview(buffer)[:want])
            except _NETWORK_ERRORS as e:
                n, err = 0, e
            if n:
                break
            self._close_resp()
            self.failures += 1
            if self.failures > self.client.retries:
                cause = err or ConnectionError("the connection closed early")
                raise _unreachable(self.client.host, cause)
            self.client._sleep(self.failures - 1)
        if self.hasher is not None:
            self.hasher.update(memoryview(buffer)[:n])
        self.pos += n
        self.client.stats.add("bytes_fetched", nbytes=n)
        if self.pos == self.size:
            self._done()
        return n

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.pos}-"} if self.pos else {}
        r = self.client._request(
            "GET", self.client._path(f"blobs/{self.digest}"), headers=headers, stream=True, retry=True
        )
        resp: http.client.HTTPResponse | None = self.client._local.__dict__.pop("response", None)
        self.conn = self.client._local.__dict__.pop("fresh", None)
        if resp is None:
            self.client._expect(r, (200, 206), f"reading blob {self.digest[:19]}")
            raise RegistryError(f"{self.client.host}: no answer body for blob {self.digest[:19]}")
        self.resp = resp
        length = r.headers.get("content-length")
        if r.status == 206:
            total = r.headers.get("content-range", "").rpartition("/")[2]
            if total.isdigit() and int(total) != self.size:
                self._close_resp()
                raise _size_error(self.client, self.digest, self.size, int(total))
        elif self.pos:  # the server ignored Range: skip what we already have
            remaining = self.pos
            while remaining:
                chunk = resp.read(min(READ_SIZE, remaining))
                if not chunk:
                    raise _unreachable(self.client.host, ConnectionError("closed while skipping"))
                remaining -= len(chunk)
        elif length is not None and length.isdigit() and int(length) != self.size:
            self._close_resp()
            raise _size_error(self.client, self.digest, self.size, int(length))

    def _close_resp(self) -> None:
        if self.resp is not None:
            self.resp.close()
            self.resp = None
        if self.conn is not None:
            self.client._forget(self.conn)
            self.conn = None

    def _done(self) -> None:
        if self.resp is not None:
            extra = self.resp.read(1)
            self._close_resp()
            if extra:
                raise _size_error(self.client, self.digest, self.size, self.size + 1)
        if self.hasher is not None:
            got = "sha256:" + self.hasher.hexdigest()
            self.hasher = None
            if got != self.digest:
                raise IntegrityError(
                    f"{self.client.host}/{self.client.name}: blob {self.digest} has different content (sha256 {got})",
                    expected=self.digest,
                    actual=got,
                    hint="the registry's copy is damaged: delete and re-push the artifact; nothing was installed",
                )

    def close(self) -> None:
        self._close_resp()
        super().close()


def _read_exact(stream: BinaryIO, buffer: bytearray, n: int, digest: str) -> memoryview:
    """Fill the first ``n`` bytes of ``buffer`` from ``stream``; a stream ending early is an error."""
    view = memoryview(buffer)[:n]
    got = 0
    readinto = getattr(stream, "readinto", None)
    while got < n:
        if readinto is not None:
            k = readinto(view[got:])
        else:
            chunk = stream.read(n - got)
            k = len(chunk)
            view[got : got + k] = chunk
        if not k:
            raise IntegrityError(f"blob {digest[:19]} ended after {got} of {n} bytes", expected=str(n), actual=str(got))
        got += k
    return view


def _skip(stream: BinaryIO, n: int, digest: str) -> None:
    while n > 0:
        data = stream.read(min(READ_SIZE, n))
        if not data:
            raise IntegrityError(f"blob {digest[:19]} ended early while resuming its upload")
        n -= len(data)


def _check_end(stream: BinaryIO, digest: str, size: int) -> None:
    """Read past the end: a verifying stream checks its digest there, and a longer stream shows itself."""
    if stream.read(1):
        raise IntegrityError(f"blob {digest[:19]} is longer than its {size} bytes", expected=str(size))


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


def _range_end(value: str | None) -> int:
    """``Range: 0-N`` of an upload session → N (-1 when nothing is stored)."""
    if not value:
        return -1
    try:
        return int(value.strip().removeprefix("bytes=").partition("-")[2])
    except ValueError:
        return -1


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # upload state and tokens live in the query


def _error_text(body: bytes) -> str:
    try:
        errors = json.loads(body)["errors"]
        return ": " + "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)[:300]
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _size_error(client: RegistryClient, digest: str, size: int, actual: int) -> IntegrityError:
    return IntegrityError(
        f"{client.host}/{client.name}: blob {digest[:19]} is {actual} bytes on the registry, the manifest says {size}",
        expected=str(size),
        actual=str(actual),
        hint="the registry's copy is damaged: delete and re-push the artifact; nothing was installed",
    )


def _unreachable(host: str, e: BaseException) -> RegistryError:
    hint = "check the address and that the registry runs; retry later"
    if isinstance(e, ssl.SSLError):
        hint = "the registry does not speak TLS here: pass --plain-http for a plain-HTTP registry (lab, loopback)"
    return RegistryError(f"cannot reach {host}: {e.__class__.__name__}: {str(e)[:200]}", hint=hint)


def _denied(host: str, name: str, status: int, creds: Credentials | None) -> RegistryError:
    if status == 403:
        return RegistryError(
            f"{host}/{name}: access denied (HTTP 403)",
            status=403,
            hint="these credentials lack the right on that repository: ask the registry's admin",
        )
    if creds is None:
        return RegistryError(
            f"{host}/{name}: the registry needs credentials (HTTP 401)",
            status=401,
            hint=f"pass --username NAME --password-stdin, or log in (`docker login {host}`, REGISTRY_AUTH_FILE)",
        )
    if creds.is_identity_token:
        return RegistryError(
            f"{host}/{name}: the registry's token service refused the identity token (HTTP {status})",
            status=401,
            hint=f"the token (from {creds.source or 'the command line'}) may have expired: log in again "
            f"(`docker login {host}`)",
        )
    return RegistryError(
        f"{host}/{name}: authentication failed for user {creds.username!r} (HTTP {status})",
        status=401,
        hint=f"check the username and password (from {creds.source or 'the command line'})",
    )


__all__ = ["CHUNK_SIZE", "SMALL_UPLOAD", "RegistryClient", "TransferStats"]
