"""The ``hfbundle`` command line: parses, calls :mod:`bundler.api`, renders the report. Nothing else.

Exit codes: 0 done, 1 the operation failed (corrupt input, mismatch, missing files), 2 usage error.
A user error prints one line plus a hint and no traceback (``--debug`` or ``HFBUNDLE_DEBUG=1`` shows it).

Longer than ~500 lines: one click command per ``hfbundle`` command, with its options, help and examples: the
whole command line in one place, each command a thin call into :mod:`bundler.api`.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import HfBundleError
from .output import Output, human_size

F = TypeVar("F", bound=Callable[..., Any])


# -- shared options ----------------------------------------------------------------------------------------


def json_option(f: F) -> F:
    return click.option("--json", "json_mode", is_flag=True, help="Print one JSON document instead of text.")(f)


def quiet_option(f: F) -> F:
    return click.option("-q", "--quiet", is_flag=True, help="No progress output.")(f)


def copy_option(f: F) -> F:
    """--copy/--no-copy for install, restore and pull: unset, the installer picks what the cache supports."""
    return click.option(
        "--copy/--no-copy",
        default=None,
        help="Real files in snapshots/ instead of symlinks, or not (default: what the cache supports).",
    )(f)


def cache_dir_option(f: F) -> F:
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Hugging Face hub cache (default: what huggingface_hub uses: HF_HUB_CACHE, HF_HOME/hub).",
    )(f)


def spec_refinements(f: F) -> F:
    f = click.option("--exclude", multiple=True, metavar="GLOB", help="Leave out files matching GLOB.")(f)
    f = click.option("--include", multiple=True, metavar="GLOB", help="Also take files matching GLOB.")(f)
    return click.option("--variant", default=None, help="Weights variant, e.g. fp16 (as diffusers' variant=).")(f)


def pack_options(f: F) -> F:
    """--level/--threads/--split-size, shared by everything that writes a bundle (build, backup)."""
    f = click.option("--split-size", default=None, metavar="SIZE", help="Split into numbered volumes of SIZE (4G).")(f)
    f = click.option("--threads", type=click.IntRange(0, 256), default=0, help="Compression threads (0: all cores).")(f)
    return click.option("--level", type=click.IntRange(-7, 22), default=None, help="zstd level (default: per member).")(
        f
    )


def have_option(f: F) -> F:
    return click.option(
        "--have",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="The target cache's inventory (`hfbundle inventory -o have.json`): build a delta bundle.",
    )(f)


def parse_size(value: str | None) -> int | None:
    if value is None:
        return None
    units = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9}
    units |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    v = value.strip().upper()
    num = v.rstrip("KMGIB")
    try:
        n = int(float(num) * units[v[len(num) :]])
    except (ValueError, KeyError):
        raise click.BadParameter(f"{value!r} is not a size (e.g. 4G, 700M, 1GiB)") from None
    if n <= 0:
        raise click.BadParameter("the size must be positive")
    return n


# -- commands ----------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hfbundle")
@click.option(
    "--debug", is_flag=True, help="Explain each decision (reuse, download, write, refuse) and show errors' causes."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Make Hugging Face / diffusers models work offline, for sure.

    \b
    On an online machine:   hfbundle build lcm-dreamshaper-v7-taesd -o lcm.tar.zst
    On the offline machine: hfbundle install lcm.tar.zst && hfbundle verify
    Then:                   hfbundle run lcm-dreamshaper-v7-taesd --prompt "a cat" -o cat.png

    SPEC is a recipe name (see `hfbundle resolve --list`), a recipe .toml file, or a repo id org/name[@revision].
    """
    ctx.obj = {"debug": debug or os.environ.get("HFBUNDLE_DEBUG") == "1"}
    _debug_logging(ctx.obj["debug"])


