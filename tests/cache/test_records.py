"""The install record: one JSON per repo and commit, beside the repo, invisible to huggingface_hub's cache tools."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from bundler.bundle.manifest import BlobEntry, Manifest, RepoEntry, SnapshotEntry
from bundler.bundle.source import MemorySource
from bundler.cache.records import RECORD_DIR, InstalledRecord, read_record, record_install, record_path
from bundler.errors import CacheError
from bundler.hashing import git_blob_sha1, lfs_blob_id
from bundler.install import install
from bundler.lockfile import Lock, LockedRepo
from bundler.repofile import RepoFile
from bundler.verify import verify_cache

REPO = "org/tiny"
COMMIT = hashlib.sha1(b"c1").hexdigest()
FILES = {"config.json": b'{"_class_name": "AutoencoderTiny"}', "diffusion_pytorch_model.safetensors": b"w" * 5000}
RUNNER = {"pipeline": "pipe", "vae": "taesd", "steps": 2}
META = {"name": "demo", "version": "1", "description": "d"}


def repo_file(path: str, data: bytes) -> RepoFile:
    sha = hashlib.sha256(data).hexdigest()
    if path.endswith(".safetensors"):
        return RepoFile(path, len(data), lfs_blob_id(sha, len(data)), lfs_sha256=sha, sha256=sha)
    return RepoFile(path, len(data), git_blob_sha1(data), sha256=sha)


def bundle(*, with_lock: bool = True, twice: bool = False) -> tuple[Manifest, dict[str, bytes]]:
    """A one-repo bundle whose lock names the files, the full upstream list and the recipe's runner section."""
    files = tuple(repo_file(p, d) for p, d in sorted(FILES.items()))
    blobs = {hashlib.sha256(d).hexdigest(): d for d in FILES.values()}
    locked = LockedRepo(
        "model", REPO, "main", COMMIT, "diffusers-model", files, upstream=(*sorted(FILES), "README.md"), name="taesd"
    )
    repos: tuple[LockedRepo, ...] = (locked,)
    if twice:  # a lock joined from two recipes: the same repo and commit, different files
        repos = (
            dataclasses.replace(locked, files=files[:1]),
            dataclasses.replace(locked, files=files[1:], name="other"),
        )
    lock = Lock(repos=repos, recipe="demo", extra={"recipe": META, "runner": RUNNER})
    manifest = Manifest(
        repos=(RepoEntry("model", REPO, {"main": COMMIT}, (SnapshotEntry(COMMIT, files),)),),
        blobs=tuple(BlobEntry(k, len(v)) for k, v in sorted(blobs.items())),
        lock=lock if with_lock else None,
    )
    return Manifest.loads(manifest.dumps()), blobs


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, Manifest]:
    manifest, blobs = bundle()
    cache = tmp_path / "hub"
    install(MemorySource(manifest, blobs), cache)
    record_install(cache, manifest)
    return cache, manifest


def test_record_holds_the_lock_entry_bundle_and_recipe(cache: tuple[Path, Manifest]) -> None:
    root, manifest = cache
    path = root / "models--org--tiny" / RECORD_DIR / f"{COMMIT}.json"
    assert path == record_path(root, "model", REPO, COMMIT) and path.is_file()
    record = read_record(root, "model", REPO, COMMIT)
    assert record is not None
    assert manifest.lock is not None
    assert record.repo == manifest.lock.repos[0]  # files with hashes, upstream list, name, role
    assert record.bundle_id == manifest.bundle_id
    assert record.recipe_name == "demo" and dict(record.recipe) == META and dict(record.runner) == RUNNER
    assert set(record.files) == set(FILES) and "README.md" in record.repo.upstream
    assert InstalledRecord.from_json(json.loads(path.read_text())) == record
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # atomic write left no temp file


def test_no_record_where_nothing_was_recorded(cache: tuple[Path, Manifest], tmp_path: Path) -> None:
    root, _ = cache
    assert read_record(root, "model", REPO, "0" * 40) is None
    assert read_record(root, "model", "org/other", COMMIT) is None
    assert read_record(tmp_path / "nowhere", "model", REPO, COMMIT) is None
    assert read_record(root, "model", REPO, "not-a-commit") is None


def test_a_backup_without_lock_records_nothing(tmp_path: Path) -> None:
    manifest, blobs = bundle(with_lock=False)
    install(MemorySource(manifest, blobs), tmp_path)
    record_install(tmp_path, manifest)
    assert not (tmp_path / "models--org--tiny" / RECORD_DIR).exists()


def test_one_repo_twice_in_a_joined_lock_records_the_union(tmp_path: Path) -> None:
    manifest, blobs = bundle(twice=True)
    install(MemorySource(manifest, blobs), tmp_path)
    record_install(tmp_path, manifest)
    record = read_record(tmp_path, "model", REPO, COMMIT)
    assert record is not None and set(record.files) == set(FILES) and record.repo.name == "taesd"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", "damaged"),
        (b'{"record_version": 99}', "damaged"),
        (b'{"record_version": 1, "bundle_id": "x"}', "damaged"),
    ],
)
def test_a_damaged_record_says_how_to_fix(cache: tuple[Path, Manifest], content: bytes, words: str) -> None:
    root, _ = cache
    path = record_path(root, "model", REPO, COMMIT)
    path.write_bytes(content)
    with pytest.raises(CacheError, match=words) as e:
        read_record(root, "model", REPO, COMMIT)
    assert e.value.hint is not None and str(path) in e.value.hint


def test_a_record_copied_from_another_commit_is_refused(cache: tuple[Path, Manifest]) -> None:
    root, _ = cache
    other = "1" * 40
    record_path(root, "model", REPO, other).write_bytes(record_path(root, "model", REPO, COMMIT).read_bytes())
    with pytest.raises(CacheError, match="describes"):
        read_record(root, "model", REPO, other)


def test_huggingface_hub_and_verify_ignore_the_record(cache: tuple[Path, Manifest]) -> None:
    """scan_cache_dir reads only refs/ and snapshots/ inside a repo folder: no warning, the repo is listed whole."""
    from huggingface_hub import scan_cache_dir

    root, _ = cache
    info = scan_cache_dir(root)
    assert info.warnings == []
    assert [r.repo_id for r in info.repos] == [REPO]
    assert {f.file_name for r in info.repos for rev in r.revisions for f in rev.files} == set(FILES)
    report = verify_cache(root)
    assert report.ok and report.issues == ()


def test_hf_cache_delete_takes_the_record_with_the_repo(cache: tuple[Path, Manifest]) -> None:
    """Deleting a repo's last revision removes the whole repo folder, so no stale record survives it."""
    from huggingface_hub import scan_cache_dir

    root, _ = cache
    strategy = scan_cache_dir(root).delete_revisions(COMMIT)
    assert strategy.repos == frozenset({root / "models--org--tiny"})
    strategy.execute()
    assert not (root / "models--org--tiny").exists()
    assert read_record(root, "model", REPO, COMMIT) is None


def test_reinstall_rewrites_the_record(cache: tuple[Path, Manifest]) -> None:
    root, manifest = cache
    path = record_path(root, "model", REPO, COMMIT)
    path.write_text("garbage")
    record_install(root, manifest)
    record = read_record(root, "model", REPO, COMMIT)
    assert record is not None and record.bundle_id == manifest.bundle_id
