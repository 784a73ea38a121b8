"""What many tests need, once: hashes, running the CLI or a tool in a child process, and a snapshot of a tree."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def sha256(data: bytes) -> str:
    """The hex SHA-256 of ``data`` (a blob's name in a Hub cache)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hfbundle(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 300,
    cwd: Path = REPO_ROOT,
) -> subprocess.CompletedProcess[str]:
    """``hfbundle ARGS`` in a fresh interpreter (the checkout's code); the caller checks the exit code.

    Without ``env`` the child inherits this environment with the checkout on ``PYTHONPATH``.
    """
    return subprocess.run(
        [sys.executable, "-m", "bundler", *args],
        env=dict(env) if env is not None else {**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def run(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command that must succeed; on failure the assertion shows its output."""
    proc = subprocess.run(
        list(command),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{' '.join(command)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


Entry = tuple[str, ...]


def tree_snapshot(
    root: Path, *, skip: Callable[[str], bool] = lambda rel: False, folders: bool = False
) -> dict[str, Entry]:
    """Every entry below ``root`` by relative POSIX path: ``("link", target)``, ``("file", sha256)`` and, with
    ``folders``, ``("dir",)``. ``skip(rel)`` leaves an entry out (and, for a folder, everything in it)."""
    out: dict[str, Entry] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not skip((here / d).relative_to(root).as_posix())]
        for name in dirnames + filenames:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if skip(rel):
                continue
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(mode):
                if folders:
                    out[rel] = ("dir",)
            else:
                out[rel] = ("file", sha256_file(path))
    return out


def _lock_file(rel: str) -> bool:
    # .locks/ and the shared store's <xet>.lock are created by whoever last took the lock.
    return rel == ".locks" or rel.startswith(".locks/") or rel.endswith(".lock")


def cache_tree(root: Path) -> dict[str, Entry]:
    """A Hub cache's files and links (:func:`tree_snapshot`) without its lock files."""
    return tree_snapshot(root, skip=_lock_file)


def cache_tree_without_records(root: Path) -> dict[str, Entry]:
    """:func:`cache_tree` without hfbundle's own install records (``.hfbundle``), to compare against the Hub's."""
    return tree_snapshot(root, skip=lambda rel: _lock_file(rel) or rel.split("/")[-1].startswith(".hfbundle"))
