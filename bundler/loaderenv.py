"""What each loader stack needs from the environment to load offline, beyond the files (issue 20).

A cache can hold every file a recipe needs and the app still "can't find the model": its loader looks in another
folder, or it calls the Hub although it was told to stay local. This module keeps the known cases as a small
table (:data:`STACKS`), each entry with the versions it was checked on and the upstream function that causes it,
and checks an environment against it (:func:`check_environment`): the lines to set, for the user's shell.

    >>> from bundler.recipe import load_spec
    >>> report = check_environment(load_spec("openvino-sd-turbo"), Path("/models/hub"), {"HF_HOME": "/models"})
    >>> report.exports()
    ['export HF_HUB_OFFLINE=1']

It also names caches in folders the operating system empties on its own (:func:`temp_cleaner`).
Pure functions of a recipe, a path and an environment mapping: nothing is imported, nothing is read from disk.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal

from .recipe import Recipe
from .records import JsonRecord

Stack = Literal["diffusers", "transformers", "optimum-intel"]
CacheVariable = Literal["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"]


@dataclass(frozen=True)
class StackRequirements:
    """One loader stack's known offline requirements.

    ``cache_variable``: the hub-cache variable its default ``cache_dir`` follows. ``HF_HUB_CACHE`` is
    huggingface_hub's current one (which falls back to the legacy variable, then ``$HF_HOME/hub``);
    ``HUGGINGFACE_HUB_CACHE`` is the legacy constant, which follows only that variable and ``$HF_HOME``.
    ``needs_hub_offline``: its own "local files only" switch still reaches the network, so ``HF_HUB_OFFLINE=1``
    is required. ``versions`` and ``evidence``: where this was checked, and the upstream code responsible.
    """

    stack: Stack
    cache_variable: CacheVariable
    needs_hub_offline: bool
    versions: str
    evidence: str


STACKS: dict[Stack, StackRequirements] = {
    "diffusers": StackRequirements(
        "diffusers",
        "HF_HUB_CACHE",
        False,
        "diffusers 0.37-0.42, huggingface_hub 1.33-2.4",
        "from_pretrained(local_files_only=True) reads the cache only (tests/test_loaders.py)",
    ),
    "transformers": StackRequirements(
        "transformers",
        "HF_HUB_CACHE",
        False,
        "transformers 5.0-5.24, huggingface_hub 1.33-2.4",
        "from_pretrained(local_files_only=True) reads the cache only (tests/test_loaders.py)",
    ),
    "optimum-intel": StackRequirements(
        "optimum-intel",
        "HUGGINGFACE_HUB_CACHE",
        True,
        "optimum-intel 2.0.0 (optimum 2.2.0), huggingface_hub 1.33",
        "default cache_dir=huggingface_hub.constants.HUGGINGFACE_HUB_CACHE in OVBaseModel.from_pretrained and "
        "OVDiffusionPipeline._from_pretrained; optimum.exporters.tasks.TasksManager.get_model_files lists the "
        "repo even with local_files_only=True and falls back to the cache only on requests' ConnectionError or "
        "OfflineModeIsEnabled, while huggingface_hub 1.x raises httpx's (tests/test_loaderenv.py)",
    ),
}

# Which stack reads a repo of each role. (Recipes name no stack of their own yet: the role says it.)
ROLE_STACKS: dict[str, Stack] = {
    "diffusers-pipeline": "diffusers",
    "diffusers-model": "diffusers",
    "lora": "diffusers",
    "transformers-model": "transformers",
    "openvino-pipeline": "optimum-intel",
}


# Read by huggingface_hub, transformers, datasets and diffusers at import: a machine that stays offline sets them
# for good (``HF_HUB_OFFLINE=1`` is also what stacks with ``needs_hub_offline`` require).
GO_OFFLINE: tuple[tuple[str, str], ...] = (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("HF_DATASETS_OFFLINE", "1"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
)


@dataclass(frozen=True)
class OfflineSettings:
    """The variables a machine that stays offline sets for good, so that every stack in ``stacks`` finds the
    cache and stays off the network: ``sets`` always, and each of ``cache_variables`` to the cache folder when it
    is not the default one. Made from :data:`STACKS` by :func:`offline_settings`; the kit carries it in
    ``kit.json`` for its stdlib-only ``install.py``."""

    stacks: tuple[Stack, ...]
    sets: tuple[tuple[str, str], ...]
    cache_variables: tuple[CacheVariable, ...]

    def pairs(self, cache: str | None) -> list[tuple[str, str]]:
        """(variable, value) in order; the cache variables only when a cache folder is given."""
        return [*self.sets, *((var, cache) for var in self.cache_variables if cache is not None)]

    def to_json(self) -> dict[str, Any]:
        return {
            "stacks": list(self.stacks),
            "sets": [list(pair) for pair in self.sets],
            "cache_variables": list(self.cache_variables),
        }


def offline_settings(stacks: Iterable[Stack]) -> OfflineSettings:
    """What to set for good so that ``stacks`` load offline from a cache: every stack's cache variable (the
    current one always, since it wins over the legacy one for stacks that follow it) and ``GO_OFFLINE``.

    >>> offline_settings(["optimum-intel"]).cache_variables
    ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE')
    """
    stacks = tuple(sorted(set(stacks)))
    variables: list[CacheVariable] = ["HF_HUB_CACHE"]
    variables += sorted({STACKS[s].cache_variable for s in stacks} - {"HF_HUB_CACHE"})
    return OfflineSettings(stacks, GO_OFFLINE, tuple(variables))


def recipe_stacks(recipe: Recipe) -> tuple[Stack, ...]:
    """The loader stacks that read ``recipe``'s repos, sorted (roles ``files``/``whole-repo``/``auto``: none)."""
    return tuple(sorted({ROLE_STACKS[r.role] for r in recipe.repos if r.role in ROLE_STACKS}))


