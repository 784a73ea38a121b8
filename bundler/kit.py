"""An air-gapped kit: bundles + hfbundle's wheels + a stdlib installer, checked by ``SHA256SUMS``.

Made on the online machine with the ecosystem's own offline mechanism (``pip wheel`` of hfbundle, ``pip
download --only-binary :all:`` of everything its installer needs for each target platform and Python, pip
itself included for venvs without ``ensurepip``); installed on the offline one by ``install.py``
(:mod:`bundler.kitinstall`, copied verbatim) with ``pip install --no-index --find-links wheels``. The kit is
assembled in a temp folder beside ``DIR`` and renamed into place only when complete.

Layout::

    DIR/bundles/*.tar.zst   DIR/wheels/*.whl   DIR/recipes/*.toml   DIR/kit.json
    DIR/install.py   DIR/install.sh   DIR/install.bat   DIR/README.txt   DIR/SHA256SUMS

>>> report = make_kit(["demo.tar.zst"], Path("kit"))  # doctest: +SKIP
>>> report.total_bytes  # doctest: +SKIP
14160896
"""

from __future__ import annotations

import contextlib
import email.parser
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import HfBundleError, UsageError
from .loaderenv import OfflineSettings, offline_settings, roles_stacks
from .records import JsonRecord

logger = logging.getLogger(__name__)

KIT_FORMAT = "hfbundle-kit"
KIT_VERSION = 1
SUMS = "SHA256SUMS"
# Wheels only the runner pulls in: reported apart, since they dominate a kit's size.
_RUNNER_HEAVY = re.compile(r"^(torch|nvidia_|triton|sympy|networkx|mpmath)", re.IGNORECASE)
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-[0-9][^-]*)?-(?P<tags>[^-]+-[^-]+-[^-]+)\.whl$")
_CHECKOUT_FILES = ("pyproject.toml", "README.md", "setup.cfg", "setup.py", "MANIFEST.in", "LICENSE", "NOTICE")

