"""Where an install reads from: a *bundle source* yields a validated manifest and then blob streams.

Modelled on pypa/installer's ``sources.py``: the installer is written against this protocol only, so it
installs the same way from a bundle file, split volumes, a pipe, or (in tests) memory.

Contract of :meth:`BundleSource.iter_blobs`:
- blobs come in the source's storage order, each at most once; blobs not in ``wanted`` are skipped;
- each stream returns the member's bytes and never more than the declared size + 1 (so an oversized member
  is detected without reading it to the end: a decompression bomb stops there);
- the consumer checks size and sha256; the source raises :class:`~bundler.errors.BundleFormatError` for
  structural damage (member not in the manifest, duplicate, wrong member type, truncation).
"""

from __future__ import annotations

import io
from collections.abc import Container, Iterator, Mapping
from typing import BinaryIO, Protocol, runtime_checkable

from .manifest import BlobEntry, Manifest


class BundleSource(Protocol):
    @property
    def manifest(self) -> Manifest: ...

    @property
    def manifest_bytes(self) -> bytes: ...

    def iter_blobs(self, wanted: Container[str] | None = None) -> Iterator[tuple[BlobEntry, BinaryIO]]: ...

    def close(self) -> None: ...


@runtime_checkable
class RandomAccessSource(BundleSource, Protocol):
    """A source that can also hand out any one blob on its own (a bundle file: it has an index), so an
    installer may stream several blobs at once. ``random_access`` is False when it cannot after all (a
    pipe): then only :meth:`iter_blobs` works. A source whose reads wait on another machine may also have an
    int attribute ``preferred_lanes``: the installer then streams up to that many blobs at once, even on
    fewer cores (see ``RegistrySource``)."""

    @property
    def random_access(self) -> bool: ...

    def read_blob(self, sha256: str, *, verify: bool = True) -> BinaryIO:
        """Exactly the blob's bytes; with ``verify`` the stream raises at its end if their sha256 differs."""
        ...


class MemorySource:
    """A source over in-memory blobs (tests, and small synthetic bundles). Blobs are *not* checked here:
    a test can hand the installer a wrong blob on purpose."""

    def __init__(self, manifest: Manifest, blobs: Mapping[str, bytes]) -> None:
        self._manifest = manifest
        self._blobs = dict(blobs)

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def manifest_bytes(self) -> bytes:
        return self._manifest.dumps()

    def iter_blobs(self, wanted: Container[str] | None = None) -> Iterator[tuple[BlobEntry, BinaryIO]]:
        for entry in sorted(self._manifest.blobs, key=lambda b: b.sha256):
            if wanted is not None and entry.sha256 not in wanted:
                continue
            data = self._blobs.get(entry.sha256, b"")
            yield entry, io.BytesIO(data[: entry.size + 1])

    def close(self) -> None:
        return None
