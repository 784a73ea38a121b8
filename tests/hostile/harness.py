"""The invariant every hostile case is held to, and the runs that check it.

For a hostile bundle, ``install`` must fail with our own error (API: an :class:`HfBundleError` that is not a
usage error; CLI: exit 1, one ``error:`` line and an optional ``hint:`` line, no traceback), and the world must
be as before except for what a loader never reads: verified blobs under ``<repo>/blobs/`` (a re-run resumes
from them) and lock files under ``.locks/``. No ref, snapshot entry, trees listing or ``.no_exist`` marker may
appear, change or vanish, and nothing may change outside the cache. Each case runs against an empty cache and
a pre-filled one (the same repo installed at an older commit, ``refs/main`` pointing there), with the bundle
read as a file (index first) and as a pipe (front to back).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import stat
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from bundler import api
from bundler.bundle.reader import open_bundle
from bundler.cache.layout import RepoLayout, iter_repo_folders
from bundler.cli import main
from bundler.errors import HfBundleError, UsageError
from bundler.hashing import git_blob_sha1, is_sha1, is_sha256
from bundler.install import install
from bundler.verify import verify_cache

from . import craft

CANARY = Path("/tmp/hfbundle-hostile-canary")  # absolute names in crafted bundles point here

MODES = ("file", "pipe")
CACHES = ("empty", "prefilled")


# -- a tree's state -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """What a path is: a file by content hash, a link by target, a folder, or something else by mode."""

    kind: str
    detail: str = ""


def state(root: Path) -> dict[str, Node]:
    """Every entry below ``root`` (links not followed): paths, bytes (hashed), link targets."""
    out: dict[str, Node] = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode):
                out[rel] = Node("link", os.readlink(p))
            elif stat.S_ISDIR(mode):
                out[rel] = Node("dir")
            elif stat.S_ISREG(mode):
                out[rel] = Node("file", hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = Node("other", oct(mode))
    return out


def content_matches_name(path: Path) -> bool:
    name = path.name
    data = path.read_bytes()
    if is_sha256(name):
        return hashlib.sha256(data).hexdigest() == name
    return is_sha1(name) and git_blob_sha1(data) == name


def assert_only_verified_blobs_added(
    before: Mapping[str, Node], after: Mapping[str, Node], world: Path, cache: str
) -> None:
    """``world`` went from ``before`` to ``after``: nothing removed or changed; new only the cache folder,
    repo folders, ``<repo>/blobs/<hash>`` files holding what their name says, and ``.locks/…``."""
    for rel, node in before.items():
        assert after.get(rel) == node, f"{rel} changed: {node} -> {after.get(rel)}"
    prefix = cache + "/"
    for rel in sorted(set(after) - set(before)):
        node = after[rel]
        assert rel == cache or rel.startswith(prefix), f"written outside the cache: {rel}"
        if rel == cache:
            continue
        parts = rel[len(prefix) :].split("/")
        if parts[0] == ".locks":
            assert len(parts) <= 3 and node.kind in ("dir", "file"), f"unexpected under .locks: {rel}"
            assert len(parts) < 3 or parts[2].endswith(".lock"), f"unexpected under .locks: {rel}"
            continue
        assert re.fullmatch(r"(models|datasets|spaces)--.+", parts[0]), f"unexpected new entry: {rel}"
        if len(parts) == 1 or parts[1:] == ["blobs"]:
            assert node.kind == "dir", f"{rel} is not a folder"
            continue
        assert len(parts) == 3 and parts[1] == "blobs", f"a loader-visible path was written: {rel}"
        assert node.kind == "file", f"{rel} is a {node.kind}, not a verified blob"
        assert content_matches_name(world / rel), f"{rel} does not hold what its name says (or is a temp file)"
    assert not os.path.lexists(CANARY), f"{CANARY} was written"


def scan_view(cache: Path) -> tuple[tuple[tuple[str, str, tuple[str, ...]], ...], tuple[str, ...]]:
    """What huggingface_hub's own listing (``scan_cache_dir``, behind ``hf cache ls``) shows of ``cache``: the
    repos with their revisions, and the warnings (a repo folder it cannot read). A missing cache shows nothing."""
    from huggingface_hub import scan_cache_dir

    if not cache.is_dir():
        return (), ()
    info = scan_cache_dir(cache)
    repos = tuple(
        sorted((r.repo_type, r.repo_id, tuple(sorted(rev.commit_hash for rev in r.revisions))) for r in info.repos)
    )
    return repos, tuple(sorted(str(w).replace(str(cache), "<cache>") for w in info.warnings))


# -- loader's-eye view --------------------------------------------------------------------------------------


def loader_problems(cache: Path, complete: Mapping[str, Collection[str]] | None = None) -> list[str]:
    """What a loader would trip on, read the way huggingface_hub reads a cache: every ref names a snapshot
    folder; every file of a snapshot resolves inside the cache to content matching the blob it links to (or, in
    the copy layout, the trees listing); every file a trees listing names is there with its size. ``complete``
    maps commits to the paths their snapshot must hold in full as soon as its folder is visible."""
    import json

    problems: list[str] = []
    if not cache.is_dir():
        return problems
    root = Path(os.path.realpath(cache))
    for _type, _id, folder in iter_repo_folders(cache):
        snaps = folder / "snapshots"
        commits = {p.name for p in snaps.iterdir()} if snaps.is_dir() else set()
        refs = folder / "refs"
        for ref in refs.rglob("*") if refs.is_dir() else []:
            if ref.is_file():
                target = ref.read_text()
                if target not in commits:
                    problems.append(f"{ref.relative_to(cache)} -> {target!r}: no such snapshot")
        for commit in sorted(commits):
            snap = snaps / commit
            for path in sorted((complete or {}).get(commit, ())):
                if not (snap / path).is_file():
                    problems.append(f"snapshot {commit[:8]} is visible without {path}")
            tree_path = folder / "trees" / f"{commit}.json"
            listing: dict[str, Any] = {}
            if tree_path.is_file():
                with contextlib.suppress(ValueError):
                    listing = json.loads(tree_path.read_bytes()).get("files", {})
            for path, info in listing.items():
                full = snap / path
                if not full.is_file():
                    problems.append(f"{tree_path.relative_to(cache)} lists {path}, which the snapshot lacks")
                elif os.path.getsize(full) != info.get("size"):
                    problems.append(f"{full.relative_to(cache)}: size differs from the trees listing")
            for full in sorted(snap.rglob("*")):
                if full.is_dir() and not full.is_symlink():
                    continue
                rel = full.relative_to(cache)
                if not full.exists():
                    problems.append(f"{rel}: dangling")
                    continue
                real = Path(os.path.realpath(full))
                if root not in real.parents:
                    problems.append(f"{rel}: leads outside the cache")
                    continue
                if full.is_symlink():
                    if not content_matches_name(real):
                        problems.append(f"{rel}: its blob {real.name} does not hold what its name says")
                else:
                    info = listing.get(full.relative_to(snap).as_posix())
                    if info is not None:
                        data = full.read_bytes()
                        digest = hashlib.sha256(data).hexdigest() if info.get("lfs_sha256") else git_blob_sha1(data)
                        if digest != (info.get("lfs_sha256") or info.get("blob_id")):
                            problems.append(f"{rel}: content differs from the trees listing")
    return problems


# -- the runs -------------------------------------------------------------------------------------------------


class Unseekable(io.RawIOBase):
    """A pipe: no seek, short reads."""

    def __init__(self, data: bytes, step: int = 6000) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def pipe(data: bytes) -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(Unseekable(data)))


def write_bundle(folder: Path, data: bytes | Sequence[bytes], name: str = "hostile.tar.zst") -> Path:
    """The bundle as a file (or numbered volumes); returns the path to pass to install."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path = folder / name
        path.write_bytes(data)
        return path
    for i, vol in enumerate(data):
        (folder / f"{name}.{i + 1:03d}").write_bytes(vol)
    return folder / f"{name}.001"


