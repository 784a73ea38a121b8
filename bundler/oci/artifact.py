"""A bundle as a ModelPack OCI artifact, and back (``docs/OCI.md``).

One OCI image manifest (``artifactType`` ``application/vnd.cncf.model.manifest.v1+json``) whose config is a
ModelPack config and whose layers are: hfbundle's own manifest (:data:`BUNDLE_MANIFEST_TYPE`), then **one raw
layer per blob** in the bundle's storage order. A raw layer's digest is the blob's own sha256, so registries
dedupe blobs across bundles, pipelines and versions, and a plain ModelPack client finds each file by its
``org.cncf.model.filepath``. Nothing time- or machine-dependent goes in: the same bundle gives the same digests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..bundle.manifest import MAX_MANIFEST_BYTES, BlobEntry, Manifest, RepoEntry, SnapshotEntry
from ..errors import BundleFormatError
from ..hashing import lfs_blob_id
from ..records import JsonRecord
from ..repofile import RepoFile
from .ref import DIGEST_RE

OCI_MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
BUNDLE_MANIFEST_TYPE = "application/vnd.hfbundle.manifest.v1+json"
WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG_RAW = "application/vnd.cncf.model.weight.config.v1.raw"
DOC_RAW = "application/vnd.cncf.model.doc.v1.raw"
CODE_RAW = "application/vnd.cncf.model.code.v1.raw"

ANN_FILEPATH = "org.cncf.model.filepath"
ANN_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANN_UNTESTED = "org.cncf.model.file.mediatype.untested"
ANN_BUNDLE_ID = "io.hfbundle.bundle-id"
ANN_TITLE = "org.opencontainers.image.title"
ANN_SOURCE = "org.opencontainers.image.source"
ANN_REVISION = "org.opencontainers.image.revision"
BUNDLE_MANIFEST_PATH = ".hfbundle/manifest.json"
EPOCH = "1970-01-01T00:00:00Z"

_WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".onnx_data", ".gguf", ".msgpack", ".h5", ".pb"}
    | {".tflite", ".ot", ".npz", ".pkl", ".mlmodel", ".nemo", ".keras"}
)
_CODE_SUFFIXES = frozenset({".py", ".sh", ".ipynb", ".js", ".cpp", ".cu", ".h"})
_DOC_SUFFIXES = frozenset({".md", ".rst", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".html"})
_DOC_NAMES = ("readme", "license", "licence", "notice", "copying", "citation", "model_card")


@dataclass(frozen=True)
class Descriptor(
    JsonRecord,
    rename={"media_type": "mediaType"},
    skip_empty=("annotations",),
    convert={"annotations": lambda a: dict(sorted(a.items()))},
):
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None

    @property
    def sha256(self) -> str:
        return self.digest.removeprefix("sha256:")


@dataclass(frozen=True)
class Artifact:
    """What a push writes: the OCI manifest, its config, and the hfbundle manifest layer's bytes."""

    manifest: bytes
    config: bytes
    bundle_manifest: bytes
    config_descriptor: Descriptor
    layers: tuple[Descriptor, ...]  # hfbundle's manifest first, then one per blob

    @property
    def digest(self) -> str:
        return _digest(self.manifest)


