"""Offline cache verification: every damage a loader trips over is found, with the fix in the hint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bundler.cache.layout import RepoLayout
from bundler.errors import CacheError
from bundler.hashing import git_blob_sha1
from bundler.install import install
from bundler.verify import ERROR, INFO, WARNING, VerifyReport, verify_cache, verify_installed
from tests.helpers import sha256
from tests.install.test_install import C1, C2, SHARED, Bundle, Repo, Snap, build, standard_bundle


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Bundle, Path]:
    b = standard_bundle()
    cache = tmp_path / "hub"
    install(b.source(), cache)
    return b, cache


def kinds(report: VerifyReport) -> dict[str, int]:
    return report.counts


def only(report: VerifyReport, kind: str) -> list:  # type: ignore[type-arg]
    return [i for i in report.issues if i.kind == kind]


def tiny(cache: Path) -> RepoLayout:
    return RepoLayout(cache, "model", "org/tiny")


def test_clean_cache_is_ok(installed: tuple[Bundle, Path]) -> None:
    b, cache = installed
    report = verify_cache(cache)
    assert report.ok and report.issues == ()
    assert report.repos == ("dataset:org/data", "model:org/tiny", "model:other/model")
    assert report.blobs_checked == 11 and report.refs_checked == 5 and report.trees_checked == 4
    # the shared content is hard-linked three times: hashed once
    assert report.bytes_hashed == report.content_bytes == sum(len(v) for v in b.blobs.values())
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is True and data["counts"] == {}
    assert report.render()[-1].startswith("ok:")


def test_clean_copy_layout_is_ok_and_checked_against_the_tree(tmp_path: Path) -> None:
    b = standard_bundle()
    cache = tmp_path / "hub"
    install(b.source(), cache, copy=True)
    report = verify_cache(cache)
    assert report.ok and report.issues == ()
    assert report.bytes_hashed > 0 and report.blobs_checked == 0
    f = b.file("org/tiny", "unet/config.json")
    tiny(cache).snapshot_file(C1, f.path).write_bytes(b'{"block": [8, 17]}\n')  # same size
    bad = verify_cache(cache)
    [issue] = only(bad, "corrupt")
    assert issue.path == f"snapshots/{C1}/unet/config.json" and issue.expected == f.blob_id


def test_flipped_byte_is_corrupt(installed: tuple[Bundle, Path]) -> None:
    b, cache = installed
    f = b.file("org/tiny", "model.safetensors")
    blob = tiny(cache).blob(f.etag)
    data = bytearray(blob.read_bytes())
    data[12345] ^= 1
    blob.write_bytes(bytes(data))
    report = verify_cache(cache)
    assert not report.ok
    [issue] = only(report, "corrupt")
    assert (issue.repo, issue.path, issue.severity) == ("org/tiny", f"blobs/{f.etag}", ERROR)
    assert issue.expected == f.etag and issue.actual == sha256(bytes(data))
    assert issue.hint and "re-install" in issue.hint


def test_regular_file_blob_is_checked_by_git_blob_id(installed: tuple[Bundle, Path]) -> None:
    b, cache = installed
    f = b.file("org/tiny", "config.json", C1)
    tiny(cache).blob(f.etag).write_bytes(b'{"hidden": 9}\n')
    [issue] = only(verify_cache(cache), "corrupt")
    assert issue.expected == f.blob_id and issue.actual == git_blob_sha1(b'{"hidden": 9}\n')


def test_deleted_blob_is_dangling(installed: tuple[Bundle, Path]) -> None:
    b, cache = installed
    f = b.file("org/tiny", "unet/diffusion_pytorch_model.safetensors")
    tiny(cache).blob(f.etag).unlink()
    report = verify_cache(cache)
    [issue] = only(report, "dangling")
    assert issue.path == f"snapshots/{C1}/{f.path}" and issue.commit == C1
    assert issue.actual == f"../../../blobs/{f.etag}"
    assert not report.ok


def test_ref_with_trailing_newline_is_bad_with_the_fix(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    ref = tiny(cache).ref("main")
    ref.write_text(C1 + "\n")
    [issue] = only(verify_cache(cache), "bad_ref")
    assert issue.path == "refs/main" and issue.expected == C1 and issue.actual == repr(C1 + "\n")
    assert issue.hint is not None and f"printf %s {C1} >" in issue.hint


def test_ref_to_a_missing_snapshot_and_garbage_ref(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    tiny(cache).ref("dev").write_text("f" * 40)
    tiny(cache).ref("broken").write_text("not a commit")
    issues = {i.path: i for i in only(verify_cache(cache), "bad_ref")}
    assert set(issues) == {"refs/dev", "refs/broken"}
    assert "no snapshot" in issues["refs/dev"].message


def test_tree_listing_a_missing_file_is_incomplete(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    lay = tiny(cache)
    data = json.loads(lay.tree(C2).read_text())
    data["files"]["unet/diffusion_pytorch_model.fp16.safetensors"] = {"size": 3, "blob_id": "1" * 40}
    lay.tree(C2).write_text(json.dumps(data))
    report = verify_cache(cache)
    [issue] = only(report, "incomplete_tree")
    assert issue.commit == C2 and "IncompleteSnapshotError" in issue.message
    assert "fp16" in issue.message and issue.hint and "doctor --fix" in issue.hint
    assert not report.ok


def test_tree_disagreeing_with_the_blob_is_a_mismatch(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    lay = tiny(cache)
    data = json.loads(lay.tree(C2).read_text())
    data["files"]["config.json"]["blob_id"] = "2" * 40
    lay.tree(C2).write_text(json.dumps(data))
    [issue] = only(verify_cache(cache), "mismatch")
    assert issue.path == f"snapshots/{C2}/config.json"


def test_invalid_tree_is_a_warning(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    tiny(cache).tree(C2).write_text("{not json")
    report = verify_cache(cache)
    [issue] = only(report, "bad_tree")
    assert issue.severity == WARNING and report.ok


def test_leftovers_and_orphans_are_warnings(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    lay = tiny(cache)
    (lay.blobs / f".hfbundle-{'a' * 64}.0123abcd.tmp").write_bytes(b"x")
    (lay.blobs / f"{'b' * 64}.0123abcd.incomplete").write_bytes(b"x")
    (lay.folder / "snapshots" / f".hfbundle-{C1}.0123abcd.tmp").mkdir()
    (lay.folder / "refs" / "main.0123abcd.tmp").write_text(C1)
    orphan = b"nobody links to me"
    (lay.blobs / sha256(orphan)).write_bytes(orphan)
    (lay.blobs / "README").write_text("?")
    report = verify_cache(cache)
    assert report.ok
    assert kinds(report) == {"leftover": 4, "orphan": 1, "unknown": 1}
    assert all(i.severity == WARNING for i in report.issues)
    assert only(report, "orphan")[0].path == f"blobs/{sha256(orphan)}"


def test_shared_xet_store_two_levels_deep_resolves(tmp_path: Path) -> None:
    """snapshot → ../../blobs/<sha256> (repo blob, itself a link) → ../../blobs/<2hex>/<xet> (cache store)."""
    data = b"xet-backed weights" * 1000
    xet = hashlib.sha256(b"xet " + data).hexdigest()  # any 64-hex: the Xet hash is not a content sha256
    cache = tmp_path / "hub"
    store = cache / "blobs" / xet[:2]
    store.mkdir(parents=True)
    (store / xet).write_bytes(data)
    lay = RepoLayout(cache, "model", "org/xet")
    lay.blobs.mkdir(parents=True)
    (lay.blobs / sha256(data)).symlink_to(f"../../blobs/{xet[:2]}/{xet}")
    lay.snapshot(C1).mkdir(parents=True)
    lay.snapshot_file(C1, "model.safetensors").symlink_to(f"../../blobs/{sha256(data)}")
    lay.ref("main").parent.mkdir()
    lay.ref("main").write_text(C1)
    report = verify_cache(cache)
    assert report.ok and report.issues == () and report.bytes_hashed == len(data)
    (store / xet).write_bytes(data[:-1] + b"!")
    [issue] = only(verify_cache(cache), "corrupt")
    assert issue.path == f"blobs/{sha256(data)}"
    (store / xet).unlink()  # the shared payload is gone: both links dangle, the snapshot entry is the error
    gone = verify_cache(cache)
    assert {(i.path, i.severity) for i in only(gone, "dangling")} == {
        (f"blobs/{sha256(data)}", WARNING),
        (f"snapshots/{C1}/model.safetensors", ERROR),
    }


def test_link_leading_outside_is_unsafe(installed: tuple[Bundle, Path], tmp_path: Path) -> None:
    _, cache = installed
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"x")
    link = tiny(cache).snapshot_file(C1, "config.json")
    link.unlink()
    link.symlink_to(outside)
    report = verify_cache(cache)
    [issue] = only(report, "unsafe")
    assert issue.path == f"snapshots/{C1}/config.json"


def test_no_exist_marker_shadowing_a_file(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    marker = tiny(cache).no_exist(C1, "config.json")
    marker.touch()
    [issue] = only(verify_cache(cache), "shadowed")
    assert issue.hint == "delete the marker"


def test_file_in_snapshots_breaks_scan(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    (tiny(cache).folder / "snapshots" / "notes.txt").write_text("hi")
    [issue] = only(verify_cache(cache), "extra")
    assert issue.severity == ERROR


def test_repo_filter_and_unknown_repo(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    report = verify_cache(cache, ["org/tiny", "nobody/here"])
    assert report.repos == ("model:org/tiny",)
    [issue] = only(report, "missing")
    assert issue.repo == "nobody/here"
    assert verify_cache(cache, repo_type="dataset").repos == ("dataset:org/data",)


def test_not_a_cache(tmp_path: Path) -> None:
    with pytest.raises(CacheError) as info:
        verify_cache(tmp_path / "nope")
    assert info.value.hint and "HF_HUB_CACHE" in info.value.hint


# -- verify_installed ---------------------------------------------------------------------------------------------


def test_installed_bundle_verifies(installed: tuple[Bundle, Path]) -> None:
    b, cache = installed
    report = verify_installed(b.manifest, cache)
    assert report.ok and report.issues == ()
    assert report.files_checked == sum(len(s.files) for r in b.manifest.repos for s in r.snapshots)
    unique = sum(len(v) for v in b.blobs.values())
    assert report.content_bytes == unique  # each content once, in either layout
    files = [
        (RepoLayout(cache, r.repo_type, r.repo_id), s.commit, f)
        for r in b.manifest.repos
        for s in r.snapshots
        for f in s.files
    ]
    if all(lay.snapshot_file(commit, f.path).is_symlink() for lay, commit, f in files):
        assert report.bytes_hashed == unique  # a blob behind several links is read once
    else:  # copy layout: every copy is a file of its own, each read to be checked
        assert report.bytes_hashed == sum(f.size for _, _, f in files) > unique
    assert verify_installed(b.manifest, cache, rehash=False).bytes_hashed == 0


def test_installed_missing_corrupt_and_moved(installed: tuple[Bundle, Path]) -> None:
    b, cache = installed
    lay = tiny(cache)
    lay.snapshot_file(C1, "text_encoder/sub/deep.txt").unlink()
    f = b.file("other/model", "weights.safetensors")
    blob = RepoLayout(cache, "model", "other/model").blob(f.etag)
    blob.unlink()  # break the hard link first: the other repos keep their copy
    blob.write_bytes(SHARED[:-1] + b"\0")
    lay.ref("main").write_text(C2)  # moved by a later download
    lay.no_exist(C1, "tokenizer.json").unlink()
    report = verify_installed(b.manifest, cache)
    assert kinds(report) == {"corrupt": 1, "missing": 2, "moved_ref": 1, "incomplete_tree": 1}
    assert {i.path for i in only(report, "missing")} == {
        f"snapshots/{C1}/text_encoder/sub/deep.txt",
        f".no_exist/{C1}/tokenizer.json",
    }
    [moved] = only(report, "moved_ref")
    assert moved.severity == INFO and moved.expected == C1 and moved.actual == C2
    [corrupt] = only(report, "corrupt")
    assert corrupt.repo == "other/model" and corrupt.expected == f.sha256
    assert not report.ok
    # deep.txt is gone but the tree still lists it: the IncompleteSnapshotError trap
    [trap] = only(report, "incomplete_tree")
    assert trap.commit == C1 and "deep.txt" in trap.message


def test_installed_files_hashed_in_batches_keep_their_order_and_name_an_unreadable_one(
    installed: tuple[Bundle, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contents are hashed in batches after the files are looked at (issue 18): the issues still come in the
    manifest's file order, and a file that cannot be read is a corrupt one naming why, not a traceback."""
    import bundler.hashing as hashing_module
    from bundler.hashing import digest_paths as real

    b, cache = installed
    snap = next(s for r in b.manifest.repos for s in r.snapshots if len(s.files) >= 3)
    repo = next(r for r in b.manifest.repos if snap in r.snapshots)
    lay = RepoLayout(cache, repo.repo_type, repo.repo_id)
    first, second, third = snap.files[:3]
    lay.snapshot_file(snap.commit, first.path).unlink()
    unreadable = os.path.realpath(lay.snapshot_file(snap.commit, second.path))
    target = lay.snapshot_file(snap.commit, third.path)
    data = target.read_bytes()
    os.unlink(target)  # a file of its own (not the blob others link to) with one byte more
    target.write_bytes(data + b"!")

    def digest_paths(jobs: Any, **kw: Any) -> Iterator[Any]:
        todo = list(jobs)
        for job, got in zip(todo, real(todo, **kw), strict=True):
            yield OSError(13, "Permission denied") if os.path.realpath(job[0]) == unreadable else got

    monkeypatch.setattr(hashing_module, "digest_paths", digest_paths)  # what InodeHasher.digest_inodes calls
    report = verify_installed(b.manifest, cache)
    rel = f"snapshots/{snap.commit}/"
    mine = [(i.kind, i.path, i.message) for i in report.errors if i.path and i.path.startswith(rel)]
    assert mine[:3] == [
        ("missing", rel + first.path, f"{rel}{first.path} is missing"),
        ("corrupt", rel + second.path, f"{rel}{second.path} cannot be read (Permission denied)"),
        ("corrupt", rel + third.path, f"{rel}{third.path} has the wrong size"),
    ]


