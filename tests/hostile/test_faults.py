"""Faults around a good bundle: the install killed at every step, the disk full, concurrent installs and
downloads, a read-only cache, no symlinks, a damaged cache, and a build interrupted. Nothing a loader reads is
ever half-written, and a re-run repairs what a crash left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundler.cache.layout import RepoLayout
from bundler.errors import InstallError
from bundler.verify import verify_cache
from tests.helpers import hfbundle as cli
from tests.testing.hf_client import REPO_ROOT, client_env, run_hf_client
from tests.testing.hub import HubServer, publish

from . import craft
from .harness import (
    api_install,
    assert_only_verified_blobs_added,
    install_bytes,
    loader_problems,
    make_world,
    state,
    write_bundle,
)
from .test_sizes import small_disk

BIG = craft.fake("kill big", 1_300_000)  # over one installer read (1 MiB): kill points mid-blob
KILL_SPEC = craft.Specimen(
    {**craft.STANDARD_FILES, "big.safetensors": (BIG, True)},
    refs={"main": craft.COMMIT, "v1": craft.COMMIT},
    no_exist=("tokenizer.json",),
)


def expect_complete(cache: Path, spec: craft.Specimen) -> None:
    """The spec's snapshot is all there with the right bytes, its refs point at it, and the cache verifies."""
    report = verify_cache(cache)
    assert report.ok, report.render()
    lay = RepoLayout(cache, "model", spec.repo_id)
    for path, (content, _) in spec.files.items():
        assert lay.snapshot_file(spec.commit, path).read_bytes() == content, path
    for ref, commit in (spec.refs or {"main": spec.commit}).items():
        assert lay.read_ref(ref) == commit
    assert loader_problems(cache, {spec.commit: list(spec.files)}) == []


# -- SIGKILL at every step ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kill_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kill")
    path = folder / "kill.tar.zst"
    path.write_bytes(craft.written(KILL_SPEC, frame_size=1 << 20))
    return path


KILL_RUNS = {
    "symlink layout, empty cache": ([], False, 1),
    "symlink layout, pre-filled cache": ([], True, 2),
    "symlink layout, empty cache, lanes": (["--lanes"], False, 2),
    "copy layout, empty cache": (["--copy"], False, 2),
    "copy layout, pre-filled cache": (["--copy"], True, 3),
}


@pytest.mark.stress
@pytest.mark.parametrize("run", list(KILL_RUNS))
def test_sigkill_at_every_step(run: str, kill_bundle: Path, template: Path, tmp_path: Path) -> None:
    """``tests/hostile/killer.py`` kills the install with SIGKILL before each filesystem-changing call and after
    each streamed chunk (mid-blob), in a fresh cache each time. At no kill point does a loader (nor
    ``scan_cache_dir``) see a ref to a missing snapshot, a visible snapshot lacking a file, a truncated file, or a
    listing naming a missing file; a re-run then completes and the cache verifies."""
    extra, prefilled, every = KILL_RUNS[run]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.hostile.killer",
            str(kill_bundle),
            str(template) if prefilled else "-",
            str(tmp_path / "work"),
            "--every",
            str(every),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    steps, results = out["steps"], out["results"]
    phases = {label.split()[0] for label in steps}
    assert {"replace", "symlink" if "--copy" not in extra else "replace", "progress", "sync"} <= phases
    assert any(label.startswith("progress stream") for label in steps)  # mid-blob points exist
    assert any("refs/" in label for label in steps)  # and points around the refs
    assert len(results) >= len(steps) // every
    assert sum(r["killed"] for r in results) >= len(results) - 4, "kill points that killed nothing"
    for r in results:
        where = f"killed before step {r['step']} ({r['label']})"
        # On lanes the number of steps varies by a few (two lanes may both try to create a shared lock folder),
        # so the last kill points may come after the install is done. A point that killed nothing must be one
        # past the end of that very run: the child completed, in fewer steps than the point's number.
        taken = r["completed_in_steps"]
        assert r["killed"] or (taken is not None and 0 <= taken < r["step"]), f"{where}: not killed ({taken})"
        assert r["problems_after_kill"] == [], f"{where}: {r['problems_after_kill']}"
        assert r["verify_ok_after_rerun"], f"{where}: {r['verify_issues']}"
        assert r["problems_after_rerun"] == [] and r["wrong_after_rerun"] == [], where


