"""Doctor: will a recipe load offline from this cache? If not, exactly what is missing and how to get it.

Fully offline, and light (no torch, no huggingface_hub import). For every repo of the recipe it replays what
the loaders do with the network off:

1. the commit: ``refs/<revision>`` read byte for byte (huggingface_hub does not strip it: a trailing newline
   makes ``hf_hub_download`` and ``snapshot_download`` fail offline), then ``snapshots/<commit>/``;
2. the files the loader reads: the lock entry of the bundle that installed that commit
   (:mod:`bundler.cache.records`) when it is for this recipe, else the recipe's rules (:mod:`bundler.rules`)
   replayed on the best listing at hand: the record's upstream list, ``trees/<commit>.json`` (the upstream
   listing when ``snapshot_download`` wrote it) or the snapshot's own files; the small JSON configs a rule
   reads come from the snapshot;
3. which of them are present, missing, corrupt (re-hashed against the blob's name: sha256 for 64-hex, the git
   blob id for 40-hex; against the lock or listing in the copy layout), and which snapshot files are extra;
4. the traps of caches filled by other tools: a ``trees/<commit>.json`` listing files the snapshot lacks
   (``IncompleteSnapshotError`` since huggingface_hub 1.22), a ref with whitespace, a ref whose snapshot lacks
   the weights while another snapshot has them.

Each problem names the part of the mode that needs it ("TAESD swap needs madebyollin/taesd: not installed")
and its fix; the report ends with the commands that fix everything::

    >>> report = doctor("tiny-demo", Path("~/.cache/huggingface/hub").expanduser())  # doctest: +SKIP
    >>> report.ok, report.fixes  # doctest: +SKIP
    (False, ('on a machine with the Hub: hfbundle build tiny-demo -o tiny-demo.tar.zst',
             'then here: hfbundle install tiny-demo.tar.zst'))

Longer than ~500 lines: the expected file set has five sources (lock, record, trees, snapshot, explicit files)
and every problem carries its own fix; the cache reading is :mod:`bundler.cache.model` and
:mod:`bundler.cache.names`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from . import rules
from .cache.layout import RepoLayout, default_cache_dir
from .cache.leftovers import AbandonedRepo, remove_abandoned
from .cache.listings import MovedListing, settle_cache
from .cache.model import iter_entries, read_tree, snapshot_commits
from .cache.names import blob_link_name, is_commit, is_temp, read_ref
from .cache.records import InstalledRecord, read_record
from .errors import CacheError, ResolveError, UnsafePathError
from .hashing import Digests, InodeHasher, is_sha256
from .oscompat import extended_path
from .paths import check_relpath
from .recipe import AUTO, PIPELINE_ROLES, Recipe, RepoSpec, load_spec
from .records import JsonRecord
from .repofile import RepoFile
from .verify import ERROR, INFO, WARNING, Severity

__all__ = [
    "ERROR",
    "INFO",
    "WARNING",
    "DoctorReport",
    "Problem",
    "ProblemKind",
    "RepoDiagnosis",
    "RunStatus",
    "Severity",
    "Source",
    "doctor",
]

# What a problem is about.
ProblemKind = Literal[
    "bad_ref",
    "corrupt",
    "incomplete_tree",
    "mismatch",
    "missing",
    "no_ref",
    "no_snapshot",
    "not_installed",
    "partial_tree",
    "pin",
    "record",
]
# Where the expected file set came from, best first.
Source = Literal["lock", "record", "trees", "snapshot", "files", "none"]
SOURCE_LOCK: Final = "lock"  # the install record's lock entry, for this recipe
SOURCE_RECORD: Final = "record"  # the recipe's rules on the upstream list an install record keeps
SOURCE_TREES: Final = "trees"  # the recipe's rules on trees/<commit>.json
SOURCE_SNAPSHOT: Final = "snapshot"  # the recipe's rules on the snapshot's own files (absent files are guessed)
SOURCE_FILES: Final = "files"  # the recipe's explicit files list (a traced recipe)
SOURCE_NONE: Final = "none"

MAX_JSON_BYTES = 16 * 1024 * 1024
_SAMPLE = 3


@dataclass(frozen=True)
class Problem(JsonRecord, skip_none=("fix", "repo", "name", "commit"), skip_empty=("paths",)):
    """One finding. ``fix`` is an action or a shell command; ``needs_bundle`` means only new content fixes it."""

    kind: ProblemKind
    severity: Severity
    message: str
    fix: str | None = None
    repo: str | None = None
    name: str | None = None  # the recipe's name for the repo
    commit: str | None = None
    paths: tuple[str, ...] = ()
    needs_bundle: bool = False


@dataclass(frozen=True)
class RepoDiagnosis(JsonRecord, skip_empty=("needed_by",)):
    """One repo of the recipe: which commit loads, which files it needs, and what is wrong with them."""

    name: str
    repo_type: str
    repo_id: str
    revision: str
    purpose: str  # "the pipeline", "TAESD swap", "LCM-LoRA"…
    optional: bool
    role: str | None = None  # the role the files were picked with (detected when the recipe says auto)
    commit: str | None = None
    source: Source = SOURCE_NONE
    bundle_id: str | None = None
    expected: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    corrupt: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()  # present, but no hash known to check them against
    extra: tuple[str, ...] = ()  # in the snapshot, not needed (info)
    needed_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # path -> traced runs that read it
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def json_extra(self) -> dict[str, Any]:
        return {"ok": self.ok}


@dataclass(frozen=True)
class RunStatus(JsonRecord):
    """One traced run (mode) of a recipe: how many files it read, and which of them cannot load offline."""

    name: str
    files: int
    unusable: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.unusable

    def json_extra(self) -> dict[str, Any]:
        return {"ok": self.ok}


def _unusable(r: RepoDiagnosis) -> set[str]:
    """Files of ``r`` a loader cannot read: missing or corrupt, or all of them when the repo does not load."""
    if r.commit is None or any(p.severity == ERROR and p.kind in ("no_ref", "bad_ref") for p in r.problems):
        return set(r.needed_by) if r.problems else set()
    return set(r.missing) | set(r.corrupt)


@dataclass(frozen=True)
class DoctorReport(JsonRecord, rounding={"elapsed": 3}, skip=("run_names",)):
    """Whether ``recipe`` loads offline from ``cache_dir``; every problem with its fix; the commands that fix all."""

    spec: str
    recipe: str
    cache_dir: str
    repos: tuple[RepoDiagnosis, ...]
    fixes: tuple[str, ...] = ()
    rehash: bool = True
    bytes_hashed: int = 0
    elapsed: float = 0.0
    fixed: tuple[MovedListing, ...] = ()  # what --fix did before diagnosing
    removed: tuple[AbandonedRepo, ...] = ()
    run_names: tuple[str, ...] = ()  # the traced runs (modes) of the recipe, in its order

    def runs(self) -> list[RunStatus]:
        """Per traced run: does it load offline, and which of the files it read are missing or corrupt."""
        out = []
        for run in self.run_names:
            needed = [(r, p) for r in self.repos for p, runs in r.needed_by.items() if run in runs]
            bad = [f"{r.repo_id}/{p}" for r, p in needed if p in _unusable(r)]
            out.append(RunStatus(run, len(needed), tuple(bad)))
        return out

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(p for r in self.repos for p in r.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == ERROR)

    @property
    def ok(self) -> bool:
        """True only when every repo the mode needs loads offline as the cache stands."""
        return not self.errors

    def summary(self) -> str:
        """One line: ready, or the first error (and how many more)."""
        if self.ok:
            return f"{self.recipe} loads offline from {self.cache_dir}"
        first, more = self.errors[0].message, len(self.errors) - 1
        return f"{self.recipe} will not load offline from {self.cache_dir}: {first}" + (
            f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        )

    def json_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"ok": self.ok, "summary": self.summary()}
        if self.run_names:
            extra["runs"] = [r.to_json() for r in self.runs()]
        return extra

    def render(self) -> list[str]:
        """Human lines (the CLI prints them)."""
        lines = [f"doctor: {self.recipe} in {self.cache_dir}"]
        lines += [f"fixed: {m.describe()}" for m in self.fixed]
        lines += [f"fixed: {a.describe()}" for a in self.removed]
        width = max((len(r.purpose) for r in self.repos), default=0)
        for r in self.repos:
            where = f"{r.repo_id}@{r.revision}" + (f" → {r.commit[:12]}" if r.commit and r.commit != r.revision else "")
            if r.ok:
                state = f"ok, {len(r.present)} file(s) {_source_text(r)}"
            else:
                kinds = sorted({_KIND_TEXT.get(p.kind, p.kind) for p in r.problems if p.severity == ERROR})
                state = "NOT READY: " + ", ".join(kinds)
            lines.append(f"  {r.purpose:<{width}}  {where}  {state}")
        for r in self.repos:
            for p in r.problems:
                lines.append(f"{p.severity}: {p.message}")
                if p.fix:
                    lines.append(f"  fix: {p.fix}")
            if r.extra:
                sample = ", ".join(r.extra[:_SAMPLE]) + (", …" if len(r.extra) > _SAMPLE else "")
                lines.append(f"info: {r.repo_id}: {len(r.extra)} file(s) in the snapshot are not needed ({sample})")
            if r.unverified and self.rehash:
                lines.append(
                    f"info: {r.repo_id}: {len(r.unverified)} file(s) could not be re-hashed: no hash is known for "
                    "them (real files without a trees listing or install record)"
                )
        for run in self.runs():
            bad = f"{len(run.unusable)} missing or corrupt: {_sample(list(run.unusable))}"
            state = "ready" if run.ok else f"NOT READY, {bad}"
            lines.append(f"run {run.name!r}: {run.files} file(s) {state}")
        if self.fixes:
            lines.append("to fix:")
            lines.extend(f"  {f}" for f in self.fixes)
        if self.ok:
            lines.append(f"ok: {self.recipe} loads offline" + ("" if self.rehash else " (contents not re-hashed)"))
        else:
            n = len(self.errors)
            lines.append(f"NOT READY: {self.recipe} will not load offline ({n} problem{'s' if n > 1 else ''})")
        return lines


_KIND_TEXT = {
    "not_installed": "not installed",
    "no_ref": "no ref",
    "bad_ref": "damaged ref",
    "no_snapshot": "no snapshot",
    "missing": "files missing",
    "corrupt": "corrupt files",
    "mismatch": "foreign files",
    "incomplete_tree": "incomplete trees listing",
    "partial_tree": "partial trees listing",
}


def _source_text(r: RepoDiagnosis) -> str:
    if r.source == SOURCE_LOCK:
        return f"(as locked by bundle {r.bundle_id[:12] if r.bundle_id else '?'})"
    return {
        SOURCE_RECORD: "(recipe rules on the recorded upstream listing)",
        SOURCE_TREES: "(recipe rules on trees/ listing)",
        SOURCE_SNAPSHOT: "(recipe rules on the snapshot's files)",
        SOURCE_FILES: "(the recipe's files list)",
    }.get(r.source, "")


# -- entry point -----------------------------------------------------------------------------------------------


def doctor(spec: str | Recipe, cache_dir: Path, *, rehash: bool = True, fix: bool = False) -> DoctorReport:
    """Diagnose whether ``spec`` (a recipe name, ``.toml`` file, ``org/name[@rev]``, or a :class:`Recipe`) loads
    offline from the hub cache ``cache_dir``. Reads only the cache; ``rehash=False`` checks sizes, not hashes.
    ``fix`` first moves aside every trees listing of the cache that breaks the trees rule
    (:func:`bundler.cache.listings.settle_cache`) and removes repo folders an interrupted install left
    (:func:`bundler.cache.leftovers.remove_abandoned`): the fixes that need no new content.

    >>> doctor("tiny-demo", tmp_cache).ok  # doctest: +SKIP
    True
    """
    t0 = time.monotonic()
    recipe = load_spec(spec) if isinstance(spec, str) else spec
    spec_text = spec if isinstance(spec, str) else _spec_text(recipe)
    cache = Path(cache_dir).expanduser()
    fixed = tuple(settle_cache(cache)) if fix and cache.is_dir() else ()
    removed = tuple(remove_abandoned(cache)) if fix and cache.is_dir() else ()
    hasher = InodeHasher()
    fix_command = f"hfbundle doctor {shlex.quote(spec_text)} --fix --cache-dir {shlex.quote(str(cache))}"
    diagnoses = tuple(_RepoDoctor(recipe, r, cache, hasher, rehash, fix_command).run() for r in recipe.repos)
    return DoctorReport(
        spec=spec_text,
        recipe=recipe.name,
        cache_dir=str(cache),
        repos=diagnoses,
        fixes=_fixes(diagnoses, spec_text, recipe, cache),
        run_names=tuple(r.name for r in recipe.runs),
        rehash=rehash,
        bytes_hashed=hasher.bytes_hashed,
        elapsed=time.monotonic() - t0,
        fixed=fixed,
        removed=removed,
    )


def purpose_of(recipe: Recipe, spec: RepoSpec) -> str:
    """What the mode uses a repo for, in the words of the app: the pipeline, a TAESD swap, an LCM-LoRA."""
    runner = recipe.runner
    if spec.name == runner.pipeline:
        return "the pipeline"
    if spec.name == runner.vae:
        return "TAESD swap"  # the runner loads the vae repo as an AutoencoderTiny, as FastSDCPU's toggle does
    if spec.name == runner.lora:
        lcm = "lcm" in spec.repo.lower() or (runner.scheduler or "").startswith("LCM")
        return "LCM-LoRA" if lcm else "LoRA"
    return f"repo {spec.name!r}"


def _spec_text(recipe: Recipe) -> str:
    """The SPEC that names ``recipe`` on the command line: its name when the search path finds it by name."""
    from .recipe import available_recipes

    source = recipe.source or ""
    if source.startswith("repo:"):
        return source[len("repo:") :]
    found = available_recipes().get(recipe.name)
    if source.endswith(".toml") and (found is None or str(found) != source):
        return source
    return recipe.name


def _fixes(diagnoses: tuple[RepoDiagnosis, ...], spec_text: str, recipe: Recipe, cache: Path) -> tuple[str, ...]:
    out: list[str] = []
    problems = [p for r in diagnoses for p in r.problems if p.severity == ERROR]
    if not any(p.needs_bundle for p in problems):  # local repairs suffice
        for p in problems:
            if p.fix and p.fix not in out:
                out.append(p.fix)
    else:  # an install also rewrites damaged refs and trees listings of the recipe's repos
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", recipe.name).strip("-.") or "bundle"
        bundle = f"{stem}.tar.zst"
        install = f"hfbundle install {bundle}"
        if _resolved(cache) != _resolved(default_cache_dir()):
            install += f" --cache-dir {shlex.quote(str(cache))}"
        out.append(f"on a machine with the Hub: hfbundle build {shlex.quote(spec_text)} -o {bundle}")
        out.append(f"then here: {install}")
    return tuple(out)


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except OSError:
        return path.expanduser().absolute()


# -- one repo --------------------------------------------------------------------------------------------------


class _Absent(Exception):
    """A file a rule must read is not in the snapshot."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True)
