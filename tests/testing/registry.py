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

    def __init__(self, root: Path, *, users: dict[str, str] | None = None) -> None:
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
