"""Backup and restore: every real-world cache shape round-trips exactly, corruption is caught, leftovers are
reported and not packed, increments hold only what their base lacks, and loaders work offline on the result.

Caches come from the real client through a private loopback Hub (symlink and copy layouts) or are made by hand
(shared Xet store, leftovers, corruption). "Equal" means the same relative paths, file bytes and link targets
(:func:`cache_tree`); lock files are not content and are left out of the comparison.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bundler.backup import BackupReport, backup, plan_backup
from bundler.bundle.reader import open_bundle
from bundler.cache.layout import RepoLayout, ensure_cachedir_tag, symlinks_supported, tree_json
from bundler.cache.scan import guess_lfs, scan_cache
from bundler.errors import CacheError, IntegrityError, UsageError
from bundler.hashing import git_blob_sha1, lfs_blob_id
from bundler.repofile import TreeEntry
from bundler.restore import plan_restore, restore
from tests.helpers import cache_tree, sha256
from tests.testing.hf_client import run_hf_client

CLOSED_ENDPOINT = "http://127.0.0.1:9"
TAESD = "hfbundle-test/tiny-taesd"
LORA = "hfbundle-test/tiny-lcm-lora"
SD = "hfbundle-test/tiny-sd-safetensors-only"
DATA = "hfbundle-test/tiny-data"
C1, C2, C3, C9 = (hashlib.sha1(label.encode()).hexdigest() for label in ("c1", "c2", "c3", "c9"))


def randbytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def assert_same_tree(a: Path, b: Path) -> None:
    ta, tb = cache_tree(a), cache_tree(b)
    diff = {k: (ta.get(k), tb.get(k)) for k in sorted(ta.keys() | tb.keys()) if ta.get(k) != tb.get(k)}
    assert diff == {}


# -- hand-made caches ---------------------------------------------------------------------------------------------


def make_repo(
    cache: Path,
    repo_id: str,
    snapshots: Mapping[str, Mapping[str, bytes]],
    refs: Mapping[str, str],
    *,
    repo_type: str = "model",
    copy: bool = False,
    trees: bool = True,
    xet: frozenset[str] = frozenset(),
) -> RepoLayout:
    """A repo as huggingface_hub writes it. ``xet``: paths whose blobs go through the shared Xet store."""
    lay = RepoLayout(cache, repo_type, repo_id)
    lay.blobs.mkdir(parents=True, exist_ok=True)
    ensure_cachedir_tag(cache)
    for commit, files in snapshots.items():
        listing: dict[str, dict[str, Any]] = {}
        for path, data in files.items():
            lfs = guess_lfs(path, len(data), repo_type)
            etag = sha256(data) if lfs else git_blob_sha1(data)
            listing[path] = {"size": len(data), "blob_id": lfs_blob_id(etag, len(data)) if lfs else etag}
            if lfs:
                listing[path] |= {"lfs_sha256": etag, "lfs_size": len(data)}
            target = lay.snapshot_file(commit, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                target.write_bytes(data)
                continue
            blob = lay.blob(etag)
            if path in xet:
                xhash = sha256(b"xet " + data)  # any 64-hex: the Xet hash is not the content's sha256
                listing[path]["xet_hash"] = xhash
                payload = cache / "blobs" / xhash[:2] / xhash
                payload.parent.mkdir(parents=True, exist_ok=True)
                (cache / "blobs" / ".huggingface-shared-blobs").write_text("1\n")
                payload.write_bytes(data)
                refs_file = payload.with_name(f"{xhash}.refs")
                lines = set(refs_file.read_text().splitlines()) if refs_file.exists() else set()
                lines.add(f"{lay.folder.name}/blobs/{etag}")
                refs_file.write_text("".join(f"{x}\n" for x in sorted(lines)))
                if not blob.is_symlink():
                    blob.symlink_to(os.path.relpath(payload, blob.parent))
            elif not blob.exists():
                blob.write_bytes(data)
            target.symlink_to(os.path.relpath(blob, target.parent))
        if trees:
            lay.tree(commit).parent.mkdir(exist_ok=True)
            lay.tree(commit).write_bytes(tree_json({p: TreeEntry(**e) for p, e in listing.items()}))
    for ref, commit in refs.items():
        lay.ref(ref).parent.mkdir(parents=True, exist_ok=True)
        lay.ref(ref).write_text(commit)
    return lay


WEIGHTS = randbytes(200_000, 1)
CONFIG = b'{"hidden": 8}\n'


def small_cache(cache: Path, *, copy: bool = False, trees: bool = True) -> RepoLayout:
    """org/tiny with two revisions sharing a blob, a PR ref, a tag and a .no_exist marker."""
    lay = make_repo(
        cache,
        "org/tiny",
        {
            C1: {"config.json": CONFIG, "model.safetensors": WEIGHTS, "unet/w.bin": randbytes(3000, 2)},
            C2: {"config.json": b'{"hidden": 16}\n', "model.safetensors": WEIGHTS},
        },
        {"main": C1, "v1.0": C1, "refs/pr/1": C2},
        copy=copy,
        trees=trees,
    )
    marker = lay.no_exist(C1, "tokenizer.json")
    marker.parent.mkdir(parents=True)
    marker.touch()
    return lay


# -- the real client through a private loopback Hub ---------------------------------------------------------------


CLIENT = f"""
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError

