"""Recipes: named, versioned descriptions of the repos an app needs and how it runs them.

A recipe is a TOML file (schema: ``docs/RECIPES.md``)::

    [recipe]
    name = "tiny-demo"
    version = "1"
    description = "Tiny SD pipeline + TAESD + LCM-LoRA"

    [[repos]]
    name = "pipeline"
    repo = "hfbundle-test/tiny-sd"
    role = "diffusers-pipeline"

    [runner]
    pipeline = "pipeline"
    steps = 2

A SPEC (what the CLI takes) is a recipe name (shipped in ``manifests/`` or found on ``HFBUNDLE_RECIPE_PATH``),
a path to a ``.toml`` recipe, or a repo id ``org/name[@revision]`` whose role the resolver detects::

    >>> load_spec("tiny-demo").repos[0].repo
    'hfbundle-test/tiny-sd'
    >>> load_spec("stabilityai/sd-turbo@main", variant="fp16").repos[0].variant
    'fp16'

Every key is checked: an unknown one is a :class:`~bundler.errors.RecipeError` with a did-you-mean.

Longer than ~500 lines: the recipe schema, field by field, with a message and a hint for each wrong value.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args

from .errors import RecipeError, UnsafePathError, UsageError
from .paths import REPO_TYPES, check_relpath, check_repo_id
from .records import JsonRecord

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable

    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    from importlib.abc import Traversable

    import tomli as tomllib

RECIPE_PATH_ENV = "HFBUNDLE_RECIPE_PATH"
AUTO: Final = "auto"
# How a repo's files are picked (bundler.rules); "auto" detects it from the repo.
Role = Literal[
    "diffusers-pipeline",
    "diffusers-model",
    "transformers-model",
    "lora",
    "files",
    "whole-repo",
    "openvino-pipeline",
]
RoleOrAuto = Role | Literal["auto"]
Weights = Literal["auto", "safetensors", "bin"]
DType = Literal["float32", "float16", "bfloat16"]
ROLES: tuple[Role, ...] = get_args(Role)
WEIGHTS: tuple[Weights, ...] = get_args(Weights)
DTYPES: tuple[DType, ...] = get_args(DType)
PIPELINE_ROLES = ("diffusers-pipeline", "openvino-pipeline")

_C = TypeVar("_C", bound=str)

# Which keys make sense for which role (others are refused so a recipe never silently ignores a setting).
_VARIANT_ROLES = (AUTO, "diffusers-pipeline", "diffusers-model", "transformers-model")
_WEIGHTS_ROLES = (AUTO, "diffusers-pipeline", "diffusers-model", "transformers-model", "lora")
_SUBFOLDER_ROLES = (AUTO, "diffusers-model", "transformers-model", "lora")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")


@dataclass(frozen=True)
class ListedFile(JsonRecord):
    """One file of an explicit ``files`` list, with the runs (modes) that needed it (``hfbundle trace``)."""

    path: str
    runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceRun(JsonRecord):
    """One traced run (a mode of the app): its name, the command (secrets redacted) and when it ran."""

    name: str
    command: tuple[str, ...] = ()
    date: str = ""


@dataclass(frozen=True)
class RepoSpec(JsonRecord):
    """One repo of a recipe: where it lives and which of its files the app loads (``role``, or the explicit
    ``files`` list a trace records, pinned to ``commit``)."""

    name: str
    repo: str
    role: RoleOrAuto = AUTO
    repo_type: str = "model"
    revision: str = "main"
    variant: str | None = None
    weights: Weights = "auto"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    weight_name: str | None = None
    subfolder: str | None = None
    trust_remote_code: bool = False
    optional: bool = False
    commit: str | None = None  # the commit `revision` must resolve to (a traced recipe pins it)
    files: tuple[ListedFile, ...] = ()  # exactly these files (the role's rules are not applied)

    def runs_of(self, path: str) -> tuple[str, ...]:
        """The runs that needed ``path`` (empty when the list does not say, or ``path`` is not listed)."""
        for f in self.files:
            if f.path == path:
                return f.runs
        return ()


@dataclass(frozen=True)
class RunnerDefaults(JsonRecord, skip_none=True):
    """How the runner uses the repos: which one is the pipeline, what to swap in, default settings."""

    pipeline: str | None = None
    steps: int = 4
    guidance: float = 1.0
    width: int = 512
    height: int = 512
    scheduler: str | None = None
    vae: str | None = None
    lora: str | None = None
    lora_fuse: bool = False
    lora_scale: float = 1.0
    negative_prompt: str | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class Recipe(JsonRecord, skip_none=("source",), skip_empty=("runs",)):
    """A named, versioned set of repos plus runner defaults. ``source`` tells where it was read from."""

    name: str
    repos: tuple[RepoSpec, ...]
    version: str = "1"
    description: str = ""
    runner: RunnerDefaults = field(default_factory=RunnerDefaults)
    source: str | None = None
    runs: tuple[TraceRun, ...] = ()  # the traced runs (modes) a recipe written by `hfbundle trace` records

    def repo(self, name: str) -> RepoSpec:
        for r in self.repos:
            if r.name == name:
                return r
        raise KeyError(name)

    def meta(self) -> dict[str, Any]:
        """Name, version, description and source: what a lock carries about its recipe."""
        out: dict[str, Any] = {"name": self.name, "version": self.version, "description": self.description}
        if self.source is not None:
            out["source"] = self.source
        return out


# --------------------------------------------------------------------------------------------------- parsing


def _did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """``did you mean 'x'?`` for the closest choice (pypa/build's ``_find_typo`` idea), or None."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


class _Table:
    """Typed access to one TOML table, remembering where it is for error messages."""

    def __init__(self, data: Any, where: str, allowed: Sequence[str]) -> None:
        if not isinstance(data, Mapping):
            raise RecipeError(f"{where} must be a table, got {_type_name(data)}")
        for key in data:
            if key not in allowed:
                typo = _did_you_mean(key, allowed)
                raise RecipeError(
                    f"{where}: unknown key {key!r}",
                    hint=(typo + " " if typo else "") + f"valid keys: {', '.join(allowed)}",
                )
        self.data = data
        self.where = where

    def _get(self, key: str, types: tuple[type, ...], what: str) -> Any:
        value = self.data.get(key)
        if value is None:
            return None
        # bool is an int subclass: never accept it for a number, never accept a number for a bool
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            raise RecipeError(f"{self.where}: {key} must be {what}, got {_type_name(value)} {value!r}")
        return value

    def get_str(self, key: str, *, required: bool = False) -> str | None:
        value: str | None = self._get(key, (str,), "a string")
        if required and not value:
            raise RecipeError(f"{self.where}: {key} is required", hint=f'add {key} = "..." to {self.where}')
        return value

    def get_int(self, key: str) -> int | None:
        value: int | None = self._get(key, (int,), "an integer")
        return value

    def get_float(self, key: str) -> float | None:
        value = self._get(key, (int, float), "a number")
        return None if value is None else float(value)

    def get_bool(self, key: str) -> bool | None:
        value: bool | None = self._get(key, (bool,), "true or false")
        return value

    def patterns(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise RecipeError(f"{self.where}: {key} must be a list of glob patterns (strings)")
        return tuple(value)

    def choice(self, key: str, choices: Sequence[_C], default: _C) -> _C:
        value = self.get_str(key)
        if value is None:
            return default
        if value not in choices:
            typo = _did_you_mean(value, choices)
            raise RecipeError(
                f"{self.where}: {key} = {value!r} is not one of {', '.join(choices)}",
                hint=typo or f"use one of {', '.join(choices)}",
            )
        return next(c for c in choices if c == value)  # the allowed value itself, typed as the closed set


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


_TOP_KEYS = ("recipe", "repos", "runner", "runs")
_RECIPE_KEYS = ("name", "version", "description")
_REPO_KEYS = tuple(f.name for f in dataclasses.fields(RepoSpec))
_FILE_KEYS = ("path", "runs")
_RUN_KEYS = ("name", "command", "date")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_RUNNER_KEYS = tuple(f.name for f in dataclasses.fields(RunnerDefaults))


def parse_recipe(data: Mapping[str, Any], *, source: str | None = None) -> Recipe:
    """Build a :class:`Recipe` from parsed TOML, checking every key and value."""
    where = source or "recipe"
    _Table(data, where, _TOP_KEYS)
    meta = _Table(data.get("recipe", {}), f"{where}: [recipe]", _RECIPE_KEYS)
    name = meta.get_str("name", required=True)
    assert name is not None
    if not _NAME.match(name):
        raise RecipeError(
            f"{where}: recipe name {name!r} is not valid",
            hint="use letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit",
        )
    version_raw = meta._get("version", (str, int), "a string or an integer")
    version = "1" if version_raw is None else str(version_raw)
    description = meta.get_str("description") or ""

    raw_repos = data.get("repos")
    if not isinstance(raw_repos, list) or not raw_repos:
        raise RecipeError(
            f"{where}: a recipe needs at least one [[repos]] entry",
            hint='add [[repos]] with name = "...", repo = "org/name" and role = "..."',
        )
    repos = tuple(_parse_repo(r, f"{where}: [[repos]] #{i + 1}") for i, r in enumerate(raw_repos))
    names = [r.name for r in repos]
    for n in names:
        if names.count(n) > 1:
            raise RecipeError(f"{where}: two [[repos]] are named {n!r}", hint="give each repo its own name")
    runner = _parse_runner(data.get("runner", {}), f"{where}: [runner]", repos)
    runs = _parse_runs(data.get("runs", []), f"{where}: [[runs]]", repos)
    return Recipe(
        name=name, version=version, description=description, repos=repos, runner=runner, source=source, runs=runs
    )


def _parse_runs(raw: Any, where: str, repos: Sequence[RepoSpec]) -> tuple[TraceRun, ...]:
    """``[[runs]]``: the traced runs; every run a ``files`` entry names must be one of them (when any is listed)."""
    if not isinstance(raw, list):
        raise RecipeError(f"{where} must be an array of tables ([[runs]])")
    runs: list[TraceRun] = []
    for i, item in enumerate(raw):
        t = _Table(item, f"{where} #{i + 1}", _RUN_KEYS)
        name = t.get_str("name", required=True)
        assert name is not None
        if not _NAME.match(name):
            raise RecipeError(f"{t.where}: run name {name!r} is not valid", hint="use letters, digits, '.', '_', '-'")
        command = t.data.get("command", [])
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise RecipeError(f"{t.where}: command must be a list of strings")
        runs.append(TraceRun(name=name, command=tuple(command), date=t.get_str("date") or ""))
    names = [r.name for r in runs]
    for n in names:
        if names.count(n) > 1:
            raise RecipeError(f"{where}: two runs are named {n!r}", hint="give each run its own name")
    if runs:
        for spec in repos:
            for f in spec.files:
                unknown = [r for r in f.runs if r not in names]
                if unknown:
                    raise RecipeError(
                        f"{where}: {spec.name}: {f.path} names run {unknown[0]!r}, which no [[runs]] entry declares",
                        hint=f"declared runs: {', '.join(names)}",
                    )
    return tuple(runs)


def _parse_files(raw: Any, where: str) -> tuple[ListedFile, ...]:
    """``files``: repo paths, each a string or ``{path = "...", runs = ["..."]}``; checked like any repo path."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise RecipeError(f"{where}: files must be a non-empty list of repo paths")
    out: dict[str, ListedFile] = {}
    for item in raw:
        if isinstance(item, str):
            path, runs = item, ()
        else:
            t = _Table(item, f"{where}: files entry", _FILE_KEYS)
            path = t.get_str("path", required=True) or ""
            raw_runs = t.data.get("runs", [])
            if not isinstance(raw_runs, list) or not all(isinstance(r, str) and _NAME.match(r) for r in raw_runs):
                raise RecipeError(f"{where}: files entry {path!r}: runs must be a list of run names")
            runs = tuple(raw_runs)
        try:
            path = check_relpath(path)
        except UnsafePathError as e:
            raise RecipeError(f"{where}: files entry {path!r}: {e.message}") from e
        if path in out:
            raise RecipeError(f"{where}: {path} is listed twice in files", hint="list each file once")
        out[path] = ListedFile(path=path, runs=runs)
    return tuple(out[p] for p in sorted(out))


def _parse_repo(raw: Any, where: str) -> RepoSpec:
    t = _Table(raw, where, _REPO_KEYS)
    name = t.get_str("name", required=True)
    assert name is not None
    where = f"{where} ({name!r})"
    if not _NAME.match(name):
        raise RecipeError(f"{where}: name {name!r} is not valid", hint="use letters, digits, '.', '_' and '-'")
    repo = t.get_str("repo", required=True)
    assert repo is not None
    try:
        check_repo_id(repo)
    except UnsafePathError as e:
        raise RecipeError(f"{where}: {e.message}", hint=e.hint) from e
    roles: tuple[RoleOrAuto, ...] = (*ROLES, AUTO)
    role = t.choice("role", roles, AUTO)
    revision = t.get_str("revision") or "main"
    if not _REVISION.match(revision) or ".." in revision:
        raise RecipeError(f"{where}: revision {revision!r} is not a branch, tag or commit name")
    variant = t.get_str("variant")
    if variant is not None and not _VARIANT.match(variant):
        raise RecipeError(f"{where}: variant {variant!r} is not valid", hint='a variant looks like "fp16"')
    subfolder = t.get_str("subfolder")
    if subfolder is not None:
        subfolder = subfolder.strip("/")
        if not subfolder or any(p in ("", ".", "..") for p in subfolder.split("/")) or "\\" in subfolder:
            raise RecipeError(f"{where}: subfolder {subfolder!r} is not a relative folder of the repo")
    spec = RepoSpec(
        name=name,
        repo=repo,
        role=role,
        repo_type=t.choice("repo_type", REPO_TYPES, "model"),
        revision=revision,
        variant=variant,
        weights=t.choice("weights", WEIGHTS, "auto"),
        include=t.patterns("include"),
        exclude=t.patterns("exclude"),
        weight_name=t.get_str("weight_name"),
        subfolder=subfolder,
        trust_remote_code=bool(t.get_bool("trust_remote_code")),
        optional=bool(t.get_bool("optional")),
        commit=_parse_commit(t, where, revision),
        files=_parse_files(t.data.get("files"), where),
    )
    _check_role_keys(spec, where)
    return spec


def _parse_commit(t: _Table, where: str, revision: str) -> str | None:
    commit = t.get_str("commit")
    if commit is None:
        return None
    if not _COMMIT.match(commit):
        raise RecipeError(f"{where}: commit {commit!r} is not a 40-hex commit id")
    if _COMMIT.match(revision) and revision != commit:
        raise RecipeError(f"{where}: revision {revision} and commit {commit} disagree", hint="drop one of them")
    return commit


def _check_role_keys(spec: RepoSpec, where: str) -> None:
    """Refuse settings the role would ignore: a recipe says what it means or fails."""

    def refuse(key: str, roles: Sequence[str]) -> None:
        raise RecipeError(
            f"{where}: {key} does not apply to role {spec.role!r}",
            hint=f"{key} is used by roles {', '.join(r for r in roles if r != AUTO)}; remove it or change the role",
        )

    if spec.variant is not None and spec.role not in _VARIANT_ROLES:
        refuse("variant", _VARIANT_ROLES)
    if spec.weights != "auto" and spec.role not in _WEIGHTS_ROLES:
        refuse("weights", _WEIGHTS_ROLES)
    if spec.subfolder is not None and spec.role not in _SUBFOLDER_ROLES:
        refuse("subfolder", _SUBFOLDER_ROLES)
    if spec.weight_name is not None and spec.role != "lora":
        refuse("weight_name", ("lora",))
    if spec.role == "files" and not spec.include and not spec.files:
        raise RecipeError(f"{where}: role 'files' needs include patterns", hint='add include = ["*.json", "weights/*"]')


def _parse_runner(raw: Any, where: str, repos: Sequence[RepoSpec]) -> RunnerDefaults:
    t = _Table(raw, where, _RUNNER_KEYS)
    names = [r.name for r in repos]
    by_name = {r.name: r for r in repos}

    def repo_ref(key: str) -> str | None:
        value = t.get_str(key)
        if value is not None and value not in names:
            typo = _did_you_mean(value, names)
            raise RecipeError(
                f"{where}: {key} = {value!r} names no [[repos]] entry",
                hint=typo or f"use one of the repo names: {', '.join(names)}",
            )
        return value

    pipeline = repo_ref("pipeline")
    if pipeline is None:  # the one pipeline repo, when there is exactly one, is the obvious default
        candidates = [r.name for r in repos if r.role in PIPELINE_ROLES]
        pipeline = candidates[0] if len(candidates) == 1 else None
    vae = repo_ref("vae")
    lora = repo_ref("lora")
    if lora is not None and by_name[lora].role not in ("lora", AUTO):
        raise RecipeError(f"{where}: lora = {lora!r} names a repo with role {by_name[lora].role!r}, not 'lora'")
    defaults = RunnerDefaults()
    steps = t.get_int("steps")
    width, height = t.get_int("width"), t.get_int("height")
    for key, value in (("steps", steps), ("width", width), ("height", height)):
        if value is not None and value < 1:
            raise RecipeError(f"{where}: {key} must be a positive integer, got {value}")
    for key, value in (("width", width), ("height", height)):
        if value is not None and value % 8:
            raise RecipeError(f"{where}: {key} must be a multiple of 8, got {value}")
    guidance = t.get_float("guidance")
    if guidance is not None and guidance < 0:
        raise RecipeError(f"{where}: guidance must not be negative, got {guidance}")
    lora_scale = t.get_float("lora_scale")
    lora_fuse = t.get_bool("lora_fuse")
    dtype = t.get_str("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise RecipeError(f"{where}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return RunnerDefaults(
        pipeline=pipeline,
        steps=steps if steps is not None else defaults.steps,
        guidance=guidance if guidance is not None else defaults.guidance,
        width=width if width is not None else defaults.width,
        height=height if height is not None else defaults.height,
        scheduler=t.get_str("scheduler"),
        vae=vae,
        lora=lora,
        lora_fuse=lora_fuse if lora_fuse is not None else defaults.lora_fuse,
        lora_scale=lora_scale if lora_scale is not None else defaults.lora_scale,
        negative_prompt=t.get_str("negative_prompt"),
        dtype=dtype,
    )


def loads_recipe(text: str, *, source: str | None = None) -> Recipe:
    """Parse recipe TOML text. Malformed TOML is a :class:`RecipeError` naming the line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(
            f"{source or 'recipe'}: invalid TOML: {e}", hint="fix the syntax at the line and column shown"
        ) from e
    return parse_recipe(data, source=source)


def load_recipe(path: str | os.PathLike[str] | Traversable) -> Recipe:
    """Read and parse one recipe file."""
    try:
        text = path.read_text(encoding="utf-8") if isinstance(path, Traversable) else Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"cannot read recipe {path}: {e}", hint="check the path and that it is a UTF-8 file") from e
    return loads_recipe(text, source=str(path))


# ---------------------------------------------------------------------------------------------- discovery


def _shipped_dir() -> Traversable:
    """The shipped ``manifests/``: package data ``bundler.manifests`` when installed, else the checkout's folder."""
    try:
        return resources.files("bundler.manifests")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "manifests"


def recipe_dirs() -> list[Traversable]:
    """Where recipes are looked up, first match wins: ``HFBUNDLE_RECIPE_PATH`` folders, then the shipped ones."""
    extra = [Path(p).expanduser() for p in os.environ.get(RECIPE_PATH_ENV, "").split(os.pathsep) if p]
    return [*extra, _shipped_dir()]


def _iter_recipe_files() -> Iterator[tuple[str, Traversable]]:
    for d in recipe_dirs():
        if not d.is_dir():
            continue
        for entry in sorted(d.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".toml") and entry.is_file():
                yield entry.name[: -len(".toml")], entry


def available_recipes() -> dict[str, Traversable]:
    """Recipe name → file, for every recipe on the search path (a name found twice: the first wins)."""
    found: dict[str, Traversable] = {}
    for name, entry in _iter_recipe_files():
        found.setdefault(name, entry)
    return dict(sorted(found.items()))


def find_recipe(name: str) -> Recipe:
    """Load the recipe called ``name``; :class:`UsageError` with a did-you-mean if there is none."""
    recipes = available_recipes()
    if name not in recipes:
        typo = _did_you_mean(name, list(recipes))
        listing = ", ".join(recipes) or "(none)"
        raise UsageError(
            f"unknown recipe {name!r}",
            hint=(typo + " " if typo else "")
            + f"available recipes: {listing}; or pass a .toml file or a repo id org/name[@revision]",
        )
    recipe = load_recipe(recipes[name])
    if recipe.name != name:
        raise RecipeError(
            f"{recipes[name]}: the file is named {name!r} but its [recipe] name is {recipe.name!r}",
            hint="make the file name and [recipe] name agree",
        )
    return recipe


# ---------------------------------------------------------------------------------------------------- SPEC

_REPO_SPEC = re.compile(r"^(?P<repo>[^@\s]+/[^@\s]+)(?:@(?P<rev>[^@\s]+))?$")


def load_spec(
    spec: str,
    *,
    variant: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Recipe:
    """Turn a SPEC into a :class:`Recipe`: a recipe name, a ``.toml`` path, or ``org/name[@revision]``.

    ``variant``, ``include`` and ``exclude`` refine the recipe's *primary* repo (the runner's pipeline, else
    the first repo): the variant replaces the recipe's, the patterns are added to its own.

    >>> r = load_spec("org/model@v1.0")
    >>> (r.repos[0].repo, r.repos[0].revision, r.repos[0].role)
    ('org/model', 'v1.0', 'auto')
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("empty SPEC", hint="name a recipe, a .toml recipe file or a repo id org/name[@revision]")
    path = Path(spec).expanduser()
    if spec.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise UsageError(f"recipe file {spec} does not exist", hint="check the path")
        recipe = load_recipe(path)
    elif "/" not in spec:
        recipe = find_recipe(spec)
    else:
        recipe = _repo_recipe(spec)
    return refine(recipe, variant=variant, include=include, exclude=exclude)


def _repo_recipe(spec: str) -> Recipe:
    m = _REPO_SPEC.match(spec)
    try:
        if not m:
            raise UnsafePathError(f"invalid repo id {spec!r}")
        repo = check_repo_id(m["repo"])
    except UnsafePathError as e:
        raise UsageError(
            f"{spec!r} is neither a recipe, a recipe file nor a repo id: {e.message}",
            hint="a repo id is org/name or org/name@revision; list recipes with `hfbundle resolve --list`",
        ) from e
    revision = m["rev"] or "main"
    if not _REVISION.match(revision) or ".." in revision:
        raise UsageError(f"invalid revision {revision!r} in {spec!r}", hint="use a branch, tag or commit id")
    return Recipe(
        name=spec,
        version="0",
        description=f"{repo} at {revision}, role detected from its files",
        repos=(RepoSpec(name="model", repo=repo, revision=revision),),
        runner=RunnerDefaults(pipeline="model"),
        source=f"repo:{spec}",
    )


def refine(
    recipe: Recipe,
    *,
    variant: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Recipe:
    """Apply ``--variant/--include/--exclude`` to the recipe's primary repo (see :func:`load_spec`)."""
    if variant is None and not include and not exclude:
        return recipe
    if variant is not None and not _VARIANT.match(variant):
        raise UsageError(f"invalid variant {variant!r}", hint='a variant looks like "fp16"')
    primary = recipe.runner.pipeline or recipe.repos[0].name
    repos = []
    for r in recipe.repos:
        if r.name == primary:
            r = dataclasses.replace(
                r,
                variant=variant if variant is not None else r.variant,
                include=(*r.include, *include),
                exclude=(*r.exclude, *exclude),
            )
            try:
                _check_role_keys(r, f"{recipe.name}: repo {r.name!r}")
            except RecipeError as e:
                raise UsageError(e.message, hint=e.hint) from e
        repos.append(r)
    return dataclasses.replace(recipe, repos=tuple(repos))