def test_sigkill_of_the_real_cli_mid_blob_then_rerun(tmp_path: Path) -> None:
    """``hfbundle install`` killed from outside while it writes a large blob; the re-run completes."""
    spec = craft.Specimen({**craft.STANDARD_FILES, "huge.safetensors": (craft.fake("huge", 48 << 20), True)})
    bundle = write_bundle(tmp_path / "in", craft.written(spec, frame_size=8 << 20, level=-7))
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bundler", "install", str(bundle), "--cache-dir", str(cache)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    blobs = RepoLayout(cache, "model", craft.REPO).blobs
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        temps = list(blobs.glob(".hfbundle-*.tmp")) if blobs.is_dir() else []
        if any(p.stat().st_size > 0 for p in temps if p.exists()):
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert loader_problems(cache, {spec.commit: list(spec.files)}) == []
    assert api_install(bundle, cache) is None
    expect_complete(cache, spec)


# -- disk full while copying into snapshots (copy layout) --------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty", "prefilled"])
def test_disk_full_while_copying_into_snapshots(kind: str, tmp_path: Path, template: Path) -> None:
    """Copy layout: one 3 MiB content used by three files is staged once and copied twice: the disk (8 MiB) fills
    in the snapshot phase, after every blob verified. Refused with "disk full"; the half-built snapshot, staged
    copies and temp files are removed; the cache is as it was."""
    content = craft.fake("thrice", 3 << 20)
    spec = craft.Specimen(
        {"a.safetensors": (content, True), "b/a.safetensors": (content, True), "c.bin": (content, True)}
    )
    bundle = write_bundle(tmp_path / "in", craft.bundle_bytes(spec, frame_size=1 << 20))
    with small_disk(tmp_path / "disk") as disk:
        world, cache = make_world(disk, template if kind == "prefilled" else None)
        before = state(world)
        from bundler import api

        with pytest.raises(InstallError, match="disk full") as info:
            api.install(bundle, cache_dir=cache, copy=True)
        assert info.value.hint and "free some space" in info.value.hint
        assert_only_verified_blobs_added(before, state(world), world, "cache")
        assert [p for p in state(world) if ".tmp" in p] == []


# -- concurrency --------------------------------------------------------------------------------------------------


