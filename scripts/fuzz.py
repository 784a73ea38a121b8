"""The long fuzz run: millions of mutated bundles through the reader and the installer, in-process.

    python scripts/fuzz.py --count 1000000            # all cores; prints counts per outcome and the rate
    python scripts/fuzz.py --count 20000 --start 5000000 --workers 1
    python scripts/fuzz.py --replay 123456             # one input again, with its full result

Input ``i`` is ``tests.hostile.mutate.mutate(random.Random(i), seed)``: any finding is reproducible from its
number. The property is the one of ``tests/hostile/test_fuzz.py``: installed (and the cache verifies, and a
loader finds nothing wrong) or refused with our own error; anything else (another exception, a hang, a cache
that does not verify, a message with control characters) is a *finding*, saved under ``--findings`` and
reported. Odd inputs are read as a pipe, even ones as a file; one in ``--prefilled-every`` goes into a cache
that already holds the repo. Caches live under ``--workdir`` (default: /dev/shm when it exists — a tmpfs,
where a fresh cache per input costs almost nothing). Exit status 1 when there are findings.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile import craft, mutate

CHUNK = 500

_seed: mutate.Seed | None = None
_prefilled: Path | None = None
_options: dict[str, Any] = {}


class Hang(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang()


def _init(workdir: str, timeout: float, prefilled_every: int) -> None:
    global _seed, _prefilled
    from tests.hostile.harness import install_bytes

    _seed = mutate.Seed.make()
    root = Path(tempfile.mkdtemp(dir=workdir, prefix="worker-"))
    _prefilled = root / "prefilled"
    install_bytes(craft.bundle_bytes(craft.prefill()), _prefilled)
    _options.update(workdir=root, timeout=timeout, prefilled_every=prefilled_every)
    signal.signal(signal.SIGALRM, _on_alarm)


def _one(i: int) -> tuple[mutate.Result, bytes]:
    assert _seed is not None
    data = mutate.mutate(random.Random(i), _seed)
    every = _options["prefilled_every"]
    prefilled = _prefilled if every and i % every == 0 else None
    signal.setitimer(signal.ITIMER_REAL, _options["timeout"])
    try:
        result = mutate.run_one(data, streamed=bool(i % 2), workdir=_options["workdir"], prefilled=prefilled)
    except Hang:
        result = mutate.Result("finding:hang", f"over {_options['timeout']} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return result, data


def _chunk(bounds: tuple[int, int]) -> tuple[int, collections.Counter[str], list[tuple[int, str, str, bytes]]]:
    counts: collections.Counter[str] = collections.Counter()
    findings: list[tuple[int, str, str, bytes]] = []
    for i in range(*bounds):
        result, data = _one(i)
        counts[result.outcome] += 1
        if not result.ok:
            findings.append((i, result.outcome, result.detail, data))
    return bounds[1] - bounds[0], counts, findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="inputs to run")
    parser.add_argument("--start", type=int, default=0, help="number of the first input")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before an input counts as a hang")
    parser.add_argument("--prefilled-every", type=int, default=8)
    parser.add_argument("--findings", default="fuzz-findings", help="folder for the inputs of findings")
    parser.add_argument("--replay", type=int, default=None, help="run one input and print its result")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after this long (reports what ran)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="hfbundle-fuzz-", dir=args.workdir)
    try:
        if args.replay is not None:
            _init(workdir, args.timeout, args.prefilled_every)
            result, data = _one(args.replay)
            print(f"input {args.replay}: {len(data)} bytes: {result.outcome}: {result.detail}")
            return 0 if result.ok else 1
        chunks = [
            (a, min(a + CHUNK, args.start + args.count)) for a in range(args.start, args.start + args.count, CHUNK)
        ]
        counts: collections.Counter[str] = collections.Counter()
        findings: list[tuple[int, str, str, bytes]] = []
        done = 0
        t0 = last = time.monotonic()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(args.workers, _init, (workdir, args.timeout, args.prefilled_every)) as pool:
            for n, c, f in pool.imap_unordered(_chunk, chunks):
                done += n
                counts.update(c)
                findings.extend(f)
                now = time.monotonic()
                if args.max_minutes is not None and now - t0 > args.max_minutes * 60:
                    pool.terminate()
                    break
                if not args.quiet and now - last > 30:
                    last = now
                    print(
                        f"{done}/{args.count} inputs, {done / (now - t0):.0f}/s, {len(findings)} finding(s)",
                        file=sys.stderr,
                        flush=True,
                    )
        elapsed = time.monotonic() - t0
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)

    stopped = f" (stopped after {args.max_minutes} min)" if done < args.count else ""
    print(f"{done} inputs in {elapsed:.0f} s ({done / elapsed:.0f} inputs/s, {args.workers} worker(s)){stopped}")
    for outcome, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>10}  {outcome}")
    if findings:
        out = Path(args.findings)
        out.mkdir(parents=True, exist_ok=True)
        print(f"{len(findings)} finding(s), inputs saved in {out}/:")
        for i, outcome, detail, data in sorted(findings)[:50]:
            (out / f"input-{i}.bin").write_bytes(data)
            print(f"  input {i}: {outcome}: {detail[:200]}")
        return 1
    print("no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
