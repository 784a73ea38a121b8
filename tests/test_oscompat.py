"""The platform seam (``bundler.oscompat``): each fallback exercised on this machine by removing the native call."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from bundler import oscompat


@pytest.fixture
def no_native_pread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "pread", raising=False)
    monkeypatch.delattr(os, "preadv", raising=False)


def _data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(1 << 16)
    path = tmp_path / "data"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("native", [True, False], ids=["native", "seek-and-read"])
def test_positioned_reads_from_many_threads_see_their_own_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    if not native:
        monkeypatch.delattr(os, "pread", raising=False)
        monkeypatch.delattr(os, "preadv", raising=False)
    path, data = _data_file(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    errors: list[str] = []

    def worker(seed: int) -> None:
        for i in range(200):
            offset = (seed * 7919 + i * 104729) % (len(data) - 100)
            if i % 2:
                got = oscompat.pread(fd, 100, offset)
            else:
                buf = bytearray(100)
                n = oscompat.pread_into(fd, memoryview(buf), offset)
                got = bytes(buf[:n])
            if got != data[offset : offset + 100]:
                errors.append(f"thread {seed} read {offset} wrong")

    try:
        threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.close(fd)
    assert errors == []


def test_pread_at_the_end_returns_fewer_bytes(tmp_path: Path, no_native_pread: None) -> None:
    path, data = _data_file(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert oscompat.pread(fd, 50, len(data) - 10) == data[-10:]
        buf = bytearray(50)
        assert oscompat.pread_into(fd, memoryview(buf), len(data)) == 0
    finally:
        os.close(fd)


def test_fchmod_falls_back_to_chmod_of_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fchmod", raising=False)
    path = tmp_path / "key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        oscompat.fchmod(fd, path, 0o600)
    finally:
        os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("code", [errno.EPERM, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP, errno.EACCES])
def test_a_refused_hard_link_says_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refuse)
    (tmp_path / "a").write_bytes(b"x")
    assert oscompat.hard_link(tmp_path / "a", tmp_path / "b") is False
    assert not (tmp_path / "b").exists()


def test_a_windows_refusal_by_winerror_says_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: object, dst: object) -> None:
        err = OSError(errno.EIO, "Incorrect function")  # CreateHardLink on FAT: ERROR_INVALID_FUNCTION
        err.winerror = 1  # type: ignore[attr-defined]
        raise err

    monkeypatch.setattr(os, "link", refuse)
    assert oscompat.hard_link(tmp_path / "a", tmp_path / "b") is False


@pytest.mark.native_only("the lane refuses every hard link before the disk is asked")
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_a_full_or_broken_disk_is_not_a_refused_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def fail(src: object, dst: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", fail)
    with pytest.raises(OSError) as info:
        oscompat.hard_link(tmp_path / "a", tmp_path / "b")
    assert info.value.errno == code


@pytest.mark.native_only("the lane refuses hard links")
def test_hard_link_links_where_it_can(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    assert oscompat.hard_link(tmp_path / "a", tmp_path / "b") is True
    assert os.path.samefile(tmp_path / "a", tmp_path / "b")


def test_no_link_function_at_all_says_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "link")
    assert oscompat.hard_link(tmp_path / "a", tmp_path / "b") is False


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("C:\\Users\\me\\hub\\x", "C:\\Users\\me\\hub\\x"),  # short: unchanged
        ("C:\\" + "a" * 300, "\\\\?\\C:\\" + "a" * 300),
        ("\\\\server\\share\\" + "b" * 300, "\\\\?\\UNC\\server\\share\\" + "b" * 300),
        ("\\\\?\\C:\\" + "c" * 300, "\\\\?\\C:\\" + "c" * 300),  # already extended
    ],
    ids=["short", "drive", "unc", "extended"],
)
def test_extended_path_on_windows(monkeypatch: pytest.MonkeyPatch, path: str, expected: str) -> None:
    monkeypatch.setattr(oscompat, "WINDOWS", True)
    assert oscompat.extended_path(path) == expected


def test_extended_path_elsewhere_is_the_path() -> None:
    long = "/x/" + "a" * 400
    assert oscompat.extended_path(long) == long or oscompat.WINDOWS


def test_case_probe_sees_this_filesystem_and_the_forced_lane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HFBUNDLE_CASE_INSENSITIVE", raising=False)
    probe = tmp_path / "Probe"
    probe.write_bytes(b"")
    folds = (tmp_path / "probe").exists()
    assert oscompat.case_insensitive(tmp_path / "not" / "yet") is folds
    assert not list(tmp_path.glob(".hfbundle-Case-*"))  # the probe leaves nothing behind
    monkeypatch.setenv("HFBUNDLE_CASE_INSENSITIVE", "1")
    assert oscompat.case_insensitive(tmp_path) is True


def test_fsync_dir_and_path_tolerate_what_is_gone(tmp_path: Path) -> None:
    oscompat.fsync_path(tmp_path / "gone")
    oscompat.fsync_dir(tmp_path / "gone")
    (tmp_path / "f").write_bytes(b"x")
    oscompat.fsync_path(tmp_path / "f")
    oscompat.fsync_dir(tmp_path)
    assert (tmp_path / "f").read_bytes() == b"x"


def test_sync_filesystem_says_false_without_syncfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oscompat, "libc_function", lambda name: None)
    assert oscompat.sync_filesystem(tmp_path) is False


def test_the_lane_reaches_subprocesses() -> None:
    """In the foreign-platform lane a CLI subprocess sees the foreign os too; outside it, the native one."""
    import subprocess
    import sys

    from tests.foreign import emulate

    code = (
        "import bundler.oscompat as o, os;"
        "print(hasattr(vars(o)['os'], 'pread'), os.environ.get('HFBUNDLE_CASE_INSENSITIVE'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    if emulate.active():
        assert out.split() == ["False", "1"]
    else:
        assert out.split()[0] == str(hasattr(os, "pread"))


def test_write_all_writes_everything_in_pieces_of_at_most_write_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(oscompat.WRITE_SLICE * 3 + 12345)
    sizes: list[int] = []
    real_write = os.write

    def short_write(fd: int, piece: bytes | memoryview) -> int:
        sizes.append(len(piece))
        return real_write(fd, memoryview(piece)[: max(1, len(piece) - 7)])  # the kernel may take less

    monkeypatch.setattr(os, "write", short_write)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        oscompat.write_all(fd, memoryview(bytearray(data)))
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    assert max(sizes) == oscompat.WRITE_SLICE
    assert len(sizes) > 4  # short writes were retried


def test_install_and_verify_give_long_cache_paths_the_extended_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The install's own writes (temp blobs, staged snapshot files, which are longer than the final ones) and
    verify's reads go through ``extended_path``, so on Windows a path past 255 characters gets the ``\\\\?\\``
    form; off Windows it is the path unchanged (the install below runs with it)."""
    from bundler.cache.layout import RepoLayout
    from bundler.install import install
    from bundler.verify import verify_installed
    from tests.install.test_install import C1, Repo, Snap, build

    seen: list[str] = []
    real = oscompat.extended_path

    def spy(path: Path | str, max_length: int = 255) -> str:
        out = real(path, max_length)
        assert out == str(path) or oscompat.WINDOWS  # a no-op off Windows
        seen.append(str(path))
        return out

    monkeypatch.setattr(oscompat, "extended_path", spy)
    folder = "/".join(["d" * 60] * 3)
    deep = f"{folder}/w.safetensors"
    b = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {deep: (os.urandom(5000), True)})])])
    cache = tmp_path / "hub"
    install(b.source(), cache)
    final = RepoLayout(cache, "model", "org/m").snapshot_file(C1, deep)
    assert len(str(final)) > 255 and final.is_file()
    assert any(f"{os.sep}blobs{os.sep}.hfbundle-" in p for p in seen)  # the temp blob written
    assert any(".hfbundle-" in p and folder in p for p in seen)  # the staged snapshot entry
    seen.clear()
    assert verify_installed(b.manifest, cache).ok
    assert str(final) in seen  # verify's stat and read of it


