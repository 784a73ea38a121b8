"""Fixtures of the hostile suite: the pre-filled cache every case also runs against."""

from __future__ import annotations

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