@dataclass(frozen=True)
class ParsedArtifact:
    """An OCI manifest read from a registry, checked for shape (not yet against a bundle manifest)."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]
    artifact_type: str | None

    @property
    def bundle_layer(self) -> Descriptor | None:
        found = [d for d in self.layers if d.media_type == BUNDLE_MANIFEST_TYPE]
        if len(found) > 1:
            raise BundleFormatError("the artifact has more than one hfbundle manifest layer")
        return found[0] if found else None


def media_type_for(path: str) -> str:
    """The ModelPack raw media type of a file, judged by its name (hence ``mediatype.untested``)."""
    p = PurePosixPath(path)
    suffix, stem = p.suffix.lower(), p.name.lower()
    if suffix in _WEIGHT_SUFFIXES:
        return WEIGHT_RAW
    if suffix in _CODE_SUFFIXES:
        return CODE_RAW
    if suffix in _DOC_SUFFIXES or stem.startswith(_DOC_NAMES):
        return DOC_RAW
    return WEIGHT_CONFIG_RAW


def build_artifact(manifest: Manifest, manifest_bytes: bytes, order: Sequence[str]) -> Artifact:
    """The artifact of a bundle whose blobs are stored in ``order`` (sha256s, every blob exactly once)."""
    declared = {b.sha256: b.size for b in manifest.blobs}
    if sorted(order) != sorted(declared):
        raise BundleFormatError("the blob order does not list every blob of the manifest exactly once")
    first_path: dict[str, str] = {}
    single = len(manifest.repos) == 1 and len(manifest.repos[0].snapshots) == 1
    for repo, _snap, f in manifest.iter_files():
        sha = f.content_sha256
        if sha is not None and sha not in first_path:
            prefix = "" if single else ("" if repo.repo_type == "model" else f"{repo.repo_type}s/") + f"{repo.repo_id}/"
            first_path[sha] = prefix + f.path
    bundle_layer = Descriptor(
        BUNDLE_MANIFEST_TYPE,
        _digest(manifest_bytes),
        len(manifest_bytes),
        {ANN_FILEPATH: BUNDLE_MANIFEST_PATH, ANN_UNTESTED: "false"},
    )
    layers = [bundle_layer]
    for sha in order:
        path = first_path.get(sha, f".hfbundle/blobs/{sha}")  # a trees listing of a backup: no file names it
        layers.append(
            Descriptor(media_type_for(path), f"sha256:{sha}", declared[sha], _file_annotations(path, declared[sha]))
        )
    config = _config_json(manifest, [d.digest for d in layers])
    config_descriptor = Descriptor(CONFIG_TYPE, _digest(config), len(config))
    annotations = {ANN_BUNDLE_ID: manifest.bundle_id, ANN_TITLE: _title(manifest)}
    if single:
        repo = manifest.repos[0]
        annotations[ANN_SOURCE] = _source_url(repo.repo_type, repo.repo_id)
        annotations[ANN_REVISION] = repo.snapshots[0].commit
    oci = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": config_descriptor.to_json(),
        "layers": [d.to_json() for d in layers],
        "annotations": dict(sorted(annotations.items())),
    }
    raw = json.dumps(oci, indent=1, sort_keys=False).encode() + b"\n"
    return Artifact(raw, config, manifest_bytes, config_descriptor, tuple(layers))


def parse_artifact(raw: bytes, media_type: str) -> ParsedArtifact:
    """Check an OCI manifest's shape: an image manifest with sha256 descriptors of sane sizes."""
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise BundleFormatError("the registry's manifest is not JSON", hint="re-push the artifact") from err
    if not isinstance(data, dict):
        raise BundleFormatError("the registry's manifest is not a JSON object")
    kind = data.get("mediaType") or media_type
    if kind == OCI_INDEX_TYPE:
        raise BundleFormatError(
            "the reference names an image index, not a model artifact",
            hint="pass the @sha256:… digest of the model manifest inside it",
        )
    if kind != OCI_MANIFEST_TYPE or data.get("schemaVersion") != 2:
        raise BundleFormatError(f"not an OCI image manifest (media type {kind!r})", hint="push it with hfbundle push")
    config = _descriptor(data.get("config"), "config")
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list):
        raise BundleFormatError("the manifest has no layers list")
    layers = tuple(_descriptor(x, f"layer {i}") for i, x in enumerate(raw_layers))
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise BundleFormatError("the manifest's annotations are not a string map")
    artifact_type = data.get("artifactType")
    return ParsedArtifact(config, layers, annotations, artifact_type if isinstance(artifact_type, str) else None)


def blob_layers(manifest: Manifest, parsed: ParsedArtifact) -> list[Descriptor]:
    """The layer of every blob the bundle manifest declares, in layer order; a missing layer or a size that
    disagrees with the manifest is an error (the layers must be what the manifest says, byte for byte)."""
    by_digest = {d.digest: d for d in parsed.layers if d.media_type != BUNDLE_MANIFEST_TYPE}
    out: list[Descriptor] = []
    for blob in manifest.blobs:
        d = by_digest.get(f"sha256:{blob.sha256}")
        if d is None:
            raise BundleFormatError(
                f"the artifact has no layer for blob {blob.sha256} its hfbundle manifest declares",
                hint="the artifact was altered after hfbundle pushed it: push it again",
            )
        if d.size != blob.size:
            raise BundleFormatError(f"layer {d.digest[:19]} is {d.size} bytes, the manifest says {blob.size}")
    order = {d.digest: i for i, d in enumerate(parsed.layers)}
    out = [by_digest[f"sha256:{b.sha256}"] for b in manifest.blobs]
    return sorted(out, key=lambda d: order[d.digest])


def config_json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise BundleFormatError("the ModelPack config is not JSON") from err
    if not isinstance(data, dict):
        raise BundleFormatError("the ModelPack config is not a JSON object")
    return data