def test_installed_ref_missing_or_with_newline(installed: tuple[Bundle, Path]) -> None:
    b, cache = installed
    tiny(cache).ref("v1.0").unlink()
    tiny(cache).ref("main").write_text(C1 + "\n")
    report = verify_installed(b.manifest, cache)
    assert {(i.kind, i.path) for i in report.errors} == {("missing", "refs/v1.0"), ("bad_ref", "refs/main")}


def test_verify_installed_on_an_empty_cache(tmp_path: Path) -> None:
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"a": (b"a", False)})])])
    report = verify_installed(b.manifest, tmp_path)
    assert {(i.kind, i.path) for i in report.errors} == {("missing", f"snapshots/{C1}/a"), ("missing", "refs/main")}


def test_reports_are_frozen(installed: tuple[Bundle, Path]) -> None:
    _, cache = installed
    report = verify_cache(cache)
    with pytest.raises(AttributeError):
        report.issues = ()  # type: ignore[misc]
    assert os.path.isdir(report.cache_dir)


def test_progress_is_told_every_byte_hashed(installed: tuple[Bundle, Path]) -> None:
    _b, cache = installed
    calls: list[tuple[int, int]] = []
    report = verify_cache(cache, on_hashed=lambda done, files: calls.append((done, files)))
    assert calls and all(files > 0 for _, files in calls)  # batched, never an empty call
    assert sum(done for done, _ in calls) == report.bytes_hashed > 0