for repo in ({TAESD!r}, {LORA!r}, {SD!r}):
    snapshot_download(repo)
snapshot_download({TAESD!r}, revision="refs/pr/1")
try:
    hf_hub_download({TAESD!r}, "tokenizer.json")
except EntryNotFoundError:
    pass
emit(snapshot_download({DATA!r}, repo_type="dataset"))
"""


@pytest.fixture(scope="module")
def client_caches(tmp_path_factory: pytest.TempPathFactory, tiny_repos: dict[str, Path]) -> dict[str, Path]:
    """Caches filled by the real client: ``symlink`` and ``copy`` (HF_HUB_DISABLE_SYMLINKS=1). A private Hub store
    (the session's is shared): two commits of TAESD (``main`` and ``refs/pr/1``), a LoRA, a tiny SD pipeline and
    a dataset; a probe of a missing file leaves a ``.no_exist`` marker. Read-only for the tests."""
    from tests.testing.hub import HubServer, publish

    base = tmp_path_factory.mktemp("backup-client")
    root = base / "store"
    publish(root, TAESD, tiny_repos[TAESD])
    v2 = base / "taesd-pr"
    shutil.copytree(tiny_repos[TAESD], v2)
    config = json.loads((v2 / "config.json").read_text())
    (v2 / "config.json").write_text(json.dumps({**config, "scaling_factor": 0.5}, indent=2))
    publish(root, TAESD, v2, revision="refs/pr/1")
    publish(root, LORA, tiny_repos[LORA])
    publish(root, SD, tiny_repos[SD])
    data = base / "dataset"
    data.mkdir()
    (data / "train.csv").write_text("text,label\nhello,1\nworld,0\n")
    (data / "README.md").write_text("# tiny data\n")
    publish(root, DATA, data, repo_type="dataset")
    caches: dict[str, Path] = {}
    with HubServer(root) as hub:
        for layout, env in (("symlink", {}), ("copy", {"HF_HUB_DISABLE_SYMLINKS": "1"})):
            caches[layout] = base / layout / "hub"
            run_hf_client(CLIENT, endpoint=hub.endpoint, cache=caches[layout], extra_env=env)
    return caches


LOADERS = f"""
import hashlib, os
from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache, scan_cache_dir
from huggingface_hub.file_download import _CACHED_NO_EXIST

def listing(folder):
    out = {{}}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out

out = {{}}
for repo, rev, kind in [({TAESD!r}, "main", "model"), ({TAESD!r}, "refs/pr/1", "model"),
                        ({LORA!r}, "main", "model"), ({SD!r}, "main", "model"), ({DATA!r}, "main", "dataset")]:
    out[f"{{repo}}@{{rev}}"] = listing(snapshot_download(repo, revision=rev, repo_type=kind))
out["pr-config"] = open(hf_hub_download({TAESD!r}, "config.json", revision="refs/pr/1")).read()
out["no_exist"] = try_to_load_from_cache({TAESD!r}, "tokenizer.json") is _CACHED_NO_EXIST
info = scan_cache_dir()
out["warnings"] = [str(w) for w in info.warnings]
out["repos"] = sorted((r.repo_type, r.repo_id, sorted(f for v in r.revisions for f in v.refs)) for r in info.repos)
emit(out)
"""


def run_loaders(cache: Path) -> Any:
    return run_hf_client(LOADERS, cache=cache, endpoint=CLOSED_ENDPOINT, offline=True)


@pytest.mark.parametrize("layout", ["symlink", "copy"])
def test_real_client_cache_round_trips_exactly_and_loads_offline(
    client_caches: dict[str, Path], tmp_path: Path, layout: str
) -> None:
    source = client_caches[layout]
    plan = plan_backup(source)
    assert [(r.repo_type, r.repo_id, r.layout) for r in plan.repos] == [
        ("dataset", DATA, layout),
        ("model", LORA, layout),
        ("model", SD, layout),
        ("model", TAESD, layout),
    ]
    taesd = plan.repos[-1]
    assert taesd.refs.keys() == {"main", "refs/pr/1"} and len(taesd.revisions) == 2
    assert taesd.revisions[0].no_exist == ("tokenizer.json",) or taesd.revisions[1].no_exist == ("tokenizer.json",)
    assert all(rev.tree is not None for _, rev in plan.revisions) and plan.leftovers == ()
    if layout == "copy":  # every etag comes from the trees listing, none computed
        assert {f.named_by for _, rev in plan.revisions for f in rev.files} == {"tree"}

    report = backup(plan, tmp_path / "cache.hfb")
    assert report.corrupt == () and report.skipped == () and report.attempts == 1
    # shared blobs (the PR commit reuses all of TAESD but config.json) are packed once
    unique = {f.etag for _, rev in plan.revisions for f in rev.files}
    assert report.blobs_packed == len(unique) + len(plan.revisions)  # + one trees listing per revision
    with open_bundle(tmp_path / "cache.hfb") as b:
        assert b.manifest.kind == "backup" and b.manifest.extra["backup"]["layout"] == layout

    target = tmp_path / "restored"
    restored = restore([tmp_path / "cache.hfb"], target)
    assert restored.install.layout == layout and restored.install.notes == ()
    assert_same_tree(source, target)
    assert (RepoLayout(target, "model", TAESD).ref("refs/pr/1")).is_file()
    original, result = run_loaders(source), run_loaders(target)
    assert result == original
    assert result["warnings"] == [] and result["no_exist"] is True
    assert '"scaling_factor": 0.5' in result["pr-config"]


@pytest.mark.slow
def test_diffusion_pipeline_loads_from_a_restored_cache(client_caches: dict[str, Path], tmp_path: Path) -> None:
    backup(plan_backup(client_caches["symlink"], [SD]), tmp_path / "sd.hfb")
    restore([tmp_path / "sd.hfb"], tmp_path / "hub")
    code = f"""
import torch
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({SD!r}, local_files_only=True)
image = pipe("a cat", num_inference_steps=1, height=64, width=64, output_type="np",
             generator=torch.Generator().manual_seed(0)).images[0]
emit([type(pipe).__name__, list(image.shape)])
"""
    result = run_hf_client(
        code, cache=tmp_path / "hub", endpoint=CLOSED_ENDPOINT, offline=True, extra_env={"OMP_NUM_THREADS": "1"}
    )
    assert result == ["StableDiffusionPipeline", [64, 64, 3]]


def test_incremental_backup_after_adding_a_repo(client_caches: dict[str, Path], tmp_path: Path) -> None:
    source = client_caches["symlink"]
    before = tmp_path / "before"
    shutil.copytree(source, before, symlinks=True)
    shutil.rmtree(before / f"datasets--{DATA.replace('/', '--')}")
    full = backup(plan_backup(before), tmp_path / "full.hfb")

    plan = plan_backup(source, base=tmp_path / "full.hfb")
    assert plan.base_id == full.bundle_id
    data = next(r for r in plan.repos if r.repo_type == "dataset")
    new_blobs = {f.etag for rev in data.revisions for f in rev.files}
    assert plan.estimate.blobs_to_pack == len(new_blobs) + 1  # + its trees listing
    inc = backup(plan, tmp_path / "inc.hfb")
    with open_bundle(tmp_path / "inc.hfb") as b:
        m = b.manifest
        assert m.base == full.bundle_id
        assert [r.repo_id for r in m.repos] == [DATA, LORA, SD, TAESD]  # still describes the whole cache
        files = {f.sha256 for r in m.repos if r.repo_type == "dataset" for s in r.snapshots for f in s.files}
        trees = {s.tree for r in m.repos if r.repo_type == "dataset" for s in r.snapshots}
        assert {x.sha256 for x in m.blobs} == files | trees
    assert inc.blobs_in_base > 0 and inc.bytes_packed < full.bytes_packed

    with pytest.raises(UsageError) as err:
        restore([tmp_path / "inc.hfb"], tmp_path / "lonely")
    assert err.value.message == f"backup {tmp_path / 'inc.hfb'} needs base {full.bundle_id} which was not given"
    assert not (tmp_path / "lonely").exists()

    report = restore([tmp_path / "inc.hfb", tmp_path / "full.hfb"], tmp_path / "restored")
    assert [c.bundle_id for c in report.chain] == [inc.bundle_id, full.bundle_id]
    assert_same_tree(source, tmp_path / "restored")


# -- hand-made shapes ---------------------------------------------------------------------------------------------


def test_shared_xet_store_round_trips_two_links_deep(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    shared = randbytes(150_000, 3)
    make_repo(cache, "org/a", {C1: {"model.safetensors": shared, "config.json": CONFIG}}, {"main": C1},
              xet=frozenset({"model.safetensors"}))  # fmt: skip
    make_repo(cache, "org/b", {C2: {"weights/model.safetensors": shared, "own.safetensors": WEIGHTS}}, {"main": C2},
              xet=frozenset({"weights/model.safetensors", "own.safetensors"}))  # fmt: skip
    blob = RepoLayout(cache, "model", "org/a").blob(sha256(shared))
    assert os.readlink(blob) == f"../../blobs/{sha256(b'xet ' + shared)[:2]}/{sha256(b'xet ' + shared)}"

    plan = plan_backup(cache)
    assert {r.repo_id: len(r.shared) for r in plan.repos} == {"org/a": 1, "org/b": 2} and plan.leftovers == ()
    report = backup(plan, tmp_path / "xet.hfb")
    assert report.blobs_packed == 3 + 2  # shared, config, own weights + two listings
    restored = restore([tmp_path / "xet.hfb"], tmp_path / "restored")
    assert restored.shared_linked == 3
    assert_same_tree(cache, tmp_path / "restored")
    xhash = sha256(b"xet " + shared)
    assert os.stat(tmp_path / "restored" / "blobs" / xhash[:2] / xhash).st_nlink == 1  # no stray hard links left

    again = restore([tmp_path / "xet.hfb"], tmp_path / "restored")  # idempotent
    assert again.shared_linked == 0 and not again.install.changed


def test_copy_layout_without_trees_gets_its_etags_from_the_content(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    small_cache(cache, copy=True, trees=False)
    plan = plan_backup(cache)
    assert {f.named_by for _, rev in plan.revisions for f in rev.files} == {"none"}
    assert plan.estimate.bytes_to_hash == plan.total_size  # nothing names them: every file is hashed
    backup(plan, tmp_path / "copy.hfb")
    with open_bundle(tmp_path / "copy.hfb") as b:
        snap = b.manifest.repos[0].snapshots[0]
        by_path = {f.path: f for f in snap.files}
        assert by_path["model.safetensors"].etag == sha256(WEIGHTS)  # LFS by extension: named by sha256
        assert by_path["model.safetensors"].blob_id == lfs_blob_id(sha256(WEIGHTS), len(WEIGHTS))
        assert by_path["config.json"].etag == git_blob_sha1(CONFIG)  # regular: named by the git blob id
        assert snap.tree == "none"
    restore([tmp_path / "copy.hfb"], tmp_path / "same")  # the copy layout again, no listing written
    assert_same_tree(cache, tmp_path / "same")
    restore([tmp_path / "copy.hfb"], tmp_path / "links", copy=False)
    lay = RepoLayout(tmp_path / "links", "model", "org/tiny")
    assert os.readlink(lay.snapshot_file(C1, "config.json")) == f"../../blobs/{git_blob_sha1(CONFIG)}"
    assert os.readlink(lay.snapshot_file(C1, "unet/w.bin")).startswith("../../../blobs/")
    assert lay.blob(sha256(WEIGHTS)).read_bytes() == WEIGHTS


def test_chain_of_increments_restores_in_any_order(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    small_cache(cache)
    f = backup(plan_backup(cache), tmp_path / "f.hfb")
    other = randbytes(50_000, 7)
    make_repo(cache, "org/other", {C3: {"model.safetensors": other}}, {"main": C3})
    i1 = backup(plan_backup(cache, base=tmp_path / "f.hfb"), tmp_path / "i1.hfb")
    assert i1.blobs_packed == 2 and i1.bytes_packed == len(other) + (RepoLayout(cache, "model", "org/other")
                                                                      .tree(C3).stat().st_size)  # fmt: skip
    newer = b'{"hidden": 32}\n'
    make_repo(cache, "org/tiny", {C9: {"config.json": newer, "model.safetensors": WEIGHTS}}, {"main": C9})
    with open_bundle(tmp_path / "i1.hfb") as base:  # an open source works as a base too
        i2 = backup(plan_backup(cache, base=base), tmp_path / "i2.hfb")
    assert i2.blobs_packed == 2  # the new config.json and the new listing; the weights are in the chain

    report = restore([tmp_path / "i1.hfb", tmp_path / "i2.hfb", tmp_path / "f.hfb"], tmp_path / "restored")
    assert [c.bundle_id for c in report.chain] == [i2.bundle_id, i1.bundle_id, f.bundle_id]
    assert_same_tree(cache, tmp_path / "restored")

    with pytest.raises(UsageError) as err:
        restore([tmp_path / "i2.hfb", tmp_path / "f.hfb"], tmp_path / "gap")
    assert err.value.message == f"backup {tmp_path / 'i2.hfb'} needs base {i1.bundle_id} which was not given"
    # over a cache already holding the base's blobs, the missing link is not needed
    ok = restore([tmp_path / "i2.hfb", tmp_path / "i1.hfb"], tmp_path / "restored")
    assert any("was not given" in n for n in ok.notes) and not ok.install.changed

    g = backup(plan_backup(cache), tmp_path / "g.hfb")
    with pytest.raises(UsageError, match="not one chain"):
        restore([tmp_path / "f.hfb", tmp_path / "g.hfb"], tmp_path / "two")
    assert g.base_id is None


@pytest.mark.parametrize("kind", ["lfs", "regular", "copy-listed"])
def test_corrupt_blob_fails_the_backup_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    cache = tmp_path / "hub"
    lay = small_cache(cache, copy=kind == "copy-listed")
    path, data = ("config.json", CONFIG) if kind == "regular" else ("model.safetensors", WEIGHTS)
    damaged = lay.snapshot_file(C1, path).resolve()
    damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError) as err:
        backup(plan_backup(cache), out / "cache.hfb")
    e = err.value
    etag = git_blob_sha1(data) if kind == "regular" else sha256(data)
    actual_hash = (git_blob_sha1 if kind == "regular" else sha256)(damaged.read_bytes())
    assert e.path == f"model org/tiny@{C1}: {path}"
    assert e.expected is not None and e.expected.endswith(etag)
    assert e.actual is not None and e.actual.endswith(actual_hash)
    assert "corrupt file(s) in the cache" in e.message and str(damaged) in e.message
    assert e.hint is not None and "--skip-corrupt" in e.hint
    assert list(out.iterdir()) == []  # no output, no temp file


@pytest.mark.parametrize("kind", ["lfs", "regular"])
@pytest.mark.parametrize("to", ["path", "stream"])
def test_skip_corrupt_leaves_the_file_out_and_records_it(tmp_path: Path, kind: str, to: str) -> None:
    cache = tmp_path / "hub"
    lay = small_cache(cache)
    path = "config.json" if kind == "regular" else "unet/w.bin"
    blob = lay.snapshot_file(C1, path).resolve()
    blob.write_bytes(b"garbage")
    target: Path | io.BytesIO = tmp_path / "cache.hfb" if to == "path" else io.BytesIO()
    report = backup(plan_backup(cache), target, skip_corrupt=True)
    # LFS content is packed optimistically when the output can be rewritten: one corrupt blob costs a restart
    assert report.attempts == (2 if kind == "lfs" and to == "path" else 1)
    [c] = report.corrupt
    assert (c.repo_id, c.commit, c.path, c.action, c.source) == ("org/tiny", C1, path, "skipped", str(blob))
    [s] = report.skipped
    assert (s.commit, s.path) == (C1, path) and s.reason.startswith("corrupt: expected")
    if isinstance(target, io.BytesIO):
        (tmp_path / "cache.hfb").write_bytes(target.getvalue())
    restored = restore([tmp_path / "cache.hfb"], tmp_path / "restored")
    assert restored.skipped == (s,)
    out = RepoLayout(tmp_path / "restored", "model", "org/tiny")
    assert not out.snapshot_file(C1, path).exists()
    assert out.snapshot_file(C1, "model.safetensors").read_bytes() == WEIGHTS
    assert not out.tree(C1).exists()  # the saved listing names the skipped file: left out, never cut down
    assert any("lacks" in n for n in restored.install.notes)


def test_corrupt_copy_is_restored_from_an_intact_one_with_skip_corrupt(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    lay = small_cache(cache, copy=True)  # both snapshots hold their own copy of the weights
    lay.snapshot_file(C2, "model.safetensors").write_bytes(WEIGHTS[::-1])
    with pytest.raises(IntegrityError, match="1 corrupt file"):
        backup(plan_backup(cache), tmp_path / "strict.hfb")
    report = backup(plan_backup(cache), tmp_path / "cache.hfb", skip_corrupt=True)
    [c] = report.corrupt
    assert (c.commit, c.action) == (C2, "packed from an intact copy") and report.skipped == ()
    restore([tmp_path / "cache.hfb"], tmp_path / "restored")
    restored = RepoLayout(tmp_path / "restored", "model", "org/tiny")
    assert restored.snapshot_file(C2, "model.safetensors").read_bytes() == WEIGHTS


def test_leftovers_are_reported_and_never_packed(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    lay = small_cache(cache)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the cache")
    weights = sha256(WEIGHTS)
    junk = {
        f"blobs/{weights}.1a2b3c4d.incomplete": "download in flight or interrupted",
        f"blobs/.hfbundle-{weights}.deadbeef.tmp": "temp file of an interrupted write",
        f"blobs/{git_blob_sha1(b'old')}": "orphan blob: no snapshot uses it",
        f"snapshots/.hfbundle-{C1}.12345678.tmp": "staging folder of an interrupted install",
        "refs/main.0badf00d.tmp": "temp file of an interrupted write",
        f"trees/{C9}.json": "listing of a commit with no snapshot",
    }
    for rel in junk:
        p = lay.folder / rel
        if rel.startswith("snapshots/"):
            p.mkdir()
            (p / "config.json").write_bytes(CONFIG)
        else:
            p.write_bytes(b"old")
    lay.ref("old").write_text(C9)
    lay.snapshot_file(C1, "gone.bin").symlink_to(f"../../blobs/{'0' * 64}")
    lay.snapshot_file(C1, "escape.txt").symlink_to(secret)
    orphan_xet = "ab" + "c" * 62
    (cache / "blobs" / "ab").mkdir(parents=True)
    (cache / "blobs" / "ab" / orphan_xet).write_bytes(b"nobody links here")
    (cache / "notes.txt").write_text("mine")

    plan = plan_backup(cache)
    found = {x.where: x.reason for x in plan.leftovers}
    prefix = f"{lay.folder.name}/"
    for rel, reason in junk.items():
        assert found.pop(prefix + rel) == reason
    assert found.pop(f"{prefix}refs/old") == f"ref 'old' points at {C9}, which has no snapshot"
    assert found.pop(f"{prefix}snapshots/{C1}/gone.bin") == "dangling link: its blob is missing"
    assert found.pop(f"{prefix}snapshots/{C1}/escape.txt").startswith("link leading outside the cache")
    assert found.pop(f"blobs/ab/{orphan_xet}") == "shared Xet blob no repo links to"
    assert found.pop("notes.txt") == "not part of the hub cache layout"
    assert found == {}
    assert plan.repos[0].repo_id == "org/tiny" and plan.repos[0].refs.keys() == {"main", "v1.0", "refs/pr/1"}
    cache_wide = {"notes.txt", f"blobs/ab/{orphan_xet}"}  # only reported when the whole cache is backed up
    assert {x.where for x in scan_cache(cache, ["org/*"]).leftovers} == {x.where for x in plan.leftovers} - cache_wide

    report = backup(plan, tmp_path / "cache.hfb")
    assert report.leftovers == plan.leftovers
    assert {(s.path, s.reason.split(":")[0]) for s in report.skipped} == {
        ("gone.bin", "dangling link"),
        ("escape.txt", f"link leading outside the cache (to {secret})"),
    }
    with open_bundle(tmp_path / "cache.hfb") as b:
        packed = {x.sha256 for x in b.manifest.blobs}
        paths = {f.path for _, _, f in b.manifest.iter_files()}
    assert sha256(b"outside the cache") not in packed and sha256(b"old") not in packed
    assert {"gone.bin", "escape.txt"}.isdisjoint(paths)
    restore([tmp_path / "cache.hfb"], tmp_path / "restored")
    clean = tmp_path / "clean"
    small_cache(clean)  # the same cache without the junk
    assert_same_tree(clean, tmp_path / "restored")


def test_dry_run_plan_lists_repos_revisions_and_sizes(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    small_cache(cache)
    make_repo(cache, "org/data", {C3: {"train.csv": b"a,b\n1,2\n"}}, {"main": C3}, repo_type="dataset")
    before = cache_tree(cache)
    plan = plan_backup(cache)
    assert cache_tree(cache) == before
    lines = plan.render()
    assert lines[0] == f"backup of {cache}: 2 repo(s), 3 revision(s), 6 file(s), 403.0 KB (203.0 KB unique)"
    assert "  model org/tiny (symlink layout)" in lines
    assert f"    {C1[:12]}  main, v1.0: 3 file(s), 203.0 KB + 1 .no_exist, trees listing" in lines
    assert f"    {C2[:12]}  refs/pr/1: 2 file(s), 200.0 KB + trees listing" in lines
    assert lines[-1].startswith("would pack 8 blob(s)")  # 5 contents + 3 listings
    data = json.loads(json.dumps(plan.to_json()))
    assert data["total_size"] == plan.total_size and data["estimate"]["unique_blobs"] == 5
    tiny = next(r for r in data["repos"] if r["repo_id"] == "org/tiny")
    assert [(r["commit"], r["refs"], r["files"]) for r in tiny["revisions"]] == [
        (C1, ["main", "v1.0"], 3),
        (C2, ["refs/pr/1"], 2),
    ]

    report = backup(plan, tmp_path / "full.hfb")
    assert backup(plan_backup(cache), tmp_path / "again.hfb").bundle_id == report.bundle_id  # no timestamps
    incremental = plan_backup(cache, base=tmp_path / "full.hfb")
    assert incremental.estimate.blobs_to_pack == 0 and incremental.estimate.blobs_in_base == 5
    last = incremental.render()[-1]
    assert last == f"would pack 0 blob(s), 0 B; 5 blob(s), 203.0 KB found in base {report.bundle_id[:12]}…"
    restore_plan = plan_restore([tmp_path / "full.hfb"], tmp_path / "new")
    assert restore_plan.render()[0] == f"would restore 1 backup(s) into {tmp_path / 'new'}:"
    assert not (tmp_path / "new").exists()


def test_selection_by_pattern_type_and_revision(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    small_cache(cache)
    make_repo(cache, "org/other", {C3: {"a.txt": b"a"}}, {"main": C3})
    make_repo(cache, "someone/else", {C3: {"b.txt": b"b"}}, {"main": C3})
    make_repo(cache, "org/tiny", {C3: {"train.csv": b"x"}}, {"main": C3}, repo_type="dataset")

    def ids(**kw: Any) -> list[str]:
        return [f"{r.repo_type}:{r.repo_id}" for r in plan_backup(cache, **kw).repos]

    assert ids(patterns=["org/*"]) == ["dataset:org/tiny", "model:org/other", "model:org/tiny"]
    assert ids(patterns=["ORG/Tiny"], repo_type="model") == ["model:org/tiny"]
    assert ids(patterns=["*/else", "org/other"]) == ["model:org/other", "model:someone/else"]
    assert ids(repo_type="dataset") == ["dataset:org/tiny"]
    pr = plan_backup(cache, ["org/tiny"], repo_type="model", revision="refs/pr/1")
    assert [(v.commit, v.refs) for _, v in pr.revisions] == [(C2, ("refs/pr/1",))]
    by_commit = plan_backup(cache, ["org/tiny"], repo_type="model", revision=C1)
    assert [(v.commit, v.refs) for _, v in by_commit.revisions] == [(C1, ("main", "v1.0"))]
    partial = plan_backup(cache, ["org/*"], revision="refs/pr/1")
    assert [r.repo_id for r in partial.repos] == ["org/tiny"] and "not cached for" in partial.notes[-1]

    with pytest.raises(UsageError) as err:
        plan_backup(cache, ["org/tinny"])
    assert err.value.hint is not None and "did you mean org/tiny" in err.value.hint
    with pytest.raises(UsageError, match="revision 'nope'"):
        plan_backup(cache, revision="nope")
    with pytest.raises(UsageError, match="nothing to back up: the cache holds no space repos"):
        plan_backup(tmp_path / "hub", repo_type="space")
    with pytest.raises(CacheError, match="no cache at"):
        plan_backup(tmp_path / "nowhere")


def test_split_backup_restores_from_its_volumes(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    small_cache(cache)
    report = backup(plan_backup(cache), tmp_path / "cache.hfb", split_size=64 * 1024)
    assert [Path(p).name for p in report.paths][:2] == ["cache.hfb.001", "cache.hfb.002"]
    restore([tmp_path / "cache.hfb.001"], tmp_path / "restored")
    assert_same_tree(cache, tmp_path / "restored")


def test_ref_with_a_trailing_newline_is_restored_bare(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    lay = small_cache(cache)
    lay.ref("main").write_text(C1 + "\n")
    plan = plan_backup(cache)
    assert any("refs/main has whitespace" in n for n in plan.notes)
    backup(plan, tmp_path / "cache.hfb")
    restore([tmp_path / "cache.hfb"], tmp_path / "restored")
    assert RepoLayout(tmp_path / "restored", "model", "org/tiny").ref("main").read_bytes() == C1.encode()


def test_backup_works_offline_without_importing_huggingface_hub(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    small_cache(cache)
    code = f"""
import sys
from pathlib import Path
from bundler.backup import backup, plan_backup
from bundler.restore import restore
report = backup(plan_backup(Path({str(cache)!r})), Path({str(tmp_path / "b.hfb")!r}))
restore([Path({str(tmp_path / "b.hfb")!r})], Path({str(tmp_path / "r")!r}))
emit(["huggingface_hub" in sys.modules, report.files])
"""
    assert run_hf_client(code, cache=cache, endpoint=CLOSED_ENDPOINT, offline=True) == [False, 5]


def test_reports_are_frozen_json_and_progress_adds_up(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    small_cache(cache)
    seen: list[tuple[int, int]] = []
    report = backup(plan_backup(cache), tmp_path / "cache.hfb", on_progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] == report.bytes_hashed + report.bytes_packed
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.files = 0  # type: ignore[misc]
    data = json.loads(json.dumps(report.to_json()))
    assert data["bundle_id"] == report.bundle_id and data["blobs_packed"] == 6  # 4 contents + 2 listings
    assert isinstance(report, BackupReport) and report.render()[0].startswith(f"backup {tmp_path / 'cache.hfb'}")
    restored = restore([tmp_path / "cache.hfb"], tmp_path / "r")
    back = json.loads(json.dumps(restored.to_json()))
    # Restore takes the layout the target supports, as huggingface_hub does: copies where symlinks are refused
    # (Windows without Developer Mode, exFAT; the foreign-platform lane).
    layout = "symlink" if symlinks_supported(tmp_path / "probe") else "copy"
    assert back["chain"][0]["bundle_id"] == report.bundle_id and back["install"]["layout"] == layout
    # The same content backs up to the same repos and blobs whatever the layout that holds it; the manifest
    # records that layout (extra.backup.layout, so a restore reproduces it), the one difference in the bundle id.
    backup(plan_backup(tmp_path / "r"), tmp_path / "again.hfb")
    first, again = open_bundle(tmp_path / "cache.hfb").manifest, open_bundle(tmp_path / "again.hfb").manifest
    assert (again.repos, again.blobs) == (first.repos, first.blobs)
    assert again.extra["backup"] == {**first.extra["backup"], "layout": layout}
    assert restored.render()[0].startswith(f"restored 1 backup(s) into {tmp_path / 'r'}")
