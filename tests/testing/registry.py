"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8) on a loopback port, with a
config, storage folder and log the fixture owns; optionally htpasswd basic auth (``htpasswd -B``, from
apache2-utils). ``scripts/setup`` installs both packages."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

REGISTRY_BIN = "docker-registry"


def available() -> bool:
    return shutil.which(REGISTRY_BIN) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """``with Registry(tmp) as reg:`` → ``reg.host`` (``127.0.0.1:PORT``), ``reg.storage``, ``reg.log``."""

    def __init__(self, root: Path, *, users: dict[str, str] | None = None, token: TokenServer | None = None) -> None:
        self.root = root
        self.storage = root / "storage"
        self.log = root / "registry.log"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        auth: dict[str, object] = {}
        if users:
            lines = []
            for user, password in users.items():
                done = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True)
                lines.append(done.stdout.strip())
            (root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = {"htpasswd": {"realm": "hfbundle-test", "path": str(root / "htpasswd")}}
        # JSON is YAML: no quoting surprises in paths.
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        if token is not None:
            auth = token.registry_auth()
        if auth:
            config["auth"] = auth
        (root / "config.yml").write_text(json.dumps(config, indent=1) + "\n")

    def start(self) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection(self.host, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return
            time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def blob_file(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def requests(self, method: str, path_part: str) -> int:
        """How many ``METHOD …path_part…`` requests the access log shows."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return sum(1 for line in text.splitlines() if f'"{method} ' in line and path_part in line)

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


class TokenServer:
    """A docker token service (distribution's ``auth: token``) for tests: checks basic credentials, grants the
    scopes asked for, and signs an RS256 JWT with a self-signed certificate made by ``openssl``."""

    service = "hfbundle-test-registry"
    issuer = "hfbundle-test-issuer"

    def __init__(self, root: Path, users: dict[str, str], refresh_tokens: dict[str, str] | None = None) -> None:
        import base64

        self.root = root
        self.users = users
        self.refresh_tokens = dict(refresh_tokens or {})  # OAuth2 refresh token (docker's identity token) → user
        self.issued = 0
        self.refreshed = 0  # tokens granted to a POST with grant_type=refresh_token
        root.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = root / "token.key", root / "token.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=hfbundle-test",
             "-keyout", str(self.key), "-out", str(self.cert)],
            capture_output=True, check=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], capture_output=True, check=True
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, object]:
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert),
            }
        }

    def sign(self, subject: str, scopes: list[str]) -> str:
        import base64
        import secrets

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 600, "nbf": now - 10,
            "iat": now, "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), capture_output=True, check=True,
        ).stdout  # fmt: skip
        return f"{signing_input}.{b64(signature)}"

    def __enter__(self) -> TokenServer:
        import base64
        import threading
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status: int, answer: dict[str, object] | None = None) -> None:
                body = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                if answer is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def grant(self, user: str, scopes: list[str]) -> str:
                server.issued += 1
                return server.sign(user, [s for v in scopes for s in v.split(" ")])

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                user = ""
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    user = name if server.users.get(name) == password else ""
                if not user:
                    self.reply(401)
                    return
                token = self.grant(user, query.get("scope", []))
                self.reply(200, {"token": token, "access_token": token, "expires_in": 600})

            def do_POST(self) -> None:  # the OAuth2 refresh-token grant (distribution's token spec, "oauth")
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                user = server.refresh_tokens.get(form.get("refresh_token", [""])[0], "")
                if form.get("grant_type") != ["refresh_token"] or not user:
                    self.reply(401)
                    return
                server.refreshed += 1
                self.reply(200, {"access_token": self.grant(user, form.get("scope", [])), "expires_in": 600})

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultProxy:
    """An HTTP proxy in front of a registry that misbehaves on purpose: answers 503 to the first
    ``fail_gets`` blob GETs, cuts the first blob GET longer than ``cut_after`` bytes after that many bytes, and
    drops the connection on PATCH number ``drop_patch`` (1-based) without forwarding it. ``seen`` logs
    ``(method, path, Range header)`` of every request."""

    def __init__(self, upstream: str, *, fail_gets: int = 0, cut_after: int | None = None, drop_patch: int = 0) -> None:
        self.upstream = upstream
        self.fail_gets = fail_gets
        self.cut_after = cut_after
        self.drop_patch = drop_patch
        self.patches = 0
        self.seen: list[tuple[str, str, str]] = []
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                method, path = self.command, self.path
                with lock:
                    proxy.seen.append((method, path, self.headers.get("Range", "")))
                    blob_get = method == "GET" and "/blobs/sha256:" in path
                    fail = blob_get and proxy.fail_gets > 0
                    if fail:
                        proxy.fail_gets -= 1
                    if method == "PATCH":
                        proxy.patches += 1
                    drop = method == "PATCH" and proxy.patches == proxy.drop_patch
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if fail:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                cut = None
                with lock:
                    if blob_get and proxy.cut_after is not None and len(data) > proxy.cut_after:
                        cut, proxy.cut_after = proxy.cut_after, None
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data[:cut] if cut is not None else data)
                conn.close()
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_one

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
