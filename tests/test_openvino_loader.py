"""The ``openvino-sd-turbo`` recipe against the real loader (issue 12): optimum-intel 2.0.0 and openvino 2026.2.0 on
FastSDCPU's pinned stack (``.venv-openvino``, made by ``scripts/setup``).

A tiny SD pipeline is exported to real OpenVINO IR by that optimum-intel (once per session) and served from the
loopback Hub as ``rupeshs/sd-turbo-openvino``, the repo the shipped recipe names. The rule's pattern set
(``rules.openvino_pipeline_files``) must equal what ``OVStableDiffusionPipeline`` / ``OVLatentConsistencyModelPipeline``
download into an empty cache; the cache that download leaves does *not* load offline (optimum lists the whole
commit, ``rules.openvino_offline_files``), so the resolver takes the whole commit, and both pipelines must load and
generate offline from a cache that ``install`` filled from that bundle.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bundler import rules
from bundler.api import install, resolve
from tests.conftest import CLOSED_ENDPOINT, OPENVINO_REPO
from tests.testing.hub import HubServer
from tests.testing.openvino import REPO_ROOT, base_env, require_openvino, run_openvino

pytestmark = pytest.mark.slow

RECIPE = "openvino-sd-turbo"
PIPELINES = ("OVStableDiffusionPipeline", "OVLatentConsistencyModelPipeline")

_DOWNLOAD = """
import os
from pathlib import Path
from optimum.intel import {cls}
{cls}.from_pretrained({repo!r}, compile=False)
snaps = list(Path(os.environ["HF_HOME"], "hub", "models--" + {repo!r}.replace("/", "--"), "snapshots").iterdir())
emit([p.name for p in snaps] + sorted(str(f.relative_to(snaps[0])) for f in snaps[0].rglob("*") if f.is_file()))
"""

_GENERATE = """
from optimum.intel import {cls}
pipe = {cls}.from_pretrained({repo!r}, local_files_only=True, compile=False,
                             ov_config={{"CACHE_DIR": "", "INFERENCE_NUM_THREADS": "1"}})
pipe.reshape(batch_size=-1, height=64, width=64, num_images_per_prompt=1)
pipe.compile()
size = None
if {generate}:
    size = list(pipe("a cat", num_inference_steps=1, guidance_scale=1.0, height=64, width=64).images[0].size)
emit([type(pipe).__name__, size])
"""


def _home(tmp_path: Path, name: str) -> Path:
    home = tmp_path / name
    home.mkdir()
    return home


def _hub_env(home: Path, endpoint: str, *, offline: bool) -> dict[str, str]:
    # HF_HOME only: optimum-intel's default cache_dir is $HF_HOME/hub (see bundler/loaderenv.py), so the cache the
    # test reads and the one the loader uses are the same folder.
    extra = {"HF_HOME": str(home / "hf"), "HF_ENDPOINT": endpoint}
    if offline:
        extra["HF_HUB_OFFLINE"] = "1"
    return base_env(home, extra)


@pytest.fixture(scope="module")
def resolved_files(openvino_hub: HubServer) -> set[str]:
    lock = resolve(RECIPE, endpoint=openvino_hub.endpoint, token=False)
    (repo,) = lock.repos
    assert (repo.repo_id, repo.role) == (OPENVINO_REPO, "openvino-pipeline")
    return {f.path for f in repo.files}


@pytest.mark.parametrize("cls", PIPELINES)
def test_resolver_picks_what_the_loader_downloads(
    cls: str, openvino_hub: HubServer, resolved_files: set[str], openvino_repo: Path, tmp_path: Path
) -> None:
    home = _home(tmp_path, "home")
    got: list[str] = run_openvino(
        _DOWNLOAD.format(cls=cls, repo=OPENVINO_REPO), _hub_env(home, openvino_hub.endpoint, offline=False)
    )
    commit, downloaded = got[0], set(got[1:])
    assert len(commit) == 40
    published = {p.relative_to(openvino_repo).as_posix() for p in openvino_repo.rglob("*") if p.is_file()}
    index = json.loads((openvino_repo / "model_index.json").read_text(encoding="utf-8"))
    assert downloaded == rules.openvino_pipeline_files(published, index)
    # The loader really skipped something (README, onnx, safetensors ...); offline it needs all of it.
    assert {"README.md", "unet/model.onnx", "text_encoder/model.safetensors"} <= published - downloaded
    assert {"unet/openvino_model.xml", "unet/openvino_model.bin", "tokenizer/vocab.json"} <= downloaded
    assert resolved_files == published


def test_the_loaders_own_download_does_not_load_offline(openvino_hub: HubServer, tmp_path: Path) -> None:
    """Why the resolver takes the whole commit: the cache optimum-intel fills itself online fails offline."""
    home = _home(tmp_path, "home")
    code = _DOWNLOAD.format(cls=PIPELINES[0], repo=OPENVINO_REPO)
    commit = run_openvino(code, _hub_env(home, openvino_hub.endpoint, offline=False))[0]
    listing = home / "hf" / "hub" / f"models--{OPENVINO_REPO.replace('/', '--')}" / "trees" / f"{commit}.json"
    assert "README.md" in json.loads(listing.read_text(encoding="utf-8"))["files"]
    failed = run_openvino(
        _GENERATE.format(cls=PIPELINES[0], repo=OPENVINO_REPO, generate=True),
        _hub_env(home, CLOSED_ENDPOINT, offline=True),
        expect_failure=True,
    )
    assert "LocalEntryNotFoundError" in failed.stderr


@pytest.fixture(scope="module")
def installed_home(openvino_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose ``hf/hub`` cache ``install`` filled from a bundle of the recipe (built through the Hub)."""
    home = tmp_path_factory.mktemp("openvino-installed")
    install(openvino_bundle, cache_dir=home / "hf" / "hub")
    return home


@pytest.mark.parametrize("cls", PIPELINES)
def test_loads_offline_from_an_installed_bundle(cls: str, installed_home: Path) -> None:
    # Generation with the LCM pipeline needs an LCM-distilled UNet (time_cond_proj_dim), which the tiny SD is
    # not: that class loads, reshapes and compiles; the SD one (FastSDCPU's sd-turbo path) also generates.
    generate = cls == "OVStableDiffusionPipeline"
    got: Any = run_openvino(
        _GENERATE.format(cls=cls, repo=OPENVINO_REPO, generate=generate),
        _hub_env(installed_home, CLOSED_ENDPOINT, offline=True),
    )
    assert got == [cls, [64, 64] if generate else None]


def test_hfbundle_run_where_optimum_intel_is_present(installed_home: Path, tmp_path: Path) -> None:
    """``hfbundle run`` of the shipped recipe with the OpenVINO venv's python: the runner's optimum-intel path.
    The user's environment lacks ``HF_HUB_OFFLINE`` (optimum-intel needs it, bundler/loaderenv.py): run sets it."""
    python = require_openvino()
    out = tmp_path / "cat.png"
    argv = ["run", RECIPE, "--prompt", "a cat", "-o", str(out), "--width", "64", "--height", "64", "--steps", "1"]
    argv += ["--threads", "1", "--cache-dir", str(installed_home / "hf" / "hub"), "--json"]
    env = {**_hub_env(installed_home, CLOSED_ENDPOINT, offline=False), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [str(python), "-c", "import sys\nfrom bundler.cli import main\nmain(sys.argv[1:])", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    from PIL import Image

    with Image.open(out) as image:
        assert image.size == (64, 64)
