"""Leftovers: repo folders an interrupted install left behind (and their removal), and the cache-wide things a
backup does not pack (:func:`root_leftovers`: unknown entries, shared Xet payloads no repo links to).

An install creates a repo folder's ``snapshots/`` only when it places a snapshot (a repo folder with one is a
repo to ``scan_cache_dir`` and ``hf cache ls``, even empty), and a refused install removes the repo folders it
created. Only a killed install (SIGKILL, power cut) leaves one: ``<repo>/blobs/`` with verified blobs and
perhaps our temp files, no ``snapshots/``, no ``refs/``. ``scan_cache_dir`` then warns "Snapshots dir doesn't
exist in cached repo" and lists no repo. The real client's own interrupted first download leaves more: ``refs/``,
an empty ``snapshots/<commit>/`` and ``blobs/<etag>.<id>.incomplete``, which ``scan_cache_dir`` lists as a repo
with a revision holding no file (measured in ``tests/test_leftovers.py``). ``verify`` reports our leftover;
``doctor --fix`` removes it (the next install re-streams its blobs).

    >>> [a.folder.name for a in abandoned_repos(cache)]  # doctest: +SKIP
    ['models--org--name']
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..records import JsonRecord
from .layout import iter_repo_folders
from .model import SHARED_MARKER, Leftover, size_of
from .names import is_blob_name, is_ours, is_shared_store_file, is_temp, is_xet_hash, listdir

logger = logging.getLogger(__name__)

QUIET_SECONDS = 60.0  # a folder written to this recently may belong to an install still running: left alone


@dataclass(frozen=True)
class AbandonedRepo(JsonRecord, skip=("folder",)):
    """A repo folder with blobs only (no ``snapshots/``, no ``refs/``): what a killed install leaves."""

    repo_type: str
    repo_id: str
    folder: Path
    blobs: int
    size: int

    def describe(self) -> str:
        return (
            f"{self.repo_id}: removed {self.folder.name}/, left by an interrupted install ({self.blobs} blob(s), "
            f"{self.size} bytes, no snapshot); scan_cache_dir warned about it"
        )


def abandoned_repos(cache_dir: Path, *, now: float | None = None) -> list[AbandonedRepo]:
    """Repo folders holding nothing but ``blobs/`` (hash-named blobs and our temp files) and our staging
    folders, untouched for :data:`QUIET_SECONDS`. Anything else (a ``refs/``, a real client's ``.incomplete``
    download, a file we do not know) and the folder is not ours to judge."""
    now = time.time() if now is None else now
    out: list[AbandonedRepo] = []
    for repo_type, repo_id, folder in iter_repo_folders(cache_dir):
        try:
            names = set(os.listdir(folder))
        except OSError:
            continue
        if "snapshots" in names or any(n != "blobs" and not is_ours(n) for n in names):
            continue
        try:
            entries = list(os.scandir(folder / "blobs")) if "blobs" in names else []
        except OSError:
            continue
        newest = os.lstat(folder).st_mtime
        size = blobs = 0
        ours = True
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            newest = max(newest, st.st_mtime)
            if entry.is_file(follow_symlinks=False) and is_blob_name(entry.name):
                blobs += 1
                size += st.st_size
            elif not is_ours(entry.name):
                ours = False
                break
        if ours and now - newest >= QUIET_SECONDS:
            out.append(AbandonedRepo(repo_type, repo_id, folder, blobs, size))
    return out


def remove_abandoned(cache_dir: Path, *, now: float | None = None) -> list[AbandonedRepo]:
    """Remove what :func:`abandoned_repos` finds (``doctor --fix``)."""
    removed = []
    for found in abandoned_repos(cache_dir, now=now):
        shutil.rmtree(found.folder)
        logger.debug("removed %s (an interrupted install's leftover)", found.folder)
        removed.append(found)
    return removed


def root_leftovers(cache: Path, root: Path, used_xet: set[str]) -> list[Leftover]:
    """Cache-wide leftovers (only reported when the whole cache is backed up): unknown entries and shared Xet
    payloads no repo links to. ``.locks/`` and ``CACHEDIR.TAG`` are the cache's own; a restore recreates them."""
    out: list[Leftover] = []
    for name in listdir(cache):
        path = cache / name
        if name in (".locks", "CACHEDIR.TAG", "blobs"):
            continue
        if name.split("--", 1)[0] in ("models", "datasets", "spaces"):
            if path.is_symlink():
                out.append(Leftover(name, "a repo folder that is a link (not followed)"))
            elif not path.is_dir():
                out.append(Leftover(name, "not part of the hub cache layout", size_of(path)))
            continue
        out.append(Leftover(name, "not part of the hub cache layout", size_of(path)))
    store = cache / "blobs"
    if store.is_symlink() or not store.is_dir():
        return out
    for prefix in listdir(store):
        folder = store / prefix
        if prefix == SHARED_MARKER:
            continue
        if (
            not (len(prefix) == 2 and all(c in "0123456789abcdef" for c in prefix))
            or folder.is_symlink()
            or not folder.is_dir()
        ):
            out.append(Leftover(f"blobs/{prefix}", "not part of the shared Xet store", size_of(folder)))
            continue
        for name in listdir(folder):
            rel = f"blobs/{prefix}/{name}"
            if is_shared_store_file(name):
                continue
            if is_xet_hash(name) and name.startswith(prefix):
                if name not in used_xet:
                    out.append(Leftover(rel, "shared Xet blob no repo links to", size_of(folder / name)))
            elif is_temp(name):
                out.append(Leftover(rel, "temp file of an interrupted write", size_of(folder / name)))
            else:
                out.append(Leftover(rel, "not part of the shared Xet store", size_of(folder / name)))
    return out
