"""The loader stacks' offline requirements (issue 20): the table's checks, ``doctor``'s lines, and each optimum-intel
entry proven on the real optimum-intel 2.0.0 (``.venv-openvino``): without the fix the loader fails as described,
with the lines ``hfbundle doctor`` prints it loads and generates offline.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bundler.api import install
from bundler.kit import _gather_bundles
from bundler.kitinstall import offline_lines
from bundler.loaderenv import (
    STACKS,
    check_environment,
    check_stacks,
    offline_settings,
    recipe_stacks,
    roles_stacks,
    stack_cache,
    temp_cleaner,
)
from bundler.recipe import load_spec
from tests.conftest import CLOSED_ENDPOINT, OPENVINO_REPO
from tests.testing.hf_client import REPO_ROOT
from tests.testing.openvino import base_env, run_openvino

OV = "openvino-sd-turbo"
SRV = Path("/srv/hfbundle-test")


# ------------------------------------------------------------------------------------------------ the table


def test_recipes_say_which_stack_reads_them() -> None:
    assert recipe_stacks(load_spec(OV)) == ("optimum-intel",)
    assert recipe_stacks(load_spec("lcm-lora-dreamshaper-8")) == ("diffusers",)
    assert STACKS["optimum-intel"].cache_variable == "HUGGINGFACE_HUB_CACHE"
    assert STACKS["optimum-intel"].needs_hub_offline and not STACKS["diffusers"].needs_hub_offline


@pytest.mark.parametrize("stacks", [("diffusers",), ("transformers",), ("optimum-intel",), tuple(STACKS)])
def test_offline_settings_satisfy_the_table(stacks: tuple[str, ...]) -> None:
    """What the kit tells a machine to set for good (from the same table) leaves doctor nothing to say, for any
    cache folder and whatever HF_HOME is."""
    cache = SRV / "models"
    settings = offline_settings(stacks)  # type: ignore[arg-type]
    env = {"HF_HOME": str(SRV / "elsewhere"), **dict(settings.pairs(str(cache)))}
    assert check_stacks("kit", stacks, cache, env).findings == ()  # type: ignore[arg-type]
    assert ("HUGGINGFACE_HUB_CACHE" in settings.cache_variables) == ("optimum-intel" in stacks)
    assert dict(settings.pairs(None)) == {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    default = {"HOME": str(SRV / "home"), **dict(settings.pairs(None))}  # no cache folder given: the default
    assert check_stacks("kit", stacks, SRV / "home" / ".cache" / "huggingface" / "hub", default).findings == ()  # type: ignore[arg-type]


def test_stack_cache_follows_each_stacks_variable() -> None:
    tmp_path = SRV  # pure checks, nothing written: a folder no OS cleans
    env = {"HF_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "models")}
    assert stack_cache("diffusers", env) == tmp_path / "models"
    assert stack_cache("optimum-intel", env) == tmp_path / "home" / "hub"  # the legacy constant ignores it
    legacy = {**env, "HUGGINGFACE_HUB_CACHE": str(tmp_path / "legacy")}
    assert stack_cache("optimum-intel", legacy) == tmp_path / "legacy"
    assert stack_cache("diffusers", legacy) == tmp_path / "models"
    assert stack_cache("optimum-intel", {"HOME": str(tmp_path)}) == tmp_path / ".cache" / "huggingface" / "hub"


def test_openvino_recipe_flags_cache_variable_and_missing_offline_flag() -> None:
    tmp_path = SRV  # pure checks, nothing written: a folder no OS cleans
    cache = tmp_path / "models"
    report = check_environment(load_spec(OV), cache, {"HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "h")})
    assert [f.kind for f in report.findings] == ["cache-variable", "hub-offline"]
    assert not report.ok
    assert report.exports() == [
        f"export HUGGINGFACE_HUB_CACHE={cache}",
        f"export HF_HUB_CACHE={cache}",
        "export HF_HUB_OFFLINE=1",
    ]
    assert report.exports("powershell")[-1] == "$env:HF_HUB_OFFLINE = '1'"
    assert "HF_HOME, not HF_HUB_CACHE" in report.render()[0]


def test_silent_where_nothing_is_needed() -> None:
    tmp_path = SRV  # pure checks, nothing written: a folder no OS cleans
    cache = tmp_path / "models"
    diffusers = check_environment(load_spec("lcm-lora-dreamshaper-8"), cache, {"HF_HUB_CACHE": str(cache)})
    assert diffusers.findings == () and diffusers.ok and diffusers.render() == []
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    openvino = check_environment(load_spec(OV), tmp_path / "hub", env)
    assert openvino.findings == () and openvino.exports() == []


@pytest.mark.parametrize(
    ("path", "env", "cleaner"),
    [
        ("/tmp/hf/hub", {}, "systemd-tmpfiles (/tmp)"),
        ("/var/tmp/hub", {}, "systemd-tmpfiles (/var/tmp)"),
        ("/var/folders/xy/T/hub", {}, "macOS (/var/folders, cleaned after 3 days)"),
        ("/private/var/folders/xy/T/hub", {}, "macOS (/var/folders, cleaned after 3 days)"),
        (r"C:\Users\me\AppData\Local\Temp\hub", {"TEMP": r"C:\Users\me\AppData\Local\Temp"}, "Windows"),
        ("/home/me/.cache/huggingface/hub", {}, None),
        ("/tmpfoo/hub", {}, None),
    ],
)
def test_temp_folder_warning(path: str, env: dict[str, str], cleaner: str | None) -> None:
    got = temp_cleaner(path, env)
    assert (got is None) if cleaner is None else (got is not None and got.startswith(cleaner))
    report = check_environment(load_spec("lcm-lora-dreamshaper-8"), Path(path), {"HF_HUB_CACHE": path, **env})
    assert [f.kind for f in report.findings] == ([] if cleaner is None else ["temp-folder"])
    assert report.ok  # a warning, not a failure


# ------------------------------------------------------------------------- doctor's lines, on the real loader


def _doctor(cache: Path, env: dict[str, str]) -> tuple[int, list[str], dict[str, object]]:
    """``hfbundle doctor`` run as the user would, in ``env``: exit code, the export lines, the --json report."""
    argv = [sys.executable, "-c", "import sys\nfrom bundler.cli import main\nmain(sys.argv[1:])"]
    args = ["doctor", OV, "--cache-dir", str(cache), "--no-rehash"]
    env = {**env, "PYTHONPATH": str(REPO_ROOT)}
    text = subprocess.run(argv + args, env=env, capture_output=True, text=True, timeout=120, check=False)
    data = subprocess.run([*argv, *args, "--json"], env=env, capture_output=True, text=True, timeout=120, check=False)
    exports = [line.strip() for line in text.stdout.splitlines() if line.startswith("  export ")]
    return text.returncode, exports, json.loads(data.stdout)


def _apply(env: dict[str, str], exports: list[str]) -> dict[str, str]:
    out = dict(env)
    for line in exports:
        key, _, value = line.removeprefix("export ").partition("=")
        out[key] = shlex.split(value)[0]
    return out


_LOAD = f"""
from optimum.intel import OVStableDiffusionPipeline
pipe = OVStableDiffusionPipeline.from_pretrained({OPENVINO_REPO!r}, local_files_only=True, compile=False,
                                                 ov_config={{"CACHE_DIR": "", "INFERENCE_NUM_THREADS": "1"}})
