"""Registry credentials, found where docker, podman and skopeo keep them, and the 401 challenge they answer.

Lookup order for a host: ``--username``/``--password-stdin``; ``REGISTRY_AUTH_FILE``; the containers auth file
(``$XDG_RUNTIME_DIR/containers/auth.json``); docker's ``config.json`` (``$DOCKER_CONFIG`` or ``~/.docker``), with
its ``credHelpers``/``credsStore`` (``docker-credential-NAME get``). Secrets live only in :class:`Credentials`,
whose ``repr`` hides them: they are never logged, printed or put into an error message.

Identity tokens (OAuth2 refresh tokens, what ``docker login`` stores for registries such as Azure Container
Registry and Harbor with OIDC) are kept the way docker keeps them: the user name ``<token>`` with the token as
the secret (an ``identitytoken`` entry in ``config.json``, or a credential helper answering ``<token>``). They
answer only a token service, with a POST (``grant_type=refresh_token``), as docker's distribution client does.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RegistryError

logger = logging.getLogger(__name__)


IDENTITY_TOKEN_USER = "<token>"  # noqa: S105 (a user name, not a secret): docker's user name for an identity token (cli/config/types.AuthConfig)


@dataclass(frozen=True)
class Credentials:
    """A username and password (or identity token) for one registry. ``repr`` shows neither secret."""

    username: str
    password: str = field(repr=False)
    source: str = ""  # where they came from, for messages: "--username", "/home/u/.docker/config.json"

    @property
    def is_identity_token(self) -> bool:
        """The secret is an OAuth2 refresh token for the registry's token service, not a password."""
        return self.username == IDENTITY_TOKEN_USER

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: ``scheme`` is ``basic`` or ``bearer``."""

    scheme: str
    params: Mapping[str, str]


_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> Challenge | None:
    """``Bearer realm="…",service="…",scope="…"`` → Challenge; None for a scheme we do not speak."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        return None
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM_RE.finditer(rest)
    }
    return Challenge(scheme, params)


def auth_files(env: Mapping[str, str] | None = None) -> list[Path]:
    """The credential files consulted, in order."""
    env = os.environ if env is None else env
    files: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
    files.append(docker_dir / "config.json")
    return files


def find_credentials(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials stored for ``host`` (``host[:port]``), or None."""
    for path in auth_files(env):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            raise RegistryError(
                f"cannot read the registry credentials file {path}: {e.__class__.__name__}",
                hint="fix or remove that file, or pass --username and --password-stdin",
            ) from e
        if not isinstance(data, dict):
            continue
        found = _from_config(data, host, path)
        if found is not None:
            logger.debug("registry credentials for %s from %s", host, path)
            return found
    return None


def _host_keys(host: str) -> tuple[str, ...]:
    keys = (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/")
    return (*keys, "https://index.docker.io/v1/") if host in ("docker.io", "registry-1.docker.io") else keys


def _from_config(data: dict[str, object], host: str, path: Path) -> Credentials | None:
    helpers = data.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(host), str):
        return _from_helper(str(helpers[host]), host)
    auths = data.get("auths")
    if isinstance(auths, dict):
        for key in _host_keys(host):
            entry = auths.get(key)
            if isinstance(entry, dict):
                creds = _from_entry(entry, path)
                if creds is not None:
                    return creds
    store = data.get("credsStore")
    if isinstance(store, str) and store:
        return _from_helper(store, host)
    return None


def _from_entry(entry: dict[str, object], path: Path) -> Credentials | None:
    identity = entry.get("identitytoken")
    if isinstance(identity, str) and identity:
        return Credentials(IDENTITY_TOKEN_USER, identity, str(path))
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError) as err:
            raise RegistryError(
                f"an 'auth' entry in {path} is not base64 user:password", hint="log in again (docker login)"
            ) from err
        if sep:
            return Credentials(user, password, str(path))
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret, str(path))
    return None


def _from_helper(helper: str, host: str) -> Credentials | None:
    """Ask ``docker-credential-<helper> get`` (the docker credential helper protocol)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", helper):
        return None
    try:
        done = subprocess.run(
            [f"docker-credential-{helper}", "get"], input=host, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        logger.debug("credential helper docker-credential-%s could not run", helper)
        return None
    if done.returncode != 0:
        return None
    try:
        data = json.loads(done.stdout)
        return Credentials(str(data["Username"]), str(data["Secret"]), f"docker-credential-{helper}")
    except (ValueError, KeyError, TypeError):
        return None
