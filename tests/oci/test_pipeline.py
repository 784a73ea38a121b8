"""The tiny demo pipeline through a real registry: build → push → ``pull --install`` into an empty cache with
``HF_HUB_OFFLINE=1`` and ``HF_ENDPOINT`` closed → ``verify`` ok → the real loaders load it offline. Also
``push SPEC`` (files straight from the cache) then ``pull -o`` gives the very bundle ``build`` writes."""

from __future__ import annotations

import json

import pytest

from bundler.api import build
from tests.conftest import CLOSED_ENDPOINT
from tests.helpers import hfbundle
from tests.test_loaders import LORA, SD, TAESD, _stacks, run_offline
from tests.testing import registry
from tests.testing.hf_client import client_env
from tests.testing.hub import HubServer
from tests.testing.registry import Registry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not registry.available(), reason="docker-registry is not installed (scripts/setup)"),
]


@pytest.fixture(scope="module")
def pulled(hub: HubServer, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("oci-pipeline")
    bundle = work / "demo.tar.zst"
    build("tiny-demo", output=bundle, endpoint=hub.endpoint, cache_dir=work / "online-cache", token=False)
    with Registry(work / "registry") as reg:
        ref = f"{reg.host}/models/tiny-demo:v1"
        offline = client_env(cache=work / "cache" / "hub", endpoint=CLOSED_ENDPOINT, offline=True)
        pushed = hfbundle("push", str(bundle), ref, "--plain-http", "--json", env=offline)
        assert pushed.returncode == 0, pushed.stderr
        got = hfbundle("pull", ref, "--install", "--plain-http", "--json", env=offline)
        assert got.returncode == 0, got.stderr

        online = client_env(cache=work / "online-cache", endpoint=hub.endpoint)
        spec_ref = f"{reg.host}/models/from-spec:v1"
        from_spec = hfbundle("push", "tiny-demo", spec_ref, "--plain-http", "--json", env=online)
        assert from_spec.returncode == 0, from_spec.stderr
        again = hfbundle("pull", spec_ref, "-o", str(work / "from-spec.tar.zst"), "--plain-http", env=offline)
        assert again.returncode == 0, again.stderr
        yield {
            "work": work,
            "bundle": bundle,
            "cache": work / "cache" / "hub",
            "push": json.loads(pushed.stdout),
            "pull": json.loads(got.stdout),
            "spec_push": json.loads(from_spec.stdout),
        }


def test_pull_install_verifies(pulled: dict) -> None:  # type: ignore[type-arg]
    assert pulled["pull"]["bundle_id"] == pulled["push"]["bundle_id"]
    env = client_env(cache=pulled["cache"], endpoint=CLOSED_ENDPOINT, offline=True)
    checked = hfbundle("verify", str(pulled["bundle"]), "--json", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["ok"] is True


def test_push_spec_then_pull_gives_the_built_bundle(pulled: dict) -> None:  # type: ignore[type-arg]
    assert pulled["spec_push"]["bundle_id"] == pulled["push"]["bundle_id"]
    assert pulled["spec_push"]["existing"] == 0  # another repository: nothing to skip without --mount-from
    assert (pulled["work"] / "from-spec.tar.zst").read_bytes() == pulled["bundle"].read_bytes()


@pytest.mark.parametrize("python", _stacks())
def test_pipeline_loads_offline(python: str, pulled: dict) -> None:  # type: ignore[type-arg]
    got = run_offline(
        python,
        pulled["cache"],
        f"""
        from diffusers import AutoencoderTiny, DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained({SD!r})
        pipe.vae = AutoencoderTiny.from_pretrained({TAESD!r})
        pipe.load_lora_weights({LORA!r}, weight_name="pytorch_lora_weights.safetensors")
        image = pipe("a cat", num_inference_steps=1, guidance_scale=1.0, width=64, height=64).images[0]
        print(json.dumps([type(pipe).__name__, type(pipe.vae).__name__, image.size]))
        """,
    )
    assert got == ["StableDiffusionPipeline", "AutoencoderTiny", [64, 64]]
