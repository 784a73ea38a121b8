"""The installer: exact huggingface_hub layout, dedup, resume, failure atomicity, and offline loading."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bundler.bundle.manifest import TREE_FILES, TREE_HUB, TREE_NONE, BlobEntry, Manifest, RepoEntry, SnapshotEntry
from bundler.bundle.source import MemorySource
from bundler.cache import layout as hfcache
from bundler.cache.layout import CACHEDIR_TAG, RepoLayout
from bundler.cache.records import record_install
from bundler.errors import InstallError, IntegrityError, UnsafePathError
from bundler.hashing import git_blob_sha1, lfs_blob_id
from bundler.install import InstallReport, execute, install, plan_install
from bundler.lockfile import Lock, LockedRepo
from bundler.repofile import RepoFile
from tests.helpers import sha256, tree_snapshot

CLOSED_ENDPOINT = "http://127.0.0.1:9"


# -- builders ---------------------------------------------------------------------------------------------------


def commit_id(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def randbytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def repo_file(path: str, data: bytes, lfs: bool) -> RepoFile:
    sha = sha256(data)
    if lfs:
        return RepoFile(path, len(data), lfs_blob_id(sha, len(data)), lfs_sha256=sha, sha256=sha)
    return RepoFile(path, len(data), git_blob_sha1(data), sha256=sha)


@dataclass
class Snap:
    commit: str
    files: Mapping[str, tuple[bytes, bool]]  # path -> (content, is_lfs)
    no_exist: tuple[str, ...] = ()
    tree: str = TREE_HUB  # with ``listing``: the files plus ``upstream`` (the commit's files left out)
    upstream: Mapping[str, tuple[bytes, bool]] = field(default_factory=dict)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    refs: Mapping[str, str]
    snapshots: Sequence[Snap]


@dataclass
class Bundle:
    manifest: Manifest
    blobs: dict[str, bytes]
    extra_blobs: dict[str, bytes] = field(default_factory=dict)

    def source(self, replace: Mapping[str, bytes] | None = None) -> MemorySource:
        return MemorySource(self.manifest, {**self.blobs, **(replace or {})})

    def file(self, repo_id: str, path: str, commit: str | None = None) -> RepoFile:
        for repo, snap, f in self.manifest.iter_files():
            if repo.repo_id == repo_id and f.path == path and commit in (None, snap.commit):
                return f
        raise KeyError(path)


def build(
    repos: Sequence[Repo],
    *,
    base: str | None = None,
    carry: set[str] | None = None,
    extra: Sequence[bytes] = (),
) -> Bundle:
    """A validated manifest (round-tripped through the real parser) and its blobs. ``carry`` limits the blobs
    the bundle holds (incremental backups); ``extra`` adds blobs no file uses (trees listings)."""
    blobs: dict[str, bytes] = {sha256(d): d for d in extra}
    entries = []
    for r in repos:
        snaps = []
        for s in r.snapshots:
            files = tuple(repo_file(p, d, lfs) for p, (d, lfs) in sorted(s.files.items()))
            for d, _ in s.files.values():
                blobs[sha256(d)] = d
            listing = None
            if s.tree == TREE_HUB:
                everything = {**s.upstream, **s.files}
                listing = tuple(repo_file(p, d, lfs) for p, (d, lfs) in sorted(everything.items()))
            snaps.append(SnapshotEntry(s.commit, files, tuple(s.no_exist), s.tree, listing))
        entries.append(RepoEntry(r.repo_type, r.repo_id, dict(r.refs), tuple(snaps)))
    carried = {k: v for k, v in blobs.items() if carry is None or k in carry}
    manifest = Manifest(
        repos=tuple(entries),
        blobs=tuple(BlobEntry(k, len(v)) for k, v in sorted(carried.items())),
        base=base,
    )
    manifest = Manifest.loads(manifest.dumps())
    return Bundle(manifest, carried, {k: v for k, v in blobs.items() if k not in carried})


C1, C2, C3, C4 = (commit_id(x) for x in ("c1", "c2", "c3", "c4"))
SHARED = randbytes(150_000, 99)  # the same content in three repos: LFS twice, once as a regular git file
BIG = randbytes(2_500_000, 7)  # several stream chunks


def standard_repos() -> list[Repo]:
    tiny_c1 = {
        "config.json": (b'{"hidden": 8}\n', False),
        "model.safetensors": (BIG, True),
        "unet/config.json": (b'{"block": [8, 16]}\n', False),
        "unet/diffusion_pytorch_model.safetensors": (randbytes(40_000, 2), True),
        "text_encoder/sub/deep.txt": (b"deep\n", False),
        "shared.bin": (SHARED, True),
        "empty.txt": (b"", False),
    }
    tiny_c2 = {"config.json": (b'{"hidden": 16}\n', False), "model.safetensors": (BIG, True)}
    return [
        Repo(
            "model",
            "org/tiny",
            {"main": C1, "v1.0": C1, "refs/pr/1": C2},
            [
                Snap(C1, tiny_c1, no_exist=("tokenizer.json", "tokenizer/added_tokens.json")),
                Snap(C2, tiny_c2),
            ],
        ),
        Repo("model", "other/model", {"main": C3}, [Snap(C3, {"weights.safetensors": (SHARED, True)})]),
        Repo(
            "dataset",
            "org/data",
            {"main": C4},
            [Snap(C4, {"data/train.parquet": (randbytes(9_000, 4), True), "copy.txt": (SHARED, False)})],
        ),
    ]


def standard_bundle() -> Bundle:
    return build(standard_repos())


def tree_state(root: Path) -> dict[str, tuple[str, ...]]:
    """Every entry below ``root``: links by target, files by content hash, folders."""
    return tree_snapshot(root, folders=True)


def blob_names(cache: Path, repo_type: str, repo_id: str) -> set[str]:
    folder = RepoLayout(cache, repo_type, repo_id).blobs
    return set(os.listdir(folder)) if folder.exists() else set()


def assert_only_new_verified_blobs(
    cache: Path, before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]
) -> None:
    """The failure invariant: everything that was there is unchanged; new are only blobs whose content matches
    their name (sha256 for LFS files, the git blob id for regular ones), and the lock files huggingface_hub
    leaves too."""
    for rel, state in before.items():
        assert after.get(rel) == state, rel
    for rel in sorted(set(after) - set(before)):
        parts = rel.split("/")
        if parts[0] == ".locks" or after[rel] == ("dir",):
            continue
        assert len(parts) == 3 and parts[1] == "blobs", rel
        assert after[rel][0] == "file", rel
        name = parts[2]
        assert not name.startswith("."), f"temp file left: {rel}"
        if len(name) == 64:
            assert after[rel][1] == name, f"{rel} holds bytes with sha256 {after[rel][1]}"
        else:
            assert len(name) == 40, f"{rel} is not named by a hash"
            assert git_blob_sha1((cache / rel).read_bytes()) == name, f"{rel} does not hold its git blob"


# -- layout -----------------------------------------------------------------------------------------------------


def test_layout_is_exactly_huggingface_hubs(tmp_path: Path) -> None:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub._tree_cache import TreeCacheEntry, read_tree_cache, write_tree_cache

    b = standard_bundle()
    cache = tmp_path / "hub"
    report = install(b.source(), cache)
    assert report.layout == "symlink"

    tiny = RepoLayout(cache, "model", "org/tiny")
    assert tiny.folder.name == "models--org--tiny"
    assert RepoLayout(cache, "dataset", "org/data").folder.name == "datasets--org--data"
    for repo in b.manifest.repos:
        lay = RepoLayout(cache, repo.repo_type, repo.repo_id)
        assert set(os.listdir(lay.blobs)) == {f.etag for s in repo.snapshots for f in s.files}
        for snap in repo.snapshots:
            for f in snap.files:
                link = lay.snapshot_file(snap.commit, f.path)
                depth = f.path.count("/")
                assert os.readlink(link) == "../" * (2 + depth) + f"blobs/{f.etag}"
                assert link.read_bytes() == b.blobs[f.sha256 or ""]
            # the tree: what huggingface_hub parses, and byte for byte what it would write
            entries = read_tree_cache(str(lay.folder), snap.commit)
            assert entries == {
                f.path: TreeCacheEntry(f.size, f.blob_id, f.lfs_sha256, f.size if f.is_lfs else None)
                for f in snap.files
            }
            ref_folder = tmp_path / "reference" / repo.repo_id / snap.commit
            write_tree_cache(str(ref_folder), snap.commit, entries)
            assert lay.tree(snap.commit).read_bytes() == (ref_folder / "trees" / f"{snap.commit}.json").read_bytes()
    assert os.readlink(tiny.snapshot_file(C1, "unet/config.json")).startswith("../../../blobs/")
    assert os.readlink(tiny.snapshot_file(C1, "text_encoder/sub/deep.txt")).startswith("../../../../blobs/")
    # refs: bare commit, no newline; refs/pr/1 under refs/refs/pr/1 like huggingface_hub stores revision "refs/pr/1"
    assert (tiny.folder / "refs" / "main").read_bytes() == C1.encode()
    assert (tiny.folder / "refs" / "v1.0").read_bytes() == C1.encode()
    assert (tiny.folder / "refs" / "refs" / "pr" / "1").read_bytes() == C2.encode()
    # .no_exist markers: empty files
    assert (tiny.folder / ".no_exist" / C1 / "tokenizer.json").read_bytes() == b""
    assert (tiny.folder / ".no_exist" / C1 / "tokenizer" / "added_tokens.json").is_file()
    assert (cache / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG
    # nothing else: no temp files anywhere
    assert not [p for p in tree_state(cache) if ".tmp" in p or ".incomplete" in p]

    info = scan_cache_dir(cache)
    assert info.warnings == []
    repos = {(r.repo_type, r.repo_id): r for r in info.repos}
    assert set(repos) == {("model", "org/tiny"), ("model", "other/model"), ("dataset", "org/data")}
    refs = {ref for rev in repos[("model", "org/tiny")].revisions for ref in rev.refs}
    assert refs == {"main", "v1.0", "refs/pr/1"}

    assert report.entries_added == sum(len(s.files) for r in b.manifest.repos for s in r.snapshots)
    assert report.trees_written == 4 and report.no_exist_written == 2
    assert report.blobs_present == 0 and report.blobs_replaced == ()
    assert {(m.ref, m.old, m.new) for m in report.refs_moved} >= {("main", None, C1), ("refs/pr/1", None, C2)}
    json.dumps(report.to_json())


def test_shared_content_is_streamed_once_and_hard_linked(tmp_path: Path) -> None:
    b = standard_bundle()
    cache = tmp_path / "hub"
    report = install(b.source(), cache)
    sha = sha256(SHARED)
    paths = [
        RepoLayout(cache, "model", "org/tiny").blob(sha),
        RepoLayout(cache, "model", "other/model").blob(sha),
        RepoLayout(cache, "dataset", "org/data").blob(git_blob_sha1(SHARED)),  # regular file there: git blob id
    ]
    inodes = {os.stat(p).st_ino for p in paths}
    assert len(inodes) == 1 and os.stat(paths[0]).st_nlink == 3
    assert not any(p.is_symlink() for p in paths)  # never a symlink across repos
    assert report.blobs_linked == 2
    assert report.bytes_written == sum(len(v) for v in b.blobs.values())  # each unique content once
    assert report.bytes_deduplicated == 2 * len(SHARED)


def test_copy_layout_has_real_files_and_empty_blobs(tmp_path: Path) -> None:
    b = standard_bundle()
    cache = tmp_path / "hub"
    report = install(b.source(), cache, copy=True)
    assert report.layout == "copy"
    for repo in b.manifest.repos:
        lay = RepoLayout(cache, repo.repo_type, repo.repo_id)
        assert blob_names(cache, repo.repo_type, repo.repo_id) == set()
        for snap in repo.snapshots:
            for f in snap.files:
                p = lay.snapshot_file(snap.commit, f.path)
                assert not p.is_symlink() and p.read_bytes() == b.blobs[f.sha256 or ""]
            assert lay.tree(snap.commit).is_file()
    assert not any(v[0] == "link" for v in tree_state(cache).values())
    assert report.bytes_written >= sum(len(v) for v in b.blobs.values())
    again = install(b.source(), cache, copy=True)
    assert again.bytes_written == 0 and not again.changed


def without_symlinks(code: str, cache: Path) -> str:
    """Run ``code`` (given the cache as argv[1]) in a subprocess with HF_HUB_DISABLE_SYMLINKS=1, read at
    import; its stdout, stripped."""
    out = subprocess.run(
        [sys.executable, "-c", code, str(cache)],
        env={**os.environ, "HF_HUB_DISABLE_SYMLINKS": "1"},
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return out.stdout.strip()


def test_disable_symlinks_env_gives_copy_layout(tmp_path: Path) -> None:
    """HF_HUB_DISABLE_SYMLINKS is read from the environment: checked in a subprocess."""
    code = (
        "import sys; from pathlib import Path; from tests.install.test_install import standard_bundle;"
        "from bundler.install import install;"
        "print(install(standard_bundle().source(), Path(sys.argv[1])).layout)"
    )
    assert without_symlinks(code, tmp_path / "hub") == "copy"
    assert not any(v[0] == "link" for v in tree_state(tmp_path / "hub").values())


def test_copy_false_where_symlinks_are_disabled_is_refused(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from bundler.install import plan_install;"
        "from bundler.errors import InstallError; from tests.install.test_install import standard_bundle\n"
        "try:\n plan_install(standard_bundle().manifest, Path(sys.argv[1]), copy=False)\n"
        "except InstallError as e:\n print('refused', e.hint is not None)\n"
    )
    assert without_symlinks(code, tmp_path / "hub") == "refused True"


# -- idempotence, resume, repair ----------------------------------------------------------------------------------


def test_second_install_is_a_no_op(tmp_path: Path) -> None:
    b = standard_bundle()
    cache = tmp_path / "hub"
    install(b.source(), cache)
    before = tree_state(cache)
    mtimes = {p: p.lstat().st_mtime_ns for p in cache.rglob("*") if ".locks" not in p.parts}
    again = install(b.source(), cache)
    assert again.bytes_written == 0 and again.blobs_written == 0 and again.blobs_linked == 0
    assert again.entries_added == 0 and again.trees_written == 0 and again.refs_moved == ()
    assert not again.changed
    assert again.blobs_present == 8 + 1 + 2  # every (repo, etag) placement, re-hashed
    assert again.bytes_hashed > 0
    assert tree_state(cache) == before
    assert {p: p.lstat().st_mtime_ns for p in cache.rglob("*") if ".locks" not in p.parts} == mtimes
    trusted = install(b.source(), cache, trust_existing=True)
    assert trusted.bytes_hashed == 0 and not trusted.changed


def test_resume_after_a_crash(tmp_path: Path) -> None:
    b = standard_bundle()
    cache = tmp_path / "hub"
    tiny = RepoLayout(cache, "model", "org/tiny")
    tiny.blobs.mkdir(parents=True)
    big = b.file("org/tiny", "model.safetensors")
    cfg = b.file("org/tiny", "config.json", C1)
    (tiny.blobs / big.etag).write_bytes(BIG)  # finished before the crash
    (tiny.blobs / cfg.etag).write_bytes(b'{"hidden": 8}\n')
    stale = tiny.blobs / f".hfbundle-{big.etag}.deadbeef.tmp"
    stale.write_bytes(BIG[:1000])  # the blob being written when it crashed
    stale_other = tiny.blobs / f".hfbundle-{sha256(SHARED)}.0badcafe.tmp"
    stale_other.write_bytes(b"x")
    old_staging = tiny.folder / "snapshots" / f".hfbundle-{C2}.12345678.tmp"
    old_staging.mkdir(parents=True)
    (old_staging / "config.json").symlink_to("../../blobs/nothing")
    os.utime(old_staging, (time.time() - 3 * 86400,) * 2)

    report = install(b.source(), cache)
    assert report.blobs_present == 2
    assert not stale.exists() and not stale_other.exists() and not old_staging.exists()
    assert tiny.snapshot_file(C2, "model.safetensors").read_bytes() == BIG
    assert not [p for p in tree_state(cache) if ".tmp" in p]
    # and now a no-op
    assert not install(b.source(), cache).changed


def test_temp_blobs_of_a_live_install_are_spared_and_swept_once_it_ends(tmp_path: Path) -> None:
    """Leftovers are swept once per repo under the repo's install claim (no lock file per blob, issue 18):
    while another install holds the claim its temp blobs stay; once it ends, the next install removes them."""
    import fcntl

    b = standard_bundle()
    cache = tmp_path / "hub"
    tiny = RepoLayout(cache, "model", "org/tiny")
    tiny.blobs.mkdir(parents=True)
    live = tiny.blobs / f".hfbundle-{sha256(SHARED)}.0badcafe.tmp"
    live.write_bytes(b"being written")
    claim = tiny.lock("hfbundle-install")
    claim.parent.mkdir(parents=True)
    fd = os.open(claim, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # another install is writing into this repo
        install(b.source(), cache)
        assert live.exists()
        assert not install(b.source(), cache).changed  # a no-op install spares it too
        assert live.exists()
    finally:
        os.close(fd)
    install(b.source(), cache)
    assert not live.exists()
    locks = {p.name for p in claim.parent.iterdir()}
    assert locks == {"hfbundle-install.lock"}  # no lock file per blob


def test_corrupt_existing_blob_is_replaced_and_reported(tmp_path: Path) -> None:
    b = standard_bundle()
    cache = tmp_path / "hub"
    install(b.source(), cache)
    f = b.file("org/tiny", "unet/diffusion_pytorch_model.safetensors")
    blob = RepoLayout(cache, "model", "org/tiny").blob(f.etag)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    report = install(b.source(), cache)
    assert [(r.repo_id, r.path) for r in report.blobs_replaced] == [("org/tiny", f"blobs/{f.etag}")]
    assert report.blobs_replaced[0].expected == f"sha256 {f.sha256}"
    assert report.blobs_replaced[0].actual == f"sha256 {sha256(bytes(data))}"
    assert sha256(blob.read_bytes()) == f.sha256 and report.bytes_written == f.size


def test_wrong_size_existing_blob_is_replaced_even_when_trusted(tmp_path: Path) -> None:
    b = standard_bundle()
    cache = tmp_path / "hub"
    install(b.source(), cache)
    f = b.file("org/tiny", "config.json", C1)
    blob = RepoLayout(cache, "model", "org/tiny").blob(f.etag)
    blob.write_bytes(b"{}")
    report = install(b.source(), cache, trust_existing=True)
    assert len(report.blobs_replaced) == 1 and blob.read_bytes() == b'{"hidden": 8}\n'


def test_identical_blob_in_another_repo_is_linked_not_streamed(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    first = build([Repo("model", "a/one", {"main": C1}, [Snap(C1, {"w.safetensors": (BIG, True)})])])
    install(first.source(), cache)
    second = build([Repo("model", "b/two", {"main": C2}, [Snap(C2, {"w.safetensors": (BIG, True)})])])
    plan = plan_install(second.manifest, cache)
    assert [c.action for c in plan.contents] == ["link"]
    # a source whose blob is garbage proves nothing is read from it
    report = install(second.source({sha256(BIG): b"garbage"}), cache)
    assert report.blobs_linked == 1 and report.bytes_written == 0
    a = RepoLayout(cache, "model", "a/one").blob(sha256(BIG))
    assert os.stat(a).st_ino == os.stat(RepoLayout(cache, "model", "b/two").blob(sha256(BIG))).st_ino


# -- failures leave the cache as it was ---------------------------------------------------------------------------


def _bad_source(b: Bundle, case: str) -> tuple[MemorySource, RepoFile]:
    f = b.file("org/tiny", "unet/diffusion_pytorch_model.safetensors")
    good = b.blobs[f.sha256 or ""]
    bad = {
        "wrong-hash": good[:-1] + bytes([good[-1] ^ 1]),
        "truncated": good[: len(good) // 2],
        "oversize": good + b"more bytes than declared",
    }[case]
    return b.source({f.sha256 or "": bad}), f


@pytest.mark.parametrize("case", ["wrong-hash", "truncated", "oversize"])
@pytest.mark.parametrize("prefilled", [False, True])
def test_failure_leaves_cache_unchanged_but_for_verified_blobs(tmp_path: Path, case: str, prefilled: bool) -> None:
    cache = tmp_path / "hub"
    if prefilled:  # a cache already holding another revision of the same repo, and another repo
        old = build(
            [
                Repo("model", "org/tiny", {"main": C3}, [Snap(C3, {"config.json": (b"{}", False)})]),
                Repo("model", "keep/me", {"main": C4}, [Snap(C4, {"a.bin": (b"abc", True)})]),
            ]
        )
        install(old.source(), cache)
    before = tree_state(cache)
    b = standard_bundle()
    source, f = _bad_source(b, case)
    with pytest.raises(IntegrityError) as info:
        install(source, cache)
    err = info.value
    assert "org/tiny" in err.message and f.path in err.message
    assert err.hint is not None and "damaged" in err.hint
    if case == "wrong-hash":
        assert err.expected == f.sha256 and err.actual is not None and len(err.actual) == 64
    after = tree_state(cache)
    assert_only_new_verified_blobs(cache, before, after)
    # and the same install from a good source completes it
    install(b.source(), cache)
    assert RepoLayout(cache, "model", "org/tiny").snapshot_file(C1, f.path).read_bytes() == b.blobs[f.sha256 or ""]


class LaneSource(MemorySource):
    """A memory source that also hands out any one blob, like a bundle file, so the installer streams blobs
    on several lanes; it records the threads that ask."""

    random_access = True

    def __init__(self, manifest: Manifest, blobs: Mapping[str, bytes]) -> None:
        super().__init__(manifest, blobs)
        self.data = dict(blobs)
        self.threads: set[str] = set()

    def read_blob(self, sha256: str, *, verify: bool = True) -> io.BytesIO:
        self.threads.add(threading.current_thread().name)
        size = next(b.size for b in self.manifest.blobs if b.sha256 == sha256)
        return io.BytesIO(self.data.get(sha256, b"")[: size + 1])


@pytest.fixture
def lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every blob gets a lane, on a machine of four cores."""
    import bundler.install.run

    monkeypatch.setattr(bundler.install.run, "LANE_MIN_BYTES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)


@pytest.mark.usefixtures("lanes")
@pytest.mark.parametrize("copy", [False, True])
def test_lanes_give_the_same_cache_as_streaming_in_order(tmp_path: Path, copy: bool) -> None:
    b = standard_bundle()
    in_order = install(b.source(), tmp_path / "a", copy=copy)
    source = LaneSource(b.manifest, b.blobs)
    in_lanes = install(source, tmp_path / "b", copy=copy)
    assert len(source.threads) >= 2 and all(t.startswith("hfbundle-lane") for t in source.threads)
    assert tree_state(tmp_path / "a") == tree_state(tmp_path / "b")
    for key in ("blobs_written", "blobs_linked", "bytes_written", "bytes_deduplicated", "refs_moved"):
        assert in_order.to_json()[key] == in_lanes.to_json()[key], key


class RemoteLaneSource(LaneSource):
    """A source whose reads wait on another machine: it asks for more lanes than there are cores."""

    preferred_lanes = 3


@pytest.mark.parametrize(("cores", "source_cls", "expected"), [(1, LaneSource, 1), (1, RemoteLaneSource, 3)])
def test_a_remote_source_gets_more_lanes_than_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int, source_cls: type[LaneSource], expected: int
) -> None:
    import bundler.install.run

    monkeypatch.setattr(bundler.install.run, "LANE_MIN_BYTES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    started: list[int] = []
    from concurrent.futures import ThreadPoolExecutor as real

    def counting(*args: int, **kw: object) -> object:
        if str(kw.get("thread_name_prefix", "")).startswith("hfbundle-lane"):
            started.append(args[0])
        return real(*args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(bundler.install.run, "ThreadPoolExecutor", counting)
    b = standard_bundle()
    install(source_cls(b.manifest, b.blobs), tmp_path / "hub")
    assert started == ([expected] if expected > 1 else [])
    assert tree_state(tmp_path / "hub")  # installed all the same


@pytest.mark.usefixtures("lanes")
@pytest.mark.parametrize("case", ["wrong-hash", "truncated", "oversize"])
def test_a_failing_lane_leaves_the_cache_unchanged_but_for_verified_blobs(tmp_path: Path, case: str) -> None:
    cache = tmp_path / "hub"
    b = standard_bundle()
    bad, f = _bad_source(b, case)
    before = tree_state(cache)
    with pytest.raises(IntegrityError) as info:
        install(LaneSource(b.manifest, bad._blobs), cache)
    assert f.path in info.value.message
    assert_only_new_verified_blobs(cache, before, tree_state(cache))
    install(LaneSource(b.manifest, b.blobs), cache)
    assert RepoLayout(cache, "model", "org/tiny").snapshot_file(C1, f.path).read_bytes() == b.blobs[f.sha256 or ""]


def test_git_blob_id_mismatch_is_refused(tmp_path: Path) -> None:
    """A regular file whose manifest blob_id does not match its content's git blob id (sha256 is right)."""
    b = build([Repo("model", "org/x", {"main": C1}, [Snap(C1, {"config.json": (b"{}", False)})])])
    raw = json.loads(b.manifest.dumps())
    raw["repos"][0]["snapshots"][0]["files"][0]["blob_id"] = "0" * 40
    raw["repos"][0]["snapshots"][0]["listing"][0]["blob_id"] = "0" * 40
    manifest = Manifest.loads(json.dumps(raw).encode())
    with pytest.raises(IntegrityError) as info:
        install(MemorySource(manifest, b.blobs), tmp_path / "hub")
    assert info.value.expected == "0" * 40
    assert not (tmp_path / "hub" / "models--org--x" / "blobs" / ("0" * 40)).exists()
    assert not (tmp_path / "hub" / "models--org--x" / "snapshots").exists()


def test_source_missing_a_declared_blob_is_refused(tmp_path: Path) -> None:
    b = standard_bundle()
    f = b.file("other/model", "weights.safetensors")
    blobs = {k: v for k, v in b.blobs.items() if k != f.sha256}

    class Lossy(MemorySource):
        def iter_blobs(self, wanted=None):
            for entry, stream in super().iter_blobs(wanted):
                if entry.sha256 in blobs:
                    yield entry, stream

    before = tree_state(tmp_path / "hub")
    with pytest.raises(Exception, match="does not contain blob"):
        install(Lossy(b.manifest, blobs), tmp_path / "hub")
    assert_only_new_verified_blobs(tmp_path / "hub", before, tree_state(tmp_path / "hub"))


@pytest.mark.parametrize("where", ["snapshot", "subfolder", "repo"])
def test_symlink_leading_outside_is_refused_before_writing(tmp_path: Path, where: str) -> None:
    cache = tmp_path / "hub"
    outside = tmp_path / "outside"
    outside.mkdir()
    tiny = RepoLayout(cache, "model", "org/tiny")
    if where == "repo":
        cache.mkdir()
        tiny.folder.symlink_to(outside, target_is_directory=True)
    elif where == "snapshot":
        (tiny.folder / "snapshots").mkdir(parents=True)
        tiny.snapshot(C1).symlink_to(outside, target_is_directory=True)
    else:
        tiny.snapshot(C1).mkdir(parents=True)
        (tiny.snapshot(C1) / "unet").symlink_to(outside, target_is_directory=True)
    before = tree_state(cache)
    with pytest.raises(UnsafePathError) as info:
        install(standard_bundle().source(), cache)
    assert "outside the cache" in info.value.message and info.value.hint
    assert tree_state(cache) == before
    assert list(outside.iterdir()) == []


def test_file_in_the_way_is_refused_before_writing(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    tiny = RepoLayout(cache, "model", "org/tiny")
    tiny.snapshot(C1).mkdir(parents=True)
    (tiny.snapshot(C1) / "unet").write_bytes(b"not a folder")
    before = tree_state(cache)
    with pytest.raises(InstallError, match="where a folder must be"):
        install(standard_bundle().source(), cache)
    assert tree_state(cache) == before


def test_disk_errors_become_install_errors_with_a_hint(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores permissions")
    cache = tmp_path / "hub"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with pytest.raises(InstallError) as info:
            install(standard_bundle().source(), cache)
        assert "permission denied" in info.value.message and "HF_HUB_CACHE" in (info.value.hint or "")
    finally:
        cache.chmod(0o755)


@pytest.mark.parametrize(
    ("code", "message", "hint"),
    [
        (errno.ENOSPC, "disk full", "free some space"),
        (errno.EACCES, "permission denied", "HF_HUB_CACHE"),
        (errno.EROFS, "read-only filesystem", "remount"),
        (errno.EIO, "could not write the cache", "re-run"),
    ],
)
def test_os_errors_become_install_errors_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, message: str, hint: str
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(code, os.strerror(code), "somewhere")

    monkeypatch.setattr("bundler.install.run._sync_filesystem", fail)  # the barrier after the blobs are written
    with pytest.raises(InstallError) as info:
        install(standard_bundle().source(), tmp_path / "hub")
    assert message in info.value.message and hint in (info.value.hint or "")
    assert isinstance(info.value.__cause__, OSError)
    assert not [p for p in tree_state(tmp_path / "hub") if ".tmp" in p]


@pytest.mark.parametrize("copy", [None, True], ids=["auto", "copy"])
def test_install_waits_for_huggingface_hubs_lock(tmp_path: Path, copy: bool | None) -> None:
    """hf_hub_download holds `.locks/<repo>/<etag>.lock` while it writes a blob (without symlinks: the snapshot
    file itself); the install waits for it, in either layout."""
    from filelock import FileLock

    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"w.safetensors": (BIG, True)})])])
    cache = tmp_path / "hub"
    lock = RepoLayout(cache, "model", "org/m").lock(sha256(BIG))
    lock.parent.mkdir(parents=True)
    done: list[InstallReport] = []
    started, finished = threading.Event(), threading.Event()

    def install_now() -> None:
        started.set()
        done.append(install(b.source(), cache, copy=copy))
        finished.set()

    with FileLock(str(lock)):
        t = threading.Thread(target=install_now)
        t.start()
        assert started.wait(10)
        assert not finished.wait(0.5)  # blocked on the lock for as long as it is held
        assert not done and not RepoLayout(cache, "model", "org/m").blob(sha256(BIG)).exists()
        assert not RepoLayout(cache, "model", "org/m").snapshot(C1).exists()
    assert finished.wait(30)
    t.join(30)
    assert done and done[0].blobs_written == 1


