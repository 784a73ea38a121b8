"""``hfbundle trace``: the recording proxy is faithful to the real client, any client is recorded, tokens stay
out of what is written, runs merge with --append, and a traced recipe builds, installs and loads offline."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bundler.api import build, install, run
from bundler.doctor import doctor
from bundler.errors import RecipeError
from bundler.recipe import load_recipe
from bundler.trace import TraceError, redact, summarise, trace
from bundler.traceproxy import Observation, RecordingProxy, parse_hub_path
from tests.conftest import CLOSED_ENDPOINT
from tests.helpers import cache_tree, hfbundle
from tests.testing.hf_client import client_env, run_hf_client
from tests.testing.hub import HubServer, publish

TOKEN = "hf_traceTestTokenDoNotWrite0123456789"
SMALL = "org/small"
GATED = "org/gated"

# What a client does: snapshot_download, one file by name, an optional file the repo lacks (.no_exist), and a
# pull-request revision. The traced copy of it copies its cache to COPY_TO at the end.
CLIENT = f"""
import os, shutil
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError
snapshot_download({SMALL!r}, allow_patterns=["*.json", "*.safetensors", "sub/*"])
hf_hub_download({SMALL!r}, "sub/notes.txt")
try:
    hf_hub_download({SMALL!r}, "tokenizer.json")
except EntryNotFoundError:
    pass
hf_hub_download({SMALL!r}, "config.json", revision="refs/pr/1")
if os.environ.get("COPY_TO"):
    shutil.copytree(os.environ["HF_HUB_CACHE"], os.environ["COPY_TO"], symlinks=True)
"""
SMALL_FILES = {"config.json", "copy/config.json", "model.safetensors", "sub/notes.txt"}


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A loopback Hub with a small repo (git and LFS files, a duplicate blob, a PR ref) and a gated repo."""
    work = tmp_path_factory.mktemp("trace-hub")
    folder = work / "small"
    (folder / "sub").mkdir(parents=True)
    (folder / "copy").mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8}\n')
    (folder / "copy" / "config.json").write_text('{"hidden_size": 8}\n')  # same blob: the client may only HEAD it
    (folder / "model.safetensors").write_bytes(os.urandom(200_000))  # LFS: 302 to the CDN
    (folder / "sub" / "notes.txt").write_text("notes\n")
    (folder / "README.md").write_text("# small\n")  # never asked for
    root = work / "hub"
    publish(root, SMALL, folder)
    pr = work / "pr"
    shutil.copytree(folder, pr)
    (pr / "config.json").write_text('{"hidden_size": 16}\n')
    publish(root, SMALL, pr, revision="refs/pr/1")
    publish(root, GATED, folder, gated=True)
    with HubServer(root, token=TOKEN, page_size=2) as hub:  # page_size 2: tree listings are paginated
        yield hub


def traced_env(tmp_path: Path, hub: HubServer, **extra: str) -> dict[str, str]:
    env = client_env(cache=tmp_path / "unused-cache", endpoint=hub.endpoint)
    env.update(extra)
    return env


# -- the proxy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/org/m/resolve/main/unet/config.json", ("model", "org/m", "main", "unet/config.json")),
        ("/gpt2/resolve/abc/config.json?x=1", ("model", "gpt2", "abc", "config.json")),
        ("/datasets/org/d/resolve/refs%2Fpr%2F1/a%20b.txt", ("dataset", "org/d", "refs/pr/1", "a b.txt")),
        ("/spaces/org/s/resolve/refs/pr/2/app.py", ("space", "org/s", "refs/pr/2", "app.py")),
        ("/api/models/org/m/revision/main", ("model", "org/m", "main", None)),
        ("/api/models/org/m/revision/v1.0?expand=sha", ("model", "org/m", "v1.0", None)),
        ("/api/models/org/m", ("model", "org/m", "main", None)),  # the default branch: the client writes refs/main
        (f"/api/resolve-cache/models/org/m/{'a' * 40}/x.json?etag=1", ("model", "org/m", "a" * 40, "x.json")),
    ],
)
def test_hub_paths_are_parsed(path: str, expected: tuple[Any, ...]) -> None:
    t = parse_hub_path(path)
    assert t is not None
    assert (t.repo_type, t.repo_id, t.revision, t.path) == expected


