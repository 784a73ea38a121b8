"""Repo file names that cannot exist in a Windows (or case-folding) Hugging Face cache.

A name that is fine on Linux can break a cache elsewhere: ``aux.json`` opens the AUX device on Windows, ``a:b``
writes an NTFS alternate stream, ``name.`` loses its dot, ``Config.json`` and ``config.json`` are one file on
Windows, macOS (by default) and exFAT sticks, and ``models--org--name/snapshots/<40 hex>/…`` under
``C:\\Users\\<user>\\.cache\\huggingface\\hub`` easily passes Windows' 260-character limit.

:func:`find_problems` lists every such name of one snapshot, each naming the repo and the file. Who decides
what a problem means:

- ``resolve`` and ``build`` warn (the bundle author learns that Windows users will be refused);
- ``install`` refuses before anything is written when the target cannot hold the name (Windows; a case
  collision on a case-folding filesystem; a long path on a Windows without the ``LongPathsEnabled`` policy)
  and warns otherwise, so a Linux user installing on Linux is never blocked by a Windows-only problem.

Absolute, UNC, drive-letter and ``..`` names are refused everywhere by :func:`bundler.paths.check_relpath`
before this runs, as huggingface_hub does under both rules since 1.26.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import oscompat
from .errors import UnsafePathError

if TYPE_CHECKING:
    from .bundle.manifest import Manifest
    from .lockfile import Lock

__all__ = [
    "DEFAULT_WINDOWS_CACHE",
    "NameProblem",
    "check_install",
    "find_problems",
    "lock_problems",
    "raise_for",
    "refuse_case_twins",
    "repo_folder",
]

ProblemKind = Literal["reserved", "character", "trailing", "case", "length"]

# The longest default cache: %USERPROFILE%\.cache\huggingface\hub with a 20-character user name (the most
# Windows allows). A path that fits under it fits under every user's default cache.
DEFAULT_WINDOWS_CACHE = "C:\\Users\\" + "u" * 20 + "\\.cache\\huggingface\\hub"
MAX_PATH_CHARS = 259  # MAX_PATH (260) minus the terminating NUL

# CON, PRN, AUX, NUL, COM0-9, LPT0-9 (and the superscript digits Windows also reserves), CONIN$, CONOUT$: with
# or without an extension, in any case, with trailing spaces before the extension ("nul .txt").
_RESERVED_RE = re.compile(
    r"(?i)^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3]|conin\$|conout\$) *(\..*)?$"
)
_BAD_CHARS = frozenset('<>:"|?*') | frozenset(chr(c) for c in range(32))
# A path this finds nothing in has no component problem (_component_problem): no bad character, no part ending
# with a dot or a space, no part starting as a reserved name does (the same case-insensitive match). One search
# per path instead of a check per part (issue 18: ~35 us a file of a 20,000-file snapshot).
_MAYBE_PROBLEM_RE = re.compile(r'[<>:"|?*\x00-\x1f]|[. ](?:/|$)|(?:^|/)(?i:con|prn|aux|nul|com|lpt)')


@dataclass(frozen=True)
class NameProblem:
    """One file of one repo whose name a Windows or case-folding cache cannot hold."""

    repo_type: str
    repo_id: str
    path: str
    kind: ProblemKind
    reason: str

    def describe(self) -> str:
        return f"{self.repo_type} {self.repo_id}: {self.path!r} {self.reason}"

    def to_json(self) -> dict[str, str]:
        return {
            "repo_type": self.repo_type,
            "repo_id": self.repo_id,
            "path": self.path,
            "kind": self.kind,
            "reason": self.reason,
        }


def repo_folder(repo_type: str, repo_id: str) -> str:
    """``models--org--name`` (huggingface_hub's ``repo_folder_name``, without importing it)."""
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def _component_problem(part: str) -> tuple[ProblemKind, str] | None:
    if _RESERVED_RE.match(part):
        return "reserved", f"uses the reserved Windows device name {part.split('.')[0].strip()!r}"
    bad = sorted({c for c in part if c in _BAD_CHARS})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        return "character", f"contains {shown}, which Windows does not allow in a file name"
    if part.endswith((".", " ")):
        return "trailing", "ends with a dot or a space, which Windows strips (another file would be opened)"
    return None


def find_problems(
    repo_type: str,
    repo_id: str,
    commit: str,
    paths: Iterable[str],
    *,
    cache_dir: str | None = DEFAULT_WINDOWS_CACHE,
) -> list[NameProblem]:
    """Every name of one snapshot that a Windows or case-folding cache cannot hold: reserved device names,
    forbidden characters, a trailing dot or space, names equal but for case (files, or a file and a folder),
    and (with ``cache_dir``, a Windows path) a snapshot path over 259 characters. Sorted by path."""
    found: list[NameProblem] = []
    files: dict[str, list[str]] = {}  # casefolded file path -> its spellings, sorted
    folders: dict[str, str] = {}  # casefolded folder path -> its first spelling
    prefix = None
    if cache_dir is not None:
        prefix = len(cache_dir.rstrip("\\/")) + len(f"\\{repo_folder(repo_type, repo_id)}\\snapshots\\{commit}\\")
    seen_folders: set[str] = set()  # folder paths as spelt, each put in ``folders`` once
    maybe = _MAYBE_PROBLEM_RE.search
    for path in sorted(set(paths)):
        if maybe(path) is not None:
            for part in path.split("/"):
                problem = _component_problem(part)
                if problem is not None:
                    found.append(NameProblem(repo_type, repo_id, path, problem[0], problem[1]))
                    break
        if prefix is not None and prefix + len(path) > MAX_PATH_CHARS:
            found.append(
                NameProblem(
                    repo_type,
                    repo_id,
                    path,
                    "length",
                    f"is {prefix + len(path)} characters long under {cache_dir}, over Windows' {MAX_PATH_CHARS}",
                )
            )
        files.setdefault(path.casefold(), []).append(path)
        # Its folders, longest first, up to the first one already seen (whose own folders were seen with it).
        end = path.rfind("/")
        while end >= 0:
            folder = path[:end]
            if folder in seen_folders:
                break
            seen_folders.add(folder)
            folders.setdefault(folder.casefold(), folder)
            end = path.rfind("/", 0, end)
    # Files equal but for case clobber each other; so do a file and a folder. Folders spelt two ways merge
    # (``A/x`` and ``a/y`` both stay readable), which is no problem.
    for key, spellings in files.items():
        for later in spellings[1:]:
            found.append(_case(repo_type, repo_id, later, spellings[0]))
        if key in folders:
            found.append(_case(repo_type, repo_id, spellings[0], folders[key] + "/"))
    return sorted(found, key=lambda p: (p.path, p.kind))


def _case(repo_type: str, repo_id: str, path: str, other: str) -> NameProblem:
    return NameProblem(
        repo_type, repo_id, path, "case", f"differs from {other!r} only in case: one name on Windows, macOS and exFAT"
    )


def raise_for(problems: Iterable[NameProblem], *, where: str, hint: str) -> None:
    """One :class:`UnsafePathError` listing every problem (at most 50 shown), if there are any."""
    problems = list(problems)
    if not problems:
        return
    shown = "; ".join(p.describe() for p in problems[:50])
    more = f" (and {len(problems) - 50} more)" if len(problems) > 50 else ""
    raise UnsafePathError(f"{len(problems)} file name(s) cannot exist in {where}: {shown}{more}", hint=hint)


def long_path_hint(cache_dir: str | Path) -> str:
    return (
        f"use a shorter cache folder (e.g. set HF_HUB_CACHE=C:\\hf, now {cache_dir}), or enable long paths: in an "
        "administrator PowerShell, New-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\FileSystem' "
        "-Name LongPathsEnabled -Value 1 -PropertyType DWORD -Force"
    )


def lock_problems(lock: Lock) -> list[NameProblem]:
    """The problems of every file a lock pins, under the longest default Windows cache (``resolve`` and
    ``build`` print them as warnings: the bundle works here, but not on every user's machine)."""
    found: list[NameProblem] = []
    for repo in lock.repos:
        found += find_problems(repo.repo_type, repo.repo_id, repo.commit, (f.path for f in repo.files))
    return found


def refuse_case_twins(lock: Lock) -> None:
    """``build`` refuses, before downloading anything, a lock with two files of one snapshot equal but for case
    (``README.md`` and ``readme.md``): the bundle format refuses them on every platform, since no case-folding
    filesystem (Windows, macOS by default, exFAT) can install both. Raises :class:`UnsafePathError` naming both
    files and the repo, with the ``--exclude`` that builds the bundle anyway."""
    found: list[str] = []
    first_excluded: str | None = None
    for repo in lock.repos:
        seen: dict[str, str] = {}
        for f in sorted(repo.files, key=lambda f: f.path):
            other = seen.setdefault(f.path.casefold(), f.path)
            if other != f.path:
                found.append(f"{repo.repo_type} {repo.repo_id}@{repo.commit[:8]}: {other!r} and {f.path!r}")
                first_excluded = first_excluded or f.path
    if first_excluded is None:
        return
    shown = "; ".join(found[:20]) + (f" (and {len(found) - 20} more)" if len(found) > 20 else "")
    raise UnsafePathError(
        f"{len(found)} pair(s) of files differ only in case, which one bundle cannot hold (Windows, macOS and exFAT "
        f"see one file): {shown}",
        hint=f"leave one of each pair out: hfbundle build SPEC --exclude '{first_excluded}' (or list it under the "
        "recipe's exclude); keep the spelling the loaders read",
    )


def check_install(manifest: Manifest, cache_dir: Path) -> tuple[str, ...]:
    """Before an install writes anything: refuse the names ``cache_dir`` cannot hold, return warnings for the
    rest (the names only a Windows cache would refuse).

    Refused: on Windows every problem (a long path only without the ``LongPathsEnabled`` policy: the loaders
    could not open it); anywhere, a case collision when the filesystem of ``cache_dir`` folds case (one file
    would replace the other). Raises :class:`~bundler.errors.UnsafePathError` naming each file and its repo."""
    windows = oscompat.WINDOWS
    folds = windows or oscompat.case_insensitive(cache_dir)
    where = str(cache_dir) if windows else DEFAULT_WINDOWS_CACHE
    refused: list[NameProblem] = []
    warned: list[NameProblem] = []
    for repo in manifest.repos:
        for snap in repo.snapshots:
            paths = [f.path for f in snap.files] + list(snap.no_exist)
            for p in find_problems(repo.repo_type, repo.repo_id, snap.commit, paths, cache_dir=where):
                if p.kind == "case":
                    fatal = folds
                elif p.kind == "length":
                    fatal = windows and not oscompat.long_paths_enabled()
                else:
                    fatal = windows
                (refused if fatal else warned).append(p)
    if refused:
        if all(p.kind == "length" for p in refused):
            hint = long_path_hint(cache_dir)
        elif all(p.kind == "case" for p in refused) and not windows:
            hint = "install into a case-sensitive filesystem, or ask for a bundle built with --exclude for one of them"
        else:
            hint = "this bundle cannot be installed on Windows as it is: ask its author to rebuild it with --exclude"
        raise_for(refused, where=f"the cache {cache_dir}", hint=hint)
    return tuple(f"{p.describe()}; a Windows cache would refuse it" for p in warned)