class _EchoHandler(logging.Handler):
    """``logging`` records as ``debug: …`` lines on stderr (through click, so tests' runners capture them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # a log line must never break a command
            self.handleError(record)


_HANDLER = _EchoHandler()
_HANDLER.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))


def _debug_logging(on: bool) -> None:
    """``--debug``: the library's ``logger.debug`` decisions to stderr; off again otherwise (tests reuse it)."""
    log = logging.getLogger("bundler")
    if on:
        log.addHandler(_HANDLER)
        log.setLevel(logging.DEBUG)
    else:
        log.removeHandler(_HANDLER)
        log.setLevel(logging.NOTSET)


@cli.command()
@click.argument("specs", nargs=-1)
@spec_refinements
@click.option("--list", "list_recipes", is_flag=True, help="List the shipped recipes and exit.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the lock to a file.")
@json_option
def resolve(
    specs: Sequence[str],
    variant: str | None,
    include: Sequence[str],
    exclude: Sequence[str],
    list_recipes: bool,
    output: Path | None,
    json_mode: bool,
) -> None:
    """Pin SPEC's repos to commits and list every file its loaders will read (a lock). Needs the Hub.

    \b
    hfbundle resolve tiny-demo --json
    hfbundle resolve stabilityai/sd-turbo --variant fp16 -o sd-turbo.lock.json
    """
    from . import api

    out = Output(json_mode=json_mode)
    if list_recipes:
        out.result(api.list_recipes(), _render_recipes)
        return
    if not specs:
        raise click.UsageError("give at least one SPEC (or --list)")
    lock = api.resolve(*specs, variant=variant, include=include, exclude=exclude)
    _warn_names(out, lock)
    if output is not None:
        from .cache.layout import atomic_write_bytes

        atomic_write_bytes(output, lock.dumps().encode())
    if json_mode:
        click.echo(lock.dumps(), nl=False)
    else:
        for line in _render_lock(lock):
            click.echo(line)


@cli.command()
@click.argument("specs", nargs=-1)
@spec_refinements
@click.option("-o", "--output", required=True, help="Bundle file to write, or - for stdout.")
@click.option(
    "--lock", "lock_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Build exactly this lock."
)
@cache_dir_option
@pack_options
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Sign the bundle with this EC private key (from `hfbundle keygen`).",
)
@have_option
@quiet_option
@json_option
def build(
    specs: Sequence[str],
    variant: str | None,
    include: Sequence[str],
    exclude: Sequence[str],
    output: str,
    lock_file: Path | None,
    cache_dir: Path | None,
    level: int | None,
    threads: int,
    split_size: str | None,
    sign_key: Path | None,
    have: Path | None,
    quiet: bool,
    json_mode: bool,
) -> None:
    """Download SPEC's files, verify every hash against the Hub, and pack one portable bundle.

    \b
    hfbundle build tiny-demo -o demo.tar.zst
    hfbundle build SimianLuo/LCM_Dreamshaper_v7 --variant fp16 -o lcm.tar.zst --split-size 4G
    hfbundle build --lock sd-turbo.lock.json -o - | ssh offline-box hfbundle install -
    hfbundle build tiny-demo --have have.json -o delta.tar.zst   # only what the target cache lacks
    """
    from . import api

    if not specs and lock_file is None:
        raise click.UsageError("give at least one SPEC or --lock FILE")
    out = Output(json_mode=json_mode, quiet=quiet or output == "-")
    with out.progress("packing") as progress:
        report = api.build(
            *specs,
            output=output,
            lock=lock_file,
            variant=variant,
            include=include,
            exclude=exclude,
            cache_dir=cache_dir,
            level=level,
            threads=threads,
            split_size=parse_size(split_size),
            on_progress=progress,
            sign_key=sign_key,
            have=have,
        )
    _warn_names(out, report.lock)
    if output == "-":  # stdout carries the bundle: the summary goes to stderr
        click.echo(f"bundle {report.bundle_id} ({human_size(report.bytes_out)})", err=True)
        return
    out.result(report, _render_build)


