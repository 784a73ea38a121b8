"""The public Python API: one function per command, each returning a report object.

The CLI is a thin layer over these; other tools (an app's own setup step, a notebook) call them directly::

    from bundler import api
    report = api.install("demo.tar.zst", cache_dir="/models/hub")
    report.to_json()  # a dict; report.render() gives the CLI's lines

Longer than ~500 lines: one public function per command with its docstring and, for dry runs, its ``@overload``s:
the whole public surface in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, overload

from .cache.layout import default_cache_dir
from .errors import UsageError
from .progress import Counter, ProgressCallback
from .records import JsonRecord

if TYPE_CHECKING:  # the reports' modules import heavy libraries lazily; `hfbundle --help` stays instant
    from .backup import BackupPlan, BackupReport
    from .build import BuildReport
    from .bundle.reader import BundleInfo
    from .doctor import DoctorReport
    from .install.plan import InstallPlan, InstallReport
    from .inventory import Inventory
    from .kit import KitReport
    from .loaderenv import EnvReport
    from .lockfile import Lock
    from .oci.transfer import PullReport, PushReport
    from .recipe import Recipe
    from .restore import RestorePlan, RestoreReport
    from .runner import RunReport
    from .trace import TraceReport
    from .trust import SignReport, TrustedVerifyReport
    from .verify import VerifyReport


@dataclass(frozen=True)
class RecipeList(JsonRecord):
    recipes: tuple[dict[str, Any], ...]


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
    from .lockfile import Lock
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
    on_progress: ProgressCallback | None = None,
    sign_key: str | Path | None = None,
    have: str | Path | None = None,
) -> BuildReport:
    """Resolve (or read ``lock``), fetch, verify and pack a bundle at ``output`` (``"-"``: stdout).
    ``sign_key`` (EC private key PEM) signs it (OMS; see :func:`sign`).

    ``have``: the target's inventory (``hfbundle inventory -o have.json``): build a delta bundle.
    ``on_progress`` receives :class:`~bundler.progress.Progress` records (phase ``pack``)."""
    import sys

    from .build import build as build_bundle
    from .lockfile import Lock

    if isinstance(lock, (str, Path)):
        try:
            text = Path(lock).read_text()
        except OSError as e:
            raise UsageError(f"cannot read lock {lock}: {e.strerror}") from e
        lock = Lock.loads(text)
    if lock is None:
        lock = resolve(*specs, variant=variant, include=include, exclude=exclude, endpoint=endpoint, token=token)
    recipe = dict(lock.extra) if lock.extra else None
    held = None
    if have is not None:
        from .inventory import read_inventory

        held = read_inventory(have).names()
    target: str | Path | BinaryIO = sys.stdout.buffer if output == "-" else output
    counter = Counter(on_progress, "pack")
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
        on_progress=counter.bytes,
        sign_key=Path(sign_key) if sign_key is not None else None,
        have=held,
        on_files=counter.files,
    )


def inspect(bundle: str | Path) -> BundleInfo:
    """Manifest summary of a bundle, read without unpacking blobs, with who signed it (unchecked)."""
    import dataclasses

    from .bundle.reader import open_bundle
    from .trust import check_bundle

    with open_bundle(Path(bundle), threads=1) as reader:
        trust = check_bundle(reader.manifest, reader.signatures, ())
        return dataclasses.replace(reader.info(), signature=trust.to_json())


def keygen(output: str | Path) -> KeygenReport:
    """Write a new EC P-256 key pair ``OUTPUT.key`` (0600) and ``OUTPUT.pub``; returns the public side."""
    from .signing import generate_key

    key = generate_key(Path(output))
    return KeygenReport(str(_key_path(Path(output))), key.source, key.fingerprint)


def _key_path(output: Path) -> Path:
    base = output.with_suffix("") if output.suffix in (".key", ".pub", ".pem") else output
    return base.with_name(base.name + ".key")


@dataclass(frozen=True)
class KeygenReport(JsonRecord):
    private_key: str  # the path only: the key itself is never in a report
    public_key: str
    fingerprint: str

    def render(self) -> list[str]:
        return [
            f"private key {self.private_key} (mode 0600: keep it on the build machine)",
            f"public key  {self.public_key} (copy it to the machines that install: --trusted-key)",
            f"fingerprint {self.fingerprint}",
        ]


def sign(bundle: str | Path, *, key: str | Path, output: str | Path | None = None) -> SignReport:
    """Add OMS signatures by ``key`` to an existing bundle (in place, or to ``output``), without
    recompressing it; the bundle id does not change."""
    from .signing import load_private_key
    from .trust import sign_bundle

    private = load_private_key(Path(key))
    return sign_bundle(Path(bundle), private, output=Path(output) if output is not None else None)


_TRUSTED_KEYS_ENV = "HFBUNDLE_TRUSTED_KEYS"  # trust.TRUSTED_KEYS_ENV, read without importing trust and signing


def _trusted(trusted_keys: Sequence[str | Path]) -> Any:
    if not trusted_keys and not os.environ.get(_TRUSTED_KEYS_ENV):
        return ()  # no key: nothing to load (and no trust or signing module to import)
    from .signing import load_trusted_keys
    from .trust import trusted_key_paths

    return load_trusted_keys(trusted_key_paths([Path(k) for k in trusted_keys]))


def _open_source(bundle: str | Path | BinaryIO) -> Any:
    import sys

    from .bundle.reader import open_bundle

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


@overload
def install(
    bundle: str | Path | BinaryIO,
    *,
    cache_dir: str | Path | None = ...,
    copy: bool | None = ...,
    keep_refs: bool = ...,
    trust_existing: bool = ...,
    dry_run: Literal[False] = ...,
    trusted_keys: Sequence[str | Path] = ...,
    on_progress: ProgressCallback | None = ...,
) -> InstallReport: ...
@overload
def install(
    bundle: str | Path | BinaryIO,
    *,
    cache_dir: str | Path | None = ...,
    copy: bool | None = ...,
    keep_refs: bool = ...,
    trust_existing: bool = ...,
    dry_run: Literal[True],
    trusted_keys: Sequence[str | Path] = ...,
    on_progress: ProgressCallback | None = ...,
) -> InstallPlan: ...
@overload
def install(
    bundle: str | Path | BinaryIO,
    *,
    cache_dir: str | Path | None = ...,
    copy: bool | None = ...,
    keep_refs: bool = ...,
    trust_existing: bool = ...,
    dry_run: bool,
    trusted_keys: Sequence[str | Path] = ...,
    on_progress: ProgressCallback | None = ...,
) -> InstallReport | InstallPlan: ...
def install(
    bundle: str | Path | BinaryIO,
    *,
    cache_dir: str | Path | None = None,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    dry_run: bool = False,
    trusted_keys: Sequence[str | Path] = (),
    on_progress: ProgressCallback | None = None,
) -> InstallReport | InstallPlan:
    """Install a bundle into a cache (default: huggingface_hub's). ``dry_run`` returns the plan;
    ``on_progress`` receives :class:`~bundler.progress.Progress` records (bytes and files).

    ``trusted_keys`` (public key files or folders; default ``HFBUNDLE_TRUSTED_KEYS``): refuse, before writing
    anything, a bundle without a valid signature by one of them (:class:`~bundler.signing.SignatureError`)."""
    from .install import install as install_source
    from .install import plan_install

    cache = _cache(cache_dir)
    keys = _trusted(trusted_keys)
    source = _open_source(bundle)
    try:
        if dry_run:
            if keys:
                from .trust import check_bundle, require_seekable

                require_seekable(source)
                check_bundle(source.manifest, source.signatures, keys)
            return plan_install(source.manifest, cache, copy=copy, keep_refs=keep_refs, trust_existing=trust_existing)
        report = install_source(
            source,
            cache,
            copy=copy,
            keep_refs=keep_refs,
            trust_existing=trust_existing,
            trusted_keys=keys,
            on_progress=on_progress,
        )
        return _with_environment_notes(report, source.manifest, cache)
    finally:
        source.close()


def _with_environment_notes(report: InstallReport, manifest: Any, cache: Path) -> InstallReport:
    """The install report plus what the bundle's loaders need from the environment to find this cache offline
    (``bundler.loaderenv``): a loader that looks elsewhere, ``HF_HUB_OFFLINE``, a cache the OS cleans."""
    import dataclasses

    from .loaderenv import check_stacks, roles_stacks

    roles = [r.role for r in manifest.lock.repos] if manifest.lock is not None else []
    env = check_stacks("bundle", roles_stacks(roles), cache, os.environ)
    lines = [f.message for f in env.findings]
    if env.exports():
        lines.append("before starting the app: " + "; ".join(env.exports()))
    return dataclasses.replace(report, notes=(*report.notes, *lines)) if lines else report


def verify(
    *targets: str,
    cache_dir: str | Path | None = None,
    trusted_keys: Sequence[str | Path] = (),
    on_progress: ProgressCallback | None = None,
) -> VerifyReport | TrustedVerifyReport:
    """Verify a cache offline; with a bundle path as first target, check that bundle's install and show its
    signature. With ``trusted_keys`` (default ``HFBUNDLE_TRUSTED_KEYS``) also prove that each installed snapshot
    is still exactly what one of them signed (:func:`bundler.trust.verify_signed_snapshots`)."""
    cache = _cache(cache_dir)
    keys = _trusted(trusted_keys)
    hashing = Counter(on_progress, "verify", every=0.05)  # a record per 50 ms, not per file (issue 18)
    hashed = (lambda size, files: hashing.add(size, files=files)) if on_progress is not None else None
    try:
        return _verify(targets, cache, keys, hashed)
    finally:
        hashing.flush()


def _verify(
    targets: tuple[str, ...], cache: Path, keys: Any, hashed: Callable[[int, int], None] | None
) -> VerifyReport | TrustedVerifyReport:
    from .verify import verify_cache, verify_installed

    if targets and Path(targets[0]).is_file():
        from .signing import SignatureError
        from .trust import TrustedVerifyReport, check_bundle, trust_error_text, verify_signed_snapshots

        if len(targets) > 1:
            raise UsageError("give one bundle, or repo ids, not both")
        source = _open_source(targets[0])
        try:
            integrity = verify_installed(source.manifest, cache, on_hashed=hashed)
            trust, error = None, None
            try:
                trust = check_bundle(source.manifest, source.signatures, keys)
            except SignatureError as e:
                error = trust_error_text(e)
            snaps = None
            if keys:
                triples = [(r.repo_type, r.repo_id, s.commit) for r in source.manifest.repos for s in r.snapshots]
                snaps = verify_signed_snapshots(cache, keys, repos=triples)
            return TrustedVerifyReport(integrity, trust, error, snaps)
        finally:
            source.close()
    integrity = verify_cache(cache, list(targets) or None, on_hashed=hashed)
    if not keys:
        return integrity
    from .trust import TrustedVerifyReport, verify_signed_snapshots

    return TrustedVerifyReport(
        integrity, snapshots=verify_signed_snapshots(cache, keys, repo_ids=list(targets) or None)
    )


@overload
def backup(
    *patterns: str,
    cache_dir: str | Path | None = ...,
    output: str | Path | BinaryIO | None = ...,
    repo_type: str | None = ...,
    revision: str | None = ...,
    base: str | Path | None = ...,
    skip_corrupt: bool = ...,
    dry_run: Literal[False] = ...,
    level: int | None = ...,
    threads: int = ...,
    split_size: int | None = ...,
    on_progress: ProgressCallback | None = ...,
) -> BackupReport: ...
@overload
def backup(
    *patterns: str,
    cache_dir: str | Path | None = ...,
    output: str | Path | BinaryIO | None = ...,
    repo_type: str | None = ...,
    revision: str | None = ...,
    base: str | Path | None = ...,
    skip_corrupt: bool = ...,
    dry_run: Literal[True],
    level: int | None = ...,
    threads: int = ...,
    split_size: int | None = ...,
    on_progress: ProgressCallback | None = ...,
) -> BackupPlan: ...
@overload
def backup(
    *patterns: str,
    cache_dir: str | Path | None = ...,
    output: str | Path | BinaryIO | None = ...,
    repo_type: str | None = ...,
    revision: str | None = ...,
    base: str | Path | None = ...,
    skip_corrupt: bool = ...,
    dry_run: bool,
    level: int | None = ...,
    threads: int = ...,
    split_size: int | None = ...,
    on_progress: ProgressCallback | None = ...,
) -> BackupReport | BackupPlan: ...
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
    on_progress: ProgressCallback | None = None,
) -> BackupReport | BackupPlan:
    """Pack what a cache holds (all repos, or those matching ``patterns``) into a backup bundle, offline.

    ``dry_run`` returns the plan; ``base`` makes an incremental backup over a previous one. ``on_progress``
    receives :class:`~bundler.progress.Progress` records (phase ``pack``).
    """
    from .backup import backup as run_backup
    from .backup import plan_backup

    plan = plan_backup(_cache(cache_dir), patterns, repo_type=repo_type, revision=revision, base=base)
    if dry_run:
        return plan
    if output is None:
        raise UsageError("no output given for the backup", hint="pass -o FILE (or - for stdout)")
    counter = Counter(on_progress, "pack")
    return run_backup(
        plan,
        output,
        skip_corrupt=skip_corrupt,
        level=level,
        threads=threads,
        split_size=split_size,
        on_progress=counter.bytes,
        on_files=counter.files,
    )


@overload
def restore(
    *bundles: str | Path,
    cache_dir: str | Path | None = ...,
    copy: bool | None = ...,
    keep_refs: bool = ...,
    trust_existing: bool = ...,
    dry_run: Literal[False] = ...,
    verbatim: bool = ...,
    on_progress: ProgressCallback | None = ...,
) -> RestoreReport: ...
@overload
def restore(
    *bundles: str | Path,
    cache_dir: str | Path | None = ...,
    copy: bool | None = ...,
    keep_refs: bool = ...,
    trust_existing: bool = ...,
    dry_run: Literal[True],
    verbatim: bool = ...,
    on_progress: ProgressCallback | None = ...,
) -> RestorePlan: ...
@overload
def restore(
    *bundles: str | Path,
    cache_dir: str | Path | None = ...,
    copy: bool | None = ...,
    keep_refs: bool = ...,
    trust_existing: bool = ...,
    dry_run: bool,
    verbatim: bool = ...,
    on_progress: ProgressCallback | None = ...,
) -> RestoreReport | RestorePlan: ...
def restore(
    *bundles: str | Path,
    cache_dir: str | Path | None = None,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    dry_run: bool = False,
    verbatim: bool = False,
    on_progress: ProgressCallback | None = None,
) -> RestoreReport | RestorePlan:
    """Restore a backup chain (full + increments, any order) into a cache through the installer.
    ``verbatim``: saved trees listings come back byte for byte even where they break the trees rule."""
    from .restore import plan_restore
    from .restore import restore as run_restore

    if not bundles:
        raise UsageError("no backup given", hint="pass the full backup and any increments")
    cache = _cache(cache_dir)
    if dry_run:
        return plan_restore(
            list(bundles), cache, copy=copy, keep_refs=keep_refs, trust_existing=trust_existing, verbatim=verbatim
        )
    return run_restore(
        list(bundles),
        cache,
        copy=copy,
        keep_refs=keep_refs,
        trust_existing=trust_existing,
        verbatim=verbatim,
        on_progress=on_progress,
    )


def doctor(spec: str, *, cache_dir: str | Path | None = None, rehash: bool = True, fix: bool = False) -> DoctorReport:
    """Will ``spec`` load offline from this cache? Fully offline; ``report.ok`` and the fixes to run.
    ``fix`` first moves aside the cache's trees listings that would mislead the client (offline or online)."""
    from .doctor import doctor as diagnose

    return diagnose(spec, _cache(cache_dir), rehash=rehash, fix=fix)


def doctor_environment(spec: str, *, cache_dir: str | Path | None = None) -> EnvReport:
    """Will the loader stacks that read ``spec`` look in this cache and stay offline in this environment?
    An :class:`~bundler.loaderenv.EnvReport` whose ``exports()`` are the lines to set (``docs/RECIPES.md``)."""
    from .loaderenv import check_environment
    from .recipe import load_spec

    return check_environment(load_spec(spec), _cache(cache_dir), os.environ)


def run(spec: str, **kwargs: Any) -> RunReport:
    """Generate an image offline from an installed recipe (needs ``pip install hfbundle[runner]``)."""
    from .runner import run as run_recipe

    return run_recipe(spec, **kwargs)


def push(
    source: str | Path,
    ref: str,
    *,
    username: str | None = None,
    password: str | None = None,
    plain_http: bool = False,
    retries: int = 5,
    mount_from: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> PushReport:
    """Push a bundle file, or a SPEC's files straight from the cache, to ``ref`` as a ModelPack artifact.

    ``ref`` is ``[oci://]HOST[:PORT]/NAME[:TAG]`` or ``oci-layout:DIR[:TAG]``. A bundle file is read offline;
    a SPEC is resolved and fetched like ``build`` (that needs the Hub), then its cache files are pushed::

        >>> push("demo.tar.zst", "registry.lan:5000/models/demo:v1")  # doctest: +SKIP
    """
    from .oci.ref import parse_ref
    from .oci.transfer import push as push_artifact

    target = parse_ref(ref)
    options = _transfer_options(username, password, plain_http, retries)
    upload = Counter(on_progress, "upload").bytes
    path = Path(source)
    if path.exists() or path.with_name(path.name + ".001").exists():
        reader = _open_source(path)
        try:
            if reader.index is None:
                raise UsageError("push needs a bundle file, not a pipe", hint="write the bundle to a file first")
            order = [m.sha256 for m in reader.index.blobs]
            return push_artifact(
                reader.manifest,
                reader.manifest_bytes,
                order,
                lambda sha: reader.read_blob(sha, verify=False),  # the registry (or layout) checks the digest
                target,
                options,
                mount_from=mount_from,
                on_progress=upload,
            )
        finally:
            reader.close()
    from .build import manifest_for, verify_regular_files
    from .fetch import fetch

    lock = resolve(str(source), endpoint=endpoint, token=token)
    fetched = verify_regular_files(
        fetch(lock, cache_dir=Path(cache_dir) if cache_dir is not None else None, token=token, endpoint=endpoint)
    )
    manifest = manifest_for(lock, fetched, recipe=dict(lock.extra) if lock.extra else None)
    local: dict[str, Path] = {}
    for item in fetched:
        assert item.file.content_sha256 is not None
        local.setdefault(item.file.content_sha256, item.local_path)
    return push_artifact(
        manifest,
        manifest.dumps(),
        list(local),
        lambda sha: open(local[sha], "rb"),
        target,
        options,
        mount_from=mount_from,
        on_progress=upload,
    )


def pull(
    ref: str,
    *,
    output: str | Path | None = None,
    install: bool = False,
    cache_dir: str | Path | None = None,
    username: str | None = None,
    password: str | None = None,
    plain_http: bool = False,
    retries: int = 5,
    copy: bool | None = None,
    keep_refs: bool = False,
    trust_existing: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PullReport:
    """Pull an artifact ``push`` wrote: into a bundle file (``output``) and/or into the cache (``install``).
    Works offline from the Hub (``HF_HUB_OFFLINE=1``): only the registry is contacted::

        >>> pull("registry.lan:5000/models/demo:v1", install=True)  # doctest: +SKIP
    """
    from .oci.ref import parse_ref
    from .oci.transfer import pull as pull_artifact

    if output is None and not install:
        raise UsageError("pull needs -o BUNDLE or --install", hint="hfbundle pull REF --install (or -o demo.tar.zst)")
    return pull_artifact(
        parse_ref(ref),
        _transfer_options(username, password, plain_http, retries),
        output=Path(output) if output is not None else None,
        cache_dir=_cache(cache_dir) if install else None,
        copy=copy,
        keep_refs=keep_refs,
        trust_existing=trust_existing,
        on_progress=on_progress,
    )


def _transfer_options(username: str | None, password: str | None, plain_http: bool, retries: int) -> Any:
    from .oci.auth import Credentials
    from .oci.transfer import TransferOptions

    if (username is None) != (password is None):
        raise UsageError("--username and --password-stdin go together", hint="pass both, or neither")
    creds = Credentials(username, password, "--username") if username is not None and password is not None else None
    return TransferOptions(credentials=creds, plain_http=plain_http, retries=retries)


def trace(
    command: Sequence[str],
    *,
    output: str | Path,
    upstream: str | None = None,
    append: bool = False,
    keep_partial: bool = False,
    run_name: str | None = None,
) -> TraceReport:
    """Run ``command`` through a recording Hub proxy with a fresh cache; write (or ``append`` to) the recipe of
    exactly the files it fetched. The report carries the command's exit code (see :mod:`bundler.trace`)."""
    from .trace import trace as trace_command

    return trace_command(
        command, output=output, upstream=upstream, append=append, keep_partial=keep_partial, run_name=run_name
    )


def kit(
    *items: str | Path,
    output: str | Path,
    platforms: Sequence[str] = (),
    python_version: str | None = None,
    with_runner: bool = False,
    have: str | Path | None = None,
    variant: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    hfbundle_wheel: str | Path | None = None,
    pip_args: Sequence[str] = (),
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> KitReport:
    """An air-gapped kit at ``output``: the bundles (SPECs are built, ``have`` makes them deltas), hfbundle's
    wheels for every target, ``install.py``/``.sh``/``.bat``, ``SHA256SUMS``. Needs the package index."""
    from .kit import make_kit

    def build_one(spec: str, path: Path) -> BuildReport:
        return build(
            spec,
            output=path,
            have=have,
            variant=variant,
            include=include,
            exclude=exclude,
            cache_dir=cache_dir,
            endpoint=endpoint,
            token=token,
        )

    return make_kit(
        items,
        Path(output),
        platforms=platforms,
        python_version=python_version,
        with_runner=with_runner,
        build_bundle=build_one,
        hfbundle_wheel=Path(hfbundle_wheel) if hfbundle_wheel is not None else None,
        pip_args=pip_args,
    )


def inventory(*, cache_dir: str | Path | None = None, verify: bool = False) -> Inventory:
    """What the cache holds (repos, commits, refs, blob names and sizes), for ``build --have`` elsewhere."""
    from .inventory import take_inventory

    return take_inventory(_cache(cache_dir), verify=verify)
