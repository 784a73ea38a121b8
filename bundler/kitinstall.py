#!/usr/bin/env python3
"""Install an hfbundle kit on an offline machine (this file is the kit's ``install.py``).

Standard library only, Python >= 3.10, no network: everything comes from the kit's folder.

1. check every file of the kit against ``SHA256SUMS`` (a damaged kit is refused before anything is installed);
2. install hfbundle from ``wheels/`` with ``pip --no-index`` into a venv it makes (default: ``KIT/.venv``;
   ``--without-pip`` plus the kit's pip wheel where ``ensurepip`` is missing) or into ``--python PATH``'s env;
3. ``hfbundle install`` and ``verify`` every bundle of the kit, ``doctor`` its recipes, all offline;
4. print the lines that keep the Hugging Face libraries offline for good, for the shell in use.

Re-running it is safe: nothing already installed is done twice. Exit codes: 0 done, 1 failed, 2 usage.

This module is copied verbatim into every kit by :mod:`bundler.kit`; it must never import ``bundler``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

KIT_FORMAT = "hfbundle-kit"
KIT_VERSION = 1
SUMS = "SHA256SUMS"
MAX_SUMS_BYTES = 4 << 20
MAX_KIT_JSON_BYTES = 1 << 20
VENV = ".venv"
_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *]([^\r\n]+)$")
_SAFE_PART = re.compile(r"^[A-Za-z0-9._+@=-][A-Za-z0-9._+@=, -]*$")


class KitError(Exception):
    """A failure with what went wrong and how to fix it; printed without a traceback."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="install.py",
        description="Install this hfbundle kit offline: hfbundle itself, then its bundles into a Hugging Face cache.",
    )
    parser.add_argument("--python", metavar="PATH", help="install into this Python's environment instead of a venv")
    parser.add_argument("--venv", metavar="DIR", help=f"the venv to create or reuse (default: KIT/{VENV})")
    parser.add_argument("--cache-dir", metavar="DIR", help="Hugging Face hub cache (default: HF_HUB_CACHE or ~)")
    parser.add_argument("--shell", choices=("sh", "cmd", "powershell"), help="shell to print the offline lines for")
    parser.add_argument("--check-only", action="store_true", help="only check the kit against SHA256SUMS")
    args = parser.parse_args(argv)
    kit = Path(__file__).resolve().parent
    try:
        if sys.version_info < (3, 10):  # noqa: UP036 - this file runs on whatever Python the offline machine has
            raise KitError(f"Python {sys.version.split()[0]} is too old", "run install.py with Python 3.10 or newer")
        checked = check_kit(kit)
        print(f"kit OK: {checked} files match {SUMS}")
        if args.check_only:
            return 0
        info = read_kit_json(kit)
        python = target_python(kit, args.python, args.venv)
        install_hfbundle(kit, python, info)
        cache = Path(args.cache_dir).expanduser().resolve() if args.cache_dir else None
        install_bundles(kit, python, info, cache)
        print()
        print("Done. To keep the Hugging Face libraries offline for good:")
        for shell in [args.shell] if args.shell else default_shells():
            print(f"{shell}:")
            for line in offline_lines(shell, python, info.offline_pairs(cache), venv=args.python is None):
                print(f"  {line}")
        return 0
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return 1


# -- 1. the kit's integrity ------------------------------------------------------------------------------------


def check_kit(kit: Path) -> int:
    """Hash every file listed in SHA256SUMS; refuse a missing, damaged, unlisted or unsafe one. Returns the count."""
    sums = kit / SUMS
    try:
        raw = sums.read_bytes()[: MAX_SUMS_BYTES + 1]
    except OSError as e:
        raise KitError(f"{SUMS} is missing ({e.strerror})", "copy the whole kit folder again") from e
    if len(raw) > MAX_SUMS_BYTES:
        raise KitError(f"{SUMS} is over {MAX_SUMS_BYTES} bytes", "this is not a kit made by hfbundle")
    listed: dict[str, str] = {}
    for n, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        m = _SUM_LINE.match(line)
        if m is None or not _safe_relpath(m.group(2)) or m.group(2) in listed:
            raise KitError(f"{SUMS} line {n} is damaged or unsafe: {line[:120]!r}", "copy the whole kit folder again")
        listed[m.group(2)] = m.group(1)
    for rel in ("install.py", "kit.json"):
        if rel not in listed:
            raise KitError(f"{SUMS} does not list {rel}", "copy the whole kit folder again")
    present = set(_kit_files(kit))
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise KitError(
            f"{unlisted[0]}: not listed in {SUMS} (the kit was changed after it was made)",
            "remove files you added to the kit folder, or copy the kit again",
        )
    for rel in sorted(listed):
        path = kit / rel
        if rel not in present:
            raise KitError(f"{rel}: missing from the kit", "copy the whole kit folder again")
        actual = _sha256(path)
        if actual != listed[rel]:
            raise KitError(
                f"{rel}: damaged (sha256 {actual}, expected {listed[rel]}); nothing was installed",
                "copy that file (or the whole kit) again from the online machine",
            )
    return len(listed)


