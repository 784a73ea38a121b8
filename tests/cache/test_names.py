"""What a name in a cache means (``bundler.cache.names``): one answer for every reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bundler.cache import names

C = "c" * 40
SHA256 = "a" * 64


@pytest.mark.parametrize(
    "name",
    [
        f"{SHA256}.1f2e3d4c.incomplete",  # huggingface_hub's download in flight
        "main.1f2e3d4c.tmp",  # its atomic ref write
        "tmpab_cd12.tmp",
        f".{SHA256}.1f2e3d4c.shared",  # its temporary link into the shared Xet store
        f".hfbundle-{SHA256}.1f2e3d4c.tmp",  # ours
        ".hfbundle-snapshots.1f2e3d4c.tmp",
        f".config.json.{'0' * 8}.tmp",  # hfbundle < 0.3's link temps
    ],
)
def test_temp_names_of_every_writer(name: str) -> None:
    assert names.is_temp(name)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", SHA256, C, "uv.lock", ".gitattributes"])
def test_content_is_not_temp(name: str) -> None:
    assert not names.is_temp(name)


def test_temp_name_is_ours_and_unique() -> None:
    a, b = names.temp_name(SHA256), names.temp_name(SHA256)
    assert a != b
    assert names.is_temp(a) and names.is_ours(a) and names.is_our_temp_blob(a)
    shared = names.temp_name(SHA256, suffix=".shared")
    assert names.is_ours(shared) and not names.is_our_temp_blob(shared)  # an install's sweep never takes it
    assert not names.is_ours(f"{SHA256}.1f2e3d4c.incomplete")  # the real client's: never ours to sweep


def test_lock_files() -> None:
    assert names.is_lock_file(f"{SHA256}.lock") and names.is_lock_file(f"{SHA256}.lock.soft")
    assert names.is_shared_store_file(f"{SHA256}.refs") and not names.is_shared_store_file("x.refs")


@pytest.mark.parametrize(
    ("raw", "commit", "clean"),
    [(C.encode(), C, True), (f"{C}\n".encode(), C, False), (b"not a commit", None, False), (b"\xff" * 40, None, False)],
)
def test_read_ref_as_huggingface_hub_reads_it(tmp_path: Path, raw: bytes, commit: str | None, clean: bool) -> None:
    ref = tmp_path / "main"
    ref.write_bytes(raw)
    held = names.read_ref(ref)
    assert held is not None and held.commit == commit and held.clean is clean
    assert held.text == raw.decode("utf-8", "replace")  # not stripped


def test_read_ref_missing_and_capped(tmp_path: Path) -> None:
    assert names.read_ref(tmp_path / "nope") is None
    (tmp_path / "big").write_bytes(C.encode() + b" " * 10_000)
    held = names.read_ref(tmp_path / "big")
    assert held is not None and len(held.text) == names.MAX_REF_BYTES and not held.clean


def test_linked_blob_and_shared_xet(tmp_path: Path) -> None:
    repo = tmp_path / "models--o--m"
    blobs, snap = repo / "blobs", repo / "snapshots" / C / "sub"
    store = tmp_path / "blobs" / SHA256[:2]
    for d in (blobs, snap, store):
        d.mkdir(parents=True)
    (store / SHA256).write_bytes(b"x")
    os.symlink(os.path.relpath(store / SHA256, blobs), blobs / SHA256)
    os.symlink(os.path.relpath(blobs / SHA256, snap), snap / "w.bin")
    os.symlink("../../../blobs/not-a-hash", snap / "odd.bin")
    assert names.linked_blob(snap / "w.bin", blobs) == SHA256
    assert names.linked_blob(snap / "odd.bin", blobs) is None
    assert names.linked_blob(blobs / SHA256, blobs) is None  # not a link into blobs/
    assert names.shared_xet(blobs / SHA256, tmp_path / "blobs") == SHA256
    assert names.shared_xet(snap / "w.bin", tmp_path / "blobs") is None
    # The same rule on plain strings, as doctor reads a snapshot of many files (issue 18).
    (snap / "plain.bin").write_bytes(b"y")
    os.symlink(f"../../../blobs/../blobs/{SHA256}", snap / "roundabout.bin")
    os.symlink(f"../../../../other/blobs/{SHA256}", snap / "elsewhere.bin")
    key = os.path.normcase(os.path.normpath(blobs))
    for name in ("w.bin", "odd.bin", "plain.bin", "roundabout.bin", "elsewhere.bin", "absent.bin"):
        link = snap / name
        assert names.blob_link_name(str(link), key) == names.linked_blob(link, blobs), name
    assert names.blob_link_name(str(snap / "roundabout.bin"), key) == SHA256


def test_guess_lfs() -> None:
    assert names.guess_lfs("unet/diffusion_pytorch_model.safetensors", 10)
    assert not names.guess_lfs("config.json", 10)
    assert names.guess_lfs("config.json", names.LFS_SIZE_THRESHOLD + 1)
