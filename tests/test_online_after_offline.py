"""Online after offline (the trees rule, ``docs/CACHE.md``): a cache that ``install`` (or ``restore``) filled must
make the real client behave online exactly as a cache it filled itself, on this project's stack and on
FastSDCPU's pinned one (huggingface_hub 1.33, diffusers 0.37).

A default-files bundle of ``tiny-sd`` (no fp16 variant) is installed into an empty cache offline; then, with the
loopback Hub reachable, each stack runs in one subprocess against copies of three caches: ours after ``install``,
ours after ``backup`` + ``restore``, and the control that ``DiffusionPipeline.download`` filled itself (same run,
same stack). Each copy meets one client operation: ``from_pretrained(variant="fp16")``, ``snapshot_download()``,
``hf download REPO FILE``, ``hf cache verify REPO``, ``hf cache prune``. The results must be equal to the
control's, and the control's must be the right ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bundler.api import backup, build, install, restore
from bundler.cache.layout import tree_json
from bundler.hashing import lfs_blob_id
from bundler.repofile import TreeEntry
from tests.testing.hf_client import client_env
from tests.testing.hub import HubServer

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPAT = REPO_ROOT / ".venv-compat" / "bin"
SD = "hfbundle-test/tiny-sd"
FP16_FILE = "unet/diffusion_pytorch_model.fp16.safetensors"
EXTRA_FILE = "README.md"  # a file the default-files bundle leaves out


def _stacks() -> list[Any]:
    stacks: list[Any] = [pytest.param(Path(sys.executable).parent, id="current")]
    if COMPAT.exists() or os.environ.get("CI"):
        stacks.append(pytest.param(COMPAT, id="fastsdcpu-stack"))
    return stacks


_CLIENT = """
import json, os, warnings
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(1)
from huggingface_hub import snapshot_download, HfApi
from diffusers import DiffusionPipeline

out = {}
for name, root in json.loads(os.environ["CACHES"]).items():
    r = {}
    if name == "control":  # the real client fills its own cache first, default files like the bundle
        DiffusionPipeline.download(REPO, cache_dir=os.path.join(root, "fp16"))
        for op in ("snapshot", "hf-download", "verify", "prune"):
            DiffusionPipeline.download(REPO, cache_dir=os.path.join(root, op))
    try:
        pipe = DiffusionPipeline.from_pretrained(REPO, variant="fp16", cache_dir=os.path.join(root, "fp16"))
        r["fp16"] = f"loaded {type(pipe).__name__}"
    except Exception as e:
        r["fp16"] = f"{type(e).__name__}: {str(e)[:200]}"
    folder = snapshot_download(REPO, cache_dir=os.path.join(root, "snapshot"))
    r["snapshot"] = sorted(
        os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
    )
    out[name] = r
print(json.dumps(out))
"""


def _hf(bin_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "hf"), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _snapshot_files(cache: Path) -> set[str]:
    snaps = cache / "models--hfbundle-test--tiny-sd" / "snapshots"
    out: set[str] = set()
    for commit in os.listdir(snaps):
        top = snaps / commit
        out |= {os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs}
    return out


def _revisions(cache: Path) -> set[str]:
    return set(os.listdir(cache / "models--hfbundle-test--tiny-sd" / "snapshots"))


def _write_partial_listing(cache: Path) -> None:
    repo = cache / "models--hfbundle-test--tiny-sd"
    (commit,) = os.listdir(repo / "snapshots")
    entries: dict[str, TreeEntry] = {}
    for path in sorted(_snapshot_files(cache)):
        blob = os.path.basename(os.readlink(repo / "snapshots" / commit / path))
        size = os.path.getsize(repo / "blobs" / blob)
        if len(blob) == 64:
            entries[path] = TreeEntry(size, lfs_blob_id(blob, size), lfs_sha256=blob, lfs_size=size)
        else:
            entries[path] = TreeEntry(size, blob)
    (repo / "trees").mkdir(exist_ok=True)
    (repo / "trees" / f"{commit}.json").write_bytes(tree_json(entries))


@pytest.fixture(scope="module")
def filled(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Ours after install, and ours after backup + restore: both filled offline from a default-files bundle."""
    work = tmp_path_factory.mktemp("online-after-offline")
    bundle = work / "sd.tar.zst"
    build(SD, output=bundle, endpoint=hub.endpoint, cache_dir=work / "builder-cache", token=False)
    installed = work / "installed"
    install(bundle, cache_dir=installed)
    assert not list((installed / "models--hfbundle-test--tiny-sd").glob("trees/*.json"))  # partial: no listing
    full = work / "full.tar.zst"
    backup(cache_dir=installed, output=full)
    restored = work / "restored"
    restore(full, cache_dir=restored)
    return {"install": installed, "restore": restored}


