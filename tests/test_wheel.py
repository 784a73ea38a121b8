"""The shipped wheel: built from the sources, installed (not the checkout) into a fresh venv, and run.

A subpackage left out of ``[tool.setuptools] packages`` works from the checkout and fails only for users; this
builds the wheel as a release would, checks what is inside, installs THAT wheel into a new venv without network
(dependencies come from this interpreter's site-packages through a ``.pth``) and runs the CLI from it.
"""

from __future__ import annotations

import json
import shutil
import site
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, run
from tests.testing.hf_client import client_env
from tests.testing.hub import HubServer

RUNTIME_PACKAGES = ("bundler", "bundler.cache", "bundler.bundle", "bundler.install", "bundler.oci", "bundler.manifests")
DEPENDENCIES = ("huggingface_hub", "zstandard", "click", "filelock", "packaging")


def _source_modules() -> set[str]:
    """Every module of the checkout's ``bundler`` package, as a wheel path (``bundler/cache/scan.py``)."""
    return {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "bundler").rglob("*.py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy: an in-tree build leaves build/ and *.egg-info behind and races a parallel run.
    src = tmp_path_factory.mktemp("wheel-src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("bundler", "manifests"):
        shutil.copytree(REPO_ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel-out")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    run([*command, "--disable-pip-version-check", "-q", "-w", str(out), str(src)])
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("venv") / "v"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    python = root / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check"]
    run([*pip, "-q", "--no-deps", "--no-index", str(wheel)])
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    # The dependencies, not hfbundle, from this interpreter: a plain path line (a .pth in that folder, such as
    # an editable install's finder, is not processed for a path added this way).
    dep_dirs = {str(Path(str(__import__(name).__file__)).resolve().parents[1]) for name in DEPENDENCIES}
    dep_dirs |= {sysconfig.get_path("platlib"), *site.getsitepackages()}
    (purelib / "zz-hfbundle-test-deps.pth").write_text("\n".join(sorted(dep_dirs)) + "\n")
    yield root


def _env(cache: Path, **kw: object) -> dict[str, str]:
    env = client_env(cache=cache, **kw)  # type: ignore[arg-type]
    env.pop("PYTHONPATH")  # the checkout must not be importable: only the installed wheel
    return env


def test_wheel_is_pure_python_and_holds_every_runtime_package_and_no_test_code(wheel: Path) -> None:
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for package in RUNTIME_PACKAGES:
        assert f"{package.replace('.', '/')}/__init__.py" in names or package == "bundler.manifests", package
    assert _source_modules() <= names, sorted(_source_modules() - names)
    shipped_recipes = {p.name for p in (REPO_ROOT / "manifests").glob("*.toml")}
    assert shipped_recipes and {f"bundler/manifests/{n}" for n in shipped_recipes} <= names
    assert "bundler/py.typed" in names
    assert not [n for n in names if "testing" in n or n.startswith("tests/")], "test code in the wheel"


def test_installed_wheel_runs_the_cli_offline(venv: Path, tmp_path: Path) -> None:
    python, hfbundle = venv / "bin" / "python", venv / "bin" / "hfbundle"
    env = _env(tmp_path / "cache", offline=True)
    where = run([str(python), "-c", "import bundler; print(bundler.__file__)"], env=env, cwd=tmp_path).stdout
    assert Path(where.strip()).resolve().is_relative_to(venv.resolve()), where
    assert "Usage:" in run([str(hfbundle), "--help"], env=env, cwd=tmp_path).stdout
    listed = run([str(hfbundle), "resolve", "--list"], env=env, cwd=tmp_path).stdout
    assert "tiny-demo" in listed
    # Every module imports from the installed copy (catches a module that exists only in the checkout).
    code = (
        "import importlib, json, pkgutil, bundler\n"
        "names = [m.name for m in pkgutil.walk_packages(bundler.__path__, 'bundler.')]\n"
        "names = [n for n in names if n != 'bundler.__main__']\n"
        "for n in names: importlib.import_module(n)\nprint(json.dumps(sorted(names)))"
    )
    imported = set(json.loads(run([str(python), "-c", code], env=env, cwd=tmp_path).stdout))
    expected = {m[: -len(".py")].replace("/", ".").removesuffix(".__init__") for m in _source_modules()}
    expected |= {"bundler.manifests"}
    assert imported == expected - {"bundler", "bundler.__main__"}


def test_installed_wheel_builds_installs_and_verifies(venv: Path, hub: HubServer, tmp_path: Path) -> None:
    hfbundle = str(venv / "bin" / "hfbundle")
    bundle = tmp_path / "tiny.tar.zst"
    run([hfbundle, "build", "tiny-demo", "-q", "-o", str(bundle)], env=_env(tmp_path / "online", endpoint=hub.endpoint))
    offline = _env(tmp_path / "offline", offline=True, extra_env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    run([hfbundle, "install", "-q", str(bundle)], env=offline, cwd=tmp_path)
    report = json.loads(run([hfbundle, "verify", "--json"], env=offline, cwd=tmp_path).stdout)
    assert report["ok"] is True and report["blobs_checked"] > 0, report
