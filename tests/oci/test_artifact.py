"""The bundle ↔ ModelPack artifact mapping: media types, annotations, schema, determinism, checks on pull."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundler.bundle.manifest import BlobEntry, Manifest, RepoEntry, SnapshotEntry
from bundler.errors import BundleFormatError
from bundler.hashing import git_blob_sha1, lfs_blob_id
from bundler.oci.artifact import (
    ARTIFACT_TYPE,
    BUNDLE_MANIFEST_TYPE,
    CODE_RAW,
    DOC_RAW,
    WEIGHT_CONFIG_RAW,
    WEIGHT_RAW,
    blob_layers,
    build_artifact,
    media_type_for,
    parse_artifact,
)
from bundler.repofile import RepoFile
from tests.helpers import sha256 as sha

SCHEMA = Path("/work/shared/reference/modelpack/config-schema.json")
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def repo(repo_id: str, commit: str, files: dict[str, bytes]) -> tuple[RepoEntry, dict[str, bytes]]:
    entries = []
    for path, data in sorted(files.items()):
        d = sha(data)
        if len(data) > 50:
            entries.append(RepoFile(path, len(data), lfs_blob_id(d, len(data)), lfs_sha256=d))
        else:
            entries.append(RepoFile(path, len(data), git_blob_sha1(data), sha256=d))
    snap = SnapshotEntry(commit, tuple(entries))
    return RepoEntry("model", repo_id, {"main": commit}, (snap,)), {sha(d): d for d in files.values()}


def pipeline() -> Manifest:
    shared = b"w" * 100
    a, blobs_a = repo("org/sd", COMMIT_A, {"unet/m.safetensors": shared, "model_index.json": b"{}", "README.md": b"#"})
    b, blobs_b = repo("org/vae", COMMIT_B, {"m.safetensors": shared, "pipeline.py": b"x = 1"})
    blobs = {**blobs_a, **blobs_b}
    return Manifest(repos=(a, b), blobs=tuple(BlobEntry(k, len(v)) for k, v in blobs.items()))


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("unet/diffusion_pytorch_model.fp16.safetensors", WEIGHT_RAW),
        ("pytorch_lora_weights.bin", WEIGHT_RAW),
        ("tokenizer/merges.txt", WEIGHT_CONFIG_RAW),
        ("scheduler/scheduler_config.json", WEIGHT_CONFIG_RAW),
        ("README.md", DOC_RAW),
        ("LICENSE", DOC_RAW),
        ("pipeline.py", CODE_RAW),
    ],
)
def test_media_types(path: str, media_type: str) -> None:
    assert media_type_for(path) == media_type


def test_artifact_shape_and_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    manifest = pipeline()
    order = [b.sha256 for b in manifest.blobs]
    art = build_artifact(manifest, manifest.dumps(), order)
    oci = json.loads(art.manifest)
    assert oci["artifactType"] == ARTIFACT_TYPE
    assert oci["layers"][0]["mediaType"] == BUNDLE_MANIFEST_TYPE
    assert [layer["digest"] for layer in oci["layers"][1:]] == [f"sha256:{s}" for s in order]
    paths = {layer["annotations"]["org.cncf.model.filepath"] for layer in oci["layers"]}
    # several repos: paths carry the repo id; the shared weight names its first file
    assert paths == {".hfbundle/manifest.json", "org/sd/unet/m.safetensors", "org/sd/model_index.json",
                     "org/sd/README.md", "org/vae/pipeline.py"}  # fmt: skip
    config = json.loads(art.config)
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))
    assert config["modelfs"]["diffIds"] == [layer["digest"] for layer in oci["layers"]]
    assert build_artifact(manifest, manifest.dumps(), order).manifest == art.manifest  # no clock, no host


def test_single_repo_names_source_and_revision() -> None:
    r, blobs = repo("org/tiny", COMMIT_A, {"model.safetensors": b"w" * 80, "config.json": b"{}"})
    manifest = Manifest(repos=(r,), blobs=tuple(BlobEntry(k, len(v)) for k, v in blobs.items()))
    art = build_artifact(manifest, manifest.dumps(), [b.sha256 for b in manifest.blobs])
    oci = json.loads(art.manifest)
    assert oci["annotations"]["org.opencontainers.image.revision"] == COMMIT_A
    assert oci["annotations"]["org.opencontainers.image.source"] == "https://huggingface.co/org/tiny"
    assert {layer["annotations"]["org.cncf.model.filepath"] for layer in oci["layers"][1:]} == {
        "model.safetensors",
        "config.json",
    }
    assert json.loads(art.config)["descriptor"]["revision"] == COMMIT_A


def test_order_must_list_every_blob_once() -> None:
    manifest = pipeline()
    with pytest.raises(BundleFormatError):
        build_artifact(manifest, manifest.dumps(), [manifest.blobs[0].sha256])


def test_pull_checks_layers_against_the_manifest() -> None:
    manifest = pipeline()
    art = build_artifact(manifest, manifest.dumps(), [b.sha256 for b in manifest.blobs])
    parsed = parse_artifact(art.manifest, "")
    assert [d.digest for d in blob_layers(manifest, parsed)] == [d.digest for d in art.layers[1:]]
    oci = json.loads(art.manifest)
    oci["layers"][1]["size"] += 1
    with pytest.raises(BundleFormatError, match="bytes"):
        blob_layers(manifest, parse_artifact(json.dumps(oci).encode(), ""))
    del oci["layers"][1]
    with pytest.raises(BundleFormatError, match="no layer"):
        blob_layers(manifest, parse_artifact(json.dumps(oci).encode(), ""))


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}).encode(),
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "x", "digest": "sha256:12", "size": 1},
                "layers": [],
            }
        ).encode(),
    ],
)
def test_malformed_manifests_are_refused(raw: bytes) -> None:
    with pytest.raises(BundleFormatError):
        parse_artifact(raw, "")