def test_valid_entries_of_another_shape_are_kept(tmp_path: Path) -> None:
    """A copy-layout snapshot (real files) later installed with symlinks: good files stay, no orphan blob."""
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"a.bin": (b"aaa", True), "b.txt": (b"b", False)})])])
    cache = tmp_path / "hub"
    install(b.source(), cache, copy=True)
    lay = RepoLayout(cache, "model", "org/m")
    lay.snapshot_file(C1, "b.txt").write_bytes(b"x")  # damaged
    report = install(b.source(), cache)
    assert not lay.snapshot_file(C1, "a.bin").is_symlink()
    assert os.readlink(lay.snapshot_file(C1, "b.txt")) == f"../../blobs/{git_blob_sha1(b'b')}"
    assert blob_names(cache, "model", "org/m") == {git_blob_sha1(b"b")}
    assert [r.path for r in report.blobs_replaced] == [f"snapshots/{C1}/b.txt"]


MEMORY_CHECK = """
import hashlib, io, resource, sys
from pathlib import Path
from bundler.install import install
from bundler.bundle.manifest import BlobEntry, Manifest, RepoEntry, SnapshotEntry
from bundler.repofile import RepoFile
from bundler.hashing import lfs_blob_id

SIZE = 192 * 1024 * 1024
BLOCK = hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32)

class Generated(io.RawIOBase):
    def __init__(self):
        self.left = SIZE
    def readable(self):
        return True
    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left, len(BLOCK))
        self.left -= n
        return BLOCK[:n]

h = hashlib.sha256()
for _ in range(SIZE // len(BLOCK)):
    h.update(BLOCK)
sha = h.hexdigest()
f = RepoFile("big.safetensors", SIZE, lfs_blob_id(sha, SIZE), lfs_sha256=sha, sha256=sha)
manifest = Manifest(
    repos=(RepoEntry("model", "org/big", {"main": "a" * 40}, (SnapshotEntry("a" * 40, (f,)),)),),
    blobs=(BlobEntry(sha, SIZE),),
)

class Source:
    manifest = manifest
    manifest_bytes = manifest.dumps()
    def iter_blobs(self, wanted=None):
        yield manifest.blobs[0], Generated()
    def close(self):
        pass

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = install(Source(), Path(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(report.bytes_written, (after - before) // 1024)
"""


