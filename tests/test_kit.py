"""The air-gapped kit, end to end: made here (pip download from the registry, once per module), installed with
no network at all (``unshare -n`` when the machine allows it, else pip --no-index and proxies pointing nowhere)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from bundler.api import build
from bundler.errors import UsageError
from bundler.kit import KitReport, make_kit
from tests.testing.hub import HubServer

pytestmark = pytest.mark.slow

BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))
TINY_SD = "hfbundle-test/tiny-sd"


def _netns_works() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


NETNS = _netns_works()


def offline(cmd: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with no network: a fresh network namespace, else proxies and indexes that lead nowhere."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        **(env or {}),
    }
    full = (["unshare", "-n"] if NETNS else []) + cmd
    return subprocess.run(full, env=full_env, capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture(scope="module")
def demo_bundle(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "demo.tar.zst"
    cache = tmp_path_factory.mktemp("online-cache")
    build("tiny-demo", output=out, endpoint=hub.endpoint, cache_dir=cache, token=False)
    return out


@pytest.fixture(scope="module")
def kit(demo_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KitReport]:
    """One kit for the module: building it downloads wheels from the registry."""
    out = tmp_path_factory.mktemp("kits") / "kit"
    report = make_kit([demo_bundle], out)
    return out, report


def pristine_copy(kit_dir: Path, dest: Path) -> Path:
    shutil.copytree(kit_dir, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    return dest


def test_kit_holds_bundle_wheels_scripts_and_matching_sums(kit: tuple[Path, KitReport]) -> None:
    kit_dir, report = kit
    names = {p.name for p in kit_dir.iterdir()}
    assert {
        "bundles",
        "wheels",
        "install.py",
        "install.sh",
        "install.bat",
        "README.txt",
        "SHA256SUMS",
        "kit.json",
    } <= names
    wheels = report.wheels
    for dist in ("hfbundle-", "pip-", "zstandard-", "huggingface_hub-", "click-", "filelock-"):
        assert any(w.startswith(dist) for w in wheels), dist
    assert not any(w.startswith("torch-") for w in wheels)  # the runner is opt-in
    assert report.total_bytes == sum(p.stat().st_size for p in kit_dir.rglob("*") if p.is_file())
    assert report.bundles[0].size == (kit_dir / report.bundles[0].path).stat().st_size
    # sha256sum reads the same file
    check = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=kit_dir, capture_output=True, check=False)
    assert check.returncode == 0, check.stderr
    listed = {line.split("  ", 1)[1] for line in (kit_dir / "SHA256SUMS").read_text().splitlines()}
    assert listed == {p.relative_to(kit_dir).as_posix() for p in kit_dir.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert b"\r\n" in (kit_dir / "install.bat").read_bytes() and b"\r\r" not in (kit_dir / "install.bat").read_bytes()
    assert b"\r" not in (kit_dir / "install.sh").read_bytes()
    info = json.loads((kit_dir / "kit.json").read_text())
    assert info["bundles"] == [report.bundles[0].path] and info["doctor"] == ["tiny-demo"]
    # the go-offline lines come from the loader stacks' table: tiny-demo is read by diffusers only
    assert info["offline"]["stacks"] == ["diffusers"] and info["offline"]["cache_variables"] == ["HF_HUB_CACHE"]
    assert ["HF_HUB_OFFLINE", "1"] in info["offline"]["sets"]
    assert "HF_HUB_OFFLINE=1" in (kit_dir / "README.txt").read_text()
    # install.sh finds a python and hands its arguments over
    sh = subprocess.run(
        ["sh", str(kit_dir / "install.sh"), "--check-only"], capture_output=True, text=True, check=False
    )
    assert sh.returncode == 0 and "kit OK" in sh.stdout, sh.stderr


def test_install_py_uses_only_the_standard_library(kit: tuple[Path, KitReport]) -> None:
    code = (kit[0] / "install.py").read_text()
    assert "import bundler" not in code and "from bundler" not in code
    # it runs with -I -S (no site-packages at all) far enough to print its help
    proc = subprocess.run(
        [str(BASE_PYTHON), "-I", "-S", str(kit[0] / "install.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "--python" in proc.stdout


def test_fresh_venv_installs_hfbundle_and_the_bundle_with_no_network(
    kit: tuple[Path, KitReport], tmp_path: Path
) -> None:
    kit_dir = pristine_copy(kit[0], tmp_path / "kit")
    cache = tmp_path / "offline-cache"
    t0 = time.monotonic()
    proc = offline([str(BASE_PYTHON), str(kit_dir / "install.py"), "--cache-dir", str(cache), "--shell", "sh"])
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"kit install (no network: {'netns' if NETNS else 'proxies'}): {seconds:.1f} s")
    venv_python = kit_dir / ".venv" / "bin" / "python"
    assert venv_python.exists()
    assert "export HF_HUB_OFFLINE=1" in proc.stdout and f"export HF_HUB_CACHE={cache}" in proc.stdout
    assert "kit OK" in proc.stdout
    # the bundle's pipeline resolves offline from the new venv's huggingface_hub, in a fresh process
    load = offline(
        [
            str(venv_python),
            "-c",
            "from huggingface_hub import snapshot_download; import os, sys;"
            f"p = snapshot_download({TINY_SD!r}); print(sorted(os.listdir(p)))",
        ],
        env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)},
    )
    assert load.returncode == 0, load.stderr
    assert "model_index.json" in load.stdout
    # hfbundle installed from a wheel (no checkout) rebuilds the same wheel for the next kit
    repacked = tmp_path / "repacked"
    repacked.mkdir()
    code = f"from pathlib import Path; import bundler.kit as k; print(k.own_wheel(Path({str(repacked)!r}), None))"
    proc = subprocess.run([str(venv_python), "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    original = next((kit_dir / "wheels").glob("hfbundle-*.whl"))
    with zipfile.ZipFile(original) as a, zipfile.ZipFile(proc.stdout.strip()) as b:
        assert {n: a.read(n) for n in a.namelist() if not n.endswith("RECORD")} == {
            n: b.read(n) for n in b.namelist() if not n.endswith("RECORD")
        }
    # re-running is safe: the venv is reused, the install changes nothing
    again = offline([str(BASE_PYTHON), str(kit_dir / "install.py"), "--cache-dir", str(cache)])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reusing the venv" in again.stdout


def test_python_into_an_existing_env_without_pip(kit: tuple[Path, KitReport], tmp_path: Path) -> None:
    """Like Debian without python3-venv: the env has no pip, the kit's pip wheel bootstraps it."""
    env_dir = tmp_path / "app-env"
    subprocess.run([str(BASE_PYTHON), "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    assert subprocess.run([str(py), "-m", "pip", "--version"], capture_output=True, check=False).returncode != 0
    cache = tmp_path / "cache"
    proc = offline([str(py), str(kit[0] / "install.py"), "--python", str(py), "--cache-dir", str(cache)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bootstrapping pip from the kit" in proc.stdout
    assert "activate" not in proc.stdout  # no venv of ours to activate
    version = subprocess.run([str(py), "-m", "bundler", "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and "hfbundle" in version.stdout
    assert (cache / "models--hfbundle-test--tiny-sd" / "refs" / "main").is_file()


@pytest.mark.parametrize("victim", ["wheel", "bundle", "install.py"])
def test_damaged_kit_is_refused_naming_the_file_and_nothing_is_installed(
    kit: tuple[Path, KitReport], tmp_path: Path, victim: str
) -> None:
    kit_dir = pristine_copy(kit[0], tmp_path / "kit")
    target = {
        "wheel": next((kit_dir / "wheels").glob("zstandard-*.whl")),
        "bundle": next((kit_dir / "bundles").glob("*.tar.zst")),
        "install.py": kit_dir / "install.py",
    }[victim]
    data = bytearray(target.read_bytes())
    # install.py checks itself, so it must still run: damage a letter of its docstring, not its code
    at = data.index(b"offline machine") if victim == "install.py" else len(data) // 2
    data[at] ^= 0x01
    target.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    proc = offline([str(BASE_PYTHON), str(kit_dir / "install.py"), "--cache-dir", str(cache)])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rel = target.relative_to(kit_dir).as_posix()
    assert f"{rel}: damaged" in proc.stderr
    assert "nothing was installed" in proc.stderr
    assert not (kit_dir / ".venv").exists()
    assert not cache.exists()


def test_unlisted_file_in_the_kit_is_refused(kit: tuple[Path, KitReport], tmp_path: Path) -> None:
    kit_dir = pristine_copy(kit[0], tmp_path / "kit")
    (kit_dir / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK")
    proc = offline([str(BASE_PYTHON), str(kit_dir / "install.py"), "--check-only"])
    assert proc.returncode == 1
    assert "wheels/evil-1.0-py3-none-any.whl: not listed in SHA256SUMS" in proc.stderr


def test_windows_kit_holds_windows_wheels(kit: tuple[Path, KitReport], demo_bundle: Path, tmp_path: Path) -> None:
    own = next((kit[0] / "wheels").glob("hfbundle-*.whl"))
    report = make_kit(
        [demo_bundle], tmp_path / "kit-win", platforms=["win_amd64"], python_version="3.11", hfbundle_wheel=own
    )
    assert report.targets == ("win_amd64 / CPython 3.11",)
    platforms: dict[str, set[str]] = {}
    for wheel in report.wheels:
        name, tags = wheel.split("-")[0].lower(), wheel[: -len(".whl")].split("-")[-3:]
        _python_tag, abi_tag, platform_tag = tags
        platforms.setdefault(name, set()).add(platform_tag)
        assert platform_tag in ("any", "win_amd64"), wheel
        assert abi_tag in ("none", "abi3", "cp311"), wheel
    assert "win_amd64" in platforms["zstandard"]  # the compiled runtime needs
    assert "colorama" in platforms  # required by click on Windows only: pip would not see it from Linux
    assert (tmp_path / "kit-win" / "install.bat").is_file()


def test_kit_refuses_a_used_output_folder_and_bad_versions(demo_bundle: Path, tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    with pytest.raises(UsageError, match="not an empty folder"):
        make_kit([demo_bundle], used)
    with pytest.raises(UsageError, match=r"X\.Y"):
        make_kit([demo_bundle], tmp_path / "k", python_version="3")
    with pytest.raises(UsageError, match=r"3\.10"):
        make_kit([demo_bundle], tmp_path / "k", python_version="3.8")
    assert not (tmp_path / "k").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["used"]  # no staging folder left behind


def test_wheel_in_the_kit_is_a_real_hfbundle_wheel(kit: tuple[Path, KitReport]) -> None:
    own = next((kit[0] / "wheels").glob("hfbundle-*.whl"))
    with zipfile.ZipFile(own) as z:
        names = z.namelist()
        assert "bundler/kitinstall.py" in names and "bundler/manifests/tiny-demo.toml" in names
        assert (
            hashlib.sha256(z.read("bundler/kitinstall.py")).digest()
            == hashlib.sha256((kit[0] / "install.py").read_bytes()).digest()
        )


def test_kit_of_a_spec_with_have_carries_a_delta(
    kit: tuple[Path, KitReport], demo_bundle: Path, hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bundler import api
    from bundler.bundle.reader import open_bundle
    from bundler.cli import main

    target_cache = tmp_path / "offline-cache"
    api.install(demo_bundle, cache_dir=target_cache)
    have = tmp_path / "have.json"
    have.write_bytes(api.inventory(cache_dir=target_cache).dumps())
    own = next((kit[0] / "wheels").glob("hfbundle-*.whl"))
    report = api.kit(
        "tiny-demo",
        output=tmp_path / "kit-delta",
        have=have,
        endpoint=hub.endpoint,
        cache_dir=tmp_path / "online-cache",
        token=False,
        hfbundle_wheel=own,
    )
    (bundle,) = report.bundles
    assert bundle.delta and bundle.path.startswith("bundles/01-tiny-demo")
    with open_bundle(tmp_path / "kit-delta" / bundle.path) as reader:
        assert reader.manifest.blobs == ()  # the target holds every blob already
        assert reader.manifest.is_delta
    assert json.loads((tmp_path / "kit-delta" / "kit.json").read_text())["doctor"] == ["tiny-demo"]
    assert api.install(tmp_path / "kit-delta" / bundle.path, cache_dir=target_cache).bytes_written == 0

    # the CLI, from a bundle split in volumes (given by their shared name), with --json
    split = tmp_path / "split" / "demo.tar.zst"
    split.parent.mkdir()
    build(
        "tiny-demo",
        output=split,
        endpoint=hub.endpoint,
        cache_dir=tmp_path / "online-cache",
        split_size=65536,
        token=False,
    )
    volumes = sorted(split.parent.iterdir())
    assert len(volumes) > 1
    with pytest.raises(SystemExit) as exc:
        main(["kit", str(split), "-o", str(tmp_path / "kit-cli"), "--hfbundle-wheel", str(own), "--json"])
    assert exc.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["total_bytes"] > printed["bundle_bytes"] == sum(v.stat().st_size for v in volumes)
    assert printed["runner"] is False
    kit_bundles = sorted((tmp_path / "kit-cli" / "bundles").iterdir())
    assert [v.name for v in kit_bundles] == [f"01-{v.name}" for v in volumes]
    assert json.loads((tmp_path / "kit-cli" / "kit.json").read_text())["bundles"] == [f"bundles/01-{volumes[0].name}"]
    fresh = tmp_path / "fresh-cache"
    api.install(kit_bundles[0], cache_dir=fresh)
    assert api.verify(str(kit_bundles[0]), cache_dir=fresh).ok
