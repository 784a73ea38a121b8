"""The loopback Hub, checked against the real huggingface_hub client (in subprocesses) and raw HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.testing.hf_client import REPO_ROOT, client_env, run_hf_client
from tests.testing.hub import (
    HubServer,
    LoggedRequest,
    add_ref,
    is_lfs_path,
    publish,
    read_commit,
    resolve_revision,
)

REPO = "org/tiny"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_repo(folder: Path, *, seed: int = 0, config: str = '{"hidden": 8}\n') -> dict[str, bytes]:
    """A small repo: regular files, LFS files, sub-folders two deep, and a .git dir that must be skipped."""
    rng = random.Random(seed)
    files = {
        "config.json": config.encode(),
        "model.safetensors": rng.randbytes(5000),
        "tokenizer/vocab.txt": b"a\nb\nc\n",
        "unet/deep/weights.bin": rng.randbytes(300),
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return files


def fetch(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request, no redirect following; headers keyed lower-case."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def store(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "store"
    publish(root, REPO, tmp_path / "repo")
    return root


@pytest.fixture
def hub(store: Path) -> Iterator[HubServer]:
    with HubServer(store) as server:
        yield server


# -- the store ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "size", "lfs"),
    [
        ("model.safetensors", 10, True),
        ("unet/diffusion_pytorch_model.bin", 10, True),
        ("tokenizer/spiece.model", 10, True),
        ("model.onnx_data", 10, True),
        ("data/train.tar.gz", 10, True),
        ("events.out.tfevents.123", 10, True),
        ("config.json", 10, False),
        ("README.md", 10, False),
        ("merges.txt", 10 * 1024 * 1024, False),
        ("merges.txt", 10 * 1024 * 1024 + 1, True),
    ],
)
def test_lfs_classification_follows_the_hub_gitattributes(path: str, size: int, lfs: bool) -> None:
    assert is_lfs_path(path, size) is lfs


def test_publish_is_deterministic_and_skips_dot_dirs(tmp_path: Path, files: dict[str, bytes]) -> None:
    first = publish(tmp_path / "a", REPO, tmp_path / "repo")
    assert publish(tmp_path / "a", REPO, tmp_path / "repo") == first  # nothing changed: no new commit
    assert publish(tmp_path / "b", REPO, tmp_path / "repo") == first  # another store, same history
    commit = read_commit(tmp_path / "a", REPO, first)
    assert sorted(commit.files) == sorted(files)  # .git/ skipped, .gitattributes kept
    assert commit.parent is None and commit.ref == "refs/heads/main"
    for rel, data in files.items():
        stored = commit.files[rel]
        assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
        if stored.lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{stored.sha256}\nsize {len(data)}\n"
            assert stored.blob_id == git_blob_id(pointer.encode()) and stored.etag == stored.sha256
        else:
            assert stored.blob_id == git_blob_id(data) == stored.etag
        assert (tmp_path / "a" / "models" / REPO / "commits" / first / rel).read_bytes() == data
    assert commit.files["model.safetensors"].lfs and not commit.files["config.json"].lfs

    (tmp_path / "repo" / "config.json").write_text('{"hidden": 16}\n')
    second = publish(tmp_path / "a", REPO, tmp_path / "repo")
    assert second != first and read_commit(tmp_path / "a", REPO, second).parent == first
    assert resolve_revision(tmp_path / "a", REPO, "main") == second
    # Unchanged files are stored once: 5 + the new config.json.
    assert len([p for p in (tmp_path / "a" / "objects").rglob("*") if p.is_file()]) == 6


def test_refs_tags_and_pull_requests(tmp_path: Path, files: dict[str, bytes]) -> None:
    root = tmp_path / "store"
    v1 = publish(root, REPO, tmp_path / "repo")
    add_ref(root, REPO, "refs/tags/v1.0", v1)
    pr = publish(root, REPO, tmp_path / "repo", revision="refs/pr/1")
    assert pr == v1  # same content as main's head: the PR ref points at it
    (tmp_path / "repo" / "config.json").write_text("{}\n")
    pr2 = publish(root, REPO, tmp_path / "repo", revision="refs/pr/1")
    assert read_commit(root, REPO, pr2).parent == v1
    assert resolve_revision(root, REPO, "v1.0") == v1
    assert resolve_revision(root, REPO, "refs/tags/v1.0") == v1
    assert resolve_revision(root, REPO, "refs/pr/1") == pr2
    assert resolve_revision(root, REPO, v1) == v1
    assert resolve_revision(root, REPO, "main") == v1
    assert resolve_revision(root, REPO, "nope") is None
    assert resolve_revision(root, REPO, "0" * 40) is None
    with pytest.raises(FileNotFoundError):
        add_ref(root, REPO, "v2", "0" * 40)
    for bad in ("", "/main", "a..b", "refs/x", "a" * 40):
        with pytest.raises(ValueError, match=r"invalid|cannot"):
            publish(root, REPO, tmp_path / "repo", revision=bad)
    for bad_id in ("a/b/c", "../x", "org/a--b", ""):
        with pytest.raises(ValueError, match="invalid repo id"):
            publish(root, bad_id, tmp_path / "repo")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_tree_oids_are_what_git_computes(tmp_path: Path, hub: HubServer, files: dict[str, bytes]) -> None:
    work = tmp_path / "git"
    commit = read_commit(hub.root, REPO, resolve_revision(hub.root, REPO, "main") or "")
    for rel, data in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        stored = commit.files[rel]
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{stored.sha256}\nsize {len(data)}\n"
        (work / rel).write_bytes(pointer.encode() if stored.lfs else data)
    git = ["git", "-C", str(work), "-c", "core.autocrlf=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    tree = subprocess.run([*git, "write-tree"], check=True, capture_output=True, text=True).stdout.strip()
    listing = subprocess.run([*git, "ls-tree", "-r", "-t", tree], check=True, capture_output=True, text=True)
    expected = {line.split("\t")[1]: line.split()[2] for line in listing.stdout.splitlines()}

    status, _, body = fetch("GET", f"{hub.endpoint}/api/models/{REPO}/tree/main?recursive=true")
    assert status == 200
    assert {e["path"]: e["oid"] for e in json.loads(body)} == expected


# -- the real client -------------------------------------------------------------------------------------------------


def test_hf_hub_download_writes_the_hub_cache_layout(tmp_path: Path, hub: HubServer, files: dict[str, bytes]) -> None:
    cache = tmp_path / "cache"
    commit = resolve_revision(hub.root, REPO, "main")
    paths = run_hf_client(
        """
        from huggingface_hub import hf_hub_download
        emit([hf_hub_download("org/tiny", f) for f in ("config.json", "model.safetensors", "unet/deep/weights.bin")])
        """,
        endpoint=hub.endpoint,
        cache=cache,
    )
    repo = cache / "models--org--tiny"
    assert paths == [
        str(repo / "snapshots" / str(commit) / f) for f in ("config.json", "model.safetensors", "unet/deep/weights.bin")
    ]
    assert (repo / "refs" / "main").read_bytes() == str(commit).encode()  # no trailing newline
    expected_links = {
        "config.json": f"../../blobs/{git_blob_id(files['config.json'])}",
        "model.safetensors": f"../../blobs/{hashlib.sha256(files['model.safetensors']).hexdigest()}",
        "unet/deep/weights.bin": f"../../../../blobs/{hashlib.sha256(files['unet/deep/weights.bin']).hexdigest()}",
    }
    for rel, target in expected_links.items():
        link = repo / "snapshots" / str(commit) / rel
        assert os.readlink(link) == target
        assert link.read_bytes() == files[rel]

    # The Hub answered HEAD then GET for the git file; LFS files were a 302 then a GET on the CDN origin.
    assert LoggedRequest("HEAD", f"/{REPO}/resolve/main/config.json", 200) in hub.requests
    assert LoggedRequest("GET", f"/{REPO}/resolve/main/config.json", 200) in hub.requests
    assert LoggedRequest("HEAD", f"/{REPO}/resolve/main/model.safetensors", 302) in hub.requests
    assert not [r for r in hub.requests if r.method == "GET" and r.path.endswith(".safetensors")]
    assert [r.status for r in hub.cdn_requests] == [200, 200]
    assert hub.downloaded_files(REPO) == ["config.json", "model.safetensors", "unet/deep/weights.bin"]
    hub.clear_log()
    assert hub.requests == [] and hub.cdn_requests == [] and hub.downloaded_files(REPO) == []


def test_snapshot_download_follows_pagination_and_writes_the_tree(
    tmp_path: Path, hub: HubServer, files: dict[str, bytes]
) -> None:
    hub.page_size = 2  # 5 files + 3 directories = 4 pages
    cache = tmp_path / "cache"
    folder = run_hf_client(
        "from huggingface_hub import snapshot_download\nemit(snapshot_download('org/tiny'))",
        endpoint=hub.endpoint,
        cache=cache,
    )
    commit = str(resolve_revision(hub.root, REPO, "main"))
    assert folder == str(cache / "models--org--tiny" / "snapshots" / commit)
    assert {str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file()} == set(files)
    tree_pages = [r for r in hub.requests if "/tree/" in r.path]
    assert len(tree_pages) == 4 and all(r.status == 200 for r in tree_pages)
    assert tree_pages[0].path == f"/api/models/{REPO}/tree/{commit}?recursive=true&expand=false"
    assert "cursor=" in tree_pages[1].path

    tree = json.loads((cache / "models--org--tiny" / "trees" / f"{commit}.json").read_text())
    assert tree["format_version"] == 1
    safetensors = files["model.safetensors"]
    assert tree["files"]["model.safetensors"] == {
        "size": len(safetensors),
        "blob_id": read_commit(hub.root, REPO, commit).files["model.safetensors"].blob_id,
        "lfs_sha256": hashlib.sha256(safetensors).hexdigest(),
        "lfs_size": len(safetensors),
    }
    assert tree["files"]["config.json"] == {
        "size": len(files["config.json"]),
        "blob_id": git_blob_id(files["config.json"]),
    }
    assert set(tree["files"]) == set(files)
    assert sorted(hub.downloaded_files(REPO)) == sorted(files)


def test_revisions_by_tag_commit_and_pull_request(tmp_path: Path) -> None:
    root = tmp_path / "store"
    make_repo(tmp_path / "v1", config='{"v": 1}\n')
    make_repo(tmp_path / "v2", config='{"v": 2}\n')
    make_repo(tmp_path / "pr", config='{"v": "pr"}\n')
    v1 = publish(root, REPO, tmp_path / "v1")
    add_ref(root, REPO, "refs/tags/v1.0", v1)
    v2 = publish(root, REPO, tmp_path / "v2")
    pr = publish(root, REPO, tmp_path / "pr", revision="refs/pr/1")
    cache = tmp_path / "cache"
    with HubServer(root) as hub:
        result = run_hf_client(
            f"""
            from pathlib import Path
            from huggingface_hub import hf_hub_download, snapshot_download
            read = lambda rev: Path(hf_hub_download("org/tiny", "config.json", revision=rev)).read_text()
            emit({{
                "main": read("main"), "tag": read("v1.0"), "sha": read("{v1}"), "pr": read("refs/pr/1"),
                "pr_snapshot": snapshot_download("org/tiny", revision="refs/pr/1"),
            }})
            """,
            endpoint=hub.endpoint,
            cache=cache,
        )
        logged = [r.path for r in hub.requests]
    assert (result["main"], result["tag"], result["sha"], result["pr"]) == (
        '{"v": 2}\n',
        '{"v": 1}\n',
        '{"v": 1}\n',
        '{"v": "pr"}\n',
    )
    repo = cache / "models--org--tiny"
    assert result["pr_snapshot"] == str(repo / "snapshots" / pr)
    assert (repo / "refs" / "main").read_text() == v2
    assert (repo / "refs" / "v1.0").read_text() == v1
    assert (repo / "refs" / "refs" / "pr" / "1").read_text() == pr
    assert f"/{REPO}/resolve/refs%2Fpr%2F1/config.json" in logged  # the client encodes the ref as one segment
    assert f"/api/models/{REPO}/revision/refs%2Fpr%2F1" in logged


def test_errors_map_to_the_client_exceptions(tmp_path: Path, hub: HubServer) -> None:
    cache = tmp_path / "cache"
    result = run_hf_client(
        """
        from huggingface_hub import hf_hub_download, snapshot_download, HfApi
        def kind(call):
            try:
                call()
            except Exception as e:
                return [c.__name__ for c in type(e).__mro__]
            return None
        emit({
            "repo": kind(lambda: hf_hub_download("org/missing", "config.json")),
            "repo_api": kind(lambda: HfApi().model_info("org/missing")),
            "revision": kind(lambda: hf_hub_download("org/tiny", "config.json", revision="nope")),
            "revision_snapshot": kind(lambda: snapshot_download("org/tiny", revision="nope")),
            "entry": kind(lambda: hf_hub_download("org/tiny", "tokenizer.json")),
            "tree_path": kind(lambda: list(HfApi().list_repo_tree("org/tiny", path_in_repo="nope"))),
        })
        """,
        endpoint=hub.endpoint,
        cache=cache,
    )
    assert result["repo"][0] == "RepositoryNotFoundError"
    assert result["repo_api"][0] == "RepositoryNotFoundError"
    assert result["revision"][0] == "RevisionNotFoundError"
    assert result["revision_snapshot"][0] == "RevisionNotFoundError"
    assert result["entry"][0] == "RemoteEntryNotFoundError" and "EntryNotFoundError" in result["entry"]
    assert "EntryNotFoundError" in result["tree_path"]
    commit = resolve_revision(hub.root, REPO, "main")
    # The 404 carried X-Repo-Commit, so the client remembered the file does not exist at that commit.
    no_exist = cache / "models--org--tiny" / ".no_exist" / str(commit) / "tokenizer.json"
    assert no_exist.is_file() and no_exist.stat().st_size == 0
    assert LoggedRequest("HEAD", "/org/missing/resolve/main/config.json", 401) in hub.requests


def test_gated_repo_needs_the_token(tmp_path: Path, files: dict[str, bytes]) -> None:
    root = tmp_path / "store"
    publish(root, "org/gated", tmp_path / "repo", gated=True)
    code = """
        from pathlib import Path
        from huggingface_hub import HfApi, hf_hub_download
        def attempt(**kw):
            try:
                return Path(hf_hub_download("org/gated", "model.safetensors", **kw)).stat().st_size
            except Exception as e:
                status = getattr(getattr(e, "response", None), "status_code", 0)
                return [c.__name__ for c in type(e).__mro__] + [status]
        info = HfApi().model_info("org/gated")
        emit({
            "gated": info.gated, "siblings": len(info.siblings),
            "anonymous": attempt(), "wrong": attempt(token="nope"),
        })
        """
    with HubServer(root, token="hf_secret") as hub:
        anonymous = run_hf_client(code, endpoint=hub.endpoint, cache=tmp_path / "c1")
        granted = run_hf_client(code, endpoint=hub.endpoint, cache=tmp_path / "c2", token="hf_secret")
        cdn = hub.cdn_requests
    # Info and file list are public; contents are not.
    assert anonymous["gated"] == "auto" and anonymous["siblings"] == len(files)
    assert anonymous["anonymous"][0] == "GatedRepoError" and anonymous["anonymous"][-1] == 401
    # A wrong token is refused as such, not mistaken for a missing repo.
    assert anonymous["wrong"][0] == "HfHubHTTPError" and anonymous["wrong"][-1] == 401
    assert "RepositoryNotFoundError" not in anonymous["wrong"]
    assert granted["anonymous"] == len(files["model.safetensors"])
    # The CDN refuses requests carrying Authorization (like S3 presigned URLs): the client dropped it.
    assert [r.status for r in cdn] == [200]


def test_resolve_cache_redirects_are_followed_with_auth(tmp_path: Path, files: dict[str, bytes]) -> None:
    root = tmp_path / "store"
    commit = publish(root, "org/gated", tmp_path / "repo", gated=True)
    with HubServer(root, token="hf_secret", resolve_cache=True) as hub:
        paths = run_hf_client(
            "from huggingface_hub import hf_hub_download\n"
            "emit([hf_hub_download('org/gated', f) for f in ('tokenizer/vocab.txt', 'model.safetensors')])",
            endpoint=hub.endpoint,
            cache=tmp_path / "cache",
            token="hf_secret",
        )
        logged = hub.requests
    assert [Path(p).read_bytes() for p in paths] == [files["tokenizer/vocab.txt"], files["model.safetensors"]]
    vocab = Path(paths[0])
    assert os.readlink(vocab) == f"../../../blobs/{git_blob_id(files['tokenizer/vocab.txt'])}"
    cached = f"/api/resolve-cache/models/org/gated/{commit}/tokenizer/vocab.txt?etag=%22"
    assert [(r.method, r.status) for r in logged if "vocab" in r.path] == [("HEAD", 307), ("HEAD", 200), ("GET", 200)]
    assert all(r.path.startswith(cached) for r in logged[1:3])
    # LFS files still go straight to the CDN.
    assert LoggedRequest("HEAD", "/org/gated/resolve/main/model.safetensors", 302) in logged


def test_hfapi_listing_calls(tmp_path: Path, hub: HubServer, files: dict[str, bytes]) -> None:
    make_repo(tmp_path / "data", seed=1)
    publish(hub.root, "org/data", tmp_path / "data", repo_type="dataset")
    result = run_hf_client(
        """
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        info = api.model_info("org/tiny", files_metadata=True)
        sib = {s.rfilename: s for s in info.siblings}
        tree = list(api.list_repo_tree("org/tiny", path_in_repo="unet"))
        expand = api.model_info("org/tiny", expand=["sha", "gated"])
        emit({
            "id": info.id, "sha": info.sha, "private": info.private, "gated": info.gated,
            "siblings": sorted(sib), "lfs_sha": sib["model.safetensors"].lfs.sha256,
            "blob_id": sib["config.json"].blob_id,
            "files": api.list_repo_files("org/tiny"),
            "top": [(e.path, type(e).__name__) for e in api.list_repo_tree("org/tiny")],
            "unet": [(e.path, type(e).__name__) for e in tree],
            "paths": [e.path for e in api.get_paths_info("org/tiny", ["config.json", "unet", "nope"])],
            "refs": [b.name for b in api.list_repo_refs("org/tiny").branches],
            "expand": [expand.sha, expand.siblings],
            "dataset": open(hf_hub_download("org/data", "config.json", repo_type="dataset")).read(),
            "dataset_sha": api.dataset_info("org/data").sha,
        })
        """,
        endpoint=hub.endpoint,
        cache=tmp_path / "cache",
    )
    commit = resolve_revision(hub.root, REPO, "main")
    assert (result["id"], result["sha"], result["private"], result["gated"]) == (REPO, commit, False, False)
    assert result["siblings"] == sorted(files)
    assert result["lfs_sha"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert result["blob_id"] == git_blob_id(files["config.json"])
    assert sorted(result["files"]) == sorted(files)
    assert result["top"] == [
        ["tokenizer", "RepoFolder"],
        ["unet", "RepoFolder"],
        [".gitattributes", "RepoFile"],
        ["config.json", "RepoFile"],
        ["model.safetensors", "RepoFile"],
    ]
    assert result["unet"] == [["unet/deep", "RepoFolder"]]
    assert result["paths"] == ["config.json", "unet"]
    assert result["refs"] == ["main"]
    assert result["expand"] == [commit, None]
    assert result["dataset"] == files["config.json"].decode()
    assert result["dataset_sha"] == resolve_revision(hub.root, "org/data", "main", repo_type="dataset")
    assert any(r.path.startswith("/datasets/org/data/resolve/main/config.json") for r in hub.requests)


# -- raw HTTP --------------------------------------------------------------------------------------------------------


def test_resolve_headers_and_range_requests(hub: HubServer, files: dict[str, bytes]) -> None:
    data = files["model.safetensors"]
    commit = resolve_revision(hub.root, REPO, "main")
    status, headers, _ = fetch("HEAD", f"{hub.endpoint}/{REPO}/resolve/main/model.safetensors")
    assert status == 302
    assert headers["x-linked-etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert headers["x-linked-size"] == str(len(data))
    assert headers["x-repo-commit"] == commit
    assert "etag" not in headers
    cdn = headers["location"]
    assert cdn.startswith(hub.cdn_endpoint + "/")

    status, headers, body = fetch("GET", cdn, {"Range": "bytes=1000-"})
    assert (status, headers["content-range"], body) == (206, f"bytes 1000-{len(data) - 1}/{len(data)}", data[1000:])
    assert fetch("GET", cdn, {"Range": "bytes=10-19"})[2] == data[10:20]
    assert fetch("GET", cdn, {"Range": "bytes=-7"})[2] == data[-7:]
    status, headers, body = fetch("GET", cdn)
    assert (status, body, headers["accept-ranges"]) == (200, data, "bytes")
    status, headers, _ = fetch("GET", cdn, {"Range": f"bytes={len(data)}-"})
    assert (status, headers["content-range"]) == (416, f"bytes */{len(data)}")
    assert fetch("GET", cdn, {"Authorization": "Bearer x"})[0] == 400

    config = files["config.json"]
    status, headers, body = fetch("HEAD", f"{hub.endpoint}/{REPO}/resolve/{commit}/config.json")
    assert (status, body) == (200, b"")
    assert headers["etag"] == f'"{git_blob_id(config)}"'
    assert headers["content-length"] == str(len(config)) and headers["x-repo-commit"] == commit
    status, _, body = fetch("GET", f"{hub.endpoint}/{REPO}/resolve/main/config.json", {"Range": "bytes=2-5"})
    assert (status, body) == (206, config[2:6])
    assert hub.downloaded_files(REPO) == ["model.safetensors"] * 4 + ["config.json"]


def test_repo_ids_without_an_org(tmp_path: Path, hub: HubServer, files: dict[str, bytes]) -> None:
    publish(hub.root, "tiny", tmp_path / "repo")
    publish(hub.root, "tiny", tmp_path / "repo", repo_type="space")
    status, _, body = fetch("GET", f"{hub.endpoint}/tiny/resolve/main/config.json")
    assert (status, body) == (200, files["config.json"])
    status, _, body = fetch("GET", f"{hub.endpoint}/api/models/tiny/tree/main/tokenizer")
    assert (status, [e["path"] for e in json.loads(body)]) == (200, ["tokenizer/vocab.txt"])
    status, _, body = fetch("GET", f"{hub.endpoint}/api/spaces/tiny")
    assert status == 200 and "modelId" not in json.loads(body)
    assert fetch("GET", f"{hub.endpoint}/spaces/tiny/resolve/main/config.json")[2] == files["config.json"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("HEAD", "/org/missing/resolve/main/config.json", {}, 401, "RepoNotFound"),
        ("HEAD", "/org/missing/resolve/main/config.json", {"Authorization": "Bearer t"}, 404, "RepoNotFound"),
        ("GET", "/api/models/org/missing", {}, 401, "RepoNotFound"),
        ("GET", "/api/models/org/tiny/revision/nope", {}, 404, "RevisionNotFound"),
        ("HEAD", "/org/tiny/resolve/nope/config.json", {}, 404, "RevisionNotFound"),
        ("GET", "/org/tiny/resolve/main/missing.json", {}, 404, "EntryNotFound"),
        ("GET", "/api/models/org/tiny/tree/main/missing", {}, 404, "EntryNotFound"),
        ("GET", "/api/agent-harnesses", {}, 404, None),
        ("GET", "/api/whoami-v2", {}, 404, None),
        ("POST", "/api/telemetry/examples", {}, 404, None),
        ("GET", "/org/tiny", {}, 404, None),
    ],
)
def test_error_responses(
    hub: HubServer, method: str, path: str, headers: dict[str, str], status: int, code: str | None
) -> None:
    got, response_headers, body = fetch(method, hub.endpoint + path, headers)
    assert got == status
    assert response_headers.get("x-error-code") == code
    assert response_headers["x-error-message"]
    if method == "GET":
        assert json.loads(body)["error"] == response_headers["x-error-message"]
    if code == "EntryNotFound":
        assert response_headers["x-repo-commit"] == resolve_revision(hub.root, REPO, "main")
    assert hub.requests == [LoggedRequest(method, path, status)]


def test_command_line_serves_until_terminated(tmp_path: Path, files: dict[str, bytes]) -> None:
    env = client_env(cache=tmp_path / "cache")
    command = [sys.executable, "-m", "tests.testing.hub", "--root", str(tmp_path / "store")]
    command += ["--publish", f"org/cli={tmp_path / 'repo'}"]
    with subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            endpoint = proc.stdout.readline().strip()
            assert endpoint.startswith("http://127.0.0.1:")
            status, _, body = fetch("GET", f"{endpoint}/api/models/org/cli")
            assert status == 200
            assert json.loads(body)["sha"] == resolve_revision(tmp_path / "store", "org/cli", "main")
        finally:
            proc.terminate()
            started = time.monotonic()
            returncode = proc.wait(timeout=10)
    assert returncode == 0 and time.monotonic() - started < 5


# -- diffusers, for real ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_diffusers_model_loads_through_the_hub(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    with HubServer(root) as hub:
        # Built, published and loaded in one interpreter: torch is imported once.
        result = run_hf_client(
            f"""
            import json
            from pathlib import Path
            import torch
            torch.set_num_threads(1)
            from diffusers import AutoencoderTiny, DiffusionPipeline
            from tests.testing.hub import publish

            torch.manual_seed(0)
            vae = AutoencoderTiny(
                encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1),
            )
            folder = Path({str(tmp_path / "pipe")!r})
            vae.save_pretrained(folder / "vae")
            (folder / "model_index.json").write_text(json.dumps({{
                "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
                "vae": ["diffusers", "AutoencoderTiny"],
            }}))
            commit = publish(Path({str(root)!r}), "org/tiny-pipe", folder)
            snapshot = DiffusionPipeline.download("org/tiny-pipe")
            loaded = AutoencoderTiny.from_pretrained("org/tiny-pipe", subfolder="vae")
            same = all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), loaded.state_dict().values()))
            emit({{"commit": commit, "snapshot": str(snapshot), "same": same}})
            """,
            endpoint=hub.endpoint,
            cache=tmp_path / "cache",
            timeout=180,
        )
        downloaded = hub.downloaded_files("org/tiny-pipe")
    repo = tmp_path / "cache" / "models--org--tiny-pipe"
    assert result["same"] is True
    assert result["snapshot"] == str(repo / "snapshots" / result["commit"])
    assert (repo / "trees" / f"{result['commit']}.json").is_file()
    # Each file crossed the wire once: from_pretrained found everything download() had cached.
    assert sorted(downloaded) == ["model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]