@pytest.mark.parametrize("bin_dir", _stacks())
def test_real_client_online_after_an_offline_install(
    bin_dir: Path, hub: HubServer, filled: dict[str, Path], tmp_path: Path
) -> None:
    ops = ("fp16", "snapshot", "hf-download", "verify", "prune")
    caches: dict[str, Path] = {}
    for name, source in filled.items():
        caches[name] = tmp_path / name
        for op in ops:  # each operation on its own copy: one must not feed the next
            shutil.copytree(source, caches[name] / op, symlinks=True)
    caches["control"] = tmp_path / "control"
    # What hfbundle < 0.2 wrote (a listing of the bundled files only): the test must see that trap.
    legacy = tmp_path / "legacy"
    for op in ("fp16", "snapshot"):
        shutil.copytree(filled["install"], legacy / op, symlinks=True)
        _write_partial_listing(legacy / op)
    caches["legacy"] = legacy
    env = client_env(cache=tmp_path / "unused", endpoint=hub.endpoint, extra_env={"OMP_NUM_THREADS": "1"})
    proc = subprocess.run(
        [str(bin_dir / "python"), "-c", f"REPO = {SD!r}\n" + textwrap.dedent(_CLIENT)],
        env={**env, "CACHES": json.dumps({k: str(v) for k, v in caches.items()})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results: dict[str, dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])

    table: dict[str, dict[str, Any]] = {}
    legacy_row = results.pop("legacy")
    assert not (legacy_row["fp16"].startswith("loaded") and FP16_FILE in _snapshot_files(legacy / "fp16"))
    assert EXTRA_FILE not in legacy_row["snapshot"]
    for name, root in caches.items():
        if name == "legacy":
            continue
        row = dict(results[name])
        row["snapshot"] = set(row["snapshot"])
        row["fp16 file fetched"] = FP16_FILE in _snapshot_files(root / "fp16")
        cli_env = client_env(cache=root / "hf-download", endpoint=hub.endpoint)
        got = _hf(bin_dir, cli_env, "download", SD, EXTRA_FILE, "--cache-dir", str(root / "hf-download"))
        row["hf-download"] = got.returncode == 0 and EXTRA_FILE in _snapshot_files(root / "hf-download")
        verified = _hf(bin_dir, cli_env, "cache", "verify", SD, "--cache-dir", str(root / "verify"))
        row["verify"] = verified.returncode
        before = _revisions(root / "prune")
        pruned = _hf(bin_dir, cli_env, "cache", "prune", "--yes", "--cache-dir", str(root / "prune"))
        row["prune"] = (pruned.returncode, _revisions(root / "prune") == before)
        table[name] = row

    control = table["control"]
    assert control["fp16"].startswith("loaded") and control["fp16 file fetched"], control
    assert FP16_FILE in control["snapshot"] and EXTRA_FILE in control["snapshot"]
    assert control["hf-download"] is True and control["verify"] == 0 and control["prune"] == (0, True)
    print(
        json.dumps({k: {op: sorted(v) if isinstance(v, set) else v for op, v in r.items()} for k, r in table.items()})
    )
    for name in filled:
        assert table[name] == control, f"{name} differs from the real client's own cache: {table[name]}"
