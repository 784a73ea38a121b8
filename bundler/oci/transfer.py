"""Push a bundle to an OCI registry (or image layout) and pull it back: as a bundle file, or straight into
a Hugging Face cache through the installer.

``push``: the bundle's blobs go up as raw layers on several threads (skipped when the registry has them,
mounted from ``mount_from`` repositories when it offers), then the config, then the manifest (last: a tag never
names an incomplete artifact). ``pull --install``: :class:`RegistrySource` is a
:class:`~bundler.bundle.source.BundleSource` over the layers, so :func:`bundler.install.install` streams them into the
cache with all its guarantees (verified before visible, refs last); blobs an interrupted pull already placed are
in the cache, so a second pull does not fetch them. ``pull -o``: the layers are re-packed by
:class:`~bundler.bundle.writer.BundleWriter` in the original storage order, which gives the original file byte for
byte when it was built with the default options. The Hub is never contacted.
"""

from __future__ import annotations

import io
import time
from collections import deque
from collections.abc import Callable, Container, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from ..bundle.manifest import BlobEntry, Manifest
from ..errors import BundleFormatError
from ..install.plan import InstallReport, ProgressCallback
from ..records import JsonRecord
from .artifact import (
    CONFIG_TYPE,
    OCI_MANIFEST_TYPE,
    Artifact,
    Descriptor,
    blob_layers,
    build_artifact,
    check_bundle_manifest_size,
    config_json,
    manifest_from_modelpack,
    parse_artifact,
)
from .auth import Credentials, find_credentials
from .client import CHUNK_SIZE, RegistryClient, TransferStats
from .layout import LayoutStore
from .ref import LayoutRef, Ref

PUSH_WORKERS = 4  # layers in flight; each holds at most one upload chunk (16 MiB) in memory
PREFETCH_WORKERS = 4
PREFETCH_MAX_BYTES = 4 << 20  # blobs up to this size are fetched ahead, in memory, while the installer writes
PREFETCH_AHEAD = 8


class Store(Protocol):
    """A registry repository or an image layout: what push and pull need of either."""

    stats: TransferStats

    def get_manifest(self, reference: str) -> tuple[bytes, str, str]: ...

    def put_manifest(self, data: bytes, media_type: str, reference: str) -> str: ...

    def has_blob(self, digest: str, size: int | None = None) -> bool: ...

    def open_blob(self, digest: str, size: int, *, verify: bool = True) -> BinaryIO: ...

    def push_blob(
        self, digest: str, size: int, open_stream: Callable[[], BinaryIO], *, mount_from: Sequence[str] = ()
    ) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TransferOptions:
    """How to reach a registry. ``credentials`` None: look them up (:func:`~bundler.oci.auth.find_credentials`)."""

    credentials: Credentials | None = None
    plain_http: bool = False
    retries: int = 5
    backoff: float = 0.5
    chunk_size: int = CHUNK_SIZE  # uploads larger than this go in PATCH chunks of this size


def open_store(ref: Ref, options: TransferOptions, *, push: bool = False) -> Store:
    if isinstance(ref, LayoutRef):
        return LayoutStore(ref.path, create=push)
    creds = options.credentials or find_credentials(ref.host)
    return RegistryClient(
        ref.host,
        ref.name,
        credentials=creds,
        plain_http=options.plain_http,
        push=push,
        retries=options.retries,
        backoff=options.backoff,
        chunk_size=options.chunk_size,
    )


# -- push ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushReport(JsonRecord, rounding={"seconds": 3}):
    ref: str
    digest: str
    bundle_id: str
    layers: int
    uploaded: int
    existing: int
    mounted: int
    bytes_uploaded: int
    seconds: float

    def render(self) -> list[str]:
        return [
            f"pushed {self.ref}@{self.digest}",
            f"  {self.layers} layers: {self.uploaded} uploaded ({self.bytes_uploaded} bytes), "
            f"{self.existing} already there, {self.mounted} mounted, in {self.seconds:.1f}s",
        ]


class BlobOpener(Protocol):
    def __call__(self, sha256: str) -> BinaryIO: ...