# Environment markers of a target platform tag, for the requirements pip evaluates against *this* machine
# (pip download --platform only changes the tags it accepts: https://github.com/pypa/pip/issues/11664).
_PLATFORM_MARKERS: tuple[tuple[str, dict[str, str]], ...] = (
    ("win", {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}),
    ("macosx", {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"}),
    ("linux", {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}),
)


@dataclass(frozen=True)
class KitBundle(JsonRecord):
    path: str  # relative to the kit
    size: int
    bundle_id: str
    kind: str
    delta: bool


@dataclass(frozen=True)
class KitReport(JsonRecord, rounding={"seconds": 3}):
    """What ``kit`` wrote: sizes per part, the targets its wheels cover, and how long it took."""

    output: str
    bundles: tuple[KitBundle, ...]
    wheels: tuple[str, ...]
    targets: tuple[str, ...]
    runner: bool
    bundle_bytes: int
    wheel_bytes: int
    runner_bytes: int  # torch and friends, included in wheel_bytes
    total_bytes: int
    seconds: float


@dataclass(frozen=True)
class Target:
    """One offline machine kind: a platform tag (None: this machine) and a Python version (None: this one)."""

    platform: str | None
    python_version: str | None

    @property
    def label(self) -> str:
        py = self.python_version or "{}.{}".format(*sys.version_info[:2])
        return f"{self.platform or 'this machine'} / CPython {py}"


BuildBundle = Callable[[str, Path], Any]  # (spec, output) -> a report with bundle_id


def make_kit(
    items: Sequence[str | Path],
    output: Path,
    *,
    platforms: Sequence[str] = (),
    python_version: str | None = None,
    with_runner: bool = False,
    build_bundle: BuildBundle | None = None,
    hfbundle_wheel: Path | None = None,
    pip_args: Sequence[str] = (),
) -> KitReport:
    """Assemble a kit at ``output`` (must not exist, or be an empty folder) from bundle files and SPECs.

    A SPEC (anything that is not an existing file) is built with ``build_bundle(spec, path)``.
    ``platforms`` are pip platform tags (``win_amd64``, ``manylinux2014_x86_64``, ``macosx_11_0_arm64``); none
    means this machine. ``hfbundle_wheel`` skips building hfbundle's own wheel. ``pip_args`` go to every
    ``pip download`` (an ``--index-url`` for example).
    """
    t0 = time.monotonic()
    output = Path(os.path.abspath(output))
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output} already exists and is not an empty folder", hint="give a new folder for the kit")
    if not output.parent.is_dir():
        raise UsageError(f"folder {output.parent} does not exist", hint="create it first")
    if python_version is not None and not re.fullmatch(r"3\.[0-9]{1,2}", python_version):
        raise UsageError(f"--python-version {python_version!r} is not X.Y", hint="e.g. 3.11")
    if python_version is not None and tuple(int(x) for x in python_version.split(".")) < (3, 10):
        raise UsageError("hfbundle needs Python 3.10 or newer on the offline machine")
    if not items:
        raise UsageError("give at least one SPEC or bundle file")
    targets = tuple(Target(p, python_version) for p in platforms) or (Target(None, python_version),)

    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        bundles, doctor, roles = _gather_bundles(items, staging, build_bundle)
        wheels_dir = staging / "wheels"
        wheels_dir.mkdir()
        own = own_wheel(wheels_dir, hfbundle_wheel)
        for target in targets:
            _download(own, wheels_dir, target, with_runner, pip_args)
        wheels = tuple(sorted(p.name for p in wheels_dir.glob("*.whl")))
        _write_scripts(staging, bundles, doctor, targets, with_runner, offline_settings(roles_stacks(roles)))
        _write_sums(staging)
        if output.exists():
            output.rmdir()
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    wheel_sizes = {w: (output / "wheels" / w).stat().st_size for w in wheels}
    bundle_bytes = sum(b.size for b in bundles)
    total = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    return KitReport(
        output=str(output),
        bundles=tuple(bundles),
        wheels=wheels,
        targets=tuple(t.label for t in targets),
        runner=with_runner,
        bundle_bytes=bundle_bytes,
        wheel_bytes=sum(wheel_sizes.values()),
        runner_bytes=sum(s for w, s in wheel_sizes.items() if _RUNNER_HEAVY.match(w)),
        total_bytes=total,
        seconds=time.monotonic() - t0,
    )


# -- bundles ----------------------------------------------------------------------------------------------------


def _gather_bundles(
    items: Sequence[str | Path], staging: Path, build_bundle: BuildBundle | None
) -> tuple[list[KitBundle], list[str], list[str]]:
    """The kit's bundles (copied or built into ``staging``), the specs to doctor, and the roles of their repos."""
    from .bundle.reader import inspect_bundle, open_bundle
    from .bundle.volumes import find_volumes
    from .recipe import find_recipe

    folder = staging / "bundles"
    folder.mkdir()
    (staging / "recipes").mkdir()
    bundles: list[KitBundle] = []
    doctor: list[str] = []
    roles: set[str] = set()
    for n, item in enumerate(items, 1):
        path = Path(item)
        prebuilt = path.is_file() or path.with_name(path.name + ".001").is_file()
        if prebuilt:
            volumes = find_volumes(path)
            for v in volumes:
                shutil.copyfile(v, folder / f"{n:02d}-{_safe_name(v.name)}")
            first = folder / f"{n:02d}-{_safe_name(volumes[0].name)}"
        else:
            if build_bundle is None:
                raise UsageError(f"{item}: no such bundle file", hint="give a bundle file, or a SPEC to build")
            spec = str(item)
            first = folder / f"{n:02d}-{_safe_name(spec)}.tar.zst"
            build_bundle(spec, first)
            if spec.endswith(".toml"):
                recipe_copy = staging / "recipes" / Path(spec).name
                shutil.copyfile(spec, recipe_copy)
                doctor.append(f"recipes/{recipe_copy.name}")
            elif "/" not in spec:
                doctor.append(spec)
        info = inspect_bundle(first)
        with open_bundle(first) as reader:
            lock = reader.manifest.lock
        if lock is not None:  # the repos' roles say which loader stacks read them (bundler.loaderenv)
            roles.update(r.role for r in lock.repos)
        if prebuilt and info.recipe:  # a prebuilt bundle: doctor its recipe if it ships with hfbundle
            with contextlib.suppress(HfBundleError):
                find_recipe(info.recipe)
                doctor.append(info.recipe)
        size = sum(v.stat().st_size for v in find_volumes(first))
        delta = bool(info.expects)
        bundles.append(KitBundle(f"bundles/{first.name}", size, info.bundle_id, info.kind, delta))
    if not any((staging / "recipes").iterdir()):
        (staging / "recipes").rmdir()
    return bundles, list(dict.fromkeys(doctor)), sorted(roles)


def _safe_name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec).name if spec.endswith(".toml") else spec).strip("._")[:80]


