"""progress.Counter: throttled records for many small files (issue 18)."""

from __future__ import annotations

from bundler.progress import Counter, Progress


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