def push(
    manifest: Manifest,
    manifest_bytes: bytes,
    order: Sequence[str],
    open_blob: BlobOpener,
    ref: Ref,
    options: TransferOptions = TransferOptions(),
    *,
    mount_from: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> PushReport:
    """Push a bundle's manifest and blobs (stored in ``order``; ``open_blob(sha)`` streams one) to ``ref``."""
    start = time.monotonic()
    artifact = build_artifact(manifest, manifest_bytes, order)
    store = open_store(ref, options, push=True)
    try:
        _push_layers(store, artifact, open_blob, mount_from, on_progress)
        config = artifact.config_descriptor
        store.push_blob(config.digest, config.size, lambda: io.BytesIO(artifact.config), mount_from=mount_from)
        tag = ref.tag if ref.digest is None else None
        digest = store.put_manifest(artifact.manifest, OCI_MANIFEST_TYPE, tag or artifact.digest)
        if ref.digest is not None and digest != ref.digest:
            raise BundleFormatError(
                f"the artifact's digest is {digest}, not {ref.digest}", hint="push to a tag, or to its own digest"
            )
        stats = store.stats
        blob_digests = {d.digest for d in artifact.layers}
        return PushReport(
            ref=str(ref).rsplit("@", 1)[0] if ref.digest else str(ref),
            digest=digest,
            bundle_id=manifest.bundle_id,
            layers=len(artifact.layers),
            uploaded=sum(1 for d in stats.uploaded if d in blob_digests),
            existing=sum(1 for d in stats.existing if d in blob_digests),
            mounted=sum(1 for d in stats.mounted if d in blob_digests),
            bytes_uploaded=stats.bytes_uploaded,
            seconds=time.monotonic() - start,
        )
    finally:
        store.close()


def _push_layers(
    store: Store,
    artifact: Artifact,
    open_blob: BlobOpener,
    mount_from: Sequence[str],
    on_progress: Callable[[int, int], None] | None,
) -> None:
    total = sum(d.size for d in artifact.layers)
    done = 0

    def one(d: Descriptor) -> int:
        if d is artifact.layers[0]:
            opener: Callable[[], BinaryIO] = lambda: io.BytesIO(artifact.bundle_manifest)  # noqa: E731
        else:
            opener = lambda: open_blob(d.sha256)  # noqa: E731
        store.push_blob(d.digest, d.size, opener, mount_from=mount_from)
        return d.size

    # Largest first, so the long uploads overlap the many small ones.
    queue = sorted(artifact.layers, key=lambda d: -d.size)
    with ThreadPoolExecutor(PUSH_WORKERS, thread_name_prefix="hfbundle-push") as pool:
        futures = [pool.submit(one, d) for d in queue]
        try:
            for f in futures:
                done += f.result()
                if on_progress is not None:
                    on_progress(done, total)
        except BaseException:
            for f in futures:
                f.cancel()
            raise


# -- pull ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullReport(JsonRecord, rounding={"seconds": 3}):
    ref: str
    digest: str
    bundle_id: str
    layers: int
    fetched: tuple[str, ...]  # blob digests whose download started, in order
    bytes_fetched: int
    seconds: float
    output: str | None = None
    install: InstallReport | None = None

    def render(self) -> list[str]:
        lines = [
            f"pulled {self.ref} ({self.digest}): {len(self.fetched)} of {self.layers} layers fetched, "
            f"{self.bytes_fetched} bytes, in {self.seconds:.1f}s"
        ]
        if self.output is not None:
            lines.append(f"  wrote {self.output} (bundle {self.bundle_id})")
        if self.install is not None:
            lines += list(self.install.render())
        return lines


class RegistrySource:
    """A :class:`~bundler.bundle.source.RandomAccessSource` over an artifact's layers. Small layers are fetched
    ahead on a few threads (verified, in memory) while the consumer writes; large ones stream."""

    random_access = True
    # Blobs streamed at once by the installer, whatever the core count: each lane is one connection, and while
    # one lane hashes and writes, another's bytes are on the way (the registry's own CPU time overlaps ours).
    preferred_lanes = 4

    def __init__(self, store: Store, manifest: Manifest, manifest_bytes: bytes, layers: Sequence[Descriptor]) -> None:
        self._store = store
        self._manifest = manifest
        self._manifest_bytes = manifest_bytes
        self._layers = tuple(layers)
        self._entries = {b.sha256: b for b in manifest.blobs}
        self._pool = ThreadPoolExecutor(PREFETCH_WORKERS, thread_name_prefix="hfbundle-pull")

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def manifest_bytes(self) -> bytes:
        return self._manifest_bytes

    def read_blob(self, sha256: str, *, verify: bool = True) -> BinaryIO:
        entry = self._entries.get(sha256)
        if entry is None:
            raise BundleFormatError(f"blob {sha256} is not in this artifact")
        return self._store.open_blob(f"sha256:{sha256}", entry.size, verify=verify)

    def iter_blobs(self, wanted: Container[str] | None = None) -> Iterator[tuple[BlobEntry, BinaryIO]]:
        todo = [d for d in self._layers if wanted is None or d.sha256 in wanted]
        ahead: deque[tuple[Descriptor, Future[bytes] | None]] = deque()
        i = 0
        try:
            while i < len(todo) or ahead:
                while i < len(todo) and len(ahead) < PREFETCH_AHEAD:
                    d = todo[i]
                    i += 1
                    small = d.size <= PREFETCH_MAX_BYTES
                    ahead.append((d, self._pool.submit(self._fetch, d) if small else None))
                d, fut = ahead.popleft()
                entry = self._entries[d.sha256]
                if fut is not None:
                    yield entry, io.BytesIO(fut.result())
                else:
                    with self.read_blob(d.sha256, verify=False) as stream:  # the consumer hashes it
                        yield entry, stream
        finally:
            for _d, fut in ahead:
                if fut is not None:
                    fut.cancel()

    def _fetch(self, d: Descriptor) -> bytes:
        with self._store.open_blob(d.digest, d.size, verify=True) as f:
            data = f.read()
            f.read()  # reaching the end runs the digest check
        return data

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class Pulled:
    """An artifact's manifest read and checked: what :func:`pull` works from."""

    ref: str
    digest: str
    manifest: Manifest
    manifest_bytes: bytes
    layers: tuple[Descriptor, ...]  # one per blob, in storage order
    layer_count: int


def read_artifact(store: Store, ref: Ref) -> Pulled:
    """Fetch and check the OCI manifest and hfbundle's manifest layer (nothing else is fetched)."""
    raw, media_type, digest = store.get_manifest(ref.reference)
    parsed = parse_artifact(raw, media_type)
    bundle_layer = parsed.bundle_layer
    if bundle_layer is None:  # a plain ModelPack artifact: its annotations must name the repo and commit
        if parsed.config.media_type != CONFIG_TYPE:
            raise BundleFormatError(
                f"{ref} is neither an hfbundle nor a ModelPack artifact (config {parsed.config.media_type})",
                hint="push it with `hfbundle push` (from a bundle or SPEC)",
            )
        check_bundle_manifest_size(parsed.config)
        with store.open_blob(parsed.config.digest, parsed.config.size, verify=True) as f:
            config = config_json(f.read())
            f.read()
        manifest, plain_layers = manifest_from_modelpack(parsed, config)
        return Pulled(str(ref), digest, manifest, manifest.dumps(), tuple(plain_layers), len(parsed.layers))
    check_bundle_manifest_size(bundle_layer)
    with store.open_blob(bundle_layer.digest, bundle_layer.size, verify=True) as f:
        manifest_bytes = f.read()
        f.read()
    manifest = Manifest.loads(manifest_bytes)
    layers = blob_layers(manifest, parsed)
    return Pulled(str(ref), digest, manifest, manifest_bytes, tuple(layers), len(parsed.layers))


def pull(
    ref: Ref,
    options: TransferOptions = TransferOptions(),
    *,
    output: Path | None = None,
    cache_dir: Path | None = None,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PullReport:
    """Pull ``ref`` into a bundle file (``output``) and/or into the HF cache ``cache_dir``."""
    from ..bundle.writer import BundleWriter
    from ..install import install

    if output is None and cache_dir is None:
        raise BundleFormatError("pull needs an output file or a cache to install into")
    start = time.monotonic()
    store = open_store(ref, options)
    try:
        pulled = read_artifact(store, ref)
        report: InstallReport | None = None
        if cache_dir is not None:
            source = RegistrySource(store, pulled.manifest, pulled.manifest_bytes, pulled.layers)
            try:
                report = install(
                    source, cache_dir, copy=copy, keep_refs=keep_refs, trust_existing=trust_existing,
                    on_progress=on_progress,
                )  # fmt: skip
            finally:
                source.close()
        if output is not None:
            with BundleWriter(output) as writer:
                writer.write_manifest(pulled.manifest_bytes)
                for d in pulled.layers:  # the writer hashes and checks every blob itself
                    with store.open_blob(d.digest, d.size, verify=False) as stream:
                        writer.add_blob(d.sha256, d.size, stream, label=d.digest)
        blob_digests = {d.digest for d in pulled.layers}
        return PullReport(
            ref=pulled.ref,
            digest=pulled.digest,
            bundle_id=pulled.manifest.bundle_id,
            layers=pulled.layer_count,
            fetched=tuple(d for d in store.stats.fetched if d in blob_digests),
            bytes_fetched=store.stats.bytes_fetched,
            seconds=time.monotonic() - start,
            output=str(output) if output is not None else None,
            install=report,
        )
    finally:
        store.close()
