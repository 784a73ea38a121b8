"""``hfbundle trace``: run an app through the recording proxy and write the recipe of exactly what it fetched.

The command runs with ``HF_ENDPOINT`` at a :class:`~bundler.traceproxy.RecordingProxy` in front of the upstream
Hub, a fresh temporary ``HF_HOME``/``HF_HUB_CACHE`` (so every file the app needs is really requested, none found
in a cache) and the offline variables unset. Its output and exit status pass through. Afterwards the recorded
requests become a recipe (``docs/RECIPES.md``): every repo pinned to the commit the Hub answered with (its
``revision`` is the branch or tag the app asked for, so the bundle's ``refs/`` are the ones the app's cache had),
and an explicit ``files`` list with, per file, the runs (modes) that needed it. ``append=True`` merges the run
into an existing traced recipe; a run that exits non-zero writes nothing unless ``keep_partial``.

    >>> report = trace(["python", "app.py", "--taesd"], output="app.toml", append=True, run_name="taesd")
    ... # doctest: +SKIP
    >>> report.exit_code, [r.repo_id for r in report.repos]  # doctest: +SKIP
    (0, ['org/pipeline', 'madebyollin/taesd'])

Longer than ~500 lines: running the app, reading the proxy's record and writing the recipe are one command.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache.layout import atomic_write_bytes
from .errors import HfBundleError, RecipeError, UnsafePathError, UsageError
from .paths import check_relpath, check_repo_id
from .recipe import loads_recipe
from .records import JsonRecord
from .traceproxy import Observation, RecordingProxy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    import tomli as tomllib

__all__ = ["TraceError", "TraceReport", "TracedRepo", "merge", "render_recipe", "summarise", "trace"]

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "HF_DATASETS_OFFLINE")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{16,}")
REDACTED = "<redacted>"


class TraceError(HfBundleError):
    """The traced run cannot be turned into a recipe (the Hub moved between runs, a recipe cannot be merged)."""


@dataclass(frozen=True)
class TracedRepo(JsonRecord):
    """One repo a run fetched from: the revision asked, the commit it resolved to, the files (with sizes)."""

    repo_type: str
    repo_id: str
    revision: str
    commit: str
    files: tuple[str, ...]
    size: int = 0  # bytes of the files whose size the Hub told (X-Linked-Size / Content-Length)


@dataclass(frozen=True)
class TraceReport(JsonRecord):
    """What a traced run did and what was written."""

    output: str
    run: str
    exit_code: int
    written: bool
    appended: bool
    upstream: str
    repos: tuple[TracedRepo, ...] = ()
    requests: int = 0  # requests that named a repo (files and revision lookups)
    absent: int = 0  # probes for files that do not exist (404), e.g. transformers' optional tokenizer files
    notes: tuple[str, ...] = ()

    @property
    def files(self) -> int:
        return sum(len(r.files) for r in self.repos)

    def json_extra(self) -> dict[str, Any]:
        return {"files": self.files}

    def render(self) -> list[str]:
        lines = [
            f"trace: run {self.run!r} exited with {self.exit_code}; {len(self.repos)} repo(s), {self.files} file(s) "
            f"fetched through {self.upstream}"
        ]
        for r in self.repos:
            where = r.revision if r.revision == r.commit else f"{r.revision} → {r.commit[:12]}"
            lines.append(f"  {r.repo_type}:{r.repo_id}@{where}  {len(r.files)} file(s)")
        if self.absent:
            lines.append(f"  ({self.absent} probe(s) for optional files the repos do not have)")
        lines.extend(f"note: {n}" for n in self.notes)
        if self.written:
            verb = "merged into" if self.appended else "wrote"
            lines.append(f"{verb} {self.output} (next: hfbundle build {self.output} -o BUNDLE.tar.zst)")
        else:
            lines.append(f"nothing written to {self.output}")
        return lines


def trace(
    command: Sequence[str],
    *,
    output: str | Path,
    upstream: str | None = None,
    append: bool = False,
    keep_partial: bool = False,
    run_name: str | None = None,
    env: Mapping[str, str] | None = None,
) -> TraceReport:
    """Run ``command`` through the recording proxy and write (or, with ``append``, merge) the recipe ``output``.

    ``env`` is the command's environment (default: this process's), to which the proxy endpoint and the fresh
    cache are added. The command's stdin, stdout and stderr are this process's. The report carries its exit
    code; a non-zero one writes nothing unless ``keep_partial``.
    """
    if not command:
        raise UsageError("no command to trace", hint="hfbundle trace -o app.toml -- python app.py")
    out_path = Path(output)
    if not out_path.parent.is_dir():
        raise UsageError(f"cannot write {out_path}: {out_path.parent} is not a folder", hint="create it first")
    existing = _read_existing(out_path) if append else None
    base_env = dict(os.environ if env is None else env)
    runs_before = [r["name"] for r in existing.get("runs", [])] if existing else []
    name = run_name or _next_run_name(runs_before)
    if not _NAME_RE.match(name):
        raise UsageError(f"run name {name!r} is not valid", hint="use letters, digits, '.', '_' and '-'")
    # the Hub the command would have talked to: HF_ENDPOINT, else huggingface.co
    url = (upstream or (base_env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)).rstrip("/")
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    with RecordingProxy(url) as proxy, tempfile.TemporaryDirectory(prefix="hfbundle-trace-") as scratch:
        child_env = child_environment(base_env, proxy.endpoint, Path(scratch))
        exit_code = _run(command, child_env)
        seen = proxy.observations()
        secrets = proxy.secrets() | _env_secrets(base_env)
        errors = proxy.errors

    repos, notes = summarise(seen)
    if errors:
        notes.append(f"{len(errors)} request(s) could not reach {url} (answered 502): {errors[0]}")
    if not seen:
        notes.append(
            "the command asked the Hub nothing through HF_ENDPOINT: it loads from local paths, its own cache_dir, "
            "or URLs it builds itself"
        )
    absent = sum(1 for o in seen if o.path is not None and o.status == 404)
    written = False
    if (exit_code == 0 or keep_partial) and repos:
        recorded = {"name": name, "command": redact(command, secrets), "date": started}
        text = render_recipe(merge(existing, out_path, recorded, repos))
        loads_recipe(text, source=str(out_path))  # what we write must read back as a valid recipe
        atomic_write_bytes(out_path, text.encode("utf-8"))
        written = True
    elif exit_code != 0:
        notes.append("the command failed: nothing written (--keep-partial writes what it fetched)")
    return TraceReport(
        output=str(out_path),
        run=name,
        exit_code=exit_code,
        written=written,
        appended=existing is not None,
        upstream=url,
        repos=tuple(repos),
        requests=len(seen),
        absent=absent,
        notes=tuple(notes),
    )


# -- the run ----------------------------------------------------------------------------------------------------


def child_environment(base: Mapping[str, str], endpoint: str, scratch: Path) -> dict[str, str]:
    """The command's environment: the proxy as ``HF_ENDPOINT``, a fresh ``HF_HOME`` and hub cache, online.

    Xet is off (``HF_HUB_DISABLE_XET``) so every file goes through a ``/resolve/`` request the proxy sees.
    The user's token *file* stays where it is (``HF_TOKEN_PATH`` pointed at it, not read here), so a logged-in
    user's gated repos still open; ``HF_TOKEN`` passes through as it is. Loopback is added to ``NO_PROXY`` so a
    configured HTTP proxy does not carry the requests meant for ours.
    """
    env = dict(base)
    for var in OFFLINE_VARS:
        env.pop(var, None)
    home = scratch / "home"
    hub = home / "hub"
    hub.mkdir(parents=True)
    if "HF_TOKEN_PATH" not in env:
        user_home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
        )
        env["HF_TOKEN_PATH"] = os.path.join(os.path.expanduser(user_home), "token")
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(home),
        HF_HUB_CACHE=str(hub),
        HUGGINGFACE_HUB_CACHE=str(hub),  # the legacy constant some libraries (optimum-intel) still read
        HF_ASSETS_CACHE=str(home / "assets"),
        HF_XET_CACHE=str(home / "xet"),
        HF_MODULES_CACHE=str(home / "modules"),
        # With Xet, a client that cached a tree listing skips the per-file HEAD and fetches from the Xet store:
        # the proxy would never see the file. Plain LFS fetches the same files through /resolve/.
        HF_HUB_DISABLE_XET="1",
    )
    for var in ("NO_PROXY", "no_proxy"):
        present = [p for p in env.get(var, "").split(",") if p.strip()]
        env[var] = ",".join([*present, *(h for h in ("127.0.0.1", "localhost") if h not in present)])
    return env


def _run(command: Sequence[str], env: Mapping[str, str]) -> int:
    try:
        proc = subprocess.Popen(list(command), env=dict(env))
    except FileNotFoundError as err:
        raise UsageError(f"command not found: {command[0]}", hint="check the command after --") from err
    except PermissionError as err:
        raise UsageError(f"cannot execute {command[0]}: permission denied") from err
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:  # Ctrl-C reached the command too: wait for it to end, then report
            continue
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def _env_secrets(env: Mapping[str, str]) -> frozenset[str]:
    return frozenset(v for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if (v := env.get(k, "").strip()))


def redact(command: Sequence[str], secrets: frozenset[str]) -> list[str]:
    """The command line with every known credential (and anything shaped like a Hub token) replaced.

    >>> redact(["curl", "-H", "Authorization: Bearer hf_abcdefghijklmnopqrstu", "URL"], frozenset())
    ['curl', '-H', 'Authorization: Bearer <redacted>', 'URL']
    """
    out = []
    for arg in command:
        arg = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # undecodable argv bytes
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= 8:
                arg = arg.replace(secret, REDACTED)
        out.append(_TOKEN_RE.sub(REDACTED, arg))
    return out


# -- what was fetched -------------------------------------------------------------------------------------------


def summarise(seen: Sequence[Observation]) -> tuple[list[TracedRepo], list[str]]:
    """Group the requests by repo and commit: the files asked for (any answer but an error) and the names
    (branches, tags) the app used for that commit. One :class:`TracedRepo` per name; a commit asked for only
    by its id keeps the id as its revision."""
    notes: list[str] = []
    files: dict[tuple[str, str, str], dict[str, int | None]] = {}
    names: dict[tuple[str, str, str], set[str]] = {}
    name_commit: dict[tuple[str, str, str], str] = {}
    unattributed: set[str] = set()
    unsafe: set[str] = set()
    for o in seen:
        if o.status >= 400 or o.status < 200:
            continue
        try:  # names come from the app's URLs: keep only what a recipe (and a cache) can hold
            check_repo_id(o.repo_id)
            if o.path is not None:
                check_relpath(o.path)
        except UnsafePathError:
            unsafe.add(f"{o.repo_id}/{o.path}")
            continue
        if o.commit is None:
            if o.path is not None:
                unattributed.add(f"{o.repo_id}/{o.path}")
            continue
        key = (o.repo_type, o.repo_id, o.commit)
        if not _COMMIT_RE.match(o.revision):
            names.setdefault(key, set()).add(o.revision)
            before = name_commit.setdefault((o.repo_type, o.repo_id, o.revision), o.commit)
            if before != o.commit:
                raise TraceError(
                    f"{o.repo_id}: {o.revision} moved from {before[:12]} to {o.commit[:12]} during the run",
                    hint="the repo was updated while the app ran: run the trace again",
                )
        if o.path is not None:
            known = files.setdefault(key, {})
            if known.get(o.path) is None:
                known[o.path] = o.size
    if unattributed:
        notes.append(
            f"{len(unattributed)} file(s) came without a commit id (X-Repo-Commit) and are left out: "
            + ", ".join(sorted(unattributed)[:3])
        )
    if unsafe:
        notes.append(f"{len(unsafe)} request(s) named unsafe repo ids or paths and are left out: {sorted(unsafe)[0]!r}")
    repos: list[TracedRepo] = []
    for key in sorted(files):
        repo_type, repo_id, commit = key
        paths = tuple(sorted(files[key]))
        size = sum(s for s in files[key].values() if s is not None)
        for revision in sorted(names.get(key, set())) or [commit]:
            repos.append(TracedRepo(repo_type, repo_id, revision, commit, paths, size))
    return repos, notes


# -- the recipe -------------------------------------------------------------------------------------------------


def _read_existing(path: Path) -> dict[str, Any] | None:
    """The recipe to append to, as raw TOML (validated), or None when the file does not exist yet."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}", hint="check the path given with -o") from e
    loads_recipe(text, source=str(path))  # every key checked
    data = tomllib.loads(text)
    for i, repo in enumerate(data.get("repos", [])):
        if "files" not in repo:
            raise RecipeError(
                f"{path}: [[repos]] #{i + 1} ({repo.get('name')!r}) has no files list: --append merges traced "
                "recipes only",
                hint="trace into a new file (-o other.toml), or add the repos of this recipe to the traced one by hand",
            )
    return data