@dataclass(frozen=True)
class EnvFinding(JsonRecord, convert={"sets": dict}):
    """One thing the environment gets wrong for a stack, and the variables that fix it."""

    kind: Literal["cache-variable", "hub-offline", "temp-folder"]
    stack: str
    message: str
    sets: tuple[tuple[str, str], ...]  # (variable, value) to export


@dataclass(frozen=True)
class EnvReport(JsonRecord):
    """The environment checked for a recipe's stacks against the cache it was installed into."""

    recipe: str
    cache: str
    stacks: tuple[str, ...]
    findings: tuple[EnvFinding, ...]

    @property
    def ok(self) -> bool:
        return not any(f.kind != "temp-folder" for f in self.findings)

    def exports(self, shell: Literal["sh", "powershell"] = "sh") -> list[str]:
        """The lines to run before the app, each variable once, in the order found."""
        seen: dict[str, str] = {}
        for finding in self.findings:
            for key, value in finding.sets:
                seen.setdefault(key, value)
        if shell == "powershell":
            return [f"$env:{k} = '{v}'" for k, v in seen.items()]
        return [f"export {k}={shlex.quote(v)}" for k, v in seen.items()]

    def json_extra(self) -> dict[str, Any]:
        return {"ok": self.ok, "exports": self.exports()}

    def render(self) -> list[str]:
        if not self.findings:
            return []
        lines = [f"environment: {f.message}" for f in self.findings]
        exports = self.exports()
        if exports:
            lines.append("set these before starting the app:")
            lines += [f"  {line}" for line in exports]
        return lines


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _expand(path: str, env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home + path[1:] if path.startswith("~") else path)


def _hf_home(env: Mapping[str, str]) -> Path:
    if env.get("HF_HOME"):
        return _expand(env["HF_HOME"], env)
    xdg = env.get("XDG_CACHE_HOME") or str(_expand("~/.cache", env))
    return _expand(xdg, env) / "huggingface"


def stack_cache(stack: Stack, env: Mapping[str, str]) -> Path:
    """The hub cache ``stack`` reads by default in ``env`` (huggingface_hub.constants' precedence)."""
    legacy = env.get("HUGGINGFACE_HUB_CACHE")
    if STACKS[stack].cache_variable == "HF_HUB_CACHE" and env.get("HF_HUB_CACHE"):
        return _expand(env["HF_HUB_CACHE"], env)
    if legacy:
        return _expand(legacy, env)
    return _hf_home(env) / "hub"


