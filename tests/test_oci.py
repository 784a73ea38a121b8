"""push/pull through a real registry (Debian's docker-registry, distribution 2.8) started by the fixtures, and
through OCI image layouts: round trips, dedupe, resume, tampering, auth, interop with skopeo."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bundler.archive import BundleWriter, open_bundle
from bundler.errors import IntegrityError, RegistryError
from bundler.hashing import git_blob_sha1, lfs_blob_id
from bundler.installplan import Progress
from bundler.lock import RepoFile
from bundler.manifest import BlobEntry, Manifest, RepoEntry, SnapshotEntry
from bundler.oci import TransferOptions, pull, push
from bundler.ociauth import Credentials
from bundler.ociref import LayoutRef, RegistryRef, parse_ref
from bundler.verify import verify_cache
from tests.conftest import CLOSED_ENDPOINT
from tests.testing import registry
from tests.testing.registry import Registry

pytestmark = pytest.mark.skipif(not registry.available(), reason="docker-registry is not installed (scripts/setup)")

COMMIT = "c0ffee" + "1" * 34
REPO_ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "fleet", "s3cret-pass"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_bundle(path: Path, files: dict[str, bytes], *, repo_id: str = "org/tiny", commit: str = COMMIT) -> Manifest:
    """A one-repo bundle; files over 100 bytes are LFS files (named by sha256 in the cache)."""
    entries, blobs = [], {}
    for name, data in files.items():
        digest = sha(data)
        if len(data) > 100:
            entries.append(RepoFile(name, len(data), lfs_blob_id(digest, len(data)), lfs_sha256=digest))
        else:
            entries.append(RepoFile(name, len(data), git_blob_sha1(data), sha256=digest))
        blobs[digest] = BlobEntry(digest, len(data))
    snap = SnapshotEntry(commit, tuple(sorted(entries, key=lambda f: f.path)))
    manifest = Manifest(repos=(RepoEntry("model", repo_id, {"main": commit}, (snap,)),), blobs=tuple(blobs.values()))
    contents = {sha(d): d for d in files.values()}
    with BundleWriter(path) as writer:
        writer.write_manifest(manifest.dumps())
        for blob in manifest.blobs:
            writer.add_blob(blob.sha256, blob.size, io.BytesIO(contents[blob.sha256]))
    return manifest


def weights(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def push_file(bundle: Path, ref: str, options: TransferOptions):  # type: ignore[no-untyped-def]
    with open_bundle(bundle) as reader:
        assert reader.index is not None
        order = [m.sha256 for m in reader.index.blobs]
        return push(
            reader.manifest,
            reader.manifest_bytes,
            order,
            lambda s: reader.read_blob(s),
            parse_ref(ref),
            options,
        )


@pytest.fixture
def reg(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Registry(tmp_path / "registry") as r:
        yield r


@pytest.fixture
def auth_reg(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Registry(tmp_path / "registry", users={USER: PASSWORD}) as r:
        yield r


PLAIN = TransferOptions(plain_http=True, retries=2, backoff=0.05)


def test_push_then_pull_install_and_bundle_byte_identical(reg: Registry, tmp_path: Path) -> None:
    files = {"config.json": b'{"a": 1}\n', "model.safetensors": weights(300_000, 1), "README.md": b"# tiny\n"}
    bundle = tmp_path / "b.tar.zst"
    manifest = make_bundle(bundle, files)
    report = push_file(bundle, f"{reg.host}/models/tiny:v1", PLAIN)
    assert report.uploaded == len(manifest.blobs) + 1 and report.existing == 0
    cache = tmp_path / "cache"
    pulled = pull(parse_ref(f"{reg.host}/models/tiny:v1"), PLAIN, cache_dir=cache, output=tmp_path / "again.tar.zst")
    assert pulled.bundle_id == manifest.bundle_id
    assert (tmp_path / "again.tar.zst").read_bytes() == bundle.read_bytes()
    snap = cache / "models--org--tiny" / "snapshots" / COMMIT
    assert {p.name for p in snap.iterdir()} == set(files)
    assert (snap / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert (cache / "models--org--tiny" / "refs" / "main").read_text() == COMMIT
    assert verify_cache(cache).ok