def make_world(base: Path, prefilled_template: Path | None) -> tuple[Path, Path]:
    """``base/world`` with a sentinel folder beside the cache; the cache empty or copied from the template."""
    world = base / "world"
    (world / "outside").mkdir(parents=True)
    (world / "outside" / "sentinel.txt").write_text("must not change\n")
    cache = world / "cache"
    if prefilled_template is not None:
        shutil.copytree(prefilled_template, cache, symlinks=True)
    return world, cache


def api_install(src: Path | BinaryIO, cache: Path) -> HfBundleError | None:
    """Install through the public API; the error it raised, None on success. Any other exception escapes."""
    try:
        api.install(src, cache_dir=cache)
    except HfBundleError as e:
        return e
    return None


def cli_install(src: Path | bytes, cache: Path) -> tuple[int, str, str]:
    """``hfbundle install FILE`` (or ``-`` with the bytes on stdin), in-process: (exit code, stdout, stderr)."""
    import sys

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    stdin = sys.stdin
    if isinstance(src, bytes):
        sys.stdin = io.TextIOWrapper(pipe(src))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["install", "-" if isinstance(src, bytes) else str(src), "--cache-dir", str(cache)])
            except SystemExit as e:
                code = e.code
    finally:
        sys.stdin = stdin
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


def check_error(e: HfBundleError | None, match: str) -> HfBundleError:
    assert e is not None, "a hostile bundle was installed"
    assert not isinstance(e, UsageError), f"a hostile bundle is not a usage error: {e!r}"
    assert e.exit_code == 1
    assert "\n" not in e.message, f"not one line: {e.message!r}"
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in e.message), f"control characters: {e.message!r}"
    assert re.search(match, e.message, re.IGNORECASE), f"{e.message!r} does not match {match!r}"
    return e


def check_cli(code: int, out: str, err: str, match: str) -> None:
    assert code == 1, (code, err)
    assert out == "", out
    lines = err.rstrip("\n").split("\n")
    assert lines[0].startswith("error: ") and re.search(match, lines[0], re.IGNORECASE), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), err
    assert "Traceback" not in err