def _next_run_name(existing: Sequence[str]) -> str:
    n = len(existing) + 1
    while f"run-{n}" in existing:
        n += 1
    return f"run-{n}"


def _stem_name(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.name.removesuffix(".toml")).strip("-.")
    return stem[:64] if stem and _NAME_RE.match(stem[:64]) else "traced"


def _role_of(paths: Sequence[str]) -> str | None:
    """A role the runner needs, where the file names tell it for sure: pipelines (``model_index.json``)."""
    if "model_index.json" not in paths:
        return None
    torch = any(p.endswith((".safetensors", ".bin")) and not p.endswith("openvino_model.bin") for p in paths)
    if any(p.endswith("openvino_model.xml") for p in paths) and not torch:
        return "openvino-pipeline"
    return "diffusers-pipeline"


def merge(
    existing: Mapping[str, Any] | None, output: Path, run: Mapping[str, Any], repos: Sequence[TracedRepo]
) -> dict[str, Any]:
    """The raw recipe (TOML data) with this run merged in. A run of the same name is replaced (re-tracing a
    mode); a repo whose branch now resolves to another commit than the recipe pins is a :class:`TraceError`."""
    data: dict[str, Any] = dict(existing or {})
    data.setdefault(
        "recipe",
        {
            "name": _stem_name(output),
            "version": "1",
            "description": "Traced by hfbundle trace: the files an app fetched, mode by mode",
        },
    )
    runs = [dict(r) for r in data.get("runs", []) if r.get("name") != run["name"]]
    runs.append(dict(run))
    data["runs"] = runs
    entries = [dict(r) for r in data.get("repos", [])]
    for entry in entries:  # re-tracing a mode: forget what it needed before
        kept = []
        for f in entry["files"]:
            if isinstance(f, str):
                item: dict[str, Any] = {"path": f, "runs": []}
            else:
                item = {"path": f["path"], "runs": list(f.get("runs", []))}
            item["runs"] = [r for r in item["runs"] if r != run["name"]]
            if item["runs"] or isinstance(f, str):
                kept.append(item)
        entry["files"] = kept
    by_key = {(e.get("repo_type", "model"), e["repo"], e.get("revision", "main")): e for e in entries}
    taken = {e["name"] for e in entries}
    for r in repos:
        key = (r.repo_type, r.repo_id, r.revision)
        found = by_key.get(key)
        if found is not None:
            entry = found
        else:
            entry = {"name": _unique_name(r, taken), "repo": r.repo_id}
            if r.repo_type != "model":
                entry["repo_type"] = r.repo_type
            entry["revision"] = r.revision
            entry["commit"] = r.commit
            entry["files"] = []
            taken.add(entry["name"])
            by_key[key] = entry
            entries.append(entry)
        pinned = entry.get("commit") or (entry["revision"] if _COMMIT_RE.match(entry["revision"]) else None)
        if pinned is not None and pinned != r.commit and entry["files"]:
            raise TraceError(
                f"{r.repo_id}@{r.revision} resolved to {r.commit[:12]} in run {run['name']!r}, but the recipe pins "
                f"{pinned[:12]} (from its other runs)",
                hint="the repo moved between runs: trace every mode again into a new recipe, or pin the app to "
                "one commit (revision=...)",
            )
        entry["commit"] = r.commit
        by_path = {f["path"]: f for f in entry["files"]}
        for path in r.files:
            item = by_path.setdefault(path, {"path": path, "runs": []})
            if run["name"] not in item["runs"]:
                item["runs"].append(run["name"])
        entry["files"] = [by_path[p] for p in sorted(by_path)]
    for entry in entries:
        role = _role_of([f["path"] for f in entry["files"]])
        if role is not None and entry.get("role", "auto") == "auto":
            entry["role"] = role
    data["repos"] = [e for e in entries if e["files"]]
    if not data["repos"]:
        raise TraceError("the recipe would list no file", hint="the traced runs fetched nothing")
    return data