@pytest.mark.skipif(oscompat.WINDOWS, reason="Windows takes os.path.realpath itself")
def test_realpath_in_is_realpath_for_every_kind_of_link(tmp_path: Path) -> None:
    """Folders resolved once per run (issue 18), the answer always os.path.realpath's: a snapshot reached through a
    linked folder, relative links with '..', an absolute link, a chain (blob -> shared store), a dangling link, a
    loop, a link to a folder, a missing name, '..' as the last part of a link."""
    real_cache = tmp_path / "disk" / "hub"
    repo = real_cache / "models--o--m"
    blobs, snap, store = repo / "blobs", repo / "snapshots" / ("a" * 40), real_cache / "blobs" / "ab"
    for d in (blobs, snap / "sub" / "deeper", store):
        d.mkdir(parents=True)
    os.symlink(real_cache, tmp_path / "hub")  # the cache as the user names it: through a link
    (store / "payload").write_bytes(b"x")
    (blobs / "plain").write_bytes(b"y")
    os.symlink("../../blobs/ab/payload", blobs / "chained")
    links = {
        "w.bin": "../../blobs/plain",
        "sub/deeper/x.bin": "../../../../blobs/chained",
        "abs.bin": str(blobs / "plain"),
        "gone.bin": "../../blobs/missing",
        "loop.bin": "loop.bin",
        "folder": "sub",
        "up.bin": "sub/..",
    }
    for name, text in links.items():
        os.symlink(text, snap / name)
    (snap / "copy.bin").write_bytes(b"z")
    linked_snap = tmp_path / "hub" / "models--o--m" / "snapshots" / ("a" * 40)
    folders: dict[str, str] = {}
    for rel in [*links, "copy.bin", "absent.bin", "sub/deeper/absent.bin", "folder/deeper"]:
        path = str(linked_snap / rel)
        assert oscompat.realpath_in(path, folders) == os.path.realpath(path), rel
    assert oscompat.realpath_in(str(linked_snap / "sub/deeper/x.bin"), folders) == str(store / "payload")
    assert str(linked_snap) in folders  # each folder resolved once, kept for the next file
