"""The public Python API: one function per command, each returning a report object.

The CLI is a thin layer over these; other tools (an app's own setup step, a notebook) call them directly::

    from bundler import api
    report = api.install("demo.tar.zst", cache_dir="/models/hub")
    report.to_json()  # a dict; report.render() gives the CLI's lines
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import UsageError
from .hfcache import default_cache_dir

if TYPE_CHECKING:
    from .build import BuildReport
    from .lock import Lock
    from .recipe import Recipe


@dataclass(frozen=True)
class RecipeList:
    recipes: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {"recipes": list(self.recipes)}


def _cache(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def list_recipes() -> RecipeList:
    """The shipped recipes (name and description)."""
    from .recipe import available_recipes, load_spec

    out = []
    for name in available_recipes():
        r = load_spec(name)
        out.append({"name": name, "description": r.description})
    return RecipeList(tuple(out))


def load_recipes(
    specs: Sequence[str], *, variant: str | None = None, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[Recipe]:
    from .recipe import load_spec

    if not specs:
        raise UsageError("no SPEC given", hint="name a recipe (`hfbundle resolve --list`), a .toml file or org/name")
    return [load_spec(s, variant=variant, include=tuple(include), exclude=tuple(exclude)) for s in specs]


def resolve(
    *specs: str,
    variant: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> Lock:
    """Resolve SPECs (recipe names, recipe files, ``org/name[@rev]``) into one lock. Needs the Hub."""
    from .lock import Lock
    from .resolve import resolve as resolve_recipe

    recipes = load_recipes(specs, variant=variant, include=include, exclude=exclude)
    locks = [resolve_recipe(r, endpoint=endpoint, token=token) for r in recipes]
    if len(locks) == 1:
        return locks[0]
    return Lock(
        repos=tuple(repo for lk in locks for repo in lk.repos),
        recipe="+".join(lk.recipe or "?" for lk in locks),
        extra=locks[0].extra,
    )


def build(
    *specs: str,
    output: str | Path | BinaryIO,
    lock: Lock | str | Path | None = None,
    variant: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    level: int | None = None,
    threads: int = 0,
    split_size: int | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_files: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Resolve (or read ``lock``), fetch, verify and pack a bundle at ``output`` (``"-"``: stdout)."""
    import sys

    from .build import build as build_bundle
    from .lock import Lock

    if isinstance(lock, (str, Path)):
        try:
            text = Path(lock).read_text()
        except OSError as e:
            raise UsageError(f"cannot read lock {lock}: {e.strerror}") from None
        lock = Lock.loads(text)
    if lock is None:
        lock = resolve(*specs, variant=variant, include=include, exclude=exclude, endpoint=endpoint, token=token)
    recipe = dict(lock.extra) if lock.extra else None
    target: str | Path | BinaryIO = sys.stdout.buffer if output == "-" else output
    return build_bundle(
        lock,
        target,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        token=token,
        endpoint=endpoint,
        recipe=recipe,
        level=level,
        threads=threads,
        split_size=split_size,
        on_progress=on_progress,
        on_files=on_files,
    )


def inspect(bundle: str | Path) -> Any:
    """Manifest summary of a bundle, read without unpacking blobs."""
    from .archive import inspect_bundle

    return inspect_bundle(Path(bundle))


def _open_source(bundle: str | Path | BinaryIO) -> Any:
    import sys

    from .archive import open_bundle

    if bundle == "-":
        return open_bundle(sys.stdin.buffer)
    if isinstance(bundle, (str, Path)):
        path = Path(bundle)
        if not path.exists() and not path.with_name(path.name + ".001").exists():
            raise UsageError(
                f"no such bundle: {path}", hint="give the bundle file (or its first volume), or - for stdin"
            )
        return open_bundle(path)
    return open_bundle(bundle)


def install(
    bundle: str | Path | BinaryIO,
    *,
    cache_dir: str | Path | None = None,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    dry_run: bool = False,
    on_progress: Callable[[Any], None] | None = None,
) -> Any:
    """Install a bundle into a cache (default: huggingface_hub's). ``dry_run`` returns the plan;
    ``on_progress`` receives :class:`bundler.installplan.Progress` records (bytes and files)."""
    from .install import install as install_source
    from .install import plan_install

    cache = _cache(cache_dir)
    source = _open_source(bundle)
    try:
        if dry_run:
            return plan_install(source.manifest, cache, copy=copy, keep_refs=keep_refs, trust_existing=trust_existing)
        return install_source(
            source, cache, copy=copy, keep_refs=keep_refs, trust_existing=trust_existing, on_progress=on_progress
        )
    finally:
        source.close()


def verify(*targets: str, cache_dir: str | Path | None = None) -> Any:
    """Verify a cache offline; with a bundle path as first target, check that bundle's install."""
    from .verify import verify_cache, verify_installed

    cache = _cache(cache_dir)
    if targets and Path(targets[0]).is_file():
        if len(targets) > 1:
            raise UsageError("give one bundle, or repo ids, not both")
        source = _open_source(targets[0])
        try:
            return verify_installed(source.manifest, cache)
        finally:
            source.close()
    return verify_cache(cache, list(targets) or None)


def backup(
    *patterns: str,
    cache_dir: str | Path | None = None,
    output: str | Path | BinaryIO | None = None,
    repo_type: str | None = None,
    revision: str | None = None,
    base: str | Path | None = None,
    skip_corrupt: bool = False,
    dry_run: bool = False,
    level: int | None = None,
    threads: int = 0,
    split_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_files: Callable[[int, int], None] | None = None,
) -> Any:
    """Pack what a cache holds (all repos, or those matching ``patterns``) into a backup bundle, offline.

    ``dry_run`` returns the plan; ``base`` makes an incremental backup over a previous one.
    """
    from .backup import backup as run_backup
    from .backup import plan_backup

    plan = plan_backup(_cache(cache_dir), patterns, repo_type=repo_type, revision=revision, base=base)
    if dry_run:
        return plan
    if output is None:
        raise UsageError("no output given for the backup", hint="pass -o FILE (or - for stdout)")
    return run_backup(
        plan,
        output,
        skip_corrupt=skip_corrupt,
        level=level,
        threads=threads,
        split_size=split_size,
        on_progress=on_progress,
        on_files=on_files,
    )


def restore(
    *bundles: str | Path,
    cache_dir: str | Path | None = None,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    dry_run: bool = False,
    on_progress: Callable[[Any], None] | None = None,
) -> Any:
    """Restore a backup chain (full + increments, any order) into a cache through the installer."""
    from .restore import plan_restore
    from .restore import restore as run_restore

    if not bundles:
        raise UsageError("no backup given", hint="pass the full backup and any increments")
    cache = _cache(cache_dir)
    if dry_run:
        return plan_restore(list(bundles), cache, copy=copy, keep_refs=keep_refs, trust_existing=trust_existing)
    return run_restore(
        list(bundles),
        cache,
        copy=copy,
        keep_refs=keep_refs,
        trust_existing=trust_existing,
        on_progress=on_progress,
    )


def doctor(spec: str, *, cache_dir: str | Path | None = None, rehash: bool = True) -> Any:
    """Will ``spec`` load offline from this cache? Fully offline; ``report.ok`` and the fixes to run."""
    from .doctor import doctor as diagnose

    return diagnose(spec, _cache(cache_dir), rehash=rehash)


def run(spec: str, **kwargs: Any) -> Any:
    """Generate an image offline from an installed recipe (needs ``pip install hfbundle[runner]``)."""
    from .runner import run as run_recipe

    return run_recipe(spec, **kwargs)
