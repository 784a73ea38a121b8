"""An OCI image layout directory as a store: the same calls as :class:`~bundler.oci.client.RegistryClient`.

Layout (image-spec ``image-layout.md``): ``oci-layout`` (``{"imageLayoutVersion": "1.0.0"}``), ``index.json``
listing manifests with their tag in ``org.opencontainers.image.ref.name``, and ``blobs/sha256/<hex>``. This is
what ``skopeo copy … oci:DIR:TAG`` writes. Blobs are written to a temp file, hashed while written and renamed
into place only when their digest matches; ``index.json`` is replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

from ..cache.layout import atomic_write_bytes
from ..errors import IntegrityError, RegistryError
from ..hashing import CHUNK
from .client import MAX_MANIFEST, TransferStats
from .ref import DIGEST_RE

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = '{"imageLayoutVersion": "1.0.0"}'


class LayoutStore:
    """An image layout at ``root``; ``create`` makes it when absent (push), else it must exist (pull)."""

    def __init__(self, root: Path, *, create: bool = False) -> None:
        self.root = root
        self.stats = TransferStats()
        marker = root / "oci-layout"
        if not marker.is_file():
            if not create:
                raise RegistryError(
                    f"{root} is not an OCI image layout (no oci-layout file)",
                    hint="give the directory `skopeo copy … oci:DIR:TAG` or `hfbundle push … oci-layout:DIR` wrote",
                )
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(marker, LAYOUT_FILE.encode())
            if not (root / "index.json").exists():
                atomic_write_bytes(root / "index.json", self._dump_index({"manifests": []}))

    # -- manifests ------------------------------------------------------------------------------------------

    def get_manifest(self, reference: str) -> tuple[bytes, str, str]:
        entries = [m for m in self._index().get("manifests", []) if isinstance(m, dict)]
        if DIGEST_RE.match(reference):
            found = next((m for m in entries if m.get("digest") == reference), None)
        else:
            found = next((m for m in entries if (m.get("annotations") or {}).get(REF_NAME) == reference), None)
        if found is None:
            names = sorted(str((m.get("annotations") or {}).get(REF_NAME)) for m in entries)
            raise RegistryError(
                f"{self.root}: no manifest tagged {reference!r}",
                status=404,
                hint=f"tags in this layout: {', '.join(names) or 'none'}",
            )
        digest, size = str(found.get("digest")), found.get("size")
        if not DIGEST_RE.match(digest) or not isinstance(size, int) or not 0 < size <= MAX_MANIFEST:
            raise RegistryError(f"{self.root}/index.json: a malformed entry for {reference!r}")
        with self.open_blob(digest, size) as f:
            data = f.read()
        return data, str(found.get("mediaType", "")), digest

    def put_manifest(self, data: bytes, media_type: str, reference: str) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self._write_blob(digest, len(data), [data])
        index = self._index()
        keep = [m for m in index.get("manifests", []) if (m.get("annotations") or {}).get(REF_NAME) != reference]
        entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if not DIGEST_RE.match(reference):
            entry["annotations"] = {REF_NAME: reference}
        index["manifests"] = [*keep, entry]
        atomic_write_bytes(self.root / "index.json", self._dump_index(index))
        return digest

    # -- blobs ----------------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise RegistryError(f"unsupported digest {digest[:80]!r}", hint="only sha256 digests are supported")
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def open_blob(self, digest: str, size: int, *, verify: bool = True) -> BinaryIO:
        path = self.blob_path(digest)
        try:
            f = path.open("rb")
        except FileNotFoundError as err:
            raise RegistryError(
                f"{self.root}: blob {digest} is missing", status=404, hint="copy the layout again, completely"
            ) from err
        actual = os.fstat(f.fileno()).st_size
        if actual != size:
            f.close()
            raise IntegrityError(
                f"{path} is {actual} bytes, the manifest says {size}",
                path=str(path),
                expected=str(size),
                actual=str(actual),
                hint="the layout is damaged: copy it again; nothing was installed",
            )
        self.stats.add("fetched", digest)
        return cast(BinaryIO, _Verified(f, digest, path, self.stats) if verify else f)

    def push_blob(
        self, digest: str, size: int, open_stream: Callable[[], BinaryIO], *, mount_from: Iterable[str] = ()
    ) -> str:
        if self.has_blob(digest, size):
            self.stats.add("existing", digest)
            return "existing"
        with open_stream() as stream:
            self._write_blob(digest, size, iter(lambda: stream.read(CHUNK), b""))
        self.stats.add("uploaded", digest, size)
        return "uploaded"

    def close(self) -> None:
        return None

    # -- internals ------------------------------------------------------------------------------------------

    def _write_blob(self, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        final = self.blob_path(digest)
        if self.has_blob(digest, size):
            return
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
        hasher = hashlib.sha256()
        n = 0
        try:
            with tmp.open("xb") as out:
                for chunk in chunks:
                    n += len(chunk)
                    if n > size:
                        break
                    hasher.update(chunk)
                    out.write(chunk)
            got = "sha256:" + hasher.hexdigest()
            if n != size or got != digest:
                raise IntegrityError(
                    f"blob {digest} read as {got} ({n} bytes, expected {size}): not written",
                    expected=digest,
                    actual=got,
                    hint="the source is damaged: rebuild it and push again",
                )
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def _index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        try:
            raw = path.read_bytes()
            data = json.loads(raw) if len(raw) <= MAX_MANIFEST else None
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        except (OSError, ValueError) as e:
            raise RegistryError(f"cannot read {path}: {e.__class__.__name__}", hint="copy the layout again") from e
        if not isinstance(data, dict) or not isinstance(data.get("manifests", []), list):
            raise RegistryError(f"{path} is not an OCI image index", hint="copy the layout again")
        return data

    @staticmethod
    def _dump_index(index: dict[str, Any]) -> bytes:
        out = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, **index}
        return json.dumps(out, indent=1, sort_keys=True).encode() + b"\n"


class _Verified:
    """A layout blob read while hashed: raises :class:`IntegrityError` at its end when the digest differs."""

    def __init__(self, f: BinaryIO, digest: str, path: Path, stats: TransferStats) -> None:
        self._f, self._digest, self._path, self._stats = f, digest, path, stats
        self._hasher: Any = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._hasher is not None:
            if data:
                self._hasher.update(data)
                self._stats.add("bytes_fetched", nbytes=len(data))
            if not data or n < 0:
                got = "sha256:" + self._hasher.hexdigest()
                self._hasher = None
                if got != self._digest:
                    raise IntegrityError(
                        f"{self._path} has different content (sha256 {got})",
                        path=str(self._path),
                        expected=self._digest,
                        actual=got,
                        hint="the layout is damaged: copy it again; nothing was installed",
                    )
        return data

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _Verified:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