def test_memory_stays_bounded_while_streaming_a_big_blob(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHECK, str(tmp_path / "hub")],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    written, grew_mb = map(int, out.stdout.split())
    assert written == 192 * 1024 * 1024
    assert grew_mb < 32, f"RSS grew by {grew_mb} MB while installing a 192 MB blob"


# -- refs -------------------------------------------------------------------------------------------------------


def _two_versions() -> tuple[Bundle, Bundle]:
    v1 = build([Repo("model", "org/m", {"main": C1, "v1": C1}, [Snap(C1, {"config.json": (b"1", False)})])])
    v2 = build([Repo("model", "org/m", {"main": C2}, [Snap(C2, {"config.json": (b"2", False)})])])
    return v1, v2


def test_refs_moved_are_reported_and_other_revisions_untouched(tmp_path: Path) -> None:
    v1, v2 = _two_versions()
    cache = tmp_path / "hub"
    install(v1.source(), cache)
    report = install(v2.source(), cache)
    assert [(m.ref, m.old, m.new) for m in report.refs_moved] == [("main", C1, C2)]
    lay = RepoLayout(cache, "model", "org/m")
    assert lay.read_ref("main") == C2 and lay.read_ref("v1") == C1
    assert lay.snapshot_file(C1, "config.json").read_bytes() == b"1"
    assert lay.tree(C1).is_file()


