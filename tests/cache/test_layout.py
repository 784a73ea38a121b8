"""The cache lock hfbundle takes is the one huggingface_hub (the ``filelock`` package) takes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from bundler.cache import layout as hfcache


def test_file_lock_waits_for_a_filelock_holder(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    held, let_go, released, got = threading.Event(), threading.Event(), threading.Event(), threading.Event()

    def hold_until_told() -> None:  # filelock's locks belong to the thread that took them
        with FileLock(str(path)):
            held.set()
            let_go.wait(10)
            released.set()

    holder = threading.Thread(target=hold_until_told)
    holder.start()
    assert held.wait(10)

    def wait_for_it() -> None:
        with hfcache.file_lock(path, mode=0o664, timeout=10):
            if released.is_set():  # we got it only once they let go
                got.set()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    assert not got.wait(0.3)  # still waiting while it is held
    let_go.set()
    waiter.join(15)
    holder.join(15)
    assert got.is_set()


def test_file_lock_times_out_while_filelock_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with FileLock(str(path)):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="still held"), hfcache.file_lock(path, mode=0o664, timeout=0.2):
            pass
        assert time.monotonic() - t0 >= 0.2


def test_filelock_waits_for_our_lock_and_the_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with hfcache.file_lock(path, mode=0o664, timeout=1):
        assert path.stat().st_mode & 0o777 == 0o664
        with pytest.raises(Timeout):
            FileLock(str(path), timeout=0.1).acquire()
    with FileLock(str(path), timeout=1):
        pass
    assert path.exists()  # as filelock leaves it on POSIX