class _Known:
    """What a file should be: from the lock (``RepoFile``) or a trees entry."""

    size: int
    etag: str  # sha256 for LFS files, git blob id otherwise
    sha256: str | None = None


# A present file of a snapshot: its path, where it is on disk, its content's size and (st_dev, st_ino), and the
# blob it links to (None: not a link to a blob).
_Looked = tuple[str, str, int, tuple[int, int], str | None]


def _verdict(
    size: int, blob: str | None, want: _Known | None, rehash: bool, digests: Digests | OSError | None
) -> tuple[Literal["ok", "corrupt", "mismatch"], str] | None:
    """("ok", "") / ("corrupt" | "mismatch", detail) for a file of ``size`` bytes linking to ``blob`` (None: not
    a link to a blob), or None when nothing is known to check it against. ``digests``: its content's, when
    ``rehash`` (an ``OSError`` when it could not be read)."""
    if want is not None and size != want.size:
        return "corrupt", f"{size} bytes, expected {want.size}"
    if blob is not None and want is not None and blob != want.etag:
        return "mismatch", f"it links to blob {blob[:12]}…, expected {want.etag[:12]}…"
    if not rehash:
        return ("ok", "") if want is not None or blob is not None else None
    if digests is None:  # not reached: a file whose verdict needs its content is hashed
        return None
    if isinstance(digests, OSError):
        return "corrupt", f"it cannot be read ({digests.strerror or digests})"
    if blob is not None:
        actual = digests.sha256 if is_sha256(blob) else digests.git_sha1
        if actual != blob:
            return "corrupt", f"blob {blob[:12]}… hashes to {actual[:12]}…"
        return "ok", ""
    if want is not None:
        actual = digests.sha256 if is_sha256(want.etag) else digests.git_sha1
        if actual != want.etag:
            return "corrupt", f"content hashes to {actual[:12]}…, expected {want.etag[:12]}…"
        return "ok", ""
    return None


