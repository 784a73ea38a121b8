"""The "foreign platform" lane: this machine made to look like Windows / macOS to hfbundle.

Set ``HFBUNDLE_FOREIGN_PLATFORM=1`` and the test session (``tests/conftest.py``) and every Python subprocess it
starts (through ``tests/foreign/site/sitecustomize.py`` on ``PYTHONPATH``) lose what only POSIX / Linux has:

- ``import fcntl`` fails inside hfbundle (file locks then come from ``filelock`` alone, as on Windows, where it
  uses ``msvcrt``; ``filelock`` keeps its own OS lock here so a killed process still drops its lock);
- ``os.pread``, ``os.preadv`` and ``os.fchmod`` are gone (Windows has none of them);
- the ctypes ``syncfs`` / ``sync_file_range`` are not found (macOS and Windows have neither);
- hfbundle cannot make symlinks or hard links (Windows without Developer Mode, exFAT,
  FAT32): both fail with EPERM, so installs take the copy layout and copies instead of links. Tests' own
  fixtures may still make them (a hostile test needs a symlink to attack with);
- the name check sees a case-folding filesystem (``HFBUNDLE_CASE_INSENSITIVE=1``).

Everything else (``os.name``, path syntax) stays POSIX: the lane tests the fallbacks, not Windows itself.
"""

from __future__ import annotations

import builtins
import errno
import os
import types
from typing import Any

ENV = "HFBUNDLE_FOREIGN_PLATFORM"
_REMOVED = frozenset({"pread", "preadv", "fchmod"})
_applied = False


def active() -> bool:
    return os.environ.get(ENV) == "1"


def _refuses(importer: str) -> bool:
    """Modules that see the foreign ``os``: hfbundle's runtime only. Not the tests' fixtures, nor ``filelock``
    (which keeps the real calls its Windows twin replaces with ``msvcrt``), nor huggingface_hub: the caches the
    tests build with the real client stay as a Linux machine made them (a cache carried over), and the client
    still reads hfbundle's copy layout with its own calls."""
    return importer.startswith("bundler") and not importer.startswith("bundler.testing")


class _ForeignOs(types.ModuleType):
    """``os`` as Windows without Developer Mode shows it: no pread/preadv/fchmod; links and symlinks refused."""

    def __getattr__(self, name: str) -> Any:
        if name in _REMOVED:
            raise AttributeError(f"module 'os' has no attribute {name!r} (foreign-platform lane)")
        return getattr(os, name)

    @staticmethod
    def link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted (foreign-platform lane: no hard links)", str(dst))

    @staticmethod
    def symlink(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        msg = "A required privilege is not held by the client (foreign-platform lane: no symlinks)"
        raise OSError(errno.EPERM, msg, str(dst))


FOREIGN_OS = _ForeignOs("os")


def apply() -> None:
    """Make hfbundle imported from now on see the foreign ``os`` (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    real_import = builtins.__import__

    def foreign_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        importer = str((globals or {}).get("__name__", "")) if level == 0 else ""
        if importer and _refuses(importer):
            if name == "fcntl":
                raise ImportError("No module named 'fcntl' (foreign-platform lane)")
            if name == "os" or (name == "os.path" and not fromlist):  # `import os.path` binds `os`
                return FOREIGN_OS
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = foreign_import
    os.environ["HFBUNDLE_CASE_INSENSITIVE"] = "1"
    from bundler import oscompat

    oscompat.libc_function = lambda name: None
    assert not hasattr(vars(oscompat)["os"], "pread"), (
        "bundler was imported before the foreign-platform lane was applied"
    )