def test_keep_refs_leaves_existing_refs(tmp_path: Path) -> None:
    v1, v2 = _two_versions()
    cache = tmp_path / "hub"
    install(v1.source(), cache)
    report = install(v2.source(), cache, keep_refs=True)
    assert report.refs_moved == ()
    assert [(m.ref, m.old, m.new) for m in report.refs_kept] == [("main", C1, C2)]
    assert RepoLayout(cache, "model", "org/m").read_ref("main") == C1


def test_ref_with_trailing_newline_is_repaired(tmp_path: Path) -> None:
    v1, _ = _two_versions()
    cache = tmp_path / "hub"
    install(v1.source(), cache)
    ref = RepoLayout(cache, "model", "org/m").ref("main")
    ref.write_text(C1 + "\n")
    report = install(v1.source(), cache, keep_refs=True)
    assert ref.read_bytes() == C1.encode()
    assert [(m.old, m.new) for m in report.refs_moved] == [(C1 + "\n", C1)]


# -- trees --------------------------------------------------------------------------------------------------------


def _tree_paths(cache: Path, repo_id: str, commit: str) -> set[str]:
    data = json.loads(RepoLayout(cache, "model", repo_id).tree(commit).read_text())
    assert data["format_version"] == 1
    return set(data["files"])


def _tree_files(cache: Path, repo_id: str, commit: str) -> dict[str, Any]:
    files: dict[str, Any] = json.loads(RepoLayout(cache, "model", repo_id).tree(commit).read_text())["files"]
    return files


