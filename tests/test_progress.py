"""progress.Counter: throttled records for many small files (issue 18)."""

from __future__ import annotations

from bundler.progress import STEP_BYTES, Counter, Progress, files_due


def test_counter_throttles_add_and_flush_sends_the_last_counts() -> None:
    seen: list[Progress] = []
    counter = Counter(seen.append, "verify", every=3600.0)
    for _ in range(1000):
        counter.add(10, files=1)
    assert len(seen) == 1  # the first call, then nothing for an hour
    counter.flush()
    assert seen[-1] == Progress("verify", 10_000, 0, None, 1000, 0)
    counter.flush()  # nothing held back: nothing sent
    assert len(seen) == 2


def test_counter_without_every_sends_each_call() -> None:
    seen: list[Progress] = []
    counter = Counter(seen.append, "verify")
    counter.add(1, files=1)
    counter.add(2, files=1)
    assert [p.done_bytes for p in seen] == [1, 3]


def test_files_are_told_in_steps_each_large_one_and_the_last() -> None:
    told = [n for n in range(1, 601) if files_due(n, 600, 3000)]
    assert told == [256, 512, 600]
    assert files_due(7, 600, STEP_BYTES) and not files_due(7, 600, STEP_BYTES - 1)
