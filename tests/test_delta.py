"""Delta bundles (``build --have``): every file's record, only the blobs the target lacks; an install that
fills the rest from blobs verified in the cache, or refuses before writing anything."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from bundler.build import delta_of
from bundler.bundle.manifest import Manifest
from bundler.bundle.reader import BundleWriter, inspect_bundle, open_bundle
from bundler.bundle.source import MemorySource
from bundler.cache.layout import RepoLayout
from bundler.cli import main
from bundler.errors import BundleFormatError, InstallError
from bundler.install import install, plan_install
from bundler.inventory import take_inventory
from bundler.verify import verify_cache, verify_installed
from tests.helpers import sha256
from tests.install.test_install import (
    BIG,
    C1,
    Repo,
    Snap,
    commit_id,
    randbytes,
    standard_bundle,
    standard_repos,
    tree_state,
)
from tests.install.test_install import build as make_bundle

C5 = commit_id("c5")
C6 = commit_id("c6")
LORA = randbytes(30_000, 55)
NEW_CONFIG = b'{"hidden": 32}\n'


def newer_repos() -> list[Repo]:
    """The base repos, plus a second commit of org/tiny sharing most blobs, plus one more LoRA repo."""
    repos = standard_repos()
    tiny = repos[0]
    c1_files = dict(tiny.snapshots[0].files)
    c5_files = {**c1_files, "config.json": (NEW_CONFIG, False)}
    repos[0] = Repo(tiny.repo_type, tiny.repo_id, {**tiny.refs, "main": C5}, [*tiny.snapshots, Snap(C5, c5_files)])
    repos.append(Repo("model", "org/lora-2", {"main": C6}, [Snap(C6, {"lora.safetensors": (LORA, True)})]))
    return repos


@pytest.fixture
def base_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "offline" / "hub"
    install(standard_bundle().source(), cache)
    return cache


def delta_source(cache: Path) -> tuple[MemorySource, Manifest, dict[str, bytes]]:
    full = make_bundle(newer_repos())
    delta = Manifest.loads(delta_of(full.manifest, take_inventory(cache).names()).dumps())
    blobs = {b.sha256: full.blobs[b.sha256] for b in delta.blobs}
    return MemorySource(delta, blobs), full.manifest, full.blobs


def test_delta_carries_only_what_the_target_lacks(base_cache: Path) -> None:
    source, full, _ = delta_source(base_cache)
    delta = source.manifest
    assert delta.is_delta
    assert {b.sha256 for b in delta.blobs} == {sha256(NEW_CONFIG), sha256(LORA)}
    base_contents = {b.sha256 for b in standard_bundle().manifest.blobs}
    assert {b.sha256 for b in delta.expects} == {b.sha256 for b in full.blobs} & base_contents
    # every file's record is kept
    assert [(r.repo_id, s.commit, f.path) for r, s, f in delta.iter_files()] == [
        (r.repo_id, s.commit, f.path) for r, s, f in full.iter_files()
    ]


def test_delta_installs_and_verifies(base_cache: Path) -> None:
    source, _, _ = delta_source(base_cache)
    report = install(source, base_cache)
    assert report.bytes_written == len(NEW_CONFIG) + len(LORA)
    assert verify_cache(base_cache).ok
    tiny = RepoLayout(base_cache, "model", "org/tiny")
    assert tiny.read_ref("main") == C5
    assert tiny.snapshot_file(C5, "model.safetensors").read_bytes() == BIG
    assert tiny.snapshot_file(C5, "config.json").read_bytes() == NEW_CONFIG
    assert RepoLayout(base_cache, "model", "org/lora-2").snapshot_file(C6, "lora.safetensors").read_bytes() == LORA
    again = install(source, base_cache)  # re-running is a no-op
    assert not again.changed


def test_delta_over_a_copy_layout_cache(tmp_path: Path) -> None:
    """Without symlinks (Windows without Developer Mode, exFAT) blobs/ is empty: the inventory lists the snapshot
    files the trees listings name, and the delta installs by copying them, each re-hashed first."""
    cache = tmp_path / "copy" / "hub"
    install(standard_bundle().source(), cache, copy=True)
    held = take_inventory(cache, verify=True).names()
    assert set(held) >= {b.sha256 for b in standard_bundle().manifest.blobs if b.size > 1000}
    source, _, _ = delta_source(cache)
    assert source.manifest.is_delta and {b.sha256 for b in source.manifest.blobs} == {sha256(NEW_CONFIG), sha256(LORA)}
    report = install(source, cache, copy=True)
    assert report.layout == "copy" and verify_installed(source.manifest, cache).ok
    tiny = RepoLayout(cache, "model", "org/tiny")
    assert tiny.snapshot_file(C5, "model.safetensors").read_bytes() == BIG
    assert tiny.snapshot_file(C5, "config.json").read_bytes() == NEW_CONFIG


@pytest.mark.parametrize("damage", ["deleted", "corrupt"])
def test_delta_into_a_cache_lacking_an_expected_blob_writes_nothing(
    base_cache: Path, tmp_path: Path, damage: str
) -> None:
    source, _, _ = delta_source(base_cache)
    target = tmp_path / "other" / "hub"
    shutil.copytree(base_cache, target, symlinks=True)
    blob = RepoLayout(target, "model", "org/tiny").blob(
        next(f.etag for _, _, f in source.manifest.iter_files() if f.sha256 == sha256(BIG))
    )
    if damage == "deleted":
        blob.unlink()
    else:  # same size, other bytes: present but not verified
        data = bytearray(blob.read_bytes())
        data[-1] ^= 1
        blob.unlink()
        blob.write_bytes(bytes(data))
    before = tree_state(target)
    with pytest.raises(InstallError) as exc:
        install(source, target, trust_existing=True)  # a delta re-hashes what it relies on, whatever the flag
    assert sha256(BIG) in str(exc.value)
    assert "hfbundle inventory" in (exc.value.hint or "")
    assert tree_state(target) == before


def test_delta_into_an_empty_cache_is_refused_and_the_plan_says_why(tmp_path: Path, base_cache: Path) -> None:
    source, _, _ = delta_source(base_cache)
    empty = tmp_path / "empty"
    plan = plan_install(source.manifest, empty)
    assert {c.sha256 for c in plan.missing} == {b.sha256 for b in source.manifest.expects}
    with pytest.raises(InstallError, match="neither in this bundle nor in the cache"):
        install(source, empty)
    assert tree_state(empty) == {}


def test_manifest_field_is_additive_and_strict(base_cache: Path) -> None:
    source, full, _ = delta_source(base_cache)
    assert b'"expects"' not in full.dumps()  # a full bundle keeps its bytes and its id
    raw = json.loads(source.manifest.dumps())
    assert Manifest.loads(source.manifest.dumps()) == source.manifest
    cases = {
        "empty list is not canonical": {**raw, "expects": []},
        "carried and expected": {**raw, "expects": [*raw["expects"], raw["blobs"][0]]},
        "expected but unused": {**raw, "expects": [*raw["expects"], {"sha256": "f" * 64, "size": 1}]},
        "not a list": {**raw, "expects": {}},
    }
    for name, data in cases.items():
        text = (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()
        with pytest.raises(BundleFormatError):
            Manifest.loads(text)
        assert name
    no_blob = replace(source.manifest, expects=())  # a file pointing at nothing declared
    with pytest.raises(BundleFormatError, match="does not declare"):
        Manifest.loads(no_blob.dumps())


def test_inspect_shows_a_delta_and_what_it_expects(
    base_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, _, blobs = delta_source(base_cache)
    path = tmp_path / "delta.tar.zst"
    with BundleWriter(path) as writer:
        writer.write_manifest(source.manifest.dumps())
        for b in source.manifest.blobs:
            writer.add_blob(b.sha256, b.size, io.BytesIO(blobs[b.sha256]))
    info = inspect_bundle(path)
    assert {e.sha256 for e in info.expects} == {b.sha256 for b in source.manifest.expects}
    assert info.to_json()["delta"] is True
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(path)])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"delta: expects {len(info.expects)} blob(s)" in out and sha256(BIG) in out
    # and the real reader installs it (file source, not memory)
    with open_bundle(path) as reader:
        install(reader, base_cache)
    assert RepoLayout(base_cache, "model", "org/tiny").read_ref("main") == C5
    assert RepoLayout(base_cache, "model", "org/tiny").snapshot(C1).is_dir()


# -- end to end, through the real client and the loopback Hub -------------------------------------------------


@pytest.mark.slow
def test_delta_end_to_end_lora_and_shared_encoder(tiny_repos: dict[str, Path], tmp_path: Path) -> None:
    from bundler import api
    from tests.testing.hf_client import run_hf_client
    from tests.testing.hub import HubServer, publish

    sd, lora = "hfbundle-test/tiny-sd", "hfbundle-test/tiny-lcm-lora"
    root = tmp_path / "hub-store"
    for rid in (sd, "hfbundle-test/tiny-taesd", lora):
        publish(root, rid, tiny_repos[rid])
    online = tmp_path / "online-cache"
    offline = tmp_path / "offline-cache"
    with HubServer(root) as hub:
        base = tmp_path / "base.tar.zst"
        api.build("tiny-demo", output=base, endpoint=hub.endpoint, cache_dir=online, token=False)
        api.install(base, cache_dir=offline)
        pristine = tmp_path / "pristine-offline"
        shutil.copytree(offline, pristine, symlinks=True)
        have = tmp_path / "have.json"
        have.write_bytes(api.inventory(cache_dir=offline).dumps())

        # The world moves on: one more LoRA repo …
        lora2 = tmp_path / "lora2"
        shutil.copytree(tiny_repos[lora], lora2)
        weights = lora2 / "pytorch_lora_weights.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0x01  # other tensor values, same layout
        weights.write_bytes(bytes(data))
        hub.publish("hfbundle-test/tiny-lora-2", lora2)
        specs = ("tiny-demo", "hfbundle-test/tiny-lora-2")
        sizes = {}
        for name, have_file in (("full", None), ("delta", have)):
            out = tmp_path / f"lora-{name}.tar.zst"
            r = api.build(*specs, output=out, have=have_file, endpoint=hub.endpoint, cache_dir=online, token=False)
            sizes[name] = r.bytes_out
        print(f"LoRA case: delta {sizes['delta']} B vs full {sizes['full']} B: {sizes['delta'] / sizes['full']:.3f}")
        assert sizes["delta"] < sizes["full"] / 2

        # … and a second commit of the pipeline (new scheduler config, the same weights and text encoder).
        sd2 = tmp_path / "sd2"
        shutil.copytree(tiny_repos[sd], sd2)
        sched = sd2 / "scheduler" / "scheduler_config.json"
        sched.write_text(json.dumps({**json.loads(sched.read_text()), "timestep_spacing": "trailing"}))
        new_commit = hub.publish(sd, sd2)
        full_path, delta_path = tmp_path / "full.tar.zst", tmp_path / "delta.tar.zst"
        full = api.build(*specs, output=full_path, endpoint=hub.endpoint, cache_dir=online, token=False)
        delta = api.build(*specs, output=delta_path, have=have, endpoint=hub.endpoint, cache_dir=online, token=False)

    with open_bundle(base) as b, open_bundle(full_path) as f, open_bundle(delta_path) as d:
        base_blobs = {x.sha256 for x in b.manifest.blobs}
        full_blobs = {x.sha256: x.size for x in f.manifest.blobs}
        carried = {x.sha256 for x in d.manifest.blobs}
        assert carried == set(full_blobs) - base_blobs  # exactly the new contents
        assert {x.sha256 for x in d.manifest.expects} == set(full_blobs) & base_blobs
        assert [(r.repo_id, s.commit, x.path) for r, s, x in d.manifest.iter_files()] == [
            (r.repo_id, s.commit, x.path) for r, s, x in f.manifest.iter_files()
        ]
    assert delta.expected == len(full_blobs) - len(carried)
    print(
        f"LoRA + shared-encoder commit: delta {delta.bytes_out} B ({delta.blobs} blobs) vs full {full.bytes_out} B "
        f"({full.blobs} blobs): "
        f"{delta.bytes_out / full.bytes_out:.3f}"
    )
    assert delta.bytes_out < full.bytes_out / 2

    report = api.install(delta_path, cache_dir=offline)
    assert report.bytes_written == sum(full_blobs[s] for s in carried)
    assert api.verify(str(delta_path), cache_dir=offline).ok
    assert api.verify(cache_dir=offline).ok
    assert api.doctor("tiny-demo", cache_dir=offline).ok
    loaded = run_hf_client(
        "from huggingface_hub import snapshot_download\n"
        "import json, os\n"
        f"p = snapshot_download({sd!r})\n"
        "emit([os.path.basename(p), json.load(open(os.path.join(p, 'scheduler/scheduler_config.json')))])\n"
        "snapshot_download('hfbundle-test/tiny-lora-2')\n",
        cache=offline,
        offline=True,
    )
    assert loaded[0] == new_commit and loaded[1]["timestep_spacing"] == "trailing"

    # the same delta into a cache lacking one blob it expects: refused, naming it, nothing written
    victim = next(x for x in RepoLayout(pristine, "model", sd).blobs.iterdir() if len(x.name) == 64)  # LFS weights
    victim.unlink()
    before = tree_state(pristine)
    with pytest.raises(InstallError) as exc:
        api.install(delta_path, cache_dir=pristine)
    assert "neither in this bundle nor in the cache" in str(exc.value) and victim.name in str(exc.value)
    assert tree_state(pristine) == before