X, Y, Z = {"x.json": (b"x", False)}, {"y.bin": (b"y", True)}, {"z.txt": (b"z", False)}


def test_partial_bundle_writes_no_listing(tmp_path: Path) -> None:
    """The commit has three files, the bundle two: a listing of two would mislead the client online, one of
    three would break it offline. So none."""
    cache = tmp_path / "hub"
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {**X, **Y}, upstream=Z)])])
    report = install(b.source(), cache)
    assert not RepoLayout(cache, "model", "org/m").tree(C1).exists()
    assert report.trees_written == 0 and report.trees_moved == ()


@pytest.mark.parametrize("copy", [None, True], ids=["auto", "copy"])
def test_listing_written_once_the_snapshot_holds_every_file(tmp_path: Path, copy: bool | None) -> None:
    """In either layout, as huggingface_hub writes its listing whether or not it has symlinks. A copy-layout file
    the earlier install left (no record: these bundles carry no lock) is hashed to confirm it."""
    cache = tmp_path / "hub"
    a = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {**X, **Y}, upstream=Z)])])
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {**Y, **Z}, upstream=X)])])
    install(a.source(), cache, copy=copy)
    assert not RepoLayout(cache, "model", "org/m").tree(C1).exists()
    report = install(b.source(), cache, copy=copy)
    assert report.trees_written == 1
    listing = b.manifest.repos[0].snapshots[0].listing
    assert listing is not None
    expected = hfcache.tree_json({f.path: f.tree_entry() for f in listing})
    assert RepoLayout(cache, "model", "org/m").tree(C1).read_bytes() == expected


def test_copy_layout_listing_needs_each_files_content(tmp_path: Path) -> None:
    """A copy-layout file of the right size but another content does not count as held: no listing."""
    cache = tmp_path / "hub"
    a = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {**X, **Y}, upstream=Z)])])
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {**Y, **Z}, upstream=X)])])
    install(a.source(), cache, copy=True)
    lay = RepoLayout(cache, "model", "org/m")
    lay.snapshot_file(C1, "x.json").write_bytes(b"X")  # same size, other content
    report = install(b.source(), cache, copy=True)
    assert report.trees_written == 0 and not lay.tree(C1).exists()


