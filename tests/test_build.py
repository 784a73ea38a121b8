"""The builder: lock → fetch through the real client → verify every byte → one reproducible bundle."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bundler.api import build, install, resolve
from bundler.build import manifest_for, verify_regular_files
from bundler.bundle.reader import open_bundle
from bundler.errors import IntegrityError
from bundler.fetch import FetchedFile, fetch
from bundler.lockfile import Lock
from bundler.verify import verify_cache
from tests.conftest import CLOSED_ENDPOINT
from tests.testing.hf_client import client_env
from tests.testing.hub import HubServer

pytestmark = pytest.mark.slow

SD = "hfbundle-test/tiny-sd"


@pytest.fixture(scope="module")
def lock(hub: HubServer) -> Lock:
    return resolve("tiny-demo", endpoint=hub.endpoint, token=False)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_building_twice_gives_identical_bytes(hub: HubServer, lock: Lock, tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar.zst", tmp_path / "b.tar.zst"
    ra = build(output=a, lock=lock, endpoint=hub.endpoint, cache_dir=tmp_path / "cache1", token=False)
    # another cache, another thread count: still the same bytes
    rb = build(output=b, lock=lock, endpoint=hub.endpoint, cache_dir=tmp_path / "cache2", token=False, threads=1)
    assert a.read_bytes() == b.read_bytes()
    assert ra.bundle_id == rb.bundle_id
    with open_bundle(a) as reader:
        assert reader.bundle_id == ra.bundle_id
        assert {r.repo_id for r in reader.manifest.repos} == {r.repo_id for r in lock.repos}


def test_lock_file_round_trip_builds_the_same_bundle(hub: HubServer, lock: Lock, tmp_path: Path) -> None:
    lock_file = tmp_path / "demo.lock.json"
    lock_file.write_text(lock.dumps())
    a = build(output=tmp_path / "a.tar.zst", lock=lock, endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=False)
    b = build(output=tmp_path / "b.tar.zst", lock=lock_file, endpoint=hub.endpoint, cache_dir=tmp_path / "c")
    assert a.bundle_id == b.bundle_id


def test_manifest_carries_no_local_path_or_token(hub: HubServer, lock: Lock, tmp_path: Path) -> None:
    cache = tmp_path / "secret-cache-location"
    out = tmp_path / "x.tar.zst"
    build(output=out, lock=lock, endpoint=hub.endpoint, cache_dir=cache, token=False)
    with open_bundle(out) as reader:
        text = reader.manifest_bytes.decode()
    assert str(tmp_path) not in text and "secret-cache-location" not in text
    assert hub.endpoint not in text


@pytest.mark.parametrize("which", ["lfs", "regular"])
def test_corrupt_cached_file_is_caught_and_nothing_is_packed(
    hub: HubServer, lock: Lock, tmp_path: Path, which: str
) -> None:
    cache = tmp_path / "cache"
    fetched = fetch(lock, cache_dir=cache, endpoint=hub.endpoint, token=False)
    victim = next(f for f in fetched if f.file.is_lfs == (which == "lfs") and f.file.size > 10)
    data = bytearray(victim.local_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.local_path.write_bytes(bytes(data))
    out = tmp_path / "bad.tar.zst"
    with pytest.raises(IntegrityError) as exc:
        build(output=out, lock=lock, endpoint=hub.endpoint, cache_dir=cache, token=False)
    message = str(exc.value)
    assert victim.repo.repo_id in message and victim.file.path in message
    assert exc.value.expected and exc.value.actual and exc.value.expected != exc.value.actual
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".bad", "bad"))]


def test_a_file_changed_after_its_check_is_named_and_nothing_is_packed(
    hub: HubServer, lock: Lock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blobs are packed in batches (``add_files``): the error names the file that changed, not its neighbour."""
    import bundler.build

    checked = bundler.build.verify_regular_files
    victims: list[FetchedFile] = []

    def then_change_one(files: list[FetchedFile], **kw: Any) -> list[FetchedFile]:
        out = checked(files, **{**kw, "packed": None})  # no frames made while checking: the writer reads again
        small = [f for f in out if 10 < f.file.size <= 65536]
        victim = small[len(small) // 2]
        data = bytearray(victim.local_path.read_bytes())
        data[0] ^= 0x01
        victim.local_path.write_bytes(bytes(data))
        victims.append(victim)
        return out

    monkeypatch.setattr(bundler.build, "verify_regular_files", then_change_one)
    out = tmp_path / "changed.tar.zst"
    with pytest.raises(IntegrityError) as exc:
        build(output=out, lock=lock, endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False)
    assert victims and victims[0].file.path in str(exc.value) and victims[0].repo.repo_id in str(exc.value)
    assert exc.value.expected and exc.value.actual and exc.value.expected != exc.value.actual
    assert not out.exists()


def test_small_regular_files_are_read_once_and_packed_as_checked(
    hub: HubServer, lock: Lock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small non-LFS file's frame is made from the bytes its git blob id was checked on (issue 18: read once):
    a change after the check does not reach the bundle, which holds what the Hub listed."""
    import bundler.build

    checked = bundler.build.verify_regular_files
    victims: list[tuple[FetchedFile, bytes]] = []

    def then_change_one(files: list[FetchedFile], **kw: Any) -> list[FetchedFile]:
        out = checked(files, **kw)
        assert kw.get("packed")  # the build asked for frames, and got some
        victim = next(f for f in out if not f.file.is_lfs and 10 < f.file.size <= 65536)
        data = victim.local_path.read_bytes()
        victim.local_path.write_bytes(bytes([data[0] ^ 1]) + data[1:])
        victims.append((victim, data))
        return out

    monkeypatch.setattr(bundler.build, "verify_regular_files", then_change_one)
    out = tmp_path / "read-once.tar.zst"
    build(output=out, lock=lock, endpoint=hub.endpoint, cache_dir=tmp_path / "cache", token=False)
    ((victim, original),) = victims
    assert victim.file.content_sha256 is not None
    with open_bundle(out) as reader:
        assert reader.read_blob(victim.file.content_sha256).read() == original


def test_manifest_lists_each_content_once(hub: HubServer, lock: Lock, tmp_path: Path) -> None:
    files = verify_regular_files(fetch(lock, cache_dir=tmp_path / "c", endpoint=hub.endpoint, token=False))
    manifest = manifest_for(lock, files)
    shas = [b.sha256 for b in manifest.blobs]
    assert len(shas) == len(set(shas))
    assert {f.content_sha256 for _, _, f in manifest.iter_files()} == set(shas)
    assert all(r.refs == {"main": r.snapshots[0].commit} for r in manifest.repos)


def test_plain_tar_extracts_the_manifest_blobs(hub: HubServer, lock: Lock, tmp_path: Path) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("zstd command not installed (scripts/setup installs it)")
    out = tmp_path / "x.tar.zst"
    build(output=out, lock=lock, endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=False)
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(out), "-C", str(dest)], check=True)
    manifest = json.loads((dest / "manifest.json").read_text())
    for blob in manifest["blobs"]:
        path = dest / "blobs" / "sha256" / blob["sha256"]
        assert path.stat().st_size == blob["size"]
        assert sha256_file(path) == blob["sha256"]


def test_split_volumes_build_and_install(hub: HubServer, tmp_path: Path) -> None:
    out = tmp_path / "sd.tar.zst"
    build(SD, output=out, endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=False, split_size=64 * 1024)
    volumes = sorted(tmp_path.glob("sd.tar.zst.*"))
    assert len(volumes) >= 2 and not out.exists()
    report = install(out, cache_dir=tmp_path / "offline")
    assert report.to_json()["bytes_written"] > 0
    assert verify_cache(tmp_path / "offline").ok


def test_stdout_bundle_pipes_into_install(hub: HubServer, tmp_path: Path) -> None:
    online = client_env(cache=tmp_path / "online", endpoint=hub.endpoint)
    offline = client_env(cache=tmp_path / "offline", endpoint=CLOSED_ENDPOINT, offline=True)
    producer = subprocess.Popen(
        [sys.executable, "-m", "bundler", "build", "hfbundle-test/tiny-taesd", "-o", "-"],
        env=online,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    consumer = subprocess.run(
        [sys.executable, "-m", "bundler", "install", "-", "--json"],
        env=offline,
        stdin=producer.stdout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert producer.stdout is not None
    producer.stdout.close()
    assert producer.wait(timeout=60) == 0, producer.stderr.read() if producer.stderr else ""
    if producer.stderr:
        producer.stderr.close()
    assert consumer.returncode == 0, consumer.stderr
    assert [r["repo_id"] for r in json.loads(consumer.stdout)["repos"]] == ["hfbundle-test/tiny-taesd"]
    assert verify_cache(tmp_path / "offline").ok


def test_signed_build_installs_only_with_its_key_and_model_signing_accepts_the_snapshots(
    hub: HubServer, lock: Lock, tmp_path: Path
) -> None:
    pytest.importorskip("cryptography")
    from bundler.api import keygen, verify
    from bundler.cache.layout import RepoLayout
    from bundler.signing import SignatureError
    from bundler.trust import signature_path

    site, other = keygen(tmp_path / "site"), keygen(tmp_path / "other")
    signed = tmp_path / "signed.tar.zst"
    report = build(
        output=signed,
        lock=lock,
        endpoint=hub.endpoint,
        cache_dir=tmp_path / "c",
        token=False,
        sign_key=site.private_key,
    )
    plain = build(output=tmp_path / "plain.tar.zst", lock=lock, endpoint=hub.endpoint, cache_dir=tmp_path / "c")
    assert report.signed_by == site.fingerprint and report.bundle_id == plain.bundle_id
    with pytest.raises(SignatureError, match="unknown key"):
        install(signed, cache_dir=tmp_path / "refused", trusted_keys=[other.public_key])
    assert not (tmp_path / "refused").exists()
    cache = tmp_path / "hub-cache"
    installed = install(signed, cache_dir=cache, trusted_keys=[site.public_key])
    assert installed.signature is not None and installed.signature["signer"] == site.fingerprint
    assert verify(cache_dir=cache, trusted_keys=[site.public_key]).ok
    for repo in lock.repos:
        layout = RepoLayout(cache, repo.repo_type, repo.repo_id)
        sig = signature_path(layout, repo.commit, site.fingerprint)
        cmd = [sys.executable, "-m", "model_signing", "verify", "key", "--signature", str(sig)]
        if importlib.util.find_spec("model_signing") is None:
            continue
        done = subprocess.run(
            [*cmd, "--public_key", site.public_key, "--allow_symlinks", str(layout.snapshot(repo.commit))],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
