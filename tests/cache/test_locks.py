"""The cache lock hfbundle takes is the one huggingface_hub (the ``filelock`` package) takes; filesystems
without locks are not waited on."""

from __future__ import annotations

import errno
import fcntl
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from bundler.cache import locks
from bundler.cache.layout import RepoLayout


def test_file_lock_waits_for_a_filelock_holder(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    held, released = threading.Event(), threading.Event()

    def hold_briefly() -> None:  # filelock's locks belong to the thread that took them
        with FileLock(str(path)):
            held.set()
            time.sleep(0.3)
            released.set()

    threading.Thread(target=hold_briefly).start()
    assert held.wait(10)
    with locks.file_lock(path, mode=0o664, timeout=10):
        assert released.is_set()  # we got it only once they let go


def test_file_lock_times_out_while_filelock_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with FileLock(str(path)):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="still held"), locks.file_lock(path, mode=0o664, timeout=0.2):
            pass
        assert time.monotonic() - t0 >= 0.2


def test_filelock_waits_for_our_lock_and_the_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with locks.file_lock(path, mode=0o664, timeout=1):
        assert path.stat().st_mode & 0o777 == 0o664
        with pytest.raises(Timeout):
            FileLock(str(path), timeout=0.1).acquire()
    with FileLock(str(path), timeout=1):
        pass
    assert path.exists()  # as filelock leaves it on POSIX


def test_held_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    lay = RepoLayout(tmp_path, "model", "org/m")
    lay.lock("a" * 40).parent.mkdir(parents=True)
    with (
        FileLock(str(lay.lock("a" * 40))),
        pytest.raises(locks.LockTimeout) as err,
        locks.repo_lock(lay, "a" * 40, timeout=0.2),
    ):
        pass
    assert str(lay.lock("a" * 40)) in str(err.value) and err.value.hint
    assert isinstance(err.value, TimeoutError)  # install's error boundary catches TimeoutError


def _no_flock(fd: int, op: int) -> None:
    raise OSError(errno.ENOLCK, "No locks available")


def test_a_filesystem_without_locks_is_not_waited_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flock failing with anything but "held" (ENOLCK on NFS without lockd): the lock is skipped at once instead
    of being taken for a held one and polled until the timeout."""
    monkeypatch.setattr(fcntl, "flock", _no_flock)
    path = tmp_path / "x.lock"
    t0 = time.monotonic()
    with locks.file_lock(path, timeout=600):
        pass
    assert time.monotonic() - t0 < 5


def test_a_filesystem_without_flock_at_all_is_not_waited_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSYS (no flock on that filesystem): no soft-lock fallback waiting out a lock file huggingface_hub left."""

    def no_sys(fd: int, op: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    path = tmp_path / "x.lock"
    path.touch()  # huggingface_hub leaves its lock files in place
    monkeypatch.setattr(fcntl, "flock", no_sys)
    t0 = time.monotonic()
    with locks.file_lock(path, timeout=600):
        pass
    assert time.monotonic() - t0 < 5


def test_repo_claim_shared_excludes_exclusive(tmp_path: Path) -> None:
    lay = RepoLayout(tmp_path, "model", "org/m")
    a, b = locks.RepoClaim(lay), locks.RepoClaim(lay)
    a.share()
    assert lay.lock(locks.CLAIM_NAME).is_file()
    assert not b.exclusive()  # a live install's temps are never swept
    a.release()
    assert b.exclusive()
    with pytest.raises(locks.LockTimeout):
        locks.RepoClaim(lay).share(timeout=0.2)
    b.release()


def test_repo_claim_without_locks_is_never_exclusive_yet_sweeps_only_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fcntl, "flock", _no_flock)
    claim = locks.RepoClaim(RepoLayout(tmp_path, "model", "org/m"))
    t0 = time.monotonic()
    claim.share(timeout=600)
    assert time.monotonic() - t0 < 5
    assert claim.exclusive() and not claim.supported  # the sweep then removes only day-old temps