def test_listing_naming_files_the_snapshot_lacks_is_moved_aside(tmp_path: Path) -> None:
    """The real client's own offline trap (it downloaded with allow_patterns): moved aside, never cut down."""
    cache = tmp_path / "hub"
    lay = RepoLayout(cache, "model", "org/m")
    full_listing = {
        "config.json": {"size": 1, "blob_id": git_blob_sha1(b"1")},
        "unet/fp16.safetensors": {"size": 5, "blob_id": "1" * 40, "lfs_sha256": "2" * 64, "lfs_size": 5},
    }
    lay.tree(C1).parent.mkdir(parents=True)
    raw = json.dumps({"format_version": 1, "files": full_listing}, indent=1).encode()
    lay.tree(C1).write_bytes(raw)
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"config.json": (b"1", False)})])])
    # the bundle's own listing says the commit has one file: it disagrees with the old one, which is moved
    report = install(b.source(), cache)
    assert [(m.trap, m.moved_to) for m in report.trees_moved] == [("offline", f".hfbundle/trees/{C1}.json")]
    assert (lay.folder / ".hfbundle" / "trees" / f"{C1}.json").read_bytes() == raw
    assert set(_tree_files(cache, "org/m", C1)) == {"config.json"}  # the bundle's complete listing


def test_listing_naming_missing_files_is_moved_even_without_a_listing_to_write(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    lay = RepoLayout(cache, "model", "org/m")
    full = {p: repo_file(p, d, lfs).tree_entry() for p, (d, lfs) in {**X, **Y, **Z}.items()}
    lay.tree(C1).parent.mkdir(parents=True)
    lay.tree(C1).write_bytes(hfcache.tree_json(full))
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, X, upstream={**Y, **Z})])])
    report = install(b.source(), cache)
    assert not lay.tree(C1).exists()
    assert [m.trap for m in report.trees_moved] == ["offline"]
    assert any("moved trees/" in line for line in report.render())


def test_listing_completed_by_links_of_an_old_cache(tmp_path: Path) -> None:
    """A pre-1.22 snapshot (no trees/) holds the file the bundle lacks: the snapshot is then complete."""
    cache = tmp_path / "hub"
    lay = RepoLayout(cache, "model", "org/m")
    data = b"old weights"
    lay.blobs.mkdir(parents=True)
    (lay.blobs / sha256(data)).write_bytes(data)
    lay.snapshot(C1).mkdir(parents=True)
    lay.snapshot_file(C1, "old.safetensors").symlink_to(f"../../blobs/{sha256(data)}")
    old = {"old.safetensors": (data, True)}
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"config.json": (b"1", False)}, upstream=old)])])
    install(b.source(), cache)
    listed = _tree_files(cache, "org/m", C1)["old.safetensors"]
    assert listed == repo_file("old.safetensors", data, True).tree_entry().to_json()


def test_link_to_another_blob_does_not_complete_the_listing(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    lay = RepoLayout(cache, "model", "org/m")
    other = b"other weights"
    lay.blobs.mkdir(parents=True)
    (lay.blobs / sha256(other)).write_bytes(other)
    lay.snapshot(C1).mkdir(parents=True)
    lay.snapshot_file(C1, "old.safetensors").symlink_to(f"../../blobs/{sha256(other)}")
    old = {"old.safetensors": (b"old weights!!", True)}
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"config.json": (b"1", False)}, upstream=old)])])
    install(b.source(), cache)
    assert not lay.tree(C1).exists()


def test_copy_layout_files_are_confirmed_by_the_install_record(tmp_path: Path) -> None:
    """Copy-layout files carry no hash in their names: the record of the install that put them there tells."""
    cache = tmp_path / "hub"
    a = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {**X, **Y}, upstream=Z)])])
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, Z, upstream={**X, **Y})])])
    install(a.source(), cache, copy=True)
    lay = RepoLayout(cache, "model", "org/m")
    assert not lay.tree(C1).exists()
    record_install(cache, _with_lock(a.manifest))
    assert install(b.source(), cache, copy=True).bytes_hashed == 0  # the record vouches: nothing hashed
    assert set(_tree_files(cache, "org/m", C1)) == {"x.json", "y.bin", "z.txt"}
    # without the record the install hashes x.json and y.bin against the listing (1 byte each): the same listing
    other = tmp_path / "other"
    install(a.source(), other, copy=True)
    assert install(b.source(), other, copy=True).bytes_hashed == 2
    assert set(_tree_files(other, "org/m", C1)) == {"x.json", "y.bin", "z.txt"}


def _with_lock(manifest: Manifest) -> Manifest:
    """``manifest`` with the lock ``build`` would have embedded (the records are made from it)."""
    repos = []
    for r in manifest.repos:
        for s in r.snapshots:
            upstream = tuple(f.path for f in s.listing or s.files)
            repos.append(LockedRepo(r.repo_type, r.repo_id, "main", s.commit, "files", s.files, upstream))
    return dataclasses.replace(manifest, lock=Lock(repos=tuple(repos), recipe="test"))


def test_partial_listing_of_an_older_hfbundle_is_moved_aside(tmp_path: Path) -> None:
    """Migration: a listing naming only the bundled files (what hfbundle < 0.2 wrote) is the online trap."""
    cache = tmp_path / "hub"
    a = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {**X, **Y}, upstream=Z)])])
    install(a.source(), cache)
    record_install(cache, _with_lock(a.manifest))
    lay = RepoLayout(cache, "model", "org/m")
    partial = hfcache.tree_json({f.path: f.tree_entry() for f in a.manifest.repos[0].snapshots[0].files})
    lay.tree(C1).parent.mkdir(parents=True)
    lay.tree(C1).write_bytes(partial)  # what the older installer left
    report = install(a.source(), cache)
    assert not lay.tree(C1).exists()
    assert [m.trap for m in report.trees_moved] == ["online"]


def test_tree_none_writes_no_tree(tmp_path: Path) -> None:
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"a": (b"a", False)}, tree=TREE_NONE)])])
    install(b.source(), tmp_path / "hub")
    assert not RepoLayout(tmp_path / "hub", "model", "org/m").tree(C1).exists()


def test_format_1_bundle_writes_a_listing_only_when_its_lock_shows_the_whole_commit(tmp_path: Path) -> None:
    whole = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {**X, **Y}, tree=TREE_FILES)])])
    with_lock = Manifest.loads(_with_lock(whole.manifest).dumps())
    install(MemorySource(with_lock, whole.blobs), tmp_path / "a")
    assert set(_tree_files(tmp_path / "a", "org/m", C1)) == {"x.json", "y.bin"}
    install(whole.source(), tmp_path / "b")  # no lock: nothing says these are all the commit's files
    assert not RepoLayout(tmp_path / "b", "model", "org/m").tree(C1).exists()


def _tree_blob_bundle(listing: Mapping[str, Any]) -> Bundle:
    tree = json.dumps({"format_version": 1, "files": dict(listing)}, indent=1).encode()
    snap = Snap(C1, {"a.json": (b"a", False)}, tree=sha256(tree))
    return build([Repo("model", "org/m", {"main": C1}, [snap])], extra=[tree])


def test_saved_tree_blob_is_restored_verbatim(tmp_path: Path) -> None:
    b = _tree_blob_bundle({"a.json": {"size": 1, "blob_id": git_blob_sha1(b"a")}})
    tree_sha = b.manifest.repos[0].snapshots[0].tree
    install(b.source(), tmp_path / "hub")
    assert RepoLayout(tmp_path / "hub", "model", "org/m").tree(C1).read_bytes() == b.blobs[tree_sha]
    assert blob_names(tmp_path / "hub", "model", "org/m") == {git_blob_sha1(b"a")}  # the listing is no blob