def _same(a: Path, b: Path) -> bool:
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def check_environment(recipe: Recipe, cache: Path, env: Mapping[str, str]) -> EnvReport:
    """Will each stack that reads ``recipe`` look in ``cache``, and stay off the network, in ``env``?"""
    return check_stacks(recipe.name, recipe_stacks(recipe), cache, env)


def roles_stacks(roles: Iterable[str]) -> tuple[Stack, ...]:
    """The stacks that read repos of these roles (a bundle's lock records them), sorted."""
    return tuple(sorted({ROLE_STACKS[r] for r in roles if r in ROLE_STACKS}))


def check_stacks(name: str, stacks: Iterable[Stack], cache: Path, env: Mapping[str, str]) -> EnvReport:
    """:func:`check_environment` for stacks known otherwise (``install`` takes them from the bundle's lock)."""
    stacks = tuple(stacks)
    findings: list[EnvFinding] = []
    for stack in stacks:
        req = STACKS[stack]
        where = stack_cache(stack, env)
        # Only a stack's own quirk is flagged: a stack on HF_HUB_CACHE looks where huggingface_hub does, and a
        # cache given with --cache-dir that the app is also given (cache_dir=...) is the user's choice.
        if req.cache_variable != "HF_HUB_CACHE" and not _same(where, cache):
            # Both names: the legacy one for stacks on the legacy constant, the current one because it wins
            # over the legacy one for the others.
            sets = (("HUGGINGFACE_HUB_CACHE", str(cache)), ("HF_HUB_CACHE", str(cache)))
            findings.append(
                EnvFinding(
                    "cache-variable",
                    stack,
                    f"{stack} looks in {where}, not in {cache}: it follows {req.cache_variable}"
                    + (" and HF_HOME, not HF_HUB_CACHE" if req.cache_variable == "HUGGINGFACE_HUB_CACHE" else ""),
                    sets,
                )
            )
        if req.needs_hub_offline and not _truthy(env.get("HF_HUB_OFFLINE")):
            findings.append(
                EnvFinding(
                    "hub-offline",
                    stack,
                    f"{stack} calls the Hub even when told to use local files only: it needs HF_HUB_OFFLINE=1 "
                    "to load offline",
                    (("HF_HUB_OFFLINE", "1"),),
                )
            )
    cleaner = temp_cleaner(cache, env)
    if cleaner is not None:
        findings.append(
            EnvFinding(
                "temp-folder",
                "*",
                f"the cache {cache} is in a folder {cleaner} empties on its own: the models will disappear; "
                "install into a lasting folder and point HF_HOME (or HF_HUB_CACHE) at it",
                (),
            )
        )
    return EnvReport(name, str(cache), stacks, tuple(findings))


def temp_cleaner(path: Path | str, env: Mapping[str, str]) -> str | None:
    """The OS service that cleans the temp folder ``path`` lies in, or None.

    >>> temp_cleaner("/tmp/hf/hub", {})
    'systemd-tmpfiles (/tmp)'
    >>> temp_cleaner("/home/me/.cache/huggingface/hub", {}) is None
    True
    """
    text = os.path.normpath(str(path))
    posix = PurePath(text).as_posix()
    for top, cleaner in (
        ("/tmp", "systemd-tmpfiles (/tmp)"),  # noqa: S108 - names temp folders, never writes there
        ("/var/tmp", "systemd-tmpfiles (/var/tmp)"),  # noqa: S108 - as above
        ("/var/folders", "macOS (/var/folders, cleaned after 3 days)"),
        ("/private/var/folders", "macOS (/var/folders, cleaned after 3 days)"),
    ):
        if posix == top or posix.startswith(top + "/"):
            return cleaner
    for var in ("TEMP", "TMP"):
        temp = env.get(var)
        if temp and ("\\" in temp or ":" in temp[:3]):
            low, base = text.lower().replace("/", "\\"), temp.lower().rstrip("\\/").replace("/", "\\")
            if low == base or low.startswith(base + "\\"):
                return f"Windows Storage Sense (%{var}%)"
    return None