@pytest.mark.parametrize(
    "path", ["/api/models", "/api/models/org/m/tree/main", "/api/whoami-v2", "/org/m/resolve/main/", "/"]
)
def test_other_paths_name_no_file(path: str) -> None:
    assert parse_hub_path(path) is None


def _request(endpoint: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    url = urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


HEADERS = ("ETag", "X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size", "Location", "X-Error-Code", "Content-Range")


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("HEAD", f"/{SMALL}/resolve/main/model.safetensors", {}),  # the 302 to the CDN, its Location unchanged
        ("GET", f"/{SMALL}/resolve/main/config.json", {"Range": "bytes=2-7"}),
        ("HEAD", f"/{SMALL}/resolve/main/missing.json", {}),
        ("GET", f"/{SMALL}/resolve/nope/config.json", {}),
        ("GET", f"/api/models/{SMALL}/revision/main", {}),
        ("HEAD", f"/{GATED}/resolve/main/config.json", {"Authorization": f"Bearer {TOKEN}"}),
        ("HEAD", f"/{GATED}/resolve/main/config.json", {}),
    ],
)
def test_answers_pass_through_unchanged(small_hub: HubServer, method: str, path: str, headers: dict[str, str]) -> None:
    direct = _request(small_hub.endpoint, method, path, headers)
    with RecordingProxy(small_hub.endpoint) as proxy:
        proxied = _request(proxy.endpoint, method, path, headers)
    assert proxied[0] == direct[0]
    assert proxied[2] == direct[2]
    for name in HEADERS:
        assert proxied[1].get(name) == direct[1].get(name), name
    if direct[1].get("Location", "").startswith(small_hub.cdn_endpoint):
        assert direct[0] == 302


def test_pagination_links_come_back_through_the_proxy(small_hub: HubServer) -> None:
    with RecordingProxy(small_hub.endpoint) as proxy:
        _, headers, _ = _request(proxy.endpoint, "GET", f"/api/models/{SMALL}/tree/main?recursive=true")
    assert headers["Link"].startswith(f"<{proxy.endpoint}/api/models/{SMALL}/tree/main?")


