"""hfbundle: make Hugging Face / diffusers models work offline, for sure.

The public API (each returns a report object; nothing prints)::

    import bundler
    lock = bundler.resolve("tiny-demo")                       # recipe → lock (needs the Hub)
    report = bundler.build("tiny-demo", "demo.tar.zst")      # lock → fetch → verify → bundle
    report = bundler.install("demo.tar.zst", cache_dir=...)  # bundle → HF cache, offline
    report = bundler.verify(cache_dir=...)                    # any cache, offline

Submodules are imported on first use so ``import bundler`` (and ``hfbundle --help``) stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("resolve", "build", "install", "verify", "inspect", "backup", "restore", "doctor", "run")

if TYPE_CHECKING:
    from .api import backup, build, doctor, inspect, install, resolve, restore, run, verify


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'bundler' has no attribute {name!r}")


__all__ = ["__version__", *_API]
