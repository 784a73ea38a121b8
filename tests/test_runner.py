"""The CPU runner: recipe defaults, the doctor as preflight, and (slow) real generations in subprocesses with the
Hub unreachable: valid PNGs of the asked size with their text chunks, identical pixels for one seed, no request."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bundler.bundle.reader import open_bundle
from bundler.cache.layout import RepoLayout
from bundler.cache.records import record_install
from bundler.errors import RunError, UsageError
from bundler.install import install
from bundler.runner import RunPlan, RunReport, physical_cores, plan_run
from tests.conftest import CLOSED_ENDPOINT
from tests.helpers import hfbundle
from tests.testing.hf_client import REPO_ROOT, client_env
from tests.testing.hub import HubServer

RECIPES = Path(__file__).parent / "recipes"
TAESD = "hfbundle-test/tiny-taesd"
PROMPT = "a tiny red cube"


@pytest.fixture(scope="module")
def demo(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """The tiny-demo bundle built with the real client through the loopback Hub, installed (with its record)
    into a cache the tests only read."""
    work = tmp_path_factory.mktemp("runner")
    bundle = work / "tiny-demo.tar.zst"
    built = hfbundle(
        "build", "tiny-demo", "-o", str(bundle), env=client_env(cache=work / "online", endpoint=hub.endpoint)
    )
    assert built.returncode == 0, built.stderr
    cache = work / "cache"
    bundle_id = install_with_record(bundle, cache)
    return {"bundle": bundle, "cache": cache, "bundle_id": bundle_id, "work": work}


def install_with_record(bundle: Path, cache: Path) -> str:
    with open_bundle(bundle) as source:
        install(source, cache)
        record_install(cache, source.manifest)
        return source.manifest.bundle_id


def offline_env(cache: Path | str) -> dict[str, str]:
    return client_env(cache=Path(cache), endpoint=CLOSED_ENDPOINT, offline=True, extra_env={"OMP_NUM_THREADS": "1"})


# -- the plan: recipe defaults and the doctor's preflight (no torch) -------------------------------------------


def test_plan_takes_the_recipe_defaults(demo: dict[str, Path | str], tmp_path: Path) -> None:
    plan = plan_run("tiny-demo", prompt=PROMPT, output=tmp_path / "x.png", cache_dir=demo["cache"])
    assert (plan.steps, plan.guidance, plan.width, plan.height) == (2, 1.0, 64, 64)
    assert plan.scheduler == "LCMScheduler" and plan.dtype == "float32" and plan.role == "diffusers-pipeline"
    assert plan.pipeline.repo == "hfbundle-test/tiny-sd" and plan.pipeline.revision == "main"
    assert plan.vae is not None and plan.vae.repo == TAESD
    assert plan.lora is not None and plan.lora.weight_name == "pytorch_lora_weights.safetensors"
    assert plan.lora_fuse and plan.lora_scale == 1.0
    assert plan.bundle_id == demo["bundle_id"]
    assert plan.threads == physical_cores() >= 1
    assert plan.output == str((tmp_path / "x.png").absolute())


def test_arguments_override_the_recipe(demo: dict[str, Path | str], tmp_path: Path) -> None:
    plan = plan_run(
        str(RECIPES / "tiny-lcm.toml"),
        prompt=PROMPT,
        output=tmp_path / "x.png",
        steps=3,
        guidance=1.5,
        width=96,
        height=32,
        seed=5,
        negative_prompt="blurry",
        threads=1,
        cache_dir=demo["cache"],
    )
    assert (plan.steps, plan.guidance, plan.width, plan.height, plan.seed) == (3, 1.5, 96, 32, 5)
    assert plan.negative_prompt == "blurry" and plan.threads == 1
    assert plan.vae is None and plan.lora is None


def test_lora_weight_name_comes_from_the_rules_when_the_recipe_has_none(
    demo: dict[str, Path | str], tmp_path: Path
) -> None:
    text = (
        (RECIPES / "tiny-lcm-lora.toml").read_text().replace('weight_name = "pytorch_lora_weights.safetensors"\n', "")
    )
    recipe = tmp_path / "no-weight-name.toml"
    recipe.write_text(text)
    plan = plan_run(str(recipe), prompt=PROMPT, output=tmp_path / "x.png", cache_dir=demo["cache"])
    assert plan.lora is not None and plan.lora.weight_name == "pytorch_lora_weights.safetensors"


def test_size_must_be_a_multiple_of_8(demo: dict[str, Path | str], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="multiple of 8"):
        plan_run("tiny-demo", prompt=PROMPT, output=tmp_path / "x.png", width=100, cache_dir=demo["cache"])


def test_a_run_that_would_fail_offline_stops_with_the_doctor(demo: dict[str, Path | str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    install_with_record(Path(demo["bundle"]), cache)
    layout = RepoLayout(cache, "model", TAESD)
    os.rename(layout.folder, tmp_path / "moved-away")
    with pytest.raises(RunError) as e:
        plan_run("tiny-demo", prompt=PROMPT, output=tmp_path / "x.png", cache_dir=cache)
    assert e.value.message == f"tiny-demo will not load offline from {cache}: TAESD swap needs {TAESD}: not installed"
    assert e.value.hint is not None
    assert "hfbundle build tiny-demo -o tiny-demo.tar.zst" in e.value.hint
    assert f"hfbundle install tiny-demo.tar.zst --cache-dir {cache}" in e.value.hint


def test_verify_rehashes_in_the_preflight(demo: dict[str, Path | str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    install_with_record(Path(demo["bundle"]), cache)
    blob = next(p for p in RepoLayout(cache, "model", TAESD).blobs.iterdir() if len(p.name) == 64)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    plan_run("tiny-demo", prompt=PROMPT, output=tmp_path / "x.png", cache_dir=cache)  # sizes only: passes
    with pytest.raises(RunError, match="is corrupt"):
        plan_run("tiny-demo", prompt=PROMPT, output=tmp_path / "x.png", cache_dir=cache, verify=True)


def test_plan_and_report_round_trip_through_json(demo: dict[str, Path | str], tmp_path: Path) -> None:
    plan = plan_run("tiny-demo", prompt=PROMPT, output=tmp_path / "x.png", cache_dir=demo["cache"])
    assert RunPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    report = RunReport(
        output="x.png",
        recipe="r",
        prompt="p",
        seed=1,
        steps=2,
        guidance=1.0,
        width=64,
        height=64,
        load_seconds=0.5,
        seconds_per_step=0.25,
        total_seconds=1.0,
        threads=1,
        repos={"pipeline": "a/b@0123"},
        step_seconds=(0.25, 0.25),
        notes=("n",),
    )
    assert RunReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    assert any("250 ms/step" in line for line in report.render())


def test_openvino_recipe_says_what_it_needs(tmp_path: Path) -> None:
    ran = hfbundle(
        "run", str(RECIPES / "tiny-openvino.toml"), "--prompt", PROMPT, "-o", str(tmp_path / "x.png"),
        env=offline_env(tmp_path / "cache"),
    )  # fmt: skip
    assert ran.returncode == 1, ran.stderr
    assert "is an OpenVINO pipeline: running it needs optimum-intel and OpenVINO" in ran.stderr
    assert "pip install 'optimum[openvino]'" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_missing_repo_exits_1_with_the_doctors_message(demo: dict[str, Path | str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    install_with_record(Path(demo["bundle"]), cache)
    os.rename(RepoLayout(cache, "model", TAESD).folder, tmp_path / "moved-away")
    ran = hfbundle("run", "tiny-demo", "--prompt", PROMPT, "-o", str(tmp_path / "x.png"), env=offline_env(cache))
    assert ran.returncode == 1
    lines = ran.stderr.splitlines()
    assert lines[0] == f"error: tiny-demo will not load offline from {cache}: TAESD swap needs {TAESD}: not installed"
    assert "hfbundle build tiny-demo -o tiny-demo.tar.zst" in lines[1] and lines[1].startswith("  hint: ")
    assert "diffusion_pytorch_model" not in ran.stderr and "Traceback" not in ran.stderr
    assert not (tmp_path / "x.png").exists()


def test_runner_import_is_light() -> None:
    code = (
        "import sys, bundler.runner\nprint([m for m in ('torch', 'diffusers', 'huggingface_hub') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -- real generations (torch in subprocesses) ------------------------------------------------------------------


def run_json(spec: str, out: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    ran = hfbundle("run", spec, "--prompt", PROMPT, "-o", str(out), "--threads", "1", "--json", *extra, env=env)
    assert ran.returncode == 0, ran.stderr
    report: dict[str, Any] = json.loads(ran.stdout)
    return report


def pixels(path: Path) -> tuple[tuple[int, int], bytes, dict[str, str]]:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.mode == "RGB"
        return im.size, im.tobytes(), dict(im.text)  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recipe", "size", "repos"),
    [
        ("tiny-lcm.toml", (64, 64), {"pipeline"}),
        ("tiny-lcm-taesd.toml", (96, 64), {"pipeline", "taesd"}),
        ("tiny-lcm-lora.toml", (64, 96), {"pipeline", "lcm-lora"}),
    ],
    ids=["plain-lcm", "taesd-swap", "lcm-lora"],
)
def test_run_writes_the_png_offline(
    demo: dict[str, Path | str], tmp_path: Path, recipe: str, size: tuple[int, int], repos: set[str]
) -> None:
    out = tmp_path / "out.png"
    width, height = size
    report = run_json(
        str(RECIPES / recipe), out, offline_env(demo["cache"]), "--width", str(width), "--height", str(height)
    )
    got_size, _, text = pixels(out)
    assert got_size == size == (report["width"], report["height"])
    assert report["steps"] == 2 and report["offline"] is True and report["threads"] == 1
    assert set(report["repos"]) == repos
    load, per_step, total = report["load_seconds"], report["seconds_per_step"], report["total_seconds"]
    assert 0 < per_step < total and 0 < load < total
    assert len(report["step_seconds"]) == 2
    assert text["prompt"] == PROMPT and text["seed"] == "0" and text["steps"] == "2" and text["guidance"] == "1"
    assert text["recipe"] == recipe.removesuffix(".toml") and text["bundle_id"] == demo["bundle_id"]
    assert set(json.loads(text["repos"])) == repos


@pytest.mark.slow
def test_same_seed_same_pixels_and_no_request_even_with_the_hub_up(
    demo: dict[str, Path | str], hub_root: Path, tmp_path: Path
) -> None:
    """The second run has HF_HUB_OFFLINE unset and a live Hub at HF_ENDPOINT: the runner must not ask it anything."""
    first, second, other = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    run_json("tiny-demo", first, offline_env(demo["cache"]), "--seed", "7")
    with HubServer(hub_root) as live:
        env = client_env(cache=Path(demo["cache"]), endpoint=live.endpoint, extra_env={"OMP_NUM_THREADS": "1"})
        del env["HF_HUB_DISABLE_TELEMETRY"]  # huggingface_hub >= 1.3x would call home once per process
        report = run_json("tiny-demo", second, env, "--seed", "7")
        assert live.requests == [] and live.cdn_requests == []
    assert report["offline"] is True
    run_json("tiny-demo", other, offline_env(demo["cache"]), "--seed", "8")
    size, a, text = pixels(first)
    assert size == (64, 64) and text["seed"] == "7"
    assert pixels(second)[1] == a
    assert pixels(other)[1] != a


@pytest.mark.slow
def test_hub_libraries_imported_online_run_in_a_child(demo: dict[str, Path | str], tmp_path: Path) -> None:
    """An app that imported huggingface_hub with the network on: the runner isolates the generation."""
    out = tmp_path / "x.png"
    code = (
        "import json, huggingface_hub\n"
        "from bundler.runner import run\n"
        f"r = run('tiny-demo', prompt={PROMPT!r}, output={str(out)!r}, threads=1, cache_dir={str(demo['cache'])!r})\n"
        "print(json.dumps(r.to_json()))\n"
    )
    env = client_env(cache=tmp_path / "unused", endpoint=CLOSED_ENDPOINT, extra_env={"OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["isolated"] is True and report["offline"] is True
    assert pixels(out)[0] == (64, 64)


def test_report_is_frozen(tmp_path: Path) -> None:
    report = RunReport.from_json(
        {"output": "x", "recipe": "r", "prompt": "p", "seed": 0, "steps": 1, "guidance": 1.0, "width": 8, "height": 8,
         "load_seconds": 0.0, "seconds_per_step": 0.0, "total_seconds": 0.0, "threads": 1}
    )  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.seed = 1  # type: ignore[misc]
