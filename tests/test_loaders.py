"""Loader matrix (installer issue): a cache that ``install`` filled from an empty start is loaded by the real
loaders in a subprocess with ``HF_HUB_OFFLINE=1`` and ``HF_ENDPOINT`` at a closed port — with this project's
stack *and* with FastSDCPU's pinned stack (diffusers 0.37, transformers 5.0, huggingface_hub 1.33), which
reads the same cache in the field. ``scripts/setup`` creates that second venv in ``.venv-compat``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bundler.api import build, install
from tests.conftest import CLOSED_ENDPOINT
from tests.testing.hf_client import client_env
from tests.testing.hub import HubServer

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPAT_PYTHON = REPO_ROOT / ".venv-compat" / "bin" / "python"
SD, TAESD, LORA = "hfbundle-test/tiny-sd", "hfbundle-test/tiny-taesd", "hfbundle-test/tiny-lcm-lora"


def _stacks() -> list[Any]:
    stacks: list[Any] = [pytest.param(sys.executable, id="current")]
    if COMPAT_PYTHON.exists() or os.environ.get("CI"):
        # In CI the compat venv must exist (scripts/setup makes it): a missing one fails, never skips.
        stacks.append(pytest.param(str(COMPAT_PYTHON), id="fastsdcpu-stack"))
    return stacks


def run_offline(python: str, cache: Path, code: str) -> Any:
    env = client_env(cache=cache, endpoint=CLOSED_ENDPOINT, offline=True, extra_env={"OMP_NUM_THREADS": "1"})
    prelude = "import json, warnings\nwarnings.simplefilter('ignore')\nimport torch\ntorch.set_num_threads(1)\n"
    proc = subprocess.run(
        [python, "-c", prelude + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"loader failed under {python}:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bundles(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tiny-demo (plain weights) and the fp16 variant of tiny-sd, built through the loopback Hub."""
    work = tmp_path_factory.mktemp("loader-bundles")
    online_cache = work / "online-cache"
    out = {"demo": work / "demo.tar.zst", "fp16": work / "fp16.tar.zst"}
    build("tiny-demo", output=out["demo"], endpoint=hub.endpoint, cache_dir=online_cache, token=False)
    build(SD, variant="fp16", output=out["fp16"], endpoint=hub.endpoint, cache_dir=online_cache, token=False)
    return out


@pytest.fixture(scope="module")
def cache(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("loader-cache") / "hub"
    install(bundles["demo"], cache_dir=cache)
    install(bundles["fp16"], cache_dir=cache)
    return cache


@pytest.mark.parametrize("python", _stacks())
def test_diffusers_pipeline_taesd_and_lora(python: str, cache: Path) -> None:
    got = run_offline(
        python,
        cache,
        f"""
        from diffusers import AutoencoderTiny, DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained({SD!r})
        fp16 = DiffusionPipeline.from_pretrained({SD!r}, variant="fp16", torch_dtype=torch.float16)
        pipe.vae = AutoencoderTiny.from_pretrained({TAESD!r})
        pipe.load_lora_weights({LORA!r}, weight_name="pytorch_lora_weights.safetensors")
        pipe.fuse_lora()
        image = pipe("a cat", num_inference_steps=2, guidance_scale=1.0, width=64, height=64,
                     generator=torch.Generator("cpu").manual_seed(0)).images[0]
        print(json.dumps([type(pipe).__name__, str(fp16.unet.dtype), type(pipe.vae).__name__, image.size]))
        """,
    )
    assert got == ["StableDiffusionPipeline", "torch.float16", "AutoencoderTiny", [64, 64]]


@pytest.mark.parametrize("python", _stacks())
def test_transformers_by_subfolder(python: str, cache: Path) -> None:
    got = run_offline(
        python,
        cache,
        f"""
        from transformers import CLIPTextModel, CLIPTokenizer
        tok = CLIPTokenizer.from_pretrained({SD!r}, subfolder="tokenizer")
        enc = CLIPTextModel.from_pretrained({SD!r}, subfolder="text_encoder")
        ids = tok("a photo of a cat", return_tensors="pt").input_ids
        print(json.dumps([len(ids[0]) > 2, list(enc(ids).last_hidden_state.shape)[0]]))
        """,
    )
    assert got == [True, 1]


@pytest.mark.parametrize("python", _stacks())
def test_huggingface_hub_functions(python: str, cache: Path, bundles: dict[str, Path]) -> None:
    from bundler.bundle.reader import open_bundle

    with open_bundle(bundles["demo"]) as reader:
        files = {r.repo_id: [f.path for s in r.snapshots for f in s.files] for r in reader.manifest.repos}
    got = run_offline(
        python,
        cache,
        f"""
        import os
        from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download, try_to_load_from_cache
        files = {files!r}
        downloaded = 0
        for repo, paths in files.items():
            for p in paths:
                assert os.path.isfile(hf_hub_download(repo, p)), p
                assert try_to_load_from_cache(repo, p) is not None, p
                downloaded += 1
        full = snapshot_download({SD!r})
        some = snapshot_download({SD!r}, allow_patterns=["unet/*", "model_index.json"])
        lora = snapshot_download({LORA!r})
        info = scan_cache_dir()
        print(json.dumps({{
            "downloaded": downloaded,
            "same_snapshot": full == some,
            "lora_files": sorted(os.listdir(lora)),
            "warnings": [str(w) for w in info.warnings],
            "repos": sorted(r.repo_id for r in info.repos),
        }}))
        """,
    )
    assert got["downloaded"] == sum(len(p) for p in files.values())
    assert got["same_snapshot"] is True
    assert got["lora_files"] == ["pytorch_lora_weights.safetensors"]
    assert got["warnings"] == []
    assert got["repos"] == sorted([SD, TAESD, LORA])
