"""A refused install leaves nothing that the real client's own listings show: ``hf cache ls`` (and through it
``scan_cache_dir``) of this project's stack *and* of FastSDCPU's pinned one (huggingface_hub 1.33) print the same
before and after, in an empty cache and in a pre-filled one. The in-process ``scan_cache_dir`` check of every
hostile case is in :func:`tests.hostile.harness.assert_refused`; this runs the CLIs themselves."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from . import craft
from .harness import api_install, make_world, write_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPAT_BIN = REPO_ROOT / ".venv-compat" / "bin"
SPEC = craft.standard()
BLOBS = SPEC.blobs()


def _stacks() -> list[Any]:
    stacks: list[Any] = [pytest.param(Path(sys.executable).parent, id="current")]
    if COMPAT_BIN.exists() or os.environ.get("CI"):
        stacks.append(pytest.param(COMPAT_BIN, id="fastsdcpu-stack"))
    return stacks


def _second_blob_damaged() -> bytes:
    """The issue's case: a bundle whose second blob's bytes do not hash to its name."""
    obj = copy.deepcopy(SPEC.manifest())
    names = sorted(BLOBS)
    bad = names[1]
    return craft.with_manifest(obj, {**BLOBS, bad: bytes(b ^ 0x5A for b in BLOBS[bad])})


def _size_lie() -> bytes:
    obj = copy.deepcopy(SPEC.manifest())
    weights = next(f for f in obj["repos"][0]["snapshots"][0]["files"] if f["path"] == "model.safetensors")
    sha = weights.get("sha256") or weights["lfs_sha256"]
    blob = next(b for b in obj["blobs"] if b["sha256"] == sha)
    blob["size"] = weights["size"] = weights["size"] - 1
    return craft.with_manifest(obj)


CASES = {"second blob damaged": _second_blob_damaged, "size lie": _size_lie}


def hf_cache_ls(bin_dir: Path, cache: Path) -> Any:
    """``hf cache ls`` by repo (a repo with no revision shows here) and by revision, with warnings."""
    out = []
    for extra in ([], ["--revisions"]):
        proc = subprocess.run(
            [str(bin_dir / "hf"), "cache", "ls", "--cache-dir", str(cache), "--show-warnings", "--json", *extra],
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(cache.parent), "HF_HUB_DISABLE_TELEMETRY": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        # times move between two calls: keep ids, revisions, refs, sizes (and the warnings, on stderr)
        rows = json.loads(proc.stdout or "[]")
        timeless = [{k: v for k, v in row.items() if "access" not in k and "modif" not in k} for row in rows]
        warnings = [line for line in proc.stderr.splitlines() if "Hint:" not in line]  # not the CLI's tips
        out.append((timeless, warnings))
    return out


@pytest.mark.parametrize("bin_dir", _stacks())
@pytest.mark.parametrize("kind", ["empty", "prefilled"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_install_changes_nothing_hf_cache_ls_shows(
    case: str, kind: str, bin_dir: Path, tmp_path: Path, template: Path
) -> None:
    bundle = write_bundle(tmp_path / "in", CASES[case]())
    _world, cache = make_world(tmp_path, template if kind == "prefilled" else None)
    cache.mkdir(exist_ok=True)
    before = hf_cache_ls(bin_dir, cache)
    assert api_install(bundle, cache) is not None  # refused
    assert hf_cache_ls(bin_dir, cache) == before
    if kind == "empty":
        assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == []
    (cache / "models--hostile--phantom" / "snapshots").mkdir(parents=True)  # the check does see a phantom
    assert hf_cache_ls(bin_dir, cache) != before