@cli.command()
@click.argument("items", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Kit folder to create.")
@click.option("--platform", "platforms", multiple=True, metavar="TAG", help="pip platform tag (win_amd64, …); repeat.")
@click.option("--python-version", default=None, metavar="X.Y", help="Python of the offline machine (default: this).")
@click.option("--with-runner", is_flag=True, help="Also carry hfbundle[runner] (torch: large).")
@click.option(
    "--hfbundle-wheel",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="hfbundle's own wheel (default: built from this installation's checkout).",
)
@click.option("--pip-arg", "pip_args", multiple=True, metavar="ARG", help="Extra argument for pip download; repeat.")
@spec_refinements
@cache_dir_option
@have_option
@json_option
def kit(
    items: Sequence[str],
    output: Path,
    platforms: Sequence[str],
    python_version: str | None,
    with_runner: bool,
    hfbundle_wheel: Path | None,
    pip_args: Sequence[str],
    variant: str | None,
    include: Sequence[str],
    exclude: Sequence[str],
    cache_dir: Path | None,
    have: Path | None,
    json_mode: bool,
) -> None:
    """Make an air-gapped kit: bundles (SPECs are built), hfbundle's wheels, install.py/.sh/.bat, SHA256SUMS.

    Needs the package index (pip download). On the offline machine: `sh install.sh` or `install.bat`.

    \b
    hfbundle kit tiny-demo -o kit/
    hfbundle kit lcm.tar.zst -o kit-win/ --platform win_amd64 --python-version 3.11
    hfbundle kit lcm-dreamshaper-v7-taesd --have have.json -o kit-delta/
    """
    from . import api

    report = api.kit(
        *items,
        output=output,
        platforms=platforms,
        python_version=python_version,
        with_runner=with_runner,
        have=have,
        variant=variant,
        include=include,
        exclude=exclude,
        cache_dir=cache_dir,
        hfbundle_wheel=hfbundle_wheel,
        pip_args=pip_args,
    )
    Output(json_mode=json_mode).result(report, _render_kit)


@cli.command()
@cache_dir_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write have.json here.")
@click.option("--verify", is_flag=True, help="Re-hash every blob; leave out those that do not match their name.")
@json_option
def inventory(cache_dir: Path | None, output: Path | None, verify: bool, json_mode: bool) -> None:
    """List what the cache holds (repos, commits, refs, blob hashes and sizes; no paths, no names), offline.

    Carry the file to the online machine: `hfbundle build SPEC --have have.json` packs only what is missing.

    \b
    hfbundle inventory -o have.json
    hfbundle inventory --cache-dir /models/hub --verify -o have.json
    """
    from . import api

    inv = api.inventory(cache_dir=cache_dir, verify=verify)
    if output is not None:
        from .cache.layout import atomic_write_bytes

        atomic_write_bytes(output, inv.dumps())
    Output(json_mode=json_mode).result(inv, _render_generic)


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@json_option
def inspect(bundle: Path, json_mode: bool) -> None:
    """Show a bundle's repos, commits, files and sizes without unpacking it."""
    from . import api

    Output(json_mode=json_mode).result(api.inspect(bundle), _render_inspect)


def trusted_key_option(f: F) -> F:
    return click.option(
        "--trusted-key",
        "trusted_keys",
        multiple=True,
        type=click.Path(exists=True, path_type=Path),
        help="A signer's public key, or a folder of *.pub (repeatable; default: $HFBUNDLE_TRUSTED_KEYS).",
    )(f)


@cli.command()
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="NAME: writes NAME.key, NAME.pub.")
@json_option
def keygen(output: Path, json_mode: bool) -> None:
    """Create an EC P-256 key pair for signing bundles (OpenSSF Model Signing, key method).

    \b
    hfbundle keygen -o site            # site.key (private, 0600) and site.pub
    hfbundle build tiny-demo -o demo.tar.zst --sign-key site.key
    hfbundle install demo.tar.zst --trusted-key site.pub
    """
    from . import api

    Output(json_mode=json_mode).result(api.keygen(output), _render_generic)


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: in place).")
@json_option
def sign(bundle: Path, key: Path, output: Path | None, json_mode: bool) -> None:
    """Add signatures to an existing bundle (its data is copied, not recompressed; its id does not change).

    \b
    hfbundle sign demo.tar.zst --key site.key
    """
    from . import api

    Output(json_mode=json_mode).result(api.sign(bundle, key=key, output=output), _render_generic)


