"""The walking skeleton, end to end: build through the real client and the loopback Hub, install into an
empty cache, then load and run with the Hub unreachable (``HF_HUB_OFFLINE=1``, ``HF_ENDPOINT`` closed)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.conftest import CLOSED_ENDPOINT
from tests.helpers import hfbundle
from tests.testing.hf_client import client_env, run_hf_client
from tests.testing.hub import HubServer

pytestmark = pytest.mark.slow


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def installed(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("e2e")
    bundle = work / "tiny-demo.tar.zst"
    online = client_env(cache=work / "online-cache", endpoint=hub.endpoint)
    built = hfbundle("build", "tiny-demo", "-o", str(bundle), "--json", env=online)
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)
    assert report["output"] == str(bundle) and bundle.is_file()

    cache = work / "offline-cache"
    offline = client_env(cache=cache, endpoint=CLOSED_ENDPOINT, offline=True)
    inst = hfbundle("install", str(bundle), "--json", env=offline)
    assert inst.returncode == 0, inst.stderr
    return {"bundle": bundle, "cache": cache, "work": work}


def test_build_report_names_every_repo(installed: dict[str, Path]) -> None:
    env = client_env(cache=installed["work"] / "unused", endpoint=CLOSED_ENDPOINT, offline=True)
    info = hfbundle("inspect", str(installed["bundle"]), "--json", env=env)
    assert info.returncode == 0, info.stderr
    repos = {r["repo_id"] for r in json.loads(info.stdout)["repos"]}
    assert repos == {"hfbundle-test/tiny-sd", "hfbundle-test/tiny-taesd", "hfbundle-test/tiny-lcm-lora"}


def test_pipeline_loads_offline_from_installed_cache(installed: dict[str, Path]) -> None:
    loaded = run_hf_client(
        """
        import torch
        torch.set_num_threads(1)
        from diffusers import AutoencoderTiny, DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained("hfbundle-test/tiny-sd")
        vae = AutoencoderTiny.from_pretrained("hfbundle-test/tiny-taesd")
        pipe.load_lora_weights("hfbundle-test/tiny-lcm-lora", weight_name="pytorch_lora_weights.safetensors")
        emit([type(pipe).__name__, type(vae).__name__])
        """,
        cache=installed["cache"],
        endpoint=CLOSED_ENDPOINT,
        offline=True,
    )
    assert loaded == ["StableDiffusionPipeline", "AutoencoderTiny"]


def test_run_writes_png_offline(installed: dict[str, Path]) -> None:
    out = installed["work"] / "out.png"
    env = client_env(cache=installed["cache"], endpoint=CLOSED_ENDPOINT, offline=True)
    ran = hfbundle("run", "tiny-demo", "--prompt", "a red cube", "-o", str(out), "--threads", "1", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert png_size(out) == (64, 64) == (report["width"], report["height"])
    assert report["steps"] == 2 and report["total_seconds"] > 0


def test_verify_clean_after_install(installed: dict[str, Path]) -> None:
    env = client_env(cache=installed["cache"], endpoint=CLOSED_ENDPOINT, offline=True)
    res = hfbundle("verify", "--json", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    again = hfbundle("verify", str(installed["bundle"]), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