def _race(commands: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Start the commands together (each reports ready by a file once imported, then waits for a start file),
    wait for all."""
    go = Path(env["RACE_START"])
    ready = go.with_name(go.name + "-ready")
    ready.mkdir(exist_ok=True)
    env = {**env, "RACE_READY": str(ready)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, *cmd],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cmd in commands
    ]
    deadline = time.monotonic() + 60  # every interpreter started and imported (or one died trying)
    while len(list(ready.iterdir())) < len(procs) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.005)
    go.touch()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


RACER = """
import os, sys, time
from pathlib import Path
import bundler.install, bundler.bundle.reader  # imported before the start signal
go = Path(os.environ["RACE_START"])
(Path(os.environ["RACE_READY"]) / str(os.getpid())).touch()
while not go.exists():
    time.sleep(0.001)
if sys.argv[1] == "hub":
    from huggingface_hub import snapshot_download
    snapshot_download(sys.argv[2], cache_dir=sys.argv[3])
else:
    from bundler.cli import main
    main(sys.argv[1:])
"""


@pytest.mark.stress
@pytest.mark.parametrize("rounds", [3])
def test_two_installs_of_the_same_bundle_at_once(rounds: int, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "in", craft.written(KILL_SPEC, frame_size=1 << 16))
    for i in range(rounds):
        cache = tmp_path / f"cache{i}"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RACE_START": str(tmp_path / f"go{i}")}
        results = _race([["install", str(bundle), "--cache-dir", str(cache)]] * 2, env)
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        expect_complete(cache, KILL_SPEC)


@pytest.mark.stress
def test_two_bundles_sharing_blobs_at_once(tmp_path: Path) -> None:
    """Two repos whose bundles share contents (hard-linked across repos), installed at the same time."""
    shared = craft.fake("shared", 600_000)
    one = craft.Specimen({"w.safetensors": (shared, True), "config.json": (b"{}\n", False)}, repo_id="race/one")
    two = craft.Specimen(
        {"w.safetensors": (shared, True), "copy.txt": (shared, False), "config.json": (b"{}\n", False)},
        repo_id="race/two",
        commit="b" * 40,
    )
    a = write_bundle(tmp_path / "a", craft.written(one, frame_size=1 << 16))
    b = write_bundle(tmp_path / "b", craft.written(two, frame_size=1 << 16))
    for i in range(3):
        cache = tmp_path / f"cache{i}"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RACE_START": str(tmp_path / f"go{i}")}
        results = _race(
            [["install", str(a), "--cache-dir", str(cache)], ["install", str(b), "--cache-dir", str(cache)]], env
        )
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        expect_complete(cache, one)
        expect_complete(cache, two)


@pytest.mark.stress
def test_install_racing_a_real_download_of_the_same_repo(hub: HubServer, tmp_path: Path) -> None:
    """``snapshot_download`` of a repo through the loopback Hub while ``hfbundle install`` of a bundle of the same
    repo runs into the same cache: both finish, the cache verifies, every file is right, and the offline client
    loads the snapshot."""
    from bundler import api

    repo = "hfbundle-test/tiny-sd-safetensors-only"
    bundle = tmp_path / "tiny.tar.zst"
    api.build(repo, output=bundle, endpoint=hub.endpoint, cache_dir=tmp_path / "build-cache", threads=1)
    from bundler.bundle.reader import open_bundle

    with open_bundle(bundle) as reader:
        manifest = reader.manifest
    for i in range(2):
        cache = tmp_path / f"cache{i}"
        env = client_env(cache=cache, endpoint=hub.endpoint)
        env["RACE_START"] = str(tmp_path / f"go{i}")
        results = _race(
            [["hub", repo, str(cache)], ["install", str(bundle), "--cache-dir", str(cache)]],
            env,
        )
        assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
        report = verify_cache(cache)
        assert report.ok, report.render()
        (repo_entry,) = manifest.repos
        lay = RepoLayout(cache, "model", repo)
        for snap in repo_entry.snapshots:
            for f in snap.files:
                p = lay.snapshot_file(snap.commit, f.path)
                assert p.is_file() and os.path.getsize(p) == f.size, f.path
        assert loader_problems(cache) == []
        loaded = run_hf_client(
            f"from huggingface_hub import snapshot_download\nemit(snapshot_download({repo!r}))",
            cache=cache,
            offline=True,
        )
        assert Path(loaded).is_dir()


# -- a cache that cannot be written, or has no symlinks --------------------------------------------------------


@pytest.fixture
def read_only(tmp_path: Path, template: Path) -> Iterator[Path]:
    """A pre-filled cache behind a read-only bind mount (root), or chmod'ed read-only (non-root)."""
    src = tmp_path / "rw"
    shutil.copytree(template, src, symlinks=True)
    if os.geteuid() != 0:
        for p in [src, *src.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o555)
        yield src
        for p in [src, *src.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    bind = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True, text=True, check=False)
    if bind.returncode != 0:
        pytest.skip(f"root, and no bind mount possible ({bind.stderr.strip()}): chmod does not stop root")
    remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True, text=True, check=False)
    try:
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only ({remount.stderr.strip()})")
        yield ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_read_only_cache(read_only: Path, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "in", craft.bundle_bytes())
    before = state(read_only)
    e = api_install(bundle, read_only)
    assert isinstance(e, InstallError), e
    assert ("read-only" in e.message or "permission denied" in e.message) and e.hint
    assert state(read_only) == before
    code = cli("install", str(bundle), "--cache-dir", str(read_only))
    assert code.returncode == 1 and code.stderr.startswith("error: ") and "Traceback" not in code.stderr