class _RepoDoctor:
    def __init__(
        self, recipe: Recipe, spec: RepoSpec, cache: Path, hasher: InodeHasher, rehash: bool, fix_command: str
    ) -> None:
        self.fix_command = fix_command  # `hfbundle doctor SPEC --fix --cache-dir CACHE`
        self.recipe = recipe
        self.spec = spec
        self.cache = cache
        self.hasher = hasher
        self.rehash = rehash
        self.lay = RepoLayout(cache, spec.repo_type, spec.repo)
        self.purpose = purpose_of(recipe, spec)
        self.needs = f"{self.purpose} needs {spec.repo}"
        self.problems: list[Problem] = []
        self.fields: dict[str, Any] = {}
        if spec.files and recipe.runs:
            self.fields["needed_by"] = {f.path: f.runs for f in spec.files}

    # -- reporting --

    def problem(self, kind: ProblemKind, message: str, *, severity: Severity = ERROR, **kw: Any) -> None:
        if severity == ERROR and self.spec.optional and kind in ("not_installed", "missing"):
            severity = WARNING
            message += " (optional: the run goes without it)"
        self.problems.append(Problem(kind, severity, message, repo=self.spec.repo, name=self.spec.name, **kw))

    def diagnosis(self) -> RepoDiagnosis:
        s = self.spec
        return RepoDiagnosis(
            name=s.name,
            repo_type=s.repo_type,
            repo_id=s.repo,
            revision=s.revision,
            purpose=self.purpose,
            optional=s.optional,
            problems=tuple(self.problems),
            **self.fields,
        )

    def _needs_for(self, paths: Collection[str]) -> str:
        """ "run 'taesd' needs org/taesd" for a traced recipe (the runs that read ``paths``), else :attr:`needs`."""
        runs = sorted({r for p in paths for r in self.spec.runs_of(p)})
        if not runs:
            return self.needs
        named = ", ".join(repr(r) for r in runs)
        return f"runs {named} need {self.spec.repo}" if len(runs) > 1 else f"run {named} needs {self.spec.repo}"

    # -- the steps --

    def run(self) -> RepoDiagnosis:
        if not self.lay.folder.is_dir():
            self.problem(
                "not_installed",
                f"{self._needs_for([f.path for f in self.spec.files])}: not installed",
                needs_bundle=True,
            )
            return self.diagnosis()
        commit = self.commit()
        if commit is None:
            return self.diagnosis()
        self.fields["commit"] = commit
        if self.spec.commit is not None and commit != self.spec.commit:
            self.problem(
                "pin",
                f"{self.needs}: refs/{self.spec.revision} points at {commit[:12]}, but the recipe was traced at "
                f"{self.spec.commit[:12]}; the loaders will read {commit[:12]}",
                severity=WARNING,
                commit=commit,
            )
        self.check_snapshot(commit)
        return self.diagnosis()

    def commit(self) -> str | None:
        """The commit the loaders would open, with a problem for every way the ref could fail them."""
        s = self.spec
        snapshots = self.snapshots()
        if is_commit(s.revision):
            if s.revision not in snapshots:
                self.problem(
                    "no_snapshot",
                    f"{self.needs} at commit {s.revision[:12]}: not installed" + _others(snapshots),
                    commit=s.revision,
                    needs_bundle=True,
                )
                return None
            return s.revision
        ref_path = self.lay.ref(s.revision)
        try:
            held = read_ref(ref_path)
        except OSError as e:
            self.problem(
                "bad_ref", f"{self.needs}: refs/{s.revision} is unreadable ({e.strerror})", fix="fix its permissions"
            )
            return None
        if held is None:
            if len(snapshots) == 1:
                only = next(iter(snapshots))
                self.problem(
                    "no_ref",
                    f"{self.needs}: refs/{s.revision} is missing, so loading it by name fails offline "
                    f"(the cache holds one snapshot, {only[:12]})",
                    fix=f"printf %s {only} > {shlex.quote(str(ref_path))}",
                )
                return only
            self.problem(
                "no_ref",
                f"{self.needs}: refs/{s.revision} is missing, so loading it by name fails offline" + _others(snapshots),
                paths=(f"refs/{s.revision}",),
                needs_bundle=True,
            )
            return None
        text = held.text
        stripped = text.strip()
        if not is_commit(stripped):
            self.problem(
                "bad_ref",
                f"{self.needs}: refs/{s.revision} does not hold a commit id ({text[:60]!r})",
                needs_bundle=True,
            )
            return None
        if text != stripped:
            # huggingface_hub reads refs without stripping: hf_hub_download / snapshot_download look for
            # snapshots/<commit>\n and fail offline; scan_cache_dir skips the repo.
            self.problem(
                "bad_ref",
                f"{self.needs}: refs/{s.revision} has whitespace around the commit ({text!r}), so "
                "hf_hub_download and snapshot_download fail offline",
                commit=stripped,
                fix=f"rewrite it without the newline: printf %s {stripped} > {shlex.quote(str(ref_path))}",
            )
        if stripped not in snapshots:
            self.problem(
                "no_snapshot",
                f"{self.needs}: refs/{s.revision} points at {stripped[:12]}, which has no snapshot"
                + _others(snapshots),
                commit=stripped,
                needs_bundle=True,
            )
            return None
        return stripped

    def snapshots(self) -> set[str]:
        return snapshot_commits(self.lay.folder)

    def check_snapshot(self, commit: str) -> None:
        snap = self.lay.snapshot(commit)
        present_all = {rel for rel, _, _ in iter_entries(str(snap)) if not is_temp(rel.rsplit("/", 1)[-1])}
        tree = _read_tree(self.lay.tree(commit))
        record = self.record(commit)
        known: dict[str, _Known] = {}
        if tree is not None:
            known.update(tree)
        expected: set[str]
        if self.spec.files:  # an explicit list (a traced recipe) is exact: no rules to replay
            self.fields.update(source=SOURCE_FILES, role=self.spec.role if self.spec.role != AUTO else None)
            if record is not None:
                self.fields.update(role=record.repo.role, bundle_id=record.bundle_id)
                known.update({p: _known(f) for p, f in record.files.items()})
            expected = {f.path for f in self.spec.files}
            if self.spec.include:
                expected |= {p for p in present_all | set(known) if rules.match_patterns(p, self.spec.include)}
            if self.spec.exclude:
                expected = {p for p in expected if not rules.match_patterns(p, self.spec.exclude)}
        elif record is not None and self.record_is_ours(record):
            self.fields.update(source=SOURCE_LOCK, role=record.repo.role, bundle_id=record.bundle_id)
            expected = set(record.files)
            known.update({p: _known(f) for p, f in record.files.items()})
        else:
            if record is not None and record.repo.upstream:
                listing, source = set(record.repo.upstream), SOURCE_RECORD
                self.fields["bundle_id"] = record.bundle_id
                known.update({p: _known(f) for p, f in record.files.items()})
            elif tree is not None:
                listing, source = set(tree), SOURCE_TREES
            else:
                listing, source = present_all, SOURCE_SNAPSHOT
            self.fields["source"] = source
            picked = self.expected(snap, listing, record)
            if picked is None:
                self.fields.update(present=tuple(sorted(present_all)))
                self.check_tree(commit, tree, present_all)
                return
            expected = picked
        self.fields["expected"] = tuple(sorted(expected))
        self.check_files(commit, snap, expected, present_all, known)
        self.check_tree(commit, tree, present_all)
        if tree is not None and record is not None and record.repo.upstream and set(tree) <= present_all:
            self.check_partial_tree(commit, set(tree), set(record.repo.upstream))

    def record(self, commit: str) -> InstalledRecord | None:
        try:
            return read_record(self.cache, self.spec.repo_type, self.spec.repo, commit)
        except CacheError as e:
            self.problem("record", f"{self.spec.repo}: {e.message}; judging from the recipe instead", severity=WARNING)
            return None

    def record_is_ours(self, record: InstalledRecord) -> bool:
        """The record's lock entry is for this recipe and this repo of it (else its file set may differ)."""
        return record.recipe_name == self.recipe.name and record.repo.name in (None, self.spec.name)

    def expected(self, snap: Path, listing: set[str], record: InstalledRecord | None) -> set[str] | None:
        """The recipe's rules on ``listing``; None (with a problem) when they cannot tell."""
        s = self.spec

        def read_json(path: str) -> Any:
            return _read_snapshot_json(snap, path)

        role: str = s.role
        try:
            if role == AUTO:
                role = (
                    record.repo.role
                    if record is not None
                    else rules.detect_role(listing, read_json, subfolder=s.subfolder)
                )
            self.fields["role"] = role
            # a pipeline lacking model_index.json is a missing file here (pick_files would call the role wrong)
            if role in PIPELINE_ROLES and rules.MODEL_INDEX not in listing:
                raise _Absent(rules.MODEL_INDEX)
            picked = rules.pick_files(role, listing, read_json, s, trust_weight_name=True)
            if role == "diffusers-pipeline":
                picked |= _pipeline_gaps(read_json(rules.MODEL_INDEX), listing, s.variant)
        except _Absent as e:
            self.fields["missing"] = (e.path,)
            self.problem(
                "missing",
                f"{self.needs} ({e.path}): missing, so its other files cannot be told either",
                paths=(e.path,),
                needs_bundle=True,
            )
            return None
        except ResolveError as e:
            wanted = _guess_missing(s, role, listing)
            self.fields["missing"] = wanted
            self.problem(
                "missing",
                f"{self.needs} ({', '.join(wanted)}): missing ({e.message})"
                if wanted
                else f"{self.needs}: {e.message}",
                paths=wanted,
                needs_bundle=True,
            )
            return None
        return picked

    def check_files(
        self, commit: str, snap: Path, expected: set[str], present_all: set[str], known: Mapping[str, _Known]
    ) -> None:
        present: list[str] = []
        missing: list[str] = []
        dangling: list[str] = []
        corrupt: list[tuple[str, ProblemKind, str]] = []  # path, kind, detail
        unverified: list[str] = []
        # One lstat (and a readlink and a stat for a link) per file on plain strings, then the contents hashed
        # in batches on all cores, each inode once (issue 18: a Path and five stats per file, hashed one by one).
        blobs = os.path.normcase(os.path.normpath(self.lay.blobs))
        base = os.path.join(snap, "")
        looked: list[_Looked] = []
        for path in sorted(expected):
            full = base + path
            try:
                st = os.lstat(full)
            except (OSError, ValueError):
                missing.append(path)
                continue
            blob: str | None = None
            if stat.S_ISLNK(st.st_mode):
                blob = blob_link_name(full, blobs)
                try:
                    st = os.stat(full)
                except (OSError, ValueError):
                    dangling.append(path)
                    continue
            if not stat.S_ISREG(st.st_mode):
                dangling.append(path)
                continue
            present.append(path)
            looked.append((path, full, st.st_size, (st.st_dev, st.st_ino), blob))
        digests = self.digests(looked, known)
        for path, _full, size, key, blob in looked:
            verdict = _verdict(size, blob, known.get(path), self.rehash, digests.get(key))
            if verdict is None:
                unverified.append(path)
            elif verdict[0] != "ok":
                corrupt.append((path, verdict[0], verdict[1]))
        self.fields.update(
            present=tuple(present),
            missing=tuple(missing + dangling),
            corrupt=tuple(p for p, _, _ in corrupt),
            unverified=tuple(unverified),
            extra=tuple(sorted(present_all - expected)),
        )
        if missing or dangling:
            both = missing + dangling
            detail = f"{len(both)} of {len(expected)} file(s) missing" if len(both) > _SAMPLE else "missing"
            msg = f"{self._needs_for(both)} ({_sample(both)}): {detail}"
            if not is_commit(self.spec.revision) and len(self.snapshots()) > 1:
                msg += f" from snapshot {commit[:12]}, the one refs/{self.spec.revision} points at"
            if dangling:
                msg += f"; {len(dangling)} snapshot link(s) point at blobs that are gone"
            self.problem(
                "missing", msg, commit=commit, paths=tuple(both), fix=self.elsewhere(commit, both), needs_bundle=True
            )
        for path, kind, detail in corrupt:
            self.problem(
                kind,
                f"{self.purpose}: {self.spec.repo} {path} is corrupt: {detail}"
                if kind == "corrupt"
                else f"{self.purpose}: {self.spec.repo} {path} is not the file the bundle installed: {detail}",
                commit=commit,
                paths=(path,),
                fix="re-install the bundle that carries it (`hfbundle install` re-hashes what the cache holds and "
                "replaces corrupt blobs), or build one (commands below)",
                needs_bundle=True,
            )

    def digests(self, looked: list[_Looked], known: Mapping[str, _Known]) -> dict[tuple[int, int], Digests | OSError]:
        """The digests of every inode among ``looked`` that a verdict needs (its size and link agree with what is
        known), each read once in the run (:meth:`InodeHasher.digest_inodes`)."""
        if not self.rehash:
            return {}
        todo: dict[tuple[int, int], tuple[str, int]] = {}  # inode -> a path to it, in path order
        for path, full, size, key, blob in looked:
            want = known.get(path)
            if want is None or (size == want.size and blob in (None, want.etag)):  # else judged without content
                todo.setdefault(key, (extended_path(full), size))
        return self.hasher.digest_inodes(todo, git=True)

    def elsewhere(self, commit: str, paths: list[str]) -> str | None:
        """A ref moved to a snapshot without the files while another snapshot has them: point it back."""
        if is_commit(self.spec.revision):
            return None
        for other in sorted(self.snapshots() - {commit}):
            if all((self.lay.snapshot(other) / p).is_file() for p in paths):
                ref = shlex.quote(str(self.lay.ref(self.spec.revision)))
                return (
                    f"snapshot {other[:12]} has them: point refs/{self.spec.revision} back at it with "
                    f"`printf %s {other} > {ref}`, or install a bundle of the recipe (commands below)"
                )
        return None

    def check_partial_tree(self, commit: str, tree: set[str], upstream: set[str]) -> None:
        """The online trap: a listing that is not the commit's complete one (what an older hfbundle wrote)."""
        if tree == upstream:
            return
        self.problem(
            "partial_tree",
            f"{self.purpose}: {self.spec.repo} trees/{commit}.json lists {len(tree)} of the commit's "
            f"{len(upstream)} files: offline it loads, but online huggingface_hub and diffusers trust it and fetch "
            "only what it names (a variant or file the bundle left out is reported as not existing)",
            severity=WARNING,
            commit=commit,
            fix=f"{self.fix_command}  (moves the partial listing aside; offline loading does not need it)",
        )

    def check_tree(self, commit: str, tree: Mapping[str, Any] | None, present_all: set[str]) -> None:
        if tree is None:
            return
        lacking = sorted(p for p in tree if p not in present_all)
        if not lacking:
            return
        path = self.lay.tree(commit)
        self.problem(
            "incomplete_tree",
            f"{self.purpose}: {self.spec.repo} trees/{commit}.json lists {len(lacking)} file(s) the snapshot lacks "
            f"({_sample(lacking)}): a partial download; offline, snapshot_download (huggingface_hub >= 1.22) "
            "raises IncompleteSnapshotError, and so does every FastSDCPU mode (diffusers 0.37)",
            commit=commit,
            paths=tuple(lacking),
            fix=f"{self.fix_command}  (moves {shlex.quote(str(path))} aside: without the listing huggingface_hub "
            "trusts the snapshot offline and lists the Hub online)",
        )