# -- internals ---------------------------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise BundleFormatError(f"the manifest's {what} is not a descriptor")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise BundleFormatError(f"the manifest's {what} has no sha256 digest or media type")
    if type(size) is not int or size < 0:
        raise BundleFormatError(f"the manifest's {what} has no valid size")
    ann = value.get("annotations")
    annotations = {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else None
    return Descriptor(media_type, digest, size, annotations)


def _file_annotations(path: str, size: int) -> dict[str, str]:
    meta = {"name": path, "mode": 0o644, "uid": 0, "gid": 0, "size": size, "mtime": EPOCH, "typeflag": 48}
    return {
        ANN_FILEPATH: path,
        ANN_FILE_METADATA: json.dumps(meta, separators=(",", ":")),
        ANN_UNTESTED: "true",  # classified by file name only
    }


def _title(manifest: Manifest) -> str:
    recipe = manifest.recipe or {}
    name = recipe.get("name") if isinstance(recipe, dict) else None
    if isinstance(name, str) and name:
        return name
    return " + ".join(r.repo_id for r in manifest.repos) or "empty bundle"


def _source_url(repo_type: str, repo_id: str) -> str:
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"https://huggingface.co/{prefix}{repo_id}"


def _config_json(manifest: Manifest, diff_ids: list[str]) -> bytes:
    """A ModelPack config (``config-schema.json``): no ``createdAt``, so the digest depends on content only."""
    descriptor: dict[str, Any] = {"name": _title(manifest)}
    if len(manifest.repos) == 1 and len(manifest.repos[0].snapshots) == 1:
        repo = manifest.repos[0]
        descriptor["sourceURL"] = _source_url(repo.repo_type, repo.repo_id)
        descriptor["revision"] = repo.snapshots[0].commit
    else:
        descriptor["description"] = "a pipeline of " + ", ".join(
            f"{r.repo_id}@{s.commit[:12]}" for r in manifest.repos for s in r.snapshots
        )
    paths = [f.path for _r, _s, f in manifest.iter_files()]
    fmt = next((s for s in ("safetensors", "gguf", "onnx") if any(p.endswith(f".{s}") for p in paths)), None)
    model: dict[str, Any] = {"format": fmt} if fmt else {}
    config = {"descriptor": descriptor, "config": model, "modelfs": {"type": "layers", "diffIds": diff_ids}}
    return json.dumps(config, indent=1, sort_keys=True).encode() + b"\n"


def check_bundle_manifest_size(d: Descriptor) -> None:
    if d.size > MAX_MANIFEST_BYTES:
        raise BundleFormatError(f"the hfbundle manifest layer is {d.size} bytes, over the {MAX_MANIFEST_BYTES} limit")


# -- plain ModelPack artifacts (no hfbundle manifest layer) ---------------------------------------------------------

_HUB_URL_RE = re.compile(r"^https://huggingface\.co/(?:(datasets|spaces)/)?([\w.-]+/[\w.-]+?)(?:\.git)?/?$")
_RAW_TYPES = frozenset({WEIGHT_RAW, WEIGHT_CONFIG_RAW, DOC_RAW, CODE_RAW, "application/vnd.cncf.model.dataset.v1.raw"})


def manifest_from_modelpack(parsed: ParsedArtifact, config: Mapping[str, Any]) -> tuple[Manifest, list[Descriptor]]:
    """A bundle manifest for a plain single-repo ModelPack artifact: the repo from the Hub URL in
    ``org.opencontainers.image.source`` (or the config's ``descriptor.sourceURL``), the commit from
    ``org.opencontainers.image.revision`` (or ``descriptor.revision``), each raw layer a file at its
    ``org.cncf.model.filepath``. Every file is recorded as an LFS file (named by its sha256 in the cache: the
    artifact gives no git blob ids), and ``main`` points at the commit. Anything missing is a clear error."""
    descriptor = config.get("descriptor") if isinstance(config.get("descriptor"), dict) else {}
    assert isinstance(descriptor, dict)
    source = parsed.annotations.get(ANN_SOURCE) or str(descriptor.get("sourceURL") or "")
    revision = parsed.annotations.get(ANN_REVISION) or str(descriptor.get("revision") or "")
    missing = []
    match = _HUB_URL_RE.match(source)
    if match is None:
        missing.append(
            f"the Hugging Face repo ({ANN_SOURCE} or descriptor.sourceURL = https://huggingface.co/ORG/NAME)"
        )
    if not re.fullmatch(r"[0-9a-f]{40}", revision):
        missing.append(f"the commit ({ANN_REVISION} or descriptor.revision = 40 hex digits)")
    if missing:
        raise BundleFormatError(
            "this ModelPack artifact has no hfbundle manifest and does not name " + " nor ".join(missing),
            hint="add those annotations when packing it (modctl: --source-url/--revision), or push it with hfbundle",
        )
    assert match is not None
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(match.group(1) or "", "model")
    files: dict[str, RepoFile] = {}
    layers: dict[str, Descriptor] = {}
    for d in parsed.layers:
        path = (d.annotations or {}).get(ANN_FILEPATH)
        if d.media_type not in _RAW_TYPES:
            raise BundleFormatError(
                f"layer {d.digest[:19]} ({path or 'no path'}) is {d.media_type}: hfbundle pulls raw layers only",
                hint="pack the model with raw layers (modctl build --raw), or push it with hfbundle",
            )
        if not path:
            raise BundleFormatError(f"layer {d.digest[:19]} has no {ANN_FILEPATH} annotation")
        if path in files:
            raise BundleFormatError(f"two layers claim the same file {path!r}")
        files[path] = RepoFile(path, d.size, lfs_blob_id(d.sha256, d.size), lfs_sha256=d.sha256)
        layers.setdefault(d.digest, d)
    snap = SnapshotEntry(revision, tuple(files[p] for p in sorted(files)))
    repo = RepoEntry(repo_type, match.group(2), {"main": revision}, (snap,))
    blobs = tuple(BlobEntry(d.sha256, d.size) for d in layers.values())
    manifest = Manifest(repos=(repo,), blobs=blobs, creator="hfbundle (from a ModelPack artifact)")
    return Manifest.loads(manifest.dumps()), list(layers.values())  # loads: every path and id validated
