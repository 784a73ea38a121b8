"""Fixtures of the hostile suite: the pre-filled cache every case also runs against."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import craft
from .harness import install_bytes, loader_problems


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the hostile repo at an older commit (``refs/main`` there), copied for each case."""
    cache = tmp_path_factory.mktemp("prefilled") / "cache"
    install_bytes(craft.bundle_bytes(craft.prefill()), cache)
    assert loader_problems(cache) == []
    return cache


@pytest.fixture(params=["in order", "lanes"])
def lane_modes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a case twice for a bundle file: blobs streamed one after another, and on parallel lanes (which a
    file of several large blobs gets, see ``bundler.install.run._Run._lanes``). Pipes always stream in order."""
    if request.param == "lanes":
        import bundler.install.run

        monkeypatch.setattr(bundler.install.run, "LANE_MIN_BYTES", 0)
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return str(request.param)