class _Odd(BaseHTTPRequestHandler):
    """An upstream answering with chunked and close-delimited bodies, and echoing request bodies."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"abc", b"x" * 70_000, b"end"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the connection closes")
            self.close_connection = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/chunked", b"abc" + b"x" * 70_000 + b"end"),
        ("GET", "/close", b"until the connection closes"),
        ("POST", "/echo", b"paths=a&paths=b"),
    ],
)
def test_bodies_of_every_framing_come_through(method: str, path: str, body: bytes) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with RecordingProxy(f"http://127.0.0.1:{server.server_address[1]}") as proxy:
            url = urlsplit(proxy.endpoint)
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
            conn.request(method, path, body=body if method == "POST" else None)
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, body)
            conn.close()
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_upstream_is_a_502_and_a_note(tmp_path: Path) -> None:
    with RecordingProxy(CLOSED_ENDPOINT) as proxy:
        status, _, body = _request(proxy.endpoint, "GET", f"/{SMALL}/resolve/main/config.json")
        assert status == 502 and b"cannot reach the Hub" in body
        assert len(proxy.errors) == 1


def test_real_client_cache_is_the_same_traced_or_not(small_hub: HubServer, tmp_path: Path) -> None:
    direct = tmp_path / "direct"
    run_hf_client(CLIENT + "\nemit(True)", cache=direct, endpoint=small_hub.endpoint)
    copy = tmp_path / "traced"
    env = traced_env(tmp_path, small_hub, COPY_TO=str(copy))
    report = trace([sys.executable, "-c", CLIENT], output=tmp_path / "small.toml", env=env)
    assert report.exit_code == 0 and report.written
    assert cache_tree(copy) == cache_tree(direct)
    # the recipe lists exactly what the client put in its cache, per revision it asked
    recipe = load_recipe(tmp_path / "small.toml")
    main_entry = next(r for r in recipe.repos if r.revision == "main")
    snapshot = direct / "models--org--small" / "snapshots" / main_entry.commit  # type: ignore[operator]
    on_disk = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if not p.is_dir()}
    assert {f.path for f in main_entry.files} == on_disk == SMALL_FILES
    pr = next(r for r in recipe.repos if r.revision == "refs/pr/1")
    assert [f.path for f in pr.files] == ["config.json"]
    assert report.absent == 1  # tokenizer.json was probed and is absent: not listed


# -- any client, tokens ------------------------------------------------------------------------------------------


def test_curl_is_recorded_and_its_token_written_nowhere(small_hub: HubServer, tmp_path: Path) -> None:
    assert shutil.which("curl"), "curl is needed"
    out = tmp_path / "curl.toml"
    url = f"$HF_ENDPOINT/{GATED}/resolve/main/model.safetensors"
    script = f'curl -sS -f -L -H "Authorization: Bearer {TOKEN}" -o {tmp_path}/got "{url}" && echo fetched'
    proc = run_cli(["trace", "-o", str(out), "--json", "--", "sh", "-c", script], traced_env(tmp_path, small_hub))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert TOKEN not in text and TOKEN not in proc.stdout and TOKEN not in proc.stderr
    assert "<redacted>" in text
    recipe = load_recipe(out)
    assert [(r.repo, [f.path for f in r.files]) for r in recipe.repos] == [(GATED, ["model.safetensors"])]
    assert proc.stdout.startswith("fetched\n")  # the command's own output first, unchanged
    assert json.loads(proc.stdout[len("fetched\n") :])["files"] == 1
    assert (tmp_path / "got").stat().st_size == 200_000  # the token opened the gate; the CDN served curl


def test_redact_removes_known_secrets_and_token_shapes() -> None:
    got = redact(["app", "--token=s3cr3t-value", "hf_" + "a" * 30], frozenset({"s3cr3t-value"}))
    assert got == ["app", "--token=<redacted>", "<redacted>"]


C1, C2 = "1" * 40, "2" * 40


def obs(path: str | None, revision: str = "main", commit: str | None = C1, status: int = 200) -> Observation:
    return Observation("model", "org/m", revision, path, "GET", status, commit, 10 if path else None)


def test_summarise_groups_by_commit_and_keeps_every_name() -> None:
    repos, notes = summarise(
        [
            obs(None),  # revision lookup: main -> C1
            obs("a.json", revision=C1),
            obs("b.json", revision="v1"),  # a tag on the same commit
            obs("gone.json", status=404),
            obs("c.json", commit=None, revision="main"),  # no X-Repo-Commit: cannot be pinned
            obs("../x", revision=C1),
        ]
    )
    assert [(r.revision, r.commit, r.files) for r in repos] == [
        ("main", C1, ("a.json", "b.json")),
        ("v1", C1, ("a.json", "b.json")),
    ]
    assert any("without a commit id" in n for n in notes) and any("unsafe" in n for n in notes)


def test_summarise_refuses_a_branch_that_moved_during_the_run() -> None:
    with pytest.raises(TraceError, match="during the run"):
        summarise([obs("a.json"), obs("b.json", commit=C2)])


# -- exit status, failed runs, --append --------------------------------------------------------------------------

FETCH = "from huggingface_hub import hf_hub_download\nhf_hub_download({repo!r}, {path!r})\n"


def run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return hfbundle(*argv, env=env, timeout=120)


def test_failed_run_passes_its_status_and_writes_nothing(small_hub: HubServer, tmp_path: Path) -> None:
    out = tmp_path / "fail.toml"
    code = FETCH.format(repo=SMALL, path="config.json") + "print('app output'); raise SystemExit(3)\n"
    proc = run_cli(["trace", "-o", str(out), "--", sys.executable, "-c", code], traced_env(tmp_path, small_hub))
    assert proc.returncode == 3
    assert proc.stdout == "app output\n"
    assert not out.exists() and "nothing written" in proc.stderr
    proc = run_cli(
        ["trace", "-o", str(out), "--keep-partial", "--", sys.executable, "-c", code], traced_env(tmp_path, small_hub)
    )
    assert proc.returncode == 3
    assert [f.path for f in load_recipe(out).repos[0].files] == ["config.json"]


def test_append_merges_runs_and_retracing_a_mode_replaces_it(small_hub: HubServer, tmp_path: Path) -> None:
    out = tmp_path / "app.toml"
    env = traced_env(tmp_path, small_hub)
    config = [sys.executable, "-c", FETCH.format(repo=SMALL, path="config.json")]
    notes = [sys.executable, "-c", FETCH.format(repo=SMALL, path="sub/notes.txt")]
    trace(config, output=out, env=env, run_name="base")
    trace(notes, output=out, env=env, append=True, run_name="extra")
    recipe = load_recipe(out)
    assert [r.name for r in recipe.runs] == ["base", "extra"]
    assert {f.path: f.runs for f in recipe.repos[0].files} == {"config.json": ("base",), "sub/notes.txt": ("extra",)}
    trace(config, output=out, env=env, append=True, run_name="extra")  # the mode changed: traced again
    recipe = load_recipe(out)
    assert {f.path: f.runs for f in recipe.repos[0].files} == {"config.json": ("base", "extra")}
    assert recipe.name == "app" and recipe.repos[0].revision == "main"


def test_a_branch_that_moved_between_runs_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    with HubServer(tmp_path / "hub") as hub:
        hub.publish("org/moving", folder)
        env = traced_env(tmp_path, hub)
        out = tmp_path / "moving.toml"
        trace([sys.executable, "-c", FETCH.format(repo="org/moving", path="a.json")], output=out, env=env)
        (folder / "a.json").write_text('{"v": 2}')
        hub.publish("org/moving", folder)
        with pytest.raises(TraceError, match="moved between runs"):
            trace(
                [sys.executable, "-c", FETCH.format(repo="org/moving", path="a.json")], output=out, env=env, append=True
            )


def test_append_refuses_a_recipe_without_files_lists(tmp_path: Path) -> None:
    out = tmp_path / "hand.toml"
    out.write_text('[recipe]\nname = "hand"\n\n[[repos]]\nname = "m"\nrepo = "org/m"\n')
    with pytest.raises(RecipeError, match="no files list"):
        trace(["true"], output=out, append=True)


# -- traced recipes downstream: resolve, build, install, doctor ---------------------------------------------------


def test_traced_recipe_builds_installs_and_doctor_names_the_runs(small_hub: HubServer, tmp_path: Path) -> None:
    out = tmp_path / "two.toml"
    env = traced_env(tmp_path, small_hub)
    trace([sys.executable, "-c", FETCH.format(repo=SMALL, path="config.json")], output=out, env=env, run_name="a")
    trace(
        [sys.executable, "-c", FETCH.format(repo=SMALL, path="model.safetensors")],
        output=out,
        env=env,
        append=True,
        run_name="b",
    )
    bundle = tmp_path / "two.tar.zst"
    build(str(out), output=bundle, endpoint=small_hub.endpoint, cache_dir=tmp_path / "online", token=False)
    cache = tmp_path / "offline"
    install(bundle, cache_dir=cache)
    report = doctor(str(out), cache)
    assert report.ok, report.render()
    assert {r.name: r.ok for r in report.runs()} == {"a": True, "b": True}
    assert report.repos[0].needed_by == {"config.json": ("a",), "model.safetensors": ("b",)}
    commit = report.repos[0].commit
    (cache / "models--org--small" / "snapshots" / str(commit) / "model.safetensors").unlink()
    report = doctor(str(out), cache)
    assert {r.name: r.ok for r in report.runs()} == {"a": True, "b": False}
    assert any("run 'b' needs org/small (model.safetensors): missing" in p.message for p in report.errors)
    # offline, the real client reads what run a fetched
    got = run_hf_client(
        f"from huggingface_hub import hf_hub_download\nemit(open(hf_hub_download({SMALL!r}, 'config.json')).read())",
        cache=cache,
        endpoint=CLOSED_ENDPOINT,
        offline=True,
    )
    assert got == '{"hidden_size": 8}\n'


# -- the scenario: a diffusers app in two modes ------------------------------------------------------------

SD, TAESD, LORA = "hfbundle-test/tiny-sd", "hfbundle-test/tiny-taesd", "hfbundle-test/tiny-lcm-lora"
APP = f"""
import os, shutil, sys, warnings
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(1)
from diffusers import AutoencoderTiny, DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({SD!r})
if "--taesd-lora" in sys.argv:
    pipe.vae = AutoencoderTiny.from_pretrained({TAESD!r})
    pipe.load_lora_weights({LORA!r}, weight_name="pytorch_lora_weights.safetensors")
