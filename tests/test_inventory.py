"""The inventory (have.json): what a cache holds, nothing else, and read back as untrusted input."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bundler.cache.layout import RepoLayout
from bundler.cli import main
from bundler.errors import BundleFormatError
from bundler.install import install
from bundler.inventory import INVENTORY_FORMAT, MAX_INVENTORY_BYTES, Inventory, read_inventory, take_inventory
from tests.install.test_install import C1, C2, C3, C4, standard_bundle


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    cache = tmp_path / "user-secret-place" / "hub"
    install(standard_bundle().source(), cache)
    return cache


def test_inventory_lists_repos_commits_refs_and_blobs(cache: Path) -> None:
    inv = take_inventory(cache)
    repos = {(r.repo_type, r.repo_id): r for r in inv.repos}
    assert set(repos) == {("model", "org/tiny"), ("model", "other/model"), ("dataset", "org/data")}
    tiny = repos[("model", "org/tiny")]
    assert dict(tiny.refs) == {"main": C1, "v1.0": C1, "refs/pr/1": C2}
    assert set(tiny.commits) == {C1, C2}
    assert repos[("model", "other/model")].commits == (C3,)
    assert repos[("dataset", "org/data")].commits == (C4,)
    for r in inv.repos:  # exactly the blobs/ folder of each repo, with sizes
        folder = RepoLayout(cache, r.repo_type, r.repo_id).blobs
        on_disk = {name: (folder / name).stat().st_size for name in os.listdir(folder)}
        assert {b.name: b.size for b in r.blobs} == on_disk
    assert not inv.verified


def test_inventory_carries_no_path_or_user(cache: Path, tmp_path: Path) -> None:
    text = take_inventory(cache).dumps().decode()
    assert str(tmp_path) not in text and "user-secret-place" not in text and "hub" not in text.replace("hfbundle", "")
    assert os.environ.get("USER", "nobody-here") not in text.replace("hfbundle", "")
    data = json.loads(text)
    assert set(data) == {"format", "inventory_version", "verified", "repos"}
    assert {k for r in data["repos"] for k in r} == {"repo_type", "repo_id", "refs", "commits", "blobs"}


def test_round_trip(cache: Path) -> None:
    inv = take_inventory(cache)
    again = Inventory.loads(inv.dumps())
    assert again.dumps() == inv.dumps()
    assert again.names() == inv.names()


def test_verify_leaves_out_a_blob_whose_content_does_not_match(cache: Path) -> None:
    folder = RepoLayout(cache, "model", "other/model").blobs
    (victim,) = os.listdir(folder)  # SHARED, hard-linked with org/tiny's copy: break the link first
    data = bytearray((folder / victim).read_bytes())
    data[0] ^= 1
    (folder / victim).unlink()
    (folder / victim).write_bytes(bytes(data))
    assert victim in {b.name for r in take_inventory(cache).repos if r.repo_id == "other/model" for b in r.blobs}
    checked = take_inventory(cache, verify=True)
    assert checked.verified
    by_repo = {r.repo_id: {b.name for b in r.blobs} for r in checked.repos}
    assert by_repo["other/model"] == set()
    assert victim in by_repo["org/tiny"]  # its intact copy still counts
    assert checked.names() == take_inventory(cache).names()


def _valid() -> dict[str, Any]:
    return {
        "format": INVENTORY_FORMAT,
        "inventory_version": 1,
        "verified": False,
        "repos": [
            {
                "repo_type": "model",
                "repo_id": "org/tiny",
                "refs": {"main": C1},
                "commits": [C1],
                "blobs": [{"name": "a" * 64, "size": 3}, {"name": "b" * 40, "size": 0}],
            }
        ],
    }


def _repo(d: dict[str, Any]) -> dict[str, Any]:
    repo: dict[str, Any] = d["repos"][0]
    return repo


HOSTILE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "not an object": lambda d: [],
    "no format": lambda d: d.pop("format"),
    "version 2": lambda d: d.update(inventory_version=2),
    "version true": lambda d: d.update(inventory_version=True),
    "version string": lambda d: d.update(inventory_version="1"),
    "unknown key": lambda d: d.update(cache_dir="/home/me"),
    "unknown repo key": lambda d: _repo(d).update(path="/x"),
    "repo id escapes": lambda d: _repo(d).update(repo_id="../../etc"),
    "bad repo type": lambda d: _repo(d).update(repo_type="kernel"),
    "bad commit": lambda d: _repo(d).update(commits=["xyz"]),
    "ref to unlisted commit": lambda d: _repo(d).update(refs={"main": C2}),
    "bad ref": lambda d: _repo(d).update(refs={"../main": C1}),
    "blob name not a hash": lambda d: _repo(d)["blobs"].append({"name": "../x", "size": 1}),
    "negative size": lambda d: _repo(d)["blobs"].append({"name": "c" * 64, "size": -1}),
    "bool size": lambda d: _repo(d)["blobs"].append({"name": "c" * 64, "size": True}),
    "float size": lambda d: _repo(d)["blobs"].append({"name": "c" * 64, "size": 1.0}),
    "huge size": lambda d: _repo(d)["blobs"].append({"name": "c" * 64, "size": 1 << 60}),
    "blob twice": lambda d: _repo(d)["blobs"].append({"name": "a" * 64, "size": 3}),
    "repo twice": lambda d: d["repos"].append(dict(_repo(d), repo_id="ORG/tiny")),
    "repos not a list": lambda d: d.update(repos={}),
    "verified not bool": lambda d: d.update(verified=1),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_inventory_is_refused(case: str) -> None:
    data = _valid()
    result = HOSTILE[case](data)
    if isinstance(result, list):
        data = result  # type: ignore[assignment]
    with pytest.raises(BundleFormatError):
        Inventory.loads(json.dumps(data).encode())


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xfe", b"[" * 100_000, b'{"format": NaN}', b"{" + b" " * (MAX_INVENTORY_BYTES + 1)],
    ids=["empty", "not utf-8", "deep nesting", "NaN", "over the size cap"],
)
def test_garbage_is_refused(raw: bytes) -> None:
    with pytest.raises(BundleFormatError):
        Inventory.loads(raw)


def test_read_inventory_caps_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "have.json"
    with open(big, "wb") as f:
        f.truncate(MAX_INVENTORY_BYTES + 10)
    with pytest.raises(BundleFormatError, match="over the"):
        read_inventory(big)
    assert Inventory.loads(json.dumps(_valid()).encode()).names() == {"a" * 64: 3, "b" * 40: 0}


def test_cli_writes_have_json(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "have.json"
    with pytest.raises(SystemExit) as exc:
        main(["inventory", "--cache-dir", str(cache), "-o", str(out), "--json"])
    assert exc.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert read_inventory(out).to_json() == printed
    with pytest.raises(SystemExit) as exc:
        main(["inventory", "--cache-dir", str(tmp_path / "nowhere")])
    assert exc.value.code == 1