# -- wheels -----------------------------------------------------------------------------------------------------


def own_wheel(dest: Path, given: Path | None) -> Path:
    """hfbundle's wheel: the one given, else built from this checkout (``pip wheel --no-deps``), else repacked
    from the installed files."""
    if given is not None:
        if not given.is_file() or not given.name.startswith("hfbundle-") or given.suffix != ".whl":
            raise UsageError(f"{given} is not an hfbundle wheel", hint="give hfbundle-<version>-py3-none-any.whl")
        return Path(shutil.copyfile(given, dest / given.name))
    checkout = Path(__file__).resolve().parent.parent
    pyproject = checkout / "pyproject.toml"
    if not pyproject.is_file() or 'name = "hfbundle"' not in pyproject.read_text(errors="replace"):
        return _repack_installed(dest)
    with tempfile.TemporaryDirectory(prefix="hfbundle-src-") as tmp:
        # Build from a copy: pip builds in-tree, and a build/ folder in the user's checkout is not ours to leave.
        src = Path(tmp) / "src"
        src.mkdir()
        for name in _CHECKOUT_FILES:
            if (checkout / name).is_file():
                shutil.copyfile(checkout / name, src / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(checkout / "bundler", src / "bundler", ignore=ignore)
        if (checkout / "manifests").is_dir():
            shutil.copytree(checkout / "manifests", src / "manifests", ignore=ignore)
        out = Path(tmp) / "out"
        _pip(["wheel", "--no-deps", "--wheel-dir", str(out), str(src)], "building hfbundle's wheel")
        built = sorted(out.glob("hfbundle-*.whl"))
        if len(built) != 1:
            raise HfBundleError("pip wheel did not produce one hfbundle wheel", hint="run with --debug")
        return Path(shutil.copyfile(built[0], dest / built[0].name))


def _repack_installed(dest: Path) -> Path:
    """hfbundle installed from a wheel (no checkout): its files, as its RECORD lists them, back into a wheel.

    The console script is left out (pip writes it again from ``entry_points.txt``), and so are the files the
    installer added (``INSTALLER``, ``REQUESTED``, ``direct_url.json``, bytecode); RECORD is written anew."""
    import base64
    from importlib import metadata

    try:
        dist = metadata.distribution("hfbundle")
    except metadata.PackageNotFoundError:
        dist = None
    info_dir = f"hfbundle-{__version__}.dist-info"
    files = [f for f in (dist.files or []) if f.as_posix().startswith(("bundler/", f"{info_dir}/"))] if dist else []
    if not any(f.as_posix() == f"{info_dir}/WHEEL" for f in files):
        raise UsageError(
            "hfbundle's own wheel cannot be rebuilt here (not a checkout, nor an installed wheel)",
            hint="pass --hfbundle-wheel FILE (from `pip download hfbundle --no-deps`)",
        )
    skip = {f"{info_dir}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    out = dest / f"hfbundle-{__version__}-py3-none-any.whl"
    record: list[str] = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(files, key=lambda f: f.as_posix()):
            rel = f.as_posix()
            if rel in skip or "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            data = Path(str(f.locate())).read_bytes()
            z.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{rel},sha256={digest},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        z.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return out


def _download(own: Path, dest: Path, target: Target, with_runner: bool, pip_args: Sequence[str]) -> None:
    """Every wheel hfbundle (and pip) needs on ``target``, into ``dest``."""
    flags = ["--only-binary", ":all:", "--dest", str(dest), *pip_args]
    if target.platform is not None:
        flags += ["--platform", target.platform, "--implementation", "cp"]
    if target.python_version is not None:
        flags += ["--python-version", target.python_version, "--implementation", "cp"]
    requirement = f"hfbundle[runner] @ {own.as_uri()}" if with_runner else str(own)
    _pip(["download", *flags, requirement, "pip"], f"downloading wheels for {target.label}")
    if target.platform is None:
        return
    # pip evaluates environment markers against this machine: fetch what the target's markers add, to closure.
    for _ in range(5):
        wanted = _marker_requirements(dest, target, with_runner)
        if not wanted:
            return
        logger.debug("requirements only %s needs: %s", target.label, wanted)
        _pip(["download", *flags, *wanted], f"downloading wheels for {target.label}")


def _marker_requirements(dest: Path, target: Target, with_runner: bool) -> list[str]:
    from packaging.markers import Marker, default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    assert target.platform is not None
    for prefix, values in _PLATFORM_MARKERS:
        if target.platform.startswith(prefix):
            env.update(values)
    if target.python_version is not None:
        env["python_version"] = target.python_version
        env["python_full_version"] = f"{target.python_version}.0"
    have: set[str] = set()
    requires: list[Requirement] = []
    for wheel in dest.glob("*.whl"):
        m = _WHEEL_NAME.match(wheel.name)
        if m is None:
            continue
        have.add(canonicalize_name(m.group("name")))
        for line in _requires_dist(wheel):
            requires.append(Requirement(line))
    wanted: list[str] = []
    for req in requires:
        name = canonicalize_name(req.name)
        if name in have or str(req) in wanted:
            continue
        extras = {"", "runner"} if with_runner else {""}
        marker: Marker | None = req.marker
        if marker is None or any(marker.evaluate({**env, "extra": e}) for e in extras):
            wanted.append(str(Requirement(f"{req.name}{req.specifier}")))
    return wanted


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1]
        if not names:
            return []
        meta = email.parser.Parser().parsestr(z.read(names[0]).decode("utf-8", "replace"))
    return meta.get_all("Requires-Dist") or []


def _pip(args: list[str], doing: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    logger.debug("running %s", cmd)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise HfBundleError(
            f"{doing} failed: {tail}",
            hint="check the platform tag / Python version (a package may have no wheel for that target) and "
            "that the package index is reachable",
        )


# -- scripts and sums -------------------------------------------------------------------------------------------


_INSTALL_SH = """#!/bin/sh
# Install this hfbundle kit on an offline machine: see README.txt. Arguments go to install.py.
HERE=$(cd "$(dirname "$0")" && pwd)
for py in "${PYTHON:-}" python3 python; do
  if [ -n "$py" ] && command -v "$py" >/dev/null 2>&1; then
    exec "$py" "$HERE/install.py" --shell sh "$@"
  fi
done
echo "install.sh: no python3 found: install Python >= 3.10, or set PYTHON=/path/to/python" >&2
exit 1
"""

_INSTALL_BAT = """@echo off
rem Install this hfbundle kit on an offline machine: see README.txt. Arguments go to install.py.
rem cmd: install.bat    PowerShell: .\\install.bat    (no --shell: install.py prints both shells' lines)
setlocal
set "HERE=%~dp0"
if defined PYTHON goto usevar
where py >nul 2>nul
if not errorlevel 1 goto usepy
where python >nul 2>nul
if not errorlevel 1 goto usepython
echo install.bat: no Python found: install Python 3.10 or newer, or set PYTHON=C:\\path\\to\\python.exe 1>&2
exit /b 1
:usevar
"%PYTHON%" "%HERE%install.py" %*
exit /b %ERRORLEVEL%
:usepy
py -3 "%HERE%install.py" %*
exit /b %ERRORLEVEL%
:usepython
python "%HERE%install.py" %*
exit /b %ERRORLEVEL%
"""

_README = """hfbundle offline kit
====================

Made by hfbundle {version}. Wheels for: {targets}.

On the offline machine (Python 3.10 or newer, nothing else needed):

  Linux / macOS:   sh install.sh                    (or: python3 install.py)
  Windows cmd:     install.bat                      (or: py -3 install.py)
  PowerShell:      .\\install.bat                    (or: py -3 .\\install.py)

Options (all go to install.py):
  --python PATH    install into that Python's environment (e.g. an app's own venv) instead of a new .venv
  --cache-dir DIR  the Hugging Face hub cache to install into (default: HF_HUB_CACHE, else ~/.cache/huggingface/hub)
  --check-only     only check the kit's files against SHA256SUMS

What it does:
  1. checks every file against SHA256SUMS (a damaged kit is refused before anything is installed);
  2. installs hfbundle from wheels/ with `pip install --no-index` (pip itself is in wheels/ too);
  3. installs and verifies the bundles: {bundles};
  4. runs `hfbundle doctor` for: {doctor};
  5. prints the lines that keep Hugging Face libraries offline for your shell: {offline}.

Running it again is safe. By hand (Linux / macOS): sha256sum -c SHA256SUMS;
pip install --no-index --find-links wheels hfbundle; hfbundle install bundles/NAME.tar.zst;
hfbundle verify bundles/NAME.tar.zst.
By hand (Windows, cmd or PowerShell): py -3 install.py --check-only;
py -3 -m pip install --no-index --find-links wheels hfbundle; hfbundle install bundles\\NAME.tar.zst;
hfbundle verify bundles\\NAME.tar.zst.
On Windows a Hugging Face cache path longer than 259 characters needs long paths turned on (see hfbundle's
docs/WINDOWS.md) or a short cache folder: set HF_HUB_CACHE=C:\\hf (cmd) / $env:HF_HUB_CACHE = 'C:\\hf' (PowerShell).
"""


def _write_scripts(
    staging: Path,
    bundles: Sequence[KitBundle],
    doctor: Sequence[str],
    targets: Sequence[Target],
    runner: bool,
    offline: OfflineSettings,
) -> None:
    kit_json = {
        # What install.py tells the user to set for good, from the loader stacks' table (bundler.loaderenv).
        "offline": offline.to_json(),
        "format": KIT_FORMAT,
        "kit_version": KIT_VERSION,
        "hfbundle": __version__,
        "runner": runner,
        "bundles": [b.path for b in bundles],
        "doctor": list(doctor),
        "targets": [t.label for t in targets],
    }
    (staging / "kit.json").write_text(json.dumps(kit_json, indent=1, sort_keys=True) + "\n")
    shutil.copyfile(Path(__file__).with_name("kitinstall.py"), staging / "install.py")
    (staging / "install.sh").write_text(_INSTALL_SH, newline="\n")
    (staging / "install.bat").write_text(_INSTALL_BAT, newline="\r\n")  # cmd needs CRLF for labels and goto
    for script in ("install.sh", "install.py"):
        os.chmod(staging / script, 0o755)  # noqa: S103 - scripts the user runs; nothing secret in the kit
    (staging / "README.txt").write_text(
        _README.format(
            version=__version__,
            targets="; ".join(t.label for t in targets),
            bundles=", ".join(b.path for b in bundles),
            doctor=", ".join(doctor) or "(no shipped recipe)",
            offline=", ".join(
                [f"{k}={v}" for k, v in offline.sets] + [f"{var}=<the cache>" for var in offline.cache_variables]
            ),
        )
    )


def _write_sums(staging: Path) -> None:
    """``sha256sum -c`` format, paths with ``/``, sorted."""
    lines = []
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = path.relative_to(staging).as_posix()
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        lines.append(f"{h.hexdigest()}  {rel}\n")
    (staging / SUMS).write_text("".join(lines), newline="\n")