@dataclass
class Outcome:
    errors: dict[str, HfBundleError]


def assert_refused(
    data: bytes | Sequence[bytes],
    tmp_path: Path,
    template: Path,
    *,
    match: str,
    modes: Sequence[str] = MODES,
    caches: Sequence[str] = CACHES,
    cli: bool = True,
    pipe_match: str | None = None,
) -> Outcome:
    """The invariant, for one hostile bundle: refused with our error in every mode and cache, nothing a loader
    reads changed, nothing outside the cache touched, and the CLI says it in one line (exit 1)."""
    bundle = write_bundle(tmp_path / "in", data)
    errors: dict[str, HfBundleError] = {}
    modes = [m for m in modes if isinstance(data, bytes) or m == "file"]  # volumes are files
    for mode in modes:
        for kind in caches:
            world, cache = make_world(tmp_path / f"{mode}-{kind}", template if kind == "prefilled" else None)
            before, listed = state(world), scan_view(cache)
            src: Path | BinaryIO = bundle if mode == "file" else pipe(cast(bytes, data))
            e = check_error(api_install(src, cache), pipe_match if mode == "pipe" and pipe_match else match)
            errors[f"{mode}-{kind}"] = e
            assert_only_verified_blobs_added(before, state(world), world, "cache")
            assert scan_view(cache) == listed, "a refused install changed what scan_cache_dir lists"
            assert loader_problems(cache) == []
            if kind == "prefilled":
                assert RepoLayout(cache, "model", craft.REPO).read_ref("main") == craft.OLD_COMMIT
                assert verify_cache(cache).ok
    if cli:
        world, cache = make_world(tmp_path / "cli", template)
        before, listed = state(world), scan_view(cache)
        if "file" in modes:
            check_cli(*cli_install(bundle, cache), match)
        else:
            check_cli(*cli_install(cast(bytes, data), cache), pipe_match or match)
        assert_only_verified_blobs_added(before, state(world), world, "cache")
        assert scan_view(cache) == listed, "a refused install changed what scan_cache_dir lists"
    return Outcome(errors)


def assert_installed_safely(data: bytes, tmp_path: Path, template: Path) -> None:
    """For tolerated input (harmless damage, a listing repaired): the install succeeds in every mode and cache
    and the cache verifies, with nothing a loader would trip on and nothing outside the cache touched."""
    bundle = write_bundle(tmp_path / "in", data)
    for mode in MODES:
        for kind in CACHES:
            world, cache = make_world(tmp_path / f"{mode}-{kind}", template if kind == "prefilled" else None)
            src: Path | BinaryIO = bundle if mode == "file" else pipe(data)
            assert api_install(src, cache) is None
            assert verify_cache(cache).ok, verify_cache(cache).render()
            assert loader_problems(cache) == []
            assert [p for p in state(world) if not (p == "cache" or p.startswith(("cache/", "outside")))] == []


def install_bytes(data: bytes, cache: Path, *, streamed: bool = False, **kwargs: Any) -> Any:
    """Open ``data`` as a bundle (seekable or a pipe) and install it; for tests that need the report."""
    with open_bundle(pipe(data) if streamed else io.BytesIO(data), threads=1) as reader:
        return install(reader, cache, **kwargs)


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) when the block runs longer than ``seconds`` (main thread only)."""
    import signal

    def fire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def parametrize_cases(cases: Mapping[str, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return pytest.mark.parametrize("case", sorted(cases))


def assert_refused_or_harmless(
    data: bytes,
    tmp_path: Path,
    template: Path,
    spec: craft.Specimen,
    *,
    match: str = r".",
    modes: Sequence[str] = MODES,
) -> dict[str, HfBundleError | None]:
    """For damage that may leave the decoded content intact (a bit zstd never reads): either refused as in
    :func:`assert_refused`, or installed with exactly the original content. Never wrong content."""
    bundle = write_bundle(tmp_path / "in", data)
    results: dict[str, HfBundleError | None] = {}
    for mode in modes:
        for kind in CACHES:
            world, cache = make_world(tmp_path / f"{mode}-{kind}", template if kind == "prefilled" else None)
            before, listed = state(world), scan_view(cache)
            src: Path | BinaryIO = bundle if mode == "file" else pipe(data)
            e = api_install(src, cache)
            results[f"{mode}-{kind}"] = e
            if e is not None:
                check_error(e, match)
                assert_only_verified_blobs_added(before, state(world), world, "cache")
                assert scan_view(cache) == listed, "a refused install changed what scan_cache_dir lists"
                assert loader_problems(cache) == []
                continue
            assert verify_cache(cache).ok
            assert loader_problems(cache, {spec.commit: list(spec.files)}) == []
            lay = RepoLayout(cache, "model", spec.repo_id)
            for path, (content, _) in spec.files.items():
                assert lay.snapshot_file(spec.commit, path).read_bytes() == content, path
    return results