@cli.command()
@click.argument("bundle")
@cache_dir_option
@copy_option
@click.option("--keep-refs", is_flag=True, help="Leave refs that already exist alone.")
@click.option("--trust-existing", is_flag=True, help="Do not re-hash blobs already in the cache.")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@trusted_key_option
@quiet_option
@json_option
def install(
    bundle: str,
    cache_dir: Path | None,
    copy: bool | None,
    keep_refs: bool,
    trust_existing: bool,
    dry_run: bool,
    trusted_keys: Sequence[Path],
    quiet: bool,
    json_mode: bool,
) -> None:
    """Install a bundle (a file, its first volume, or - for stdin) into a Hugging Face cache, offline.

    \b
    hfbundle install demo.tar.zst
    hfbundle install lcm.tar.zst.001 --cache-dir /models/hub
    ssh online-box hfbundle build tiny-demo -o - | hfbundle install -
    hfbundle install demo.tar.zst --trusted-key site.pub   # refuse unless signed by that key
    """
    from . import api

    out = Output(json_mode=json_mode, quiet=quiet)
    with out.progress("installing") as progress:
        report = api.install(
            bundle,
            cache_dir=cache_dir,
            copy=copy,
            keep_refs=keep_refs,
            trust_existing=trust_existing,
            dry_run=dry_run,
            trusted_keys=trusted_keys,
            on_progress=progress,
        )
    out.result(report, _render_generic)


@cli.command()
@click.argument("targets", nargs=-1)
@cache_dir_option
@trusted_key_option
@quiet_option
@json_option
def verify(
    targets: Sequence[str], cache_dir: Path | None, trusted_keys: Sequence[Path], quiet: bool, json_mode: bool
) -> None:
    """Check a cache offline: every blob re-hashed, links, refs and trees. Exit 1 on any problem.

    \b
    hfbundle verify                      # the whole default cache
    hfbundle verify org/name other/repo  # some repos
    hfbundle verify demo.tar.zst         # is everything this bundle installs present and intact?
    hfbundle verify --trusted-key site.pub  # is every installed snapshot still what that key signed?
    """
    from . import api

    out = Output(json_mode=json_mode, quiet=quiet)
    with out.progress("verifying") as progress:
        report = api.verify(*targets, cache_dir=cache_dir, trusted_keys=trusted_keys, on_progress=progress)
    out.result(report, _render_generic)
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("patterns", nargs=-1)
@cache_dir_option
@click.option("-o", "--output", help="Backup bundle to write, or - for stdout.")
@click.option("--type", "repo_type", type=click.Choice(["model", "dataset", "space"]), default=None)
@click.option("--revision", default=None, help="Only this revision (ref or commit) of each repo.")
@click.option(
    "--base",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Incremental: pack only blobs this previous backup (chain) does not hold.",
)
@click.option("--skip-corrupt", is_flag=True, help="Leave corrupt blobs out (recorded in the manifest); exit 1.")
@pack_options
@click.option("--dry-run", is_flag=True, help="Print the plan (repos, revisions, sizes); write nothing.")
@quiet_option
@json_option
def backup(
    patterns: Sequence[str],
    cache_dir: Path | None,
    output: str | None,
    repo_type: str | None,
    revision: str | None,
    base: Path | None,
    skip_corrupt: bool,
    level: int | None,
    threads: int,
    split_size: str | None,
    dry_run: bool,
    quiet: bool,
    json_mode: bool,
) -> None:
    """Pack what a cache holds into a bundle, with no network: all repos, or those matching PATTERNS.

    \b
    hfbundle backup -o hub-backup.tar.zst                   # everything in the default cache
    hfbundle backup 'stabilityai/*' --type model -o sd.tar.zst
    hfbundle backup --base hub-backup.tar.zst -o hub-incr-1.tar.zst
    hfbundle backup --dry-run
    """
    from . import api

    if output is None and not dry_run:
        raise click.UsageError("give -o FILE (or --dry-run)")
    out = Output(json_mode=json_mode, quiet=quiet or output == "-")
    with out.progress("packing") as progress:
        report = api.backup(
            *patterns,
            cache_dir=cache_dir,
            output=output,
            repo_type=repo_type,
            revision=revision,
            base=base,
            skip_corrupt=skip_corrupt,
            dry_run=dry_run,
            level=level,
            threads=threads,
            split_size=parse_size(split_size),
            on_progress=progress,
        )
    if output == "-":
        click.echo(f"backup {getattr(report, 'bundle_id', '')}", err=True)
    else:
        out.result(report, _render_generic)
    if getattr(report, "corrupt", None):
        sys.exit(1)


