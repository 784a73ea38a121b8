"""Repo folders an interrupted install left behind, and their removal.

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
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..hashing import is_sha1, is_sha256
from ..records import JsonRecord
from .layout import TEMP_PREFIX, iter_repo_folders

logger = logging.getLogger(__name__)

QUIET_SECONDS = 60.0  # a folder written to this recently may belong to an install still running: left alone
_OUR_TEMP = re.compile(rf"^{re.escape(TEMP_PREFIX)}.*\.tmp$")


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
        if "snapshots" in names or any(n != "blobs" and not _OUR_TEMP.match(n) for n in names):
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
            if entry.is_file(follow_symlinks=False) and (is_sha256(entry.name) or is_sha1(entry.name)):
                blobs += 1
                size += st.st_size
            elif not _OUR_TEMP.match(entry.name):
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