def _unique_name(repo: TracedRepo, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", repo.repo_id.split("/")[-1]).strip("-.")[:48] or "repo"
    if not _NAME_RE.match(base):
        base = "repo-" + base
    candidates = [base]
    if not _COMMIT_RE.match(repo.revision):
        candidates.append(re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{base}-{repo.revision}")[:64])
    candidates.append(re.sub(r"[^A-Za-z0-9_.-]+", "-", repo.repo_id)[:64])
    for c in candidates:
        if c not in taken and _NAME_RE.match(c):
            return c
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


# -- TOML -------------------------------------------------------------------------------------------------------

_REPO_ORDER = ("name", "repo", "repo_type", "role", "revision", "commit")


def render_recipe(data: Mapping[str, Any]) -> str:
    """The recipe as TOML: ``[recipe]``, the ``[[runs]]``, the ``[[repos]]`` (one file per line), ``[runner]``."""
    lines = [
        "# Written by `hfbundle trace`: every repo pinned to the commit the app got, and exactly the files it",
        "# asked for, each with the runs (modes) that needed it. `hfbundle trace --append` merges more runs.",
        "[recipe]",
    ]
    lines += [f"{k} = {_toml(v)}" for k, v in data["recipe"].items()]
    for run in data.get("runs", []):
        lines += ["", "[[runs]]"] + [f"{k} = {_toml(v)}" for k, v in run.items()]
    for repo in data["repos"]:
        lines += ["", "[[repos]]"]
        keys = [k for k in _REPO_ORDER if k in repo] + sorted(k for k in repo if k not in _REPO_ORDER and k != "files")
        lines += [f"{k} = {_toml(repo[k])}" for k in keys]
        lines.append("files = [")
        for f in repo["files"]:
            lines.append(f"  {{ path = {_toml(f['path'])}, runs = {_toml(list(f['runs']))} }},")
        lines.append("]")
    if data.get("runner"):
        lines += ["", "[runner]"] + [f"{k} = {_toml(v)}" for k, v in data["runner"].items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_str(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_str(text: str) -> str:
    """A TOML basic string: JSON's escapes for quotes, backslashes and control characters, UTF-8 kept."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(json.dumps(c)[1:-1] if c in "\b\t\n\f\r" else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'