image = pipe("a cube", num_inference_steps=1, width=64, height=64, output_type="np").images[0]
print("app ok", image.shape)
if os.environ.get("COPY_TO"):
    shutil.copytree(os.environ["HF_HUB_CACHE"], os.environ["COPY_TO"], symlinks=True)
"""


def _snapshot_files(cache: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for repo in cache.glob("models--*"):
        repo_id = repo.name[len("models--") :].replace("--", "/")
        for snap in (repo / "snapshots").iterdir():
            out.setdefault(repo_id, set()).update(
                p.relative_to(snap).as_posix() for p in snap.rglob("*") if not p.is_dir()
            )
    return out


@pytest.mark.slow
def test_two_modes_traced_bundled_and_run_offline(hub: HubServer, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    env = client_env(cache=tmp_path / "unused", endpoint=hub.endpoint, extra_env={"OMP_NUM_THREADS": "1"})
    out = tmp_path / "app.toml"
    modes = {"base": [], "taesd-lora": ["--taesd-lora"]}
    fetched: dict[str, set[str]] = {}
    for i, (mode, args) in enumerate(modes.items()):
        direct = tmp_path / f"direct-{mode}"
        proc = subprocess.run(
            [sys.executable, str(app), *args],
            env=client_env(cache=direct, endpoint=hub.endpoint, extra_env={"OMP_NUM_THREADS": "1"}),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        traced = tmp_path / f"traced-{mode}"
        report = trace(
            [sys.executable, str(app), *args],
            output=out,
            env={**env, "COPY_TO": str(traced)},
            append=i > 0,
            run_name=mode,
        )
        assert report.exit_code == 0 and report.written, report.render()
        assert cache_tree(traced) == cache_tree(direct)  # the proxy changed nothing the client cached
        for repo_id, files in _snapshot_files(direct).items():
            fetched.setdefault(repo_id, set()).update(files)

    recipe = load_recipe(out)
    listed = {r.repo: {f.path for f in r.files} for r in recipe.repos}
    assert listed == fetched  # exactly the union of what the two runs fetched
    assert set(listed) == {SD, TAESD, LORA}
    by_repo = {r.repo: r for r in recipe.repos}
    assert by_repo[LORA].files[0].runs == ("taesd-lora",)
    assert by_repo[SD].role == "diffusers-pipeline"
    assert all(f.runs == ("base", "taesd-lora") for f in by_repo[SD].files)

    bundle = tmp_path / "app.tar.zst"
    build(str(out), output=bundle, endpoint=hub.endpoint, cache_dir=tmp_path / "online", token=False)
    cache = tmp_path / "offline" / "hub"
    install(bundle, cache_dir=cache)
    assert doctor(str(out), cache).ok
    for args in modes.values():
        proc = subprocess.run(
            [sys.executable, str(app), *args],
            env=client_env(cache=cache, endpoint=CLOSED_ENDPOINT, offline=True, extra_env={"OMP_NUM_THREADS": "1"}),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0 and "app ok" in proc.stdout, proc.stderr[-3000:]
    # hfbundle run takes the traced recipe too: its pipeline is the repo with model_index.json
    png = tmp_path / "cube.png"
    ran = run(
        str(out), prompt="a cube", output=png, steps=1, width=64, height=64, threads=1, cache_dir=cache, isolate=True
    )
    assert png.stat().st_size > 0 and ran.repos["tiny-sd"].startswith(SD)