# -- rules on a listing ----------------------------------------------------------------------------------------


def _pipeline_gaps(model_index: Any, listing: Collection[str], variant: str | None) -> set[str]:
    """Weights the listing lacks for a pipeline component that needs them (a component folder with a model
    ``config.json`` and no weight file, or no folder at all). The rules cannot see these: they pick from what
    is listed, and a snapshot's own listing simply lacks what was never downloaded."""
    if not isinstance(model_index, Mapping):
        return set()
    gaps: set[str] = set()
    for comp, value in model_index.items():
        if comp.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[0] is None:
            continue
        inside = [f for f in listing if f.startswith(comp + "/")]
        if not inside:
            gaps.add(f"{comp}/{rules.CONFIG_NAME}")
        elif f"{comp}/{rules.CONFIG_NAME}" in inside and not rules.filter_model_files(inside):
            name = (
                rules.TRANSFORMERS_SAFE_WEIGHTS_NAME if value[0] == "transformers" else rules.SAFETENSORS_WEIGHTS_NAME
            )
            gaps.add(f"{comp}/{rules.add_variant(name, variant)}")
    return gaps


def _guess_missing(spec: RepoSpec, role: str, listing: Collection[str]) -> tuple[str, ...]:
    """When the rules find nothing to load, the files a model loader looks for first: its config, then the
    weights it tries first (a listing that lacks them is the snapshot's own, missing what was never fetched)."""
    prefix = f"{spec.subfolder.strip('/')}/" if spec.subfolder else ""
    variant = spec.variant
    if role == "diffusers-model":
        config, name = (
            rules.CONFIG_NAME,
            rules.WEIGHTS_NAME if spec.weights == "bin" else rules.SAFETENSORS_WEIGHTS_NAME,
        )
    elif role == "transformers-model":
        config = rules.CONFIG_NAME
        name = rules.TRANSFORMERS_WEIGHTS_NAME if spec.weights == "bin" else rules.TRANSFORMERS_SAFE_WEIGHTS_NAME
    elif role == "lora":
        config, variant = None, None
        name = rules.LORA_WEIGHT_NAME if spec.weights == "bin" else rules.LORA_WEIGHT_NAME_SAFE
    else:
        return ()
    out = [prefix + config] if config and prefix + config not in listing else []
    here = [f for f in listing if f.startswith(prefix) and "/" not in f[len(prefix) :]]
    if not rules.filter_model_files(here) or variant is not None:
        out.append(prefix + rules.add_variant(name, variant))
    return tuple(out)