pipe.reshape(batch_size=-1, height=64, width=64, num_images_per_prompt=1)
pipe.compile()
emit(list(pipe("a cat", num_inference_steps=1, guidance_scale=1.0, height=64, width=64).images[0].size))
"""


@pytest.mark.slow
def test_optimum_intel_cache_variable(openvino_bundle: Path, tmp_path: Path) -> None:
    """Installed into the folder HF_HUB_CACHE names: optimum-intel looks in $HF_HOME/hub instead."""
    cache = tmp_path / "models"
    install(openvino_bundle, cache_dir=cache)
    env = base_env(
        tmp_path,
        {
            "HF_HUB_CACHE": str(cache),
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "1",
            "HF_ENDPOINT": CLOSED_ENDPOINT,
        },
    )
    failed = run_openvino(_LOAD, env, expect_failure=True)
    assert "Cannot find an appropriate cached snapshot folder" in failed.stderr
    assert str(tmp_path / "hf" / "hub" / f"models--{OPENVINO_REPO.replace('/', '--')}") in failed.stderr

    code, exports, report = _doctor(cache, env)
    assert code == 1 and report["ok"] is True  # the files are fine: the environment is not
    assert exports == [f"export HUGGINGFACE_HUB_CACHE={cache}", f"export HF_HUB_CACHE={cache}"]
    assert run_openvino(_LOAD, _apply(env, exports)) == [64, 64]
    assert _doctor(cache, _apply(env, exports))[:2] == (0, [])


@pytest.mark.slow
def test_optimum_intel_needs_hub_offline(openvino_bundle: Path, tmp_path: Path) -> None:
    """local_files_only=True alone (FastSDCPU's --use_offline_model): optimum lists the repo and gets httpx's
    connection error, which it does not catch."""
    install(openvino_bundle, cache_dir=tmp_path / "hf" / "hub")
    env = base_env(tmp_path, {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": CLOSED_ENDPOINT})
    failed = run_openvino(_LOAD, env, expect_failure=True)
    assert "Connection refused" in failed.stderr and "httpx.ConnectError" in failed.stderr

    code, exports, report = _doctor(tmp_path / "hf" / "hub", env)
    assert code == 1 and report["ok"] is True
    assert exports == ["export HF_HUB_OFFLINE=1"]
    assert report["environment"]["findings"][0]["kind"] == "hub-offline"  # type: ignore[index]
    assert run_openvino(_LOAD, _apply(env, exports)) == [64, 64]


@pytest.mark.slow
def test_install_says_when_the_bundles_loader_would_not_find_the_cache(
    openvino_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "models"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    report = install(openvino_bundle, cache_dir=cache)
    assert any("optimum-intel looks in" in n and "not in " + str(cache) in n for n in report.notes)
    assert any("HF_HUB_OFFLINE=1" in n for n in report.notes)
    cleaner = temp_cleaner(cache, {})  # pytest's tmp_path usually lies under /tmp
    assert any("empties on its own" in n for n in report.notes) == (cleaner is not None)
    assert report.notes[-1] == (
        f"before starting the app: export HUGGINGFACE_HUB_CACHE={cache}; export HF_HUB_CACHE={cache}; "
        "export HF_HUB_OFFLINE=1"
    )
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = install(openvino_bundle, cache_dir=cache)
    assert [n for n in again.notes if "optimum-intel" in n or "export" in n] == []


@pytest.mark.slow
def test_kit_lines_make_the_real_optimum_intel_load(openvino_bundle: Path, tmp_path: Path) -> None:
    """The kit's go-offline lines, from the bundle's roles through the table, are all the OpenVINO pipeline needs:
    installed into a folder of the user's choosing, with only those lines set, it loads offline."""
    staging = tmp_path / "kit"
    staging.mkdir()
    _bundles, _doctor_specs, roles = _gather_bundles([openvino_bundle], staging, None)
    assert roles_stacks(roles) == ("optimum-intel",)
    settings = offline_settings(roles_stacks(roles))
    cache = tmp_path / "models"
    install(openvino_bundle, cache_dir=cache)
    lines = offline_lines("sh", Path("/usr/bin/python3"), settings.pairs(str(cache)), venv=False)
    exports = [line for line in lines if line.startswith("export ")]
    env = base_env(tmp_path, {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": CLOSED_ENDPOINT})
    assert run_openvino(_LOAD, _apply(env, exports)) == [64, 64]
