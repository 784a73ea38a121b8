"""Doctor: on caches installed from a real tiny-demo bundle (built through the loopback Hub) and on caches the
real huggingface_hub client filled, each problem is named with the part of the mode that needs it and its fix."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bundler.bundle.manifest import Manifest
from bundler.bundle.reader import open_bundle
from bundler.cache.layout import RepoLayout
from bundler.doctor import ERROR, DoctorReport, doctor
from bundler.install import install
from bundler.recipe import load_spec
from tests.conftest import CLOSED_ENDPOINT
from tests.testing.hf_client import REPO_ROOT, client_env, run_hf_client
from tests.testing.hub import HubServer

RECIPES = Path(__file__).parent / "recipes"
SD, TAESD, LORA = "hfbundle-test/tiny-sd", "hfbundle-test/tiny-taesd", "hfbundle-test/tiny-lcm-lora"
UNET = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def demo_bundle(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny-demo bundle, built once with the real client through the loopback Hub."""
    work = tmp_path_factory.mktemp("doctor-bundle")
    out = work / "tiny-demo.tar.zst"
    env = client_env(cache=work / "online", endpoint=hub.endpoint)
    proc = subprocess.run(
        [sys.executable, "-m", "bundler", "build", "tiny-demo", "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def install_demo(bundle: Path, cache: Path, *, record: bool = True, copy: bool | None = None) -> Manifest:
    with open_bundle(bundle) as source:
        install(source, cache, copy=copy, record=record)
        return source.manifest


def commit_of(manifest: Manifest, repo_id: str) -> str:
    return next(r.snapshots[0].commit for r in manifest.repos if r.repo_id == repo_id)


def errors(report: DoctorReport) -> list[str]:
    return [p.message for p in report.errors]


def assert_rebuild_fix(report: DoctorReport, cache: Path, spec: str = "tiny-demo") -> None:
    name = load_spec(spec).name
    assert report.fixes == (
        f"on a machine with the Hub: hfbundle build {spec} -o {name}.tar.zst",
        f"then here: hfbundle install {name}.tar.zst --cache-dir {cache}",
    )
    rendered = "\n".join(report.render())
    assert f"hfbundle build {spec} -o {name}.tar.zst" in rendered and "NOT READY" in rendered


# -- a complete cache ------------------------------------------------------------------------------------------


def test_complete_cache_is_ok_from_the_lock(demo_bundle: Path, tmp_path: Path) -> None:
    manifest = install_demo(demo_bundle, tmp_path)
    report = doctor("tiny-demo", tmp_path)
    assert report.ok and report.problems == () and report.fixes == ()
    by_repo = {r.repo_id: r for r in report.repos}
    assert [r.purpose for r in report.repos] == ["the pipeline", "TAESD swap", "LCM-LoRA"]
    assert {r.source for r in report.repos} == {"lock"}
    assert {r.bundle_id for r in report.repos} == {manifest.bundle_id}
    assert by_repo[LORA].expected == ("pytorch_lora_weights.safetensors",)
    assert UNET in by_repo[SD].present and by_repo[SD].missing == () and by_repo[SD].corrupt == ()
    assert by_repo[SD].commit == commit_of(manifest, SD)
    assert report.bytes_hashed > 0
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is True and data["repos"][0]["source"] == "lock"
    assert report.render()[-1] == "ok: tiny-demo loads offline"


def test_complete_cache_without_record_uses_the_recipe_rules(demo_bundle: Path, tmp_path: Path) -> None:
    install_demo(demo_bundle, tmp_path, record=False)
    report = doctor("tiny-demo", tmp_path)
    assert report.ok, report.render()
    assert {r.source for r in report.repos} == {"snapshot"}  # a partial bundle writes no trees listing
    sd = report.repos[0]
    assert UNET in sd.expected and "text_encoder/model.safetensors" in sd.expected
    assert not any(p.endswith(".bin") for p in sd.expected)


def test_other_recipe_on_the_same_repos_uses_the_recorded_upstream_listing(demo_bundle: Path, tmp_path: Path) -> None:
    install_demo(demo_bundle, tmp_path)
    report = doctor(str(RECIPES / "tiny-lcm-lora.toml"), tmp_path)
    assert report.ok, report.render()
    assert [(r.purpose, r.source) for r in report.repos] == [("the pipeline", "record"), ("LCM-LoRA", "record")]


# -- what is wrong, and the fix --------------------------------------------------------------------------------


def test_missing_taesd_repo_is_named_with_the_mode(demo_bundle: Path, tmp_path: Path) -> None:
    install_demo(demo_bundle, tmp_path)
    shutil.rmtree(RepoLayout(tmp_path, "model", TAESD).folder)
    report = doctor("tiny-demo", tmp_path)
    assert not report.ok
    assert errors(report) == [f"TAESD swap needs {TAESD}: not installed"]
    assert report.errors[0].kind == "not_installed" and report.errors[0].needs_bundle
    assert_rebuild_fix(report, tmp_path)
    assert (
        report.summary() == f"tiny-demo will not load offline from {tmp_path}: TAESD swap needs {TAESD}: not installed"
    )


@pytest.mark.parametrize(
    ("repo", "path", "message"),
    [
        (SD, UNET, f"the pipeline needs {SD} ({UNET}): missing"),
        (
            LORA,
            "pytorch_lora_weights.safetensors",
            f"LCM-LoRA needs {LORA} (pytorch_lora_weights.safetensors): missing",
        ),
        (TAESD, "config.json", f"TAESD swap needs {TAESD} (config.json): missing"),
    ],
)
@pytest.mark.parametrize("record", [True, False], ids=["record", "no-record"])
def test_missing_file_is_named(
    demo_bundle: Path, tmp_path: Path, repo: str, path: str, message: str, record: bool
) -> None:
    manifest = install_demo(demo_bundle, tmp_path, record=record)
    lay = RepoLayout(tmp_path, "model", repo)
    snap = lay.snapshot(commit_of(manifest, repo))
    (snap / path).unlink()
    tree = lay.tree(commit_of(manifest, repo))
    tree.unlink(missing_ok=True)  # a whole-repo listing would be a problem of its own once a file is gone
    report = doctor("tiny-demo", tmp_path)
    assert not report.ok
    assert message in errors(report)[0], report.render()
    assert_rebuild_fix(report, tmp_path)


def test_missing_weights_are_found_with_only_the_snapshot_to_go_by(demo_bundle: Path, tmp_path: Path) -> None:
    """No record, no trees listing: the component's config.json says weights belong there."""
    manifest = install_demo(demo_bundle, tmp_path, record=False)
    lay = RepoLayout(tmp_path, "model", SD)
    commit = commit_of(manifest, SD)
    assert not lay.tree(commit).exists()  # a partial bundle writes no listing
    (lay.snapshot(commit) / "vae/diffusion_pytorch_model.safetensors").unlink()
    report = doctor(str(RECIPES / "tiny-lcm.toml"), tmp_path)
    assert errors(report) == [f"the pipeline needs {SD} (vae/diffusion_pytorch_model.safetensors): missing"]
    assert report.repos[0].source == "snapshot"


def test_deleted_blob_leaves_a_dangling_link(demo_bundle: Path, tmp_path: Path) -> None:
    manifest = install_demo(demo_bundle, tmp_path)
    link = RepoLayout(tmp_path, "model", SD).snapshot(commit_of(manifest, SD)) / UNET
    Path(os.path.realpath(link)).unlink()
    report = doctor("tiny-demo", tmp_path)
    assert f"the pipeline needs {SD} ({UNET}): missing" in errors(report)[0]
    assert "point at blobs that are gone" in errors(report)[0]


@pytest.mark.parametrize("copy", [None, True], ids=["symlinks", "copies"])
@pytest.mark.parametrize("record", [True, False], ids=["record", "no-record"])
def test_corrupt_blob_is_found_by_rehashing(demo_bundle: Path, tmp_path: Path, copy: bool | None, record: bool) -> None:
    manifest = install_demo(demo_bundle, tmp_path, copy=copy, record=record)
    target = Path(os.path.realpath(RepoLayout(tmp_path, "model", SD).snapshot(commit_of(manifest, SD)) / UNET))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only a re-hash sees it
    target.write_bytes(bytes(data))
    report = doctor("tiny-demo", tmp_path)
    if copy and not record:  # a copy-layout file carries no hash in its name; no record, no listing: none known
        assert report.ok and UNET in report.repos[0].unverified
        assert "could not be re-hashed" in "\n".join(report.render())
        return
    assert not report.ok
    (problem,) = report.errors
    assert problem.kind == "corrupt" and problem.paths == (UNET,)
    assert problem.message.startswith(f"the pipeline: {SD} {UNET} is corrupt")
    assert problem.fix is not None and "hfbundle install" in problem.fix
    assert_rebuild_fix(report, tmp_path)
    assert doctor("tiny-demo", tmp_path, rehash=False).ok  # sizes only: the run's fast preflight trusts it


def test_each_content_is_hashed_once_and_an_unreadable_one_is_named(
    demo_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are hashed in batches (issue 18): one job per inode, however many snapshot paths reach it, and a file
    that cannot be read is a problem naming it, not a traceback."""
    import bundler.hashing as hashing_module

    manifest = install_demo(demo_bundle, tmp_path, record=False)
    lay = RepoLayout(tmp_path, "model", SD)
    commit = commit_of(manifest, SD)
    lay.tree(commit).unlink(missing_ok=True)  # nothing known but the blobs' names: every present file is hashed
    snap = lay.snapshot(commit)
    unet = os.path.realpath(snap / UNET)
    twin = snap / "scheduler" / "scheduler_config.json"  # now a second path to model_index.json's blob
    target = os.readlink(snap / "model_index.json")
    twin.unlink()
    os.symlink("../" + target, twin)
    from bundler.hashing import digest_paths as real

    jobs: list[str] = []

    def digest_paths(given: Any, **kw: Any) -> Iterator[Any]:
        todo = list(given)
        jobs.extend(j[0] for j in todo)
        for job, got in zip(todo, real(todo, **kw), strict=True):
            yield OSError(13, "Permission denied") if os.path.realpath(job[0]) == unet else got

    monkeypatch.setattr(hashing_module, "digest_paths", digest_paths)  # what InodeHasher.digest_inodes calls
    report = doctor("tiny-demo", tmp_path)
    inodes = [os.stat(j).st_ino for j in jobs]
    assert len(inodes) == len(set(inodes)) > 3
    present = sum(len(r.present) for r in report.repos)
    assert len(jobs) == present - 1  # the twin's content was hashed once
    (problem,) = report.errors
    assert problem.kind == "corrupt" and problem.paths == (UNET,)
    assert problem.message.endswith(f"{UNET} is corrupt: it cannot be read (Permission denied)")
    read = {os.stat(j).st_ino: os.path.getsize(j) for j in jobs if os.path.realpath(j) != unet}
    assert report.bytes_hashed == sum(read.values())


def test_truncated_blob_is_found_without_rehashing(demo_bundle: Path, tmp_path: Path) -> None:
    manifest = install_demo(demo_bundle, tmp_path)
    target = Path(os.path.realpath(RepoLayout(tmp_path, "model", LORA).snapshot(commit_of(manifest, LORA))))
    blob = Path(os.path.realpath(target / "pytorch_lora_weights.safetensors"))
    blob.write_bytes(blob.read_bytes()[:100])
    report = doctor("tiny-demo", tmp_path, rehash=False)
    assert [p.kind for p in report.errors] == ["corrupt"]
    assert "100 bytes, expected" in report.errors[0].message
    assert report.bytes_hashed == 0


def test_ref_with_trailing_newline_gets_the_printf_fix(demo_bundle: Path, tmp_path: Path) -> None:
    manifest = install_demo(demo_bundle, tmp_path)
    commit = commit_of(manifest, TAESD)
    ref = RepoLayout(tmp_path, "model", TAESD).ref("main")
    ref.write_text(commit + "\n")
    report = doctor("tiny-demo", tmp_path)
    (problem,) = report.errors
    assert problem.kind == "bad_ref" and not problem.needs_bundle
    assert problem.message.startswith(f"TAESD swap needs {TAESD}: refs/main has whitespace around the commit")
    fix = f"printf %s {commit} > {ref}"
    assert problem.fix is not None and fix in problem.fix
    assert report.fixes == (problem.fix,)  # no bundle needed: the one command fixes it
    subprocess.run(["bash", "-c", fix], check=True)
    assert ref.read_bytes() == commit.encode()
    assert doctor("tiny-demo", tmp_path).ok


def test_ref_to_a_commit_without_snapshot(demo_bundle: Path, tmp_path: Path) -> None:
    install_demo(demo_bundle, tmp_path)
    RepoLayout(tmp_path, "model", LORA).ref("main").write_text("e" * 40)
    report = doctor("tiny-demo", tmp_path)
    assert [p.kind for p in report.errors] == ["no_snapshot"]
    assert report.errors[0].message.startswith(f"LCM-LoRA needs {LORA}: refs/main points at eeeeeeeeeeee")
    assert_rebuild_fix(report, tmp_path)


def test_missing_ref_with_one_snapshot_gets_the_printf_fix(demo_bundle: Path, tmp_path: Path) -> None:
    manifest = install_demo(demo_bundle, tmp_path)
    ref = RepoLayout(tmp_path, "model", SD).ref("main")
    ref.unlink()
    report = doctor("tiny-demo", tmp_path)
    assert [p.kind for p in report.errors] == ["no_ref"]
    assert report.fixes == (f"printf %s {commit_of(manifest, SD)} > {ref}",)


def test_ref_moved_to_a_snapshot_without_weights_points_back(demo_bundle: Path, tmp_path: Path) -> None:
    """refs/main moved to a newer commit of which only configs were fetched; the old snapshot has everything."""
    manifest = install_demo(demo_bundle, tmp_path)
    lay = RepoLayout(tmp_path, "model", SD)
    old = commit_of(manifest, SD)
    new = "a" * 40
    shutil.copytree(lay.snapshot(old), lay.snapshot(new), symlinks=True)
    for weights in lay.snapshot(new).glob("*/*.safetensors"):
        weights.unlink()
    lay.ref("main").write_text(new)
    report = doctor("tiny-demo", tmp_path)
    (problem,) = report.errors
    assert problem.kind == "missing" and UNET in problem.paths
    assert f"from snapshot {new[:12]}, the one refs/main points at" in problem.message
    assert problem.fix is not None and f"printf %s {old} > {lay.ref('main')}" in problem.fix


def test_empty_cache_names_every_repo(tmp_path: Path) -> None:
    report = doctor("tiny-demo", tmp_path / "nothing-here")
    assert errors(report) == [
        f"the pipeline needs {SD}: not installed",
        f"TAESD swap needs {TAESD}: not installed",
        f"LCM-LoRA needs {LORA}: not installed",
    ]
    assert_rebuild_fix(report, tmp_path / "nothing-here")


def test_default_cache_needs_no_cache_dir_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # default_cache_dir() reads the environment on each call (unlike huggingface_hub), so this is safe in-process
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    report = doctor("tiny-demo", tmp_path)
    assert report.fixes[-1] == "then here: hfbundle install tiny-demo.tar.zst"


# -- caches filled by the real client --------------------------------------------------------------------------


def snapshot_download(hub: HubServer, cache: Path, allow: list[str]) -> None:
    run_hf_client(
        f"from huggingface_hub import snapshot_download\nemit(snapshot_download({SD!r}, allow_patterns={allow!r}))",
        cache=cache,
        endpoint=hub.endpoint,
    )


def test_partial_download_with_full_listing(hub: HubServer, tmp_path: Path) -> None:
    """snapshot_download(allow_patterns=...) writes the full upstream listing in trees/: the IncompleteSnapshotError
    trap, and the weights the pipeline needs are missing too."""
    cache = tmp_path / "hub"
    snapshot_download(hub, cache, ["*.json", "unet/*"])
    report = doctor(str(RECIPES / "tiny-lcm.toml"), cache)
    kinds = [p.kind for p in report.errors]
    assert kinds == ["missing", "incomplete_tree"], report.render()
    missing, trap = report.errors
    assert missing.message == (
        f"the pipeline needs {SD} (text_encoder/model.safetensors, tokenizer/merges.txt, "
        "vae/diffusion_pytorch_model.safetensors): missing"
    )
    assert "IncompleteSnapshotError" in trap.message and "huggingface_hub >= 1.22" in trap.message
    assert "FastSDCPU" in trap.message
    assert trap.fix is not None and trap.fix.startswith(
        f"hfbundle doctor {RECIPES / 'tiny-lcm.toml'} --fix --cache-dir"
    )
    assert report.repos[0].source == "trees"
    assert "unet/diffusion_pytorch_model.bin" in report.repos[0].extra  # not needed: info only
    assert_rebuild_fix(report, cache, str(RECIPES / "tiny-lcm.toml"))


def test_listing_trap_alone_is_fixed_by_removing_the_listing(hub: HubServer, tmp_path: Path) -> None:
    """Every file the pipeline needs is there, but the listing names more: huggingface_hub's offline
    snapshot_download refuses the repo. The doctor's one command fixes it, as the real client confirms."""
    cache = tmp_path / "hub"
    recipe = str(RECIPES / "tiny-lcm.toml")
    snapshot_download(hub, cache, ["*.json", "*.txt", "*/model.safetensors", "*/diffusion_pytorch_model.safetensors"])
    report = doctor(recipe, cache)
    assert [p.kind for p in report.errors] == ["incomplete_tree"], report.render()
    (fix,) = report.fixes
    probe = f"from huggingface_hub import snapshot_download\nemit(snapshot_download({SD!r}) and 'loaded')"
    with pytest.raises(AssertionError, match="IncompleteSnapshotError"):
        run_hf_client(probe, cache=cache, endpoint=CLOSED_ENDPOINT, offline=True)
    run_fix(fix)
    assert doctor(recipe, cache).ok
    assert run_hf_client(probe, cache=cache, endpoint=CLOSED_ENDPOINT, offline=True) == "loaded"


COMPAT_PYTHON = REPO_ROOT / ".venv-compat" / "bin" / "python"


def run_fix(fix: str) -> None:
    """Run a printed fix as a user would, with this checkout's hfbundle standing in for the command."""
    command = fix.split("  (")[0]
    assert command.startswith("hfbundle ")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(
        ["bash", "-c", f"{shlex.quote(sys.executable)} -m bundler {command[len('hfbundle ') :]}"], check=True, env=env
    )


@pytest.mark.slow
@pytest.mark.skipif(not COMPAT_PYTHON.exists(), reason="FastSDCPU's pinned stack (.venv-compat) is not set up")
def test_listing_trap_breaks_fastsdcpus_stack_until_fixed(hub: HubServer, tmp_path: Path) -> None:
    """With diffusers 0.37 / huggingface_hub 1.33 the listing alone breaks loading, though every needed file is
    there: the doctor's error is real for the app, and its fix is enough."""
    cache = tmp_path / "hub"
    recipe = str(RECIPES / "tiny-lcm.toml")
    snapshot_download(hub, cache, ["*.json", "*.txt", "*/model.safetensors", "*/diffusion_pytorch_model.safetensors"])
    code = (
        "from diffusers import DiffusionPipeline\n"
        "try:\n"
        f"    DiffusionPipeline.from_pretrained({SD!r}, local_files_only=True)\n"
        "    print('loaded')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n"
    )
    env = client_env(cache=cache, endpoint=CLOSED_ENDPOINT, offline=True, extra_env={"OMP_NUM_THREADS": "1"})

    def load() -> str:
        proc = subprocess.run([str(COMPAT_PYTHON), "-c", code], env=env, capture_output=True, text=True, timeout=300)
        return proc.stdout.strip().splitlines()[-1]

    assert load() == "IncompleteSnapshotError"
    (fix,) = doctor(recipe, cache).fixes
    run_fix(fix)
    assert doctor(recipe, cache).ok
    assert load() == "loaded"


def test_doctor_is_light() -> None:
    code = (
        "import sys, bundler.doctor\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'huggingface_hub') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_severity_of_an_optional_repo(demo_bundle: Path, tmp_path: Path) -> None:
    recipe = load_spec("tiny-demo")
    optional = dataclasses.replace(
        recipe, repos=tuple(dataclasses.replace(r, optional=r.name == "taesd") for r in recipe.repos)
    )
    install_demo(demo_bundle, tmp_path)
    shutil.rmtree(RepoLayout(tmp_path, "model", TAESD).folder)
    report = doctor(optional, tmp_path)
    assert report.ok
    (problem,) = report.problems
    assert problem.severity != ERROR and "optional" in problem.message