def test_saved_tree_blob_listing_missing_files_is_left_out(tmp_path: Path) -> None:
    b = _tree_blob_bundle(
        {
            "a.json": {"size": 1, "blob_id": git_blob_sha1(b"a")},
            "gone.bin": {"size": 3, "blob_id": "3" * 40, "lfs_sha256": "4" * 64, "lfs_size": 3},
        }
    )
    report = install(b.source(), tmp_path / "hub")
    assert not RepoLayout(tmp_path / "hub", "model", "org/m").tree(C1).exists()
    assert any("lacks" in n and "--verbatim" in n for n in report.notes)
    plan = plan_install(b.manifest, tmp_path / "verbatim", verbatim_trees=True)
    execute(plan, b.source())
    tree_sha = b.manifest.repos[0].snapshots[0].tree
    assert RepoLayout(tmp_path / "verbatim", "model", "org/m").tree(C1).read_bytes() == b.blobs[tree_sha]


# -- .no_exist ------------------------------------------------------------------------------------------------------


def test_stale_no_exist_marker_of_an_installed_file_is_removed(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    lay = RepoLayout(cache, "model", "org/m")
    marker = lay.no_exist(C1, "config.json")
    marker.parent.mkdir(parents=True)
    marker.touch()
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"config.json": (b"1", False)})])])
    install(b.source(), cache)
    assert not marker.exists()


# -- incremental bundles --------------------------------------------------------------------------------------------


def _incremental() -> tuple[Bundle, Bundle]:
    """A base bundle with BIG, and an increment whose new commit reuses BIG without carrying it."""
    base = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"w.safetensors": (BIG, True)})])])
    files = {"w.safetensors": (BIG, True), "config.json": (b"new", False)}
    inc = build(
        [Repo("model", "org/m", {"main": C2}, [Snap(C2, files)])],
        base=base.manifest.bundle_id,
        carry={sha256(b"new")},
    )
    return base, inc


def test_incremental_without_its_base_names_the_missing_blob(tmp_path: Path) -> None:
    _, inc = _incremental()
    cache = tmp_path / "hub"
    plan = plan_install(inc.manifest, cache)
    assert [c.sha256 for c in plan.missing] == [sha256(BIG)]
    with pytest.raises(InstallError) as info:
        install(inc.source(), cache)
    assert sha256(BIG) in info.value.message and "base" in (info.value.hint or "")
    assert tree_state(cache) == {}


def test_incremental_with_its_base_as_extra_source(tmp_path: Path) -> None:
    base, inc = _incremental()
    report = install(inc.source(), tmp_path / "hub", extra_sources=[base.source()])
    assert report.blobs_written == 2
    snap = RepoLayout(tmp_path / "hub", "model", "org/m").snapshot_file(C2, "w.safetensors")
    assert snap.read_bytes() == BIG


@pytest.mark.parametrize("copy", [None, True], ids=["auto", "copy"])
def test_incremental_over_an_installed_base(tmp_path: Path, copy: bool | None) -> None:
    base, inc = _incremental()
    cache = tmp_path / "hub"
    install(base.source(), cache, copy=copy)
    report = install(inc.source(), cache, copy=copy)
    assert RepoLayout(cache, "model", "org/m").snapshot_file(C2, "w.safetensors").read_bytes() == BIG
    if report.layout == "symlink":  # the new commit links to the base's blob
        assert report.blobs_present == 1 and report.bytes_written == 3
    else:  # blobs/ is empty: the base's snapshot file is re-hashed, then copied (hashed again) into the new one
        assert report.blobs_present == 0 and report.bytes_written == 3 + len(BIG)
        assert report.bytes_hashed == len(BIG)


@pytest.mark.parametrize("trust_existing", [False, True])
def test_incremental_over_a_copy_layout_base_rehashes_what_it_copies(tmp_path: Path, trust_existing: bool) -> None:
    """The base's copy is evidence, not proof (even with trust_existing: its name carries no hash): one that no
    longer holds the content is not used, and nothing of the new commit becomes visible."""
    base, inc = _incremental()
    cache = tmp_path / "hub"
    install(base.source(), cache, copy=True)
    lay = RepoLayout(cache, "model", "org/m")
    plan = plan_install(inc.manifest, cache, copy=True)
    assert {c.sha256: (c.action, c.cache_copies) for c in plan.contents}[sha256(BIG)] == (
        "link",
        (str(lay.snapshot_file(C1, "w.safetensors")),),
    )
    damaged = bytearray(BIG)
    damaged[1000] ^= 1
    lay.snapshot_file(C1, "w.safetensors").write_bytes(bytes(damaged))
    with pytest.raises(InstallError, match="neither in this bundle nor in the cache"):
        install(inc.source(), cache, copy=True, trust_existing=trust_existing)
    assert not lay.snapshot(C2).exists() and lay.read_ref("main") == C1


def test_trees_listing_from_the_base_bundle(tmp_path: Path) -> None:
    listing = {"a.json": {"size": 1, "blob_id": git_blob_sha1(b"a")}}
    tree = json.dumps({"format_version": 1, "files": listing}, indent=1).encode()
    base = build([Repo("model", "org/b", {"main": C3}, [Snap(C3, {"b": (b"b", False)})])], extra=[tree])
    snap = Snap(C1, {"a.json": (b"a", False)}, tree=sha256(tree))
    inc = build([Repo("model", "org/m", {"main": C1}, [snap])], base=base.manifest.bundle_id, carry={sha256(b"a")})
    assert [c.action for c in plan_install(inc.manifest, tmp_path / "hub").contents] == ["stream", "unavailable"]
    install(inc.source(), tmp_path / "hub", extra_sources=[base.source()])
    assert RepoLayout(tmp_path / "hub", "model", "org/m").tree(C1).read_bytes() == tree
    without = install(inc.source(), tmp_path / "other")  # no base: no listing, which loads as well
    assert not RepoLayout(tmp_path / "other", "model", "org/m").tree(C1).exists()
    assert any("in no backup given" in n for n in without.notes)


@pytest.mark.parametrize("field", ["commit", "ref"])
def test_names_with_a_trailing_newline_are_refused(field: str) -> None:
    """`$` in a regex matches before a final newline: a crafted `<commit>\\n` must not reach refs/."""
    raw = json.loads(build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"a": (b"a", False)})])]).manifest.dumps())
    if field == "commit":
        raw["repos"][0]["snapshots"][0]["commit"] = C1 + "\n"
        raw["repos"][0]["refs"]["main"] = C1 + "\n"
    else:
        raw["repos"][0]["refs"] = {"main\n": C1}
    with pytest.raises(UnsafePathError):
        Manifest.loads(json.dumps(raw).encode())


# -- plan -----------------------------------------------------------------------------------------------------------


def test_plan_writes_nothing_and_describes_the_work(tmp_path: Path) -> None:
    b = standard_bundle()
    cache = tmp_path / "hub"
    plan = plan_install(b.manifest, cache)
    assert not cache.exists() and list(tmp_path.iterdir()) == []
    data = plan.to_json()
    assert data["layout"] == "symlink" and data["bytes_to_stream"] == sum(len(v) for v in b.blobs.values())
    assert data["missing"] == [] and len(data["new_snapshots"]) == 4
    install(b.source(), cache)
    again = plan_install(b.manifest, cache)
    assert {c.action for c in again.contents} == {"none"}
    assert {e.state for e in again.entries} == {"present"}
    assert {r.action for r in again.refs} == {"same"}


