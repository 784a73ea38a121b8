"""A Hypothesis property over the reader and the installer: a valid small bundle, mutated (bit flips,
truncations, insertions, frame splices, and structured changes re-assembled with a consistent index), installs
cleanly (and the cache verifies) or is refused with our own error — never another exception, never a hang,
never a changed cache. ``scripts/fuzz.py`` runs the same property over millions of inputs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import mutate
from .harness import alarm

SEED = mutate.Seed.make()
PER_EXAMPLE_SECONDS = 20


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_seed_bundle_installs(workdir: Path, template: Path) -> None:
    for streamed in (False, True):
        for prefilled in (None, template):
            assert (
                mutate.run_one(SEED.data, streamed=streamed, workdir=workdir, prefilled=prefilled, strict=True).outcome
                == "installed"
            )


@pytest.mark.stress
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**64 - 1), streamed=st.booleans(), prefilled=st.booleans())
def test_mutated_bundles_install_cleanly_or_are_refused(
    seed: int, streamed: bool, prefilled: bool, workdir: Path, template: Path
) -> None:
    data = mutate.mutate(random.Random(seed), SEED)
    with alarm(PER_EXAMPLE_SECONDS):
        result = mutate.run_one(
            data, streamed=streamed, workdir=workdir, prefilled=template if prefilled else None, strict=True
        )
    assert result.ok, f"seed {seed} (streamed={streamed}, prefilled={prefilled}): {result.outcome}: {result.detail}"


@pytest.mark.parametrize("op", mutate.RAW, ids=lambda f: f.__name__)
def test_each_raw_mutation_is_exercised(op: object, workdir: Path) -> None:
    """Every raw mutation, on its own, over a few seeds (so none silently stops mutating)."""
    changed = 0
    for i in range(25):
        rng = random.Random(i)
        data = op(rng, SEED, SEED.data)  # type: ignore[operator]
        changed += data != SEED.data
        with alarm(PER_EXAMPLE_SECONDS):
            result = mutate.run_one(data, streamed=bool(i % 2), workdir=workdir)
        assert result.ok, f"{op.__name__} seed {i}: {result.outcome}: {result.detail}"  # type: ignore[attr-defined]
    assert changed >= 20


@pytest.mark.stress
def test_structured_mutations_reach_the_installer(workdir: Path) -> None:
    """Structured mutations get past the reader often enough to test the installer (not only checksums)."""
    outcomes: dict[str, int] = {}
    for i in range(150):
        data = mutate.structured(random.Random(i), SEED, SEED.data)
        with alarm(PER_EXAMPLE_SECONDS):
            result = mutate.run_one(data, streamed=bool(i % 2), workdir=workdir)
        assert result.ok, f"structured seed {i}: {result.outcome}: {result.detail}"
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    assert outcomes.get("installed", 0) >= 10
    assert outcomes.get("refused:IntegrityError", 0) + outcomes.get("refused:UnsafePathError", 0) >= 5