# -- helpers ---------------------------------------------------------------------------------------------------


def _known(f: RepoFile) -> _Known:
    return _Known(size=f.size, etag=f.etag, sha256=f.content_sha256)


def _read_snapshot_json(snap: Path, path: str) -> Any:
    try:
        full = snap / check_relpath(path)
    except UnsafePathError:
        raise _Absent(path) from None
    try:
        with open(full, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError:
        raise _Absent(path) from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ResolveError(f"{path} in the snapshot is not valid JSON", hint="the file is damaged") from err


def _read_tree(path: Path) -> dict[str, _Known] | None:
    """``trees/<commit>.json`` as huggingface_hub reads it (format 1); None when absent or invalid (it then
    ignores the file too). Only what the doctor needs: each path's size and etag."""
    try:
        read = read_tree(path)
    except OSError:
        return None
    if read is None or read.entries is None:
        return None
    return {name: _Known(size=e.size, etag=e.etag) for name, e in read.entries.items()}


def _sample(paths: list[str]) -> str:
    return ", ".join(paths[:_SAMPLE]) + (f", … ({len(paths) - _SAMPLE} more)" if len(paths) > _SAMPLE else "")


def _others(snapshots: set[str]) -> str:
    if not snapshots:
        return ""
    return f" (snapshots present: {', '.join(sorted(c[:12] for c in snapshots))})"