def _safe_relpath(rel: str) -> bool:
    parts = rel.split("/")
    return all(_SAFE_PART.match(p) and p not in (".", "..") for p in parts)


def _kit_files(kit: Path) -> list[str]:
    """Every file of the kit, relative, with ``/``; the venv, caches and SHA256SUMS itself left out."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(kit):
        here = Path(dirpath)
        if here == kit:
            dirnames[:] = [d for d in dirnames if d not in (VENV, "__pycache__")]
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            rel = (here / name).relative_to(kit).as_posix()
            if rel != SUMS:
                out.append(rel)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class KitInfo:
    """``kit.json``: the hfbundle version to install, the bundles in install order, the specs to doctor."""

    hfbundle: str
    runner: bool
    bundles: tuple[str, ...]
    doctor: tuple[str, ...]
    # What to set for good, made by hfbundle's loader-stack table (bundler.loaderenv.OfflineSettings): these
    # pairs always, and each cache variable to the cache folder when one is given.
    offline_sets: tuple[tuple[str, str], ...]
    cache_variables: tuple[str, ...]

    def offline_pairs(self, cache: Path | None) -> list[tuple[str, str]]:
        return [*self.offline_sets, *((var, str(cache)) for var in self.cache_variables if cache is not None)]


def read_kit_json(kit: Path) -> KitInfo:
    raw = (kit / "kit.json").read_bytes()[: MAX_KIT_JSON_BYTES + 1]
    try:
        info = json.loads(raw)
    except ValueError:
        info = None
    if not isinstance(info, dict) or info.get("format") != KIT_FORMAT or len(raw) > MAX_KIT_JSON_BYTES:
        raise KitError("kit.json is not an hfbundle kit description", "copy the whole kit folder again")
    if info.get("kit_version") != KIT_VERSION:
        raise KitError(f"kit version {info.get('kit_version')!r} is not {KIT_VERSION}", "make the kit again")
    for key in ("bundles", "doctor"):
        value = info.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise KitError(f"kit.json: {key!r} must be a list of strings", "make the kit again")
    bundles = tuple(info["bundles"])
    doctor = tuple(info["doctor"])
    for rel in bundles:
        if not _safe_relpath(rel) or not rel.startswith("bundles/"):
            raise KitError(f"kit.json names an unsafe bundle path {rel!r}", "make the kit again")
    for spec in doctor:
        if spec.endswith(".toml") and not (_safe_relpath(spec) and spec.startswith("recipes/")):
            raise KitError(f"kit.json names an unsafe recipe path {spec!r}", "make the kit again")
    version = info.get("hfbundle")
    if not isinstance(version, str) or not re.fullmatch(r"[0-9A-Za-z.+!-]+", version):
        raise KitError("kit.json: 'hfbundle' must be a version", "make the kit again")
    offline = info.get("offline")
    sets = offline.get("sets") if isinstance(offline, dict) else None
    variables = offline.get("cache_variables") if isinstance(offline, dict) else None
    if not (
        isinstance(sets, list)
        and all(isinstance(p, list) and len(p) == 2 and all(_env_safe(x) for x in p) for p in sets)
        and isinstance(variables, list)
        and all(_env_safe(v) for v in variables)
    ):
        raise KitError("kit.json: 'offline' must list the variables to set", "make the kit again")
    pairs = tuple((str(k), str(v)) for k, v in sets)
    return KitInfo(version, info.get("runner") is True, bundles, doctor, pairs, tuple(variables))


def _env_safe(value: object) -> bool:
    """A variable name or value install.py may print into a shell line: no quotes, no line breaks."""
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.:/\\-]{1,200}", value) is not None


# -- 2. hfbundle into an environment ----------------------------------------------------------------------------


def target_python(kit: Path, python: str | None, venv_dir: str | None) -> Path:
    """The interpreter to install into: ``--python``, or a venv made (or reused) without the network."""
    if python is not None:
        path = Path(python).expanduser()
        if not path.exists():
            raise KitError(f"--python {python}: no such file", "give the path of a python executable")
        _check_version(path)
        return path
    venv = Path(venv_dir).expanduser().resolve() if venv_dir else kit / VENV
    exe = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if exe.exists():
        print(f"reusing the venv {venv}")
        return exe
    with_pip = _has_ensurepip()
    cmd = [sys.executable, "-m", "venv", str(venv)] + ([] if with_pip else ["--without-pip"])
    print(f"creating the venv {venv}" + ("" if with_pip else " (no ensurepip here: pip comes from the kit)"))
    _run(cmd, "creating the venv", "install Python's venv module, or pass --python PATH of an existing env")
    return exe


def _has_ensurepip() -> bool:
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        return False
    return True


def _check_version(python: Path) -> None:
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KitError(f"{python} does not run ({proc.stderr.strip()[:200]})", "give a working python executable")
    major, minor = (int(x) for x in proc.stdout.strip().split("."))
    if (major, minor) < (3, 10):
        raise KitError(f"{python} is Python {major}.{minor}; hfbundle needs 3.10 or newer", "give a newer python")


def install_hfbundle(kit: Path, python: Path, info: KitInfo) -> None:
    wheels = kit / "wheels"
    env = _pip_env()
    if subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, env=env, check=False).returncode:
        pips = sorted(wheels.glob("pip-*.whl"))
        if not pips:
            raise KitError(f"{python} has no pip and the kit carries no pip wheel", "make the kit again")
        print("bootstrapping pip from the kit")
        # A wheel is a zip; pip runs from its own wheel (pip's documented bootstrap), then installs itself.
        _run(
            [str(python), f"{pips[-1]}/pip", "install", "--no-index", "--find-links", str(wheels), "pip"],
            "bootstrapping pip",
            "check the message above",
            env=env,
        )
    requirement = f"hfbundle[runner]=={info.hfbundle}" if info.runner else f"hfbundle=={info.hfbundle}"
    print(f"installing {requirement} from the kit (no index)")
    _run(
        [str(python), "-m", "pip", "install", "--no-index", "--find-links", str(wheels), requirement],
        "installing hfbundle",
        "the kit lacks a wheel for this platform or Python: make the kit with --platform / --python-version "
        "matching this machine",
        env=env,
    )


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_CONFIG_FILE": os.devnull,  # an index or proxy from a pip.conf has no business here
            "PIP_NO_INPUT": "1",
        }
    )
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PYTHONPATH"):
        env.pop(var, None)
    return env


# -- 3. bundles into the cache -----------------------------------------------------------------------------------


def install_bundles(kit: Path, python: Path, info: KitInfo, cache: Path | None) -> None:
    env = _pip_env()
    env.update(dict(info.offline_pairs(cache)))  # doctor then checks the environment the user is told to keep
    cache_args = ["--cache-dir", str(cache)] if cache is not None else []
    hfbundle = [str(python), "-m", "bundler"]
    for rel in info.bundles:
        bundle = str(kit / rel)
        print(f"installing {rel}")
        _run([*hfbundle, "install", bundle, *cache_args], f"installing {rel}", "read the message above", env=env)
        print(f"verifying {rel}")
        _run([*hfbundle, "verify", bundle, *cache_args], f"verifying {rel}", "read the message above", env=env)
    for spec in info.doctor:
        target = str(kit / spec) if spec.endswith(".toml") else spec
        print(f"doctor {spec}")
        _run([*hfbundle, "doctor", target, *cache_args], f"doctor {spec}", "run the fix doctor printed", env=env)


def _run(cmd: list[str], doing: str, hint: str, env: dict[str, str] | None = None) -> None:
    sys.stdout.flush()
    proc = subprocess.run(cmd, env=env, check=False)
    if proc.returncode != 0:
        raise KitError(f"{doing} failed (exit {proc.returncode})", hint)


# -- 4. staying offline ------------------------------------------------------------------------------------------


def default_shells() -> list[str]:
    """POSIX: sh. Windows: cmd and PowerShell both (install.bat passes ``--shell cmd``)."""
    return ["sh"] if os.name != "nt" else ["cmd", "powershell"]


def offline_lines(shell: str, python: Path, pairs: list[tuple[str, str]], *, venv: bool) -> list[str]:
    """The exact lines to paste, for ``sh``, ``cmd`` or ``powershell``: this session, then for good."""
    lines: list[str] = []
    if shell == "sh":
        lines += [f"export {k}={shlex.quote(v)}" for k, v in pairs]
        if venv:
            lines.append(f". {shlex.quote(str(python.parent / 'activate'))}")
        lines.append("(add the export lines to ~/.profile to keep them for good)")
    elif shell == "cmd":
        lines += [f'set "{k}={v}"' for k, v in pairs]
        lines += [f'setx {k} "{v}"' for k, v in pairs]
        if venv:
            lines.append(f'call "{python.parent / "activate.bat"}"')
        lines.append("(set: this window; setx: every new window)")
    else:
        lines += [f"$env:{k} = '{_ps_quote(v)}'" for k, v in pairs]
        lines += [f"[Environment]::SetEnvironmentVariable('{k}', '{_ps_quote(v)}', 'User')" for k, v in pairs]
        if venv:
            lines.append(f"& '{_ps_quote(str(python.parent / 'Activate.ps1'))}'")
        lines.append("($env: this session; SetEnvironmentVariable: every new session)")
    return lines


def _ps_quote(value: str) -> str:
    return value.replace("'", "''")


if __name__ == "__main__":
    sys.exit(main())