def test_no_symlinks_gives_the_copy_layout_and_loaders_work(tmp_path: Path) -> None:
    """``HF_HUB_DISABLE_SYMLINKS=1`` (read at startup: a subprocess) → real files in snapshots/, no blobs; the real
    client loads them offline with the same setting."""
    bundle = write_bundle(tmp_path / "in", craft.bundle_bytes(KILL_SPEC))
    cache = tmp_path / "cache"
    env = {**client_env(cache=cache, offline=True), "HF_HUB_DISABLE_SYMLINKS": "1"}
    proc = cli("install", str(bundle), "--cache-dir", str(cache), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["layout"] == "copy"
    assert not any(node.kind == "link" for node in state(cache).values())
    expect_complete(cache, KILL_SPEC)
    got = run_hf_client(
        f"""
from huggingface_hub import hf_hub_download, snapshot_download
import hashlib, os
root = snapshot_download({craft.REPO!r})
one = hf_hub_download({craft.REPO!r}, "unet/config.json")
emit([hashlib.sha256(open(os.path.join(root, "big.safetensors"), "rb").read()).hexdigest(), open(one).read()])
""",
        cache=cache,
        offline=True,
        extra_env={"HF_HUB_DISABLE_SYMLINKS": "1"},
    )
    assert got == [craft.sha256(BIG), KILL_SPEC.files["unet/config.json"][0].decode()]


# -- a damaged cache ----------------------------------------------------------------------------------------------


def _blob_of(cache: Path, path: str) -> Path:
    return Path(os.path.realpath(RepoLayout(cache, "model", craft.REPO).snapshot_file(craft.COMMIT, path)))


def test_corrupt_existing_blob_is_reported_then_replaced(tmp_path: Path) -> None:
    data = craft.bundle_bytes()
    cache = tmp_path / "cache"
    install_bytes(data, cache)
    blob = _blob_of(cache, "model.safetensors")
    raw = bytearray(blob.read_bytes())
    raw[100] ^= 0xFF
    blob.write_bytes(bytes(raw))
    report = verify_cache(cache)
    assert not report.ok and [i.kind for i in report.errors] == ["corrupt"]
    result = install_bytes(data, cache)
    assert [r.path for r in result.blobs_replaced] == [f"blobs/{blob.name}"]
    expect_complete(cache, craft.standard())


def test_corrupt_existing_blob_is_not_replaced_by_a_bad_one(tmp_path: Path, template: Path) -> None:
    """The cache's copy is damaged and so is the bundle's: the install refuses, and never swaps one bad copy for
    another (what is there stays, as it was)."""
    good = craft.bundle_bytes()
    cache = tmp_path / "world" / "cache"
    install_bytes(good, cache)
    blob = _blob_of(cache, "model.safetensors")
    blob.write_bytes(bytes(len(craft.STANDARD_FILES["model.safetensors"][0])))
    weights = craft.STANDARD_FILES["model.safetensors"][0]
    bad = craft.with_manifest(
        craft.standard().manifest(), {**craft.standard().blobs(), craft.sha256(weights): weights[::-1]}
    )
    world = tmp_path / "world"
    before = state(world)
    e = api_install(write_bundle(tmp_path / "in", bad), cache)
    assert e is not None and "does not match" in e.message
    assert state(world) == before


# -- a build interrupted ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A loopback Hub with one repo large enough that packing it takes a while (level 19, one thread)."""
    root = tmp_path_factory.mktemp("big-hub")
    src = tmp_path_factory.mktemp("big-src") / "repo"
    src.mkdir()
    (src / "config.json").write_text('{"hidden": 8}\n')
    (src / "weights.safetensors").write_bytes(craft.fake("big hub", 12 << 20))
    publish(root, "hostile/big", src)
    with HubServer(root) as hub:
        yield hub


@pytest.mark.parametrize(
    ("sig", "previous"),
    [(signal.SIGINT, False), (signal.SIGKILL, True)],
    ids=["SIGINT, new output", "SIGKILL, over an old bundle"],
)
def test_build_interrupted_leaves_no_partial_bundle(
    sig: int, previous: bool, big_hub: HubServer, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "big.tar.zst"
    out.parent.mkdir()
    if previous:
        out.write_bytes(b"the previous bundle")
    env = client_env(cache=tmp_path / "hf-cache", endpoint=big_hub.endpoint)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bundler", "build", "hostile/big", "-o", str(out), "--level", "19", "--threads", "1"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A child inherits an ignored SIGINT (some earlier test in the run leaves it so), and Python then installs
        # no KeyboardInterrupt handler: the build would ignore the Ctrl-C this test sends. Start it as a shell does.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 90
    # The temp bundle exists from the manifest on; its one 12 MiB frame then takes seconds at level 19 and is
    # written at once, so waiting for the file to grow raced with the final rename: interrupt mid-frame instead.
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.endswith(".tmp") for p in out.parent.iterdir()):
            time.sleep(0.2)
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"the build finished before it could be interrupted: {proc.communicate()}"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    if previous:
        assert out.read_bytes() == b"the previous bundle"
    else:
        assert not out.exists()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr
        # click turns Ctrl-C into Abort ("aborted"); bundler.cli prints its own line for a bare KeyboardInterrupt
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1] in ("aborted", "interrupted: nothing partial was left behind")
        assert [p.name for p in out.parent.iterdir() if p != out] == []  # temp volumes removed too
    else:
        assert proc.returncode == -signal.SIGKILL
        # a killed process cannot clean up: only its hidden temp file may remain, never a file at the output
        assert all(
            p.name.startswith(".big.tar.zst.") and p.name.endswith(".tmp") for p in out.parent.iterdir() if p != out
        )