def _phases_add_up(events: Sequence[Any]) -> set[str]:
    """Each phase's bytes (and files) end exactly at its total and never go back; ``link`` shares ``stream``'s
    count (the CLI draws them as one bar). Returns the phases seen."""
    by_phase: dict[str, list[Any]] = {}
    for e in events:
        by_phase.setdefault("stream" if e.phase == "link" else e.phase, []).append(e)
    for phase, seen in by_phase.items():
        assert seen[-1].done_bytes == seen[-1].total_bytes, phase
        assert seen[-1].done_files == seen[-1].total_files, phase
        assert all(a.done_bytes <= b.done_bytes for a, b in itertools.pairwise(seen)), phase
    return set(by_phase)


@pytest.mark.parametrize("how", ["auto", "copy", "no-hard-links"])
def test_progress_is_reported(tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress adds up exactly in both layouts: copies (the copy layout's second files, blobs copied where hard
    links are refused) are counted once, in their own phase or in the stream phase's total."""
    if how == "no-hard-links":
        from bundler import oscompat

        monkeypatch.setattr(oscompat, "hard_link", lambda src, dst: False)
    copy = True if how == "copy" else None
    events: list[Any] = []
    report = install(standard_bundle().source(), tmp_path / "hub", copy=copy, on_progress=events.append)
    phases = _phases_add_up(events)
    assert "stream" in phases and ("copy" in phases) == (report.layout == "copy")
    again: list[Any] = []
    install(standard_bundle().source(), tmp_path / "hub", copy=copy, on_progress=again.append)  # all re-hashed
    assert _phases_add_up(again) == {"verify"}


def test_report_is_frozen_json(tmp_path: Path) -> None:
    report = install(standard_bundle().source(), tmp_path / "hub")
    assert isinstance(report, InstallReport)
    with pytest.raises(AttributeError):
        report.bytes_written = 0  # type: ignore[misc]
    data = json.loads(json.dumps(report.to_json()))
    assert {r["repo_id"] for r in data["repos"]} == {"org/tiny", "other/model", "org/data"}
    assert data["layout"] == "symlink"
    lines = report.render()
    assert lines[0].startswith("installed into") and any(f"ref org/tiny:main (new) -> {C1}" == x for x in lines)
    plan_lines = plan_install(standard_bundle().manifest, tmp_path / "hub").render()
    assert plan_lines[0].startswith("would install") and "blob(s) none" in plan_lines[0]


# -- the real loader, offline, in a subprocess ------------------------------------------------------------------


LOADER_CHECK = """
import hashlib, os
from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache, scan_cache_dir
from huggingface_hub.file_download import _CACHED_NO_EXIST

spec = {spec!r}
out = {{"files": {{}}, "snapshots": {{}}}}
for repo_type, repo_id, refs, snaps, no_exist in spec:
    for commit, files in snaps:
        revs = [commit] + [r for r, c in refs.items() if c == commit]
        for rev in revs:
            for path, sha in files.items():
                p = hf_hub_download(repo_id, path, repo_type=repo_type, revision=rev)
                got = hashlib.sha256(open(p, "rb").read()).hexdigest()
                assert got == sha, (repo_id, rev, path)
                cached = try_to_load_from_cache(repo_id, path, repo_type=repo_type, revision=rev)
                assert cached is not None and cached is not _CACHED_NO_EXIST, (repo_id, path)
                out["files"][f"{{repo_id}}@{{rev}}:{{path}}"] = True
            folder = snapshot_download(repo_id, repo_type=repo_type, revision=rev)
            assert os.path.basename(folder) == commit
            one = sorted(files)[0]
            snapshot_download(repo_id, repo_type=repo_type, revision=rev, allow_patterns=[one])
            snapshot_download(repo_id, repo_type=repo_type, revision=rev, allow_patterns=["*.json", "*/*"])
            out["snapshots"][f"{{repo_id}}@{{rev}}"] = folder
    for commit, path in no_exist:
        assert try_to_load_from_cache(repo_id, path, repo_type=repo_type, revision=commit) is _CACHED_NO_EXIST
        assert try_to_load_from_cache(repo_id, path, repo_type=repo_type, revision="main") is _CACHED_NO_EXIST
info = scan_cache_dir()
assert info.warnings == [], info.warnings
out["repos"] = sorted(f"{{r.repo_type}}:{{r.repo_id}}" for r in info.repos)
emit(out)
"""


def loader_spec(b: Bundle) -> list[Any]:
    return [
        (
            r.repo_type,
            r.repo_id,
            dict(r.refs),
            [(s.commit, {f.path: f.sha256 for f in s.files}) for s in r.snapshots],
            [(s.commit, p) for s in r.snapshots for p in s.no_exist],
        )
        for r in b.manifest.repos
    ]


@pytest.mark.parametrize("copy", [False, True], ids=["symlink", "copy"])
def test_real_client_loads_everything_offline(tmp_path: Path, copy: bool) -> None:
    from tests.testing.hf_client import run_hf_client

    b = standard_bundle()
    cache = tmp_path / "hub"
    install(b.source(), cache, copy=copy)
    result = run_hf_client(
        LOADER_CHECK.format(spec=loader_spec(b)), cache=cache, endpoint=CLOSED_ENDPOINT, offline=True
    )
    assert result["repos"] == ["dataset:org/data", "model:org/tiny", "model:other/model"]
    n_files = sum(len(s.files) * (1 + sum(c == s.commit for c in r.refs.values())) for r in b.manifest.repos
                  for s in r.snapshots)  # fmt: skip
    assert len(result["files"]) == n_files


# -- same cache as the real client ----------------------------------------------------------------------------------


@pytest.mark.parametrize("copy", [False, True], ids=["symlink", "copy"])
def test_same_cache_as_the_real_client_through_the_loopback_hub(tmp_path: Path, copy: bool) -> None:
    """Download a repo with the real client (cache A); install the same repo from a bundle (cache B).
    Copy layout: the client with HF_HUB_DISABLE_SYMLINKS=1 against ``install(copy=True)``."""
    from tests.testing.hf_client import run_hf_client
    from tests.testing.hub import HubServer, publish, read_commit

    folder = tmp_path / "repo"
    files = {
        "config.json": b'{"hidden": 8}\n',
        "model.safetensors": randbytes(5000, 1),
        "unet/deep/weights.bin": randbytes(300, 2),
        "tokenizer/vocab.txt": b"a\nb\n",
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    root = tmp_path / "store"
    commit = publish(root, "org/tiny", folder)
    cache_a, cache_b = tmp_path / "a", tmp_path / "b"
    with HubServer(root) as hub:
        run_hf_client(
            "from huggingface_hub import snapshot_download\nemit(snapshot_download('org/tiny'))",
            endpoint=hub.endpoint,
            cache=cache_a,
            extra_env={"HF_HUB_DISABLE_SYMLINKS": "1"} if copy else None,
        )
    stored = read_commit(root, "org/tiny", commit)
    repo_files = tuple(
        RepoFile(f.path, f.size, f.blob_id, lfs_sha256=f.sha256 if f.lfs else None, sha256=f.sha256)
        for f in stored.files.values()
    )
    blobs = {f.sha256: files[f.path] for f in stored.files.values()}
    manifest = Manifest(
        repos=(
            RepoEntry(
                "model", "org/tiny", {"main": commit}, (SnapshotEntry(commit, repo_files, (), TREE_HUB, repo_files),)
            ),
        ),
        blobs=tuple(BlobEntry(k, len(v)) for k, v in sorted(blobs.items())),
    )
    manifest = Manifest.loads(manifest.dumps())
    install(MemorySource(manifest, blobs), cache_b, copy=copy)

    a, b = tree_state(cache_a / "models--org--tiny"), tree_state(cache_b / "models--org--tiny")
    assert a == b
    assert (cache_a / "CACHEDIR.TAG").read_bytes() == (cache_b / "CACHEDIR.TAG").read_bytes()
