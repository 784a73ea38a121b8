"""Where an OCI artifact lives: a registry reference or an OCI image layout directory.

``[oci://]HOST[:PORT]/NAME[:TAG|@DIGEST]`` names a repository on a registry (the host is always explicit:
nothing defaults to Docker Hub), ``oci-layout:PATH[:TAG|@DIGEST]`` an image layout directory (what
``skopeo copy``/``oras copy`` carry across an air gap). The grammar is the distribution spec's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

DEFAULT_TAG = "latest"
LAYOUT_PREFIX = "oci-layout:"

# distribution/reference: path components, tags and digests
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$"
)
_REF_HINT = (
    "write HOST[:PORT]/NAME[:TAG|@sha256:DIGEST] (e.g. registry.lan:5000/models/sd-turbo:v1) or oci-layout:DIR[:TAG]"
)


@dataclass(frozen=True)
class RegistryRef:
    """A repository on a registry and a tag or digest in it."""

    host: str  # host[:port], as the registry's auth entries and URLs name it
    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        at = f"@{self.digest}" if self.digest else f":{self.tag or DEFAULT_TAG}"
        return f"{self.host}/{self.name}{at}"


@dataclass(frozen=True)
class LayoutRef:
    """An OCI image layout directory and a tag (``org.opencontainers.image.ref.name``) or digest in it."""

    path: Path
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        at = f"@{self.digest}" if self.digest else f":{self.tag or DEFAULT_TAG}"
        return f"{LAYOUT_PREFIX}{self.path}{at}"


Ref = RegistryRef | LayoutRef


def parse_ref(text: str) -> Ref:
    """Parse a registry or layout reference; a malformed one raises :class:`UsageError` saying the form."""
    if text.startswith(LAYOUT_PREFIX):
        return _parse_layout(text[len(LAYOUT_PREFIX) :], text)
    rest = text.removeprefix("oci://")
    if "://" in rest:
        raise UsageError(f"unsupported reference {text!r}", hint=_REF_HINT + "; use --plain-http for http://")
    host, sep, path = rest.partition("/")
    if not sep or not path or not _HOST_RE.match(host):
        raise UsageError(f"{text!r} does not name a registry host and repository", hint=_REF_HINT)
    name, tag, digest = _split_tag_digest(path, text)
    if not NAME_RE.match(name) or len(host) + 1 + len(name) > 255:
        raise UsageError(
            f"{name!r} is not a valid repository name",
            hint="lowercase letters, digits and . _ - separators, components joined by /",
        )
    return RegistryRef(host=host, name=name, tag=tag, digest=digest)


def _split_tag_digest(path: str, text: str) -> tuple[str, str | None, str | None]:
    digest: str | None = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not DIGEST_RE.match(digest):
            raise UsageError(f"{digest!r} in {text!r} is not a sha256 digest", hint=_REF_HINT)
    tag: str | None = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not TAG_RE.match(tag):
            raise UsageError(f"{tag!r} in {text!r} is not a valid tag", hint="a tag is up to 128 of [A-Za-z0-9_.-]")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return path, tag, digest


def _parse_layout(rest: str, text: str) -> LayoutRef:
    if not rest:
        raise UsageError(f"{text!r} names no directory", hint=_REF_HINT)
    digest: str | None = None
    tag: str | None = None
    if "@" in rest and DIGEST_RE.match(rest.rpartition("@")[2]):
        rest, _, digest = rest.rpartition("@")
    else:
        head, sep, last = rest.rpartition(":")
        # PATH:TAG, unless what follows the colon is part of a path (C:\…, a/b:c/d)
        if sep and head and "/" not in last and "\\" not in last:
            if not TAG_RE.match(last):
                raise UsageError(f"{last!r} in {text!r} is not a valid tag", hint=_REF_HINT)
            rest, tag = head, last
    return LayoutRef(path=Path(rest), tag=tag if digest is None else None, digest=digest)