# -- what a crash leaves, and the next install sweeps --------------------------------------------------------------


def test_leftovers_of_a_killed_install_are_swept_or_invisible(tmp_path: Path) -> None:
    """A day-old staging folder (repo folder), ref temp and copy-layout staged blob are removed by the next
    install; fresh ones (maybe a concurrent install's) are kept but are invisible to ``scan_cache_dir`` and
    reported by verify as leftovers (warnings)."""
    from huggingface_hub import scan_cache_dir

    data = craft.bundle_bytes()
    cache = tmp_path / "cache"
    install_bytes(data, cache)
    lay = RepoLayout(cache, "model", craft.REPO)
    old = time.time() - 3 * 86400
    staged = lay.blobs / f".hfbundle-{'a' * 64}.0badcafe.stage.tmp"
    staged.write_bytes(b"a staged copy")
    staging = lay.folder / f".hfbundle-{craft.COMMIT}.12345678.tmp"
    (staging / "unet").mkdir(parents=True)
    ref_temp = lay.folder / ".hfbundle-main.abcdefgh.tmp"
    ref_temp.write_bytes(b"")
    fresh = lay.folder / f".hfbundle-{craft.COMMIT}.87654321.tmp"
    fresh.mkdir()
    for p in (staged, staging, ref_temp):
        os.utime(p, (old, old))
    info = scan_cache_dir(cache)
    assert info.warnings == [] and [len(r.commit_hash) for repo in info.repos for r in repo.revisions] == [40]
    issues = verify_cache(cache).issues
    assert {i.kind for i in issues} == {"leftover"} and len(issues) == 4
    install_bytes(data, cache)
    assert not staged.exists() and not staging.exists() and not ref_temp.exists()
    assert fresh.exists()