@cli.command()
@click.argument("bundles", nargs=-1, required=True)
@cache_dir_option
@copy_option
@click.option("--keep-refs", is_flag=True, help="Leave refs that already exist alone.")
@click.option("--trust-existing", is_flag=True, help="Do not re-hash blobs already in the cache.")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@click.option(
    "--verbatim",
    is_flag=True,
    help="Bring saved trees/ listings back byte for byte, even those that would mislead the client (docs/CACHE.md).",
)
@quiet_option
@json_option
def restore(
    bundles: Sequence[str],
    cache_dir: Path | None,
    copy: bool | None,
    keep_refs: bool,
    trust_existing: bool,
    dry_run: bool,
    verbatim: bool,
    quiet: bool,
    json_mode: bool,
) -> None:
    """Restore backups (a full one and its increments, in any order) into a cache, through the installer.

    \b
    hfbundle restore hub-backup.tar.zst hub-incr-1.tar.zst --cache-dir /models/hub
    """
    from . import api

    out = Output(json_mode=json_mode, quiet=quiet)
    with out.progress("restoring") as progress:
        report = api.restore(
            *bundles,
            cache_dir=cache_dir,
            copy=copy,
            keep_refs=keep_refs,
            trust_existing=trust_existing,
            dry_run=dry_run,
            verbatim=verbatim,
            on_progress=progress,
        )
    out.result(report, _render_generic)


@cli.command()
@click.argument("spec")
@cache_dir_option
@click.option("--no-rehash", is_flag=True, help="Check sizes only (fast); by default every file is re-hashed.")
@click.option(
    "--fix",
    is_flag=True,
    help="First move aside every trees/ listing of the cache that would mislead the client, offline or online.",
)
@json_option
def doctor(spec: str, cache_dir: Path | None, no_rehash: bool, fix: bool, json_mode: bool) -> None:
    """Will SPEC load offline from this cache? If not: exactly what is missing and how to get it.

    \b
    hfbundle doctor lcm-lora-dreamshaper-8
    hfbundle doctor SimianLuo/LCM_Dreamshaper_v7 --cache-dir /models/hub --json
    hfbundle doctor lcm-lora-dreamshaper-8 --fix
    """
    from . import api

    report = api.doctor(spec, cache_dir=cache_dir, rehash=not no_rehash, fix=fix)
    env = api.doctor_environment(spec, cache_dir=cache_dir)
    out = Output(json_mode=json_mode)
    if json_mode:
        click.echo(json.dumps({**report.to_json(), "environment": env.to_json()}, indent=2, sort_keys=True))
    else:
        out.result(report, _render_generic)
        for line in env.render():
            click.echo(line)
    if not report.ok or not env.ok:
        sys.exit(1)


@cli.command()
@click.argument("spec")
@click.option("--prompt", required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--steps", type=click.IntRange(1, 200), default=None)
@click.option("--guidance", type=float, default=None)
@click.option("--width", type=click.IntRange(8, 4096), default=None)
@click.option("--height", type=click.IntRange(8, 4096), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--negative-prompt", default=None)
@click.option("--threads", type=click.IntRange(0, 256), default=0, help="torch threads (0: physical cores).")
@click.option("--verify", is_flag=True, help="Re-hash every file before loading (default: sizes and links).")
@cache_dir_option
@quiet_option
@json_option
def run(
    spec: str,
    prompt: str,
    output: Path,
    steps: int | None,
    guidance: float | None,
    width: int | None,
    height: int | None,
    seed: int,
    negative_prompt: str | None,
    threads: int,
    verify: bool,
    cache_dir: Path | None,
    quiet: bool,
    json_mode: bool,
) -> None:
    """Generate an image on the CPU from what is installed, with the network off (needs the runner extra).

    \b
    hfbundle run tiny-demo --prompt "a red cube" -o cube.png
    """
    from . import api

    out = Output(json_mode=json_mode, quiet=quiet)
    report = api.run(
        spec,
        prompt=prompt,
        output=output,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        seed=seed,
        negative_prompt=negative_prompt,
        threads=threads,
        cache_dir=cache_dir,
        progress=not (quiet or json_mode),
        verify=verify,
    )
    out.result(report, _render_generic)


def registry_options(f: F) -> F:
    """--username/--password-stdin/--plain-http, shared by push and pull."""
    f = click.option(
        "--retries",
        type=click.IntRange(0, 20),
        default=5,
        help="Retries of a failed request, with backoff (default 5).",
    )(f)
    f = click.option("--plain-http", is_flag=True, help="Talk HTTP, not HTTPS (loopback and lab registries).")(f)
    f = click.option("--password-stdin", is_flag=True, help="Read the registry password (or token) from stdin.")(f)
    return click.option("--username", default=None, help="Registry user (default: docker/podman credentials).")(f)


def _read_password(username: str | None, password_stdin: bool) -> str | None:
    if not password_stdin:
        return None
    if username is None:
        raise click.UsageError("--password-stdin needs --username")
    return sys.stdin.readline().rstrip("\r\n")


@cli.command()
@click.argument("source")
@click.argument("ref")
@registry_options
@click.option("--mount-from", multiple=True, metavar="NAME", help="Mount blobs from this repository of the registry.")
@cache_dir_option
@quiet_option
@json_option
def push(
    source: str,
    ref: str,
    username: str | None,
    password_stdin: bool,
    plain_http: bool,
    retries: int,
    mount_from: Sequence[str],
    cache_dir: Path | None,
    quiet: bool,
    json_mode: bool,
) -> None:
    """Push a bundle (or a SPEC's files from the cache) to an OCI registry as a ModelPack artifact.

    REF is [oci://]HOST[:PORT]/NAME[:TAG] or oci-layout:DIR[:TAG]. Blobs the registry has are not sent again.

    \b
    hfbundle push demo.tar.zst registry.lan:5000/models/demo:v1
    echo "$PW" | hfbundle push demo.tar.zst localhost:5000/demo:v1 --plain-http --username ci --password-stdin
    hfbundle push demo.tar.zst oci-layout:/media/usb/models:demo
    """
    from . import api

    out = Output(json_mode=json_mode, quiet=quiet)
    password = _read_password(username, password_stdin)
    with out.progress("pushing") as progress:
        report = api.push(
            source,
            ref,
            username=username,
            password=password,
            plain_http=plain_http,
            retries=retries,
            mount_from=mount_from,
            cache_dir=cache_dir,
            on_progress=progress,
        )
    out.result(report, _render_generic)


@cli.command()
@click.argument("ref")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write a bundle file.")
@click.option("--install", "do_install", is_flag=True, help="Install into the Hugging Face cache.")
@registry_options
@cache_dir_option
@copy_option
@click.option("--keep-refs", is_flag=True, help="Leave refs that already exist alone.")
@click.option("--trust-existing", is_flag=True, help="Do not re-hash blobs already in the cache.")
@quiet_option
@json_option
def pull(
    ref: str,
    output: Path | None,
    do_install: bool,
    username: str | None,
    password_stdin: bool,
    plain_http: bool,
    retries: int,
    cache_dir: Path | None,
    copy: bool | None,
    keep_refs: bool,
    trust_existing: bool,
    quiet: bool,
    json_mode: bool,
) -> None:
    """Pull an artifact `push` wrote: into a bundle file (-o) or straight into the cache (--install).

    Every layer is checked against its digest before it is visible; an interrupted pull resumes without
    fetching again what it had installed. Only the registry is contacted (HF_HUB_OFFLINE=1 is fine).

    \b
    hfbundle pull registry.lan:5000/models/demo:v1 --install
    hfbundle pull oci-layout:/media/usb/models:demo -o demo.tar.zst
    """
    from . import api

    if output is None and not do_install:
        raise click.UsageError("give -o BUNDLE or --install")
    password = _read_password(username, password_stdin)
    out = Output(json_mode=json_mode, quiet=quiet)
    with out.progress("pulling") as progress:
        report = api.pull(
            ref,
            output=output,
            install=do_install,
            cache_dir=cache_dir,
            username=username,
            password=password,
            plain_http=plain_http,
            retries=retries,
            copy=copy,
            keep_refs=keep_refs,
            trust_existing=trust_existing,
            on_progress=progress,
        )
    out.result(report, _render_generic)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Recipe to write.")
@click.option("--upstream", default=None, metavar="URL", help="Hub to forward to (default: HF_ENDPOINT).")
@click.option("--append", is_flag=True, help="Merge this run into the recipe (one more mode of the app).")
@click.option("--keep-partial", is_flag=True, help="Write the recipe even when the command fails.")
@click.option("--mode", "run_name", default=None, metavar="NAME", help="This run's name in the recipe (default run-N).")
@json_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def trace(
    output: Path,
    upstream: str | None,
    append: bool,
    keep_partial: bool,
    run_name: str | None,
    json_mode: bool,
    command: Sequence[str],
) -> None:
    """Run COMMAND through a recording Hub proxy and write a recipe of exactly the files it fetched.

    COMMAND runs with HF_ENDPOINT at a loopback proxy and a fresh, empty Hugging Face cache; its output and exit
    status pass through. Every repo is pinned to the commit it got; each file notes the runs (modes) needing it.

    \b
    hfbundle trace -o app.toml --mode base -- python app.py
    hfbundle trace -o app.toml --append --mode taesd -- python app.py --taesd
    hfbundle build app.toml -o app.tar.zst
    """
    from . import api

    report = api.trace(
        list(command), output=output, upstream=upstream, append=append, keep_partial=keep_partial, run_name=run_name
    )
    if json_mode:
        Output(json_mode=True).result(report, _render_generic)
    else:
        for line in report.render():
            click.echo(line, err=True)  # stdout stays the command's own
    if report.exit_code != 0:
        sys.exit(report.exit_code)


# -- renderers ---------------------------------------------------------------------------------------------


def _render_recipes(report: Any) -> list[str]:
    return [f"{r['name']:32} {r.get('description', '')}" for r in report.to_json()["recipes"]]


def _warn_names(out: Output, lock: Any) -> None:
    """Names a Windows (or case-folding) cache cannot hold: the bundle author hears it at resolve and build."""
    from .winnames import lock_problems

    for problem in lock_problems(lock):
        out.info(f"warning: {problem.describe()}; installing on Windows will refuse it")


def _render_lock(lock: Any) -> list[str]:
    lines = []
    for r in lock.repos:
        size = sum(f.size for f in r.files)
        lines.append(
            f"{r.repo_type}:{r.repo_id}@{r.revision} → {r.commit}  ({r.role}, {len(r.files)} files, {human_size(size)})"
        )
        lines.extend(f"    {f.path}  {human_size(f.size)}" for f in r.files)
    lines.append(f"total {human_size(lock.total_size)}")
    return lines


def _render_build(report: Any) -> list[str]:
    ratio = report.bytes_out / report.bytes_in if report.bytes_in else 1.0
    rate = report.bytes_in / report.seconds / 1e6 if report.seconds else 0.0
    return [
        *(f"  {t}:{r}@{c}" for t, r, c in report.repos),
        f"wrote {report.output}: {report.files} files, {report.blobs} blobs, "
        f"{human_size(report.bytes_in)} → {human_size(report.bytes_out)} ({ratio:.2f}) in {report.seconds:.1f} s "
        f"({rate:.0f} MB/s)",
        f"bundle id {report.bundle_id}",
        *([f"signed by key {report.signed_by}"] if getattr(report, "signed_by", None) else []),
    ]


def _render_inspect(info: Any) -> list[str]:
    data = info.to_json()
    lines = [f"bundle {data.get('bundle_id')}  format {data.get('format_version')}  kind {data.get('kind')}"]
    for repo in data.get("repos", []):
        lines.append(f"  {repo.get('repo_type')}:{repo.get('repo_id')}")
        for key, val in repo.items():
            if key in ("repo_type", "repo_id"):
                continue
            if isinstance(val, dict):
                val = ", ".join(f"{k} → {v}" for k, v in val.items()) or "none"
            elif isinstance(val, list):
                val = ", ".join(str(v) for v in val) or "none"
            elif key == "size" and isinstance(val, int):
                val = human_size(val)
            lines.append(f"      {key}: {val}")
    for key in ("file_count", "blob_count", "total_size", "compressed_size", "volumes"):
        if data.get(key) is not None:
            lines.append(f"{key.replace('_', ' ')}: {data[key]}")
    signature = data.get("signature")
    if isinstance(signature, dict):
        lines.append(str(signature.get("summary", "")))
    if data.get("delta"):
        expects = data.get("expects", [])
        lines.append(
            f"delta: expects {len(expects)} blob(s), {human_size(sum(e['size'] for e in expects))}, "
            "already in the target cache (installing refuses, writing nothing, if one is missing):"
        )
        lines += [f"  {e['sha256']}  {human_size(e['size'])}  {e['file']}" for e in expects]
    return lines


def _render_kit(report: Any) -> list[str]:
    lines = [f"kit {report.output}: {human_size(report.total_bytes)} in {report.seconds:.1f} s"]
    lines += [
        f"  {b.path}  {human_size(b.size)}{'  (delta)' if b.delta else ''}  {b.bundle_id[:12]}" for b in report.bundles
    ]
    lines.append(
        f"  wheels/: {len(report.wheels)} wheels, {human_size(report.wheel_bytes)} for {'; '.join(report.targets)}"
    )
    if report.runner:
        lines.append(f"  of which the runner's torch and friends: {human_size(report.runner_bytes)}")
    lines.append("offline: copy the folder, then `sh install.sh` (Linux/macOS) or `install.bat` (Windows)")
    return lines


def _render_generic(report: Any) -> list[str]:
    render = getattr(report, "render", None)
    if callable(render):
        return list(render())
    return [f"{k}: {v}" for k, v in report.to_json().items()]


# -- entry point -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one error boundary mapping library errors to messages and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("HFBUNDLE_DEBUG") == "1"
    # A run keeps records for every file of a cache, and CPython's collector, run every 700 new objects, walks
    # them again and again: ~500 collections took 0.26-0.29 s of a 2 s backup or restore of 20,000 files (issue
    # 18). Our records hold no cycles to speak of; as mypy does, collect after 50,000 new objects (6 collections,
    # 0.03-0.05 s). Set back when the command returns (an in-process caller keeps its own setting).
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)
    try:
        cli.main(args=args, prog_name="hfbundle", standalone_mode=False)
    except HfBundleError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {e.message}", err=True)
        if e.hint:
            click.echo(f"  hint: {e.hint}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: nothing partial was left behind", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    finally:
        gc.set_threshold(*thresholds)
    sys.exit(0)
