"""push/pull through a real registry (Debian's docker-registry, distribution 2.8) started by the fixtures, and
through OCI image layouts: round trips, dedupe, resume, tampering, auth, interop with skopeo."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from bundler.bundle.manifest import BlobEntry, Manifest, RepoEntry, SnapshotEntry
from bundler.bundle.reader import BundleWriter, open_bundle
from bundler.errors import IntegrityError, RegistryError
from bundler.hashing import git_blob_sha1, lfs_blob_id
from bundler.install.plan import Progress
from bundler.oci.auth import Credentials
from bundler.oci.ref import LayoutRef, parse_ref
from bundler.oci.transfer import TransferOptions, pull, push
from bundler.repofile import RepoFile
from bundler.verify import verify_cache
from tests.conftest import CLOSED_ENDPOINT
from tests.helpers import cache_tree_without_records as tree_of
from tests.helpers import hfbundle as cli
from tests.helpers import sha256 as sha
from tests.testing import registry
from tests.testing.registry import Registry

pytestmark = pytest.mark.skipif(not registry.available(), reason="docker-registry is not installed (scripts/setup)")

COMMIT = "c0ffee" + "1" * 34
REPO_ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "fleet", "s3cret-pass"


def make_bundle(path: Path, files: dict[str, bytes], *, repo_id: str = "org/tiny", commit: str = COMMIT) -> Manifest:
    """A one-repo bundle; files over 100 bytes are LFS files (named by sha256 in the cache)."""
    entries, blobs = [], {}
    for name, data in files.items():
        digest = sha(data)
        if len(data) > 100:
            entries.append(RepoFile(name, len(data), lfs_blob_id(digest, len(data)), lfs_sha256=digest))
        else:
            entries.append(RepoFile(name, len(data), git_blob_sha1(data), sha256=digest))
        blobs[digest] = BlobEntry(digest, len(data))
    snap = SnapshotEntry(commit, tuple(sorted(entries, key=lambda f: f.path)))
    manifest = Manifest(repos=(RepoEntry("model", repo_id, {"main": commit}, (snap,)),), blobs=tuple(blobs.values()))
    contents = {sha(d): d for d in files.values()}
    with BundleWriter(path) as writer:
        writer.write_manifest(manifest.dumps())
        for blob in manifest.blobs:
            writer.add_blob(blob.sha256, blob.size, io.BytesIO(contents[blob.sha256]))
    return manifest


def weights(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def push_file(bundle: Path, ref: str, options: TransferOptions):
    with open_bundle(bundle) as reader:
        assert reader.index is not None
        order = [m.sha256 for m in reader.index.blobs]
        return push(
            reader.manifest,
            reader.manifest_bytes,
            order,
            lambda s: reader.read_blob(s),
            parse_ref(ref),
            options,
        )


@pytest.fixture
def reg(tmp_path: Path):
    with Registry(tmp_path / "registry") as r:
        yield r


@pytest.fixture
def auth_reg(tmp_path: Path):
    with Registry(tmp_path / "registry", users={USER: PASSWORD}) as r:
        yield r


PLAIN = TransferOptions(plain_http=True, retries=2, backoff=0.05)


def test_push_then_pull_install_and_bundle_byte_identical(reg: Registry, tmp_path: Path) -> None:
    files = {"config.json": b'{"a": 1}\n', "model.safetensors": weights(300_000, 1), "README.md": b"# tiny\n"}
    bundle = tmp_path / "b.tar.zst"
    manifest = make_bundle(bundle, files)
    report = push_file(bundle, f"{reg.host}/models/tiny:v1", PLAIN)
    assert report.uploaded == len(manifest.blobs) + 1 and report.existing == 0
    cache = tmp_path / "cache"
    pulled = pull(parse_ref(f"{reg.host}/models/tiny:v1"), PLAIN, cache_dir=cache, output=tmp_path / "again.tar.zst")
    assert pulled.bundle_id == manifest.bundle_id
    assert (tmp_path / "again.tar.zst").read_bytes() == bundle.read_bytes()
    snap = cache / "models--org--tiny" / "snapshots" / COMMIT
    assert {p.name for p in snap.iterdir()} == set(files)
    assert (snap / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert (cache / "models--org--tiny" / "refs" / "main").read_text() == COMMIT
    assert verify_cache(cache).ok


def test_second_bundle_uploads_only_new_blobs(reg: Registry, tmp_path: Path) -> None:
    shared = {"unet/model.safetensors": weights(200_000, 2), "vae/model.safetensors": weights(150_000, 3)}
    make_bundle(tmp_path / "one.tar.zst", {**shared, "model_index.json": b'{"v": 1}'})
    first = push_file(tmp_path / "one.tar.zst", f"{reg.host}/models/one:v1", PLAIN)
    uploads_before = reg.requests("PUT", "/blobs/uploads/")
    new = {"text_encoder/model.safetensors": weights(120_000, 4)}
    second_manifest = make_bundle(tmp_path / "two.tar.zst", {**shared, **new, "model_index.json": b'{"v": 2}'})
    second = push_file(tmp_path / "two.tar.zst", f"{reg.host}/models/one:v2", PLAIN)
    # new: the text encoder, model_index.json, hfbundle's manifest (+ the config, not a layer)
    assert (second.uploaded, second.existing) == (3, 2), second
    assert reg.requests("PUT", "/blobs/uploads/") - uploads_before == 4  # 3 layers + the config
    assert second.bytes_uploaded < sum(len(d) for d in shared.values())
    assert first.digest != second.digest
    pulled = pull(parse_ref(f"{reg.host}/models/one:v2"), PLAIN, output=tmp_path / "two-again.tar.zst")
    assert pulled.bundle_id == second_manifest.bundle_id
    assert (tmp_path / "two-again.tar.zst").read_bytes() == (tmp_path / "two.tar.zst").read_bytes()


def test_cross_repository_mount(reg: Registry, tmp_path: Path) -> None:
    make_bundle(tmp_path / "b.tar.zst", {"model.safetensors": weights(100_000, 5), "config.json": b"{}"})
    push_file(tmp_path / "b.tar.zst", f"{reg.host}/team-a/model:v1", PLAIN)
    with open_bundle(tmp_path / "b.tar.zst") as reader:
        assert reader.index is not None
        report = push(
            reader.manifest,
            reader.manifest_bytes,
            [m.sha256 for m in reader.index.blobs],
            lambda s: reader.read_blob(s),
            parse_ref(f"{reg.host}/team-b/model:v1"),
            PLAIN,
            mount_from=["team-a/model"],
        )
    assert report.mounted == 3 and report.uploaded == 0 and report.bytes_uploaded == 0


def test_artifact_is_modelpack_and_skopeo_reads_and_copies_it(reg: Registry, tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (scripts/setup)")
    files = {"config.json": b'{"a": 1}\n', "model.safetensors": weights(250_000, 6), "tokenizer.json": b"{}"}
    make_bundle(tmp_path / "b.tar.zst", files)
    report = push_file(tmp_path / "b.tar.zst", f"{reg.host}/models/tiny:v1", PLAIN)
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/models/tiny:v1"],
        capture_output=True,
        check=True,
    ).stdout
    assert "sha256:" + sha(raw) == report.digest
    oci = json.loads(raw)
    assert oci["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert oci["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    by_path = {layer["annotations"]["org.cncf.model.filepath"]: layer for layer in oci["layers"]}
    weight = by_path["model.safetensors"]
    assert weight["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert weight["digest"] == "sha256:" + sha(files["model.safetensors"])  # raw: the layer is the blob
    assert by_path["config.json"]["mediaType"] == "application/vnd.cncf.model.weight.config.v1.raw"
    config = subprocess.run(
        ["skopeo", "inspect", "--config", "--raw", "--tls-verify=false", f"docker://{reg.host}/models/tiny:v1"],
        capture_output=True,
        check=True,
    ).stdout
    schema = json.loads((Path("/work/shared/reference/modelpack/config-schema.json")).read_text())
    jsonschema.validate(json.loads(config), schema)
    assert json.loads(config)["modelfs"]["diffIds"] == [layer["digest"] for layer in oci["layers"]]

    layout = tmp_path / "layout"
    subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{reg.host}/models/tiny:v1", f"oci:{layout}:v1"],
        capture_output=True,
        check=True,
    )
    from_registry, from_layout = tmp_path / "cache-registry", tmp_path / "cache-layout"
    pull(parse_ref(f"{reg.host}/models/tiny:v1"), PLAIN, cache_dir=from_registry)
    pulled = pull(parse_ref(f"oci-layout:{layout}:v1"), cache_dir=from_layout)
    assert pulled.digest == report.digest
    assert tree_of(from_layout) == tree_of(from_registry)


def test_push_to_layout_and_pull_from_it(tmp_path: Path) -> None:
    files = {"model.safetensors": weights(120_000, 7), "config.json": b"{}"}
    manifest = make_bundle(tmp_path / "b.tar.zst", files)
    report = push_file(tmp_path / "b.tar.zst", f"oci-layout:{tmp_path / 'usb'}:tiny", TransferOptions())
    assert (tmp_path / "usb" / "oci-layout").is_file()
    again = push_file(tmp_path / "b.tar.zst", f"oci-layout:{tmp_path / 'usb'}:tiny", TransferOptions())
    assert again.uploaded == 0 and again.existing == report.layers and again.digest == report.digest
    index = json.loads((tmp_path / "usb" / "index.json").read_text())
    assert len(index["manifests"]) == 1
    pulled = pull(LayoutRef(tmp_path / "usb", "tiny"), output=tmp_path / "out.tar.zst")
    assert pulled.bundle_id == manifest.bundle_id
    assert (tmp_path / "out.tar.zst").read_bytes() == (tmp_path / "b.tar.zst").read_bytes()


def test_tampered_layer_is_refused_and_nothing_is_visible(reg: Registry, tmp_path: Path) -> None:
    data = weights(400_000, 8)
    make_bundle(tmp_path / "b.tar.zst", {"model.safetensors": data, "config.json": b"{}"})
    push_file(tmp_path / "b.tar.zst", f"{reg.host}/models/tiny:v1", PLAIN)
    stored = reg.blob_file("sha256:" + sha(data))
    raw = bytearray(stored.read_bytes())
    raw[1000] ^= 0xFF  # same size, different content
    stored.write_bytes(bytes(raw))
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError):
        pull(parse_ref(f"{reg.host}/models/tiny:v1"), PLAIN, cache_dir=cache)
    repo = cache / "models--org--tiny"
    assert not (repo / "refs").exists() and not list(repo.glob("snapshots/*"))
    assert not list(repo.glob(f"blobs/{sha(data)}*"))
    with pytest.raises(IntegrityError):
        pull(parse_ref(f"{reg.host}/models/tiny:v1"), PLAIN, output=tmp_path / "out.tar.zst")
    assert not (tmp_path / "out.tar.zst").exists()


def test_registry_killed_mid_pull_then_pull_again_skips_finished_layers(reg: Registry, tmp_path: Path) -> None:
    # Layers over the prefetch size stream one at a time: the kill lands between two of them.
    files = {f"shard-{i}.safetensors": weights(5_000_000, 10 + i) for i in range(4)}
    make_bundle(tmp_path / "b.tar.zst", {**files, "config.json": b"{}"})
    push_file(tmp_path / "b.tar.zst", f"{reg.host}/models/big:v1", PLAIN)
    cache = tmp_path / "cache"
    killed: list[str] = []

    def kill_after_first_blob(p: Progress) -> None:
        if p.phase == "stream" and p.done_bytes >= 5_000_000 and not killed:
            killed.append(p.item or "")
            reg.kill()

    with pytest.raises(RegistryError):
        pull(parse_ref(f"{reg.host}/models/big:v1"), PLAIN, cache_dir=cache, on_progress=kill_after_first_blob)
    assert killed
    blobs = cache / "models--org--tiny" / "blobs"
    done = {p.name for p in blobs.iterdir() if not p.name.startswith(".")}
    assert done and not (cache / "models--org--tiny" / "refs").exists()
    reg.start()
    again = pull(parse_ref(f"{reg.host}/models/big:v1"), PLAIN, cache_dir=cache)
    fetched = {d.removeprefix("sha256:") for d in again.fetched}
    assert fetched and not fetched & done
    assert len(fetched | done) == 5
    assert verify_cache(cache).ok


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "HF_HUB_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": CLOSED_ENDPOINT,
        "PYTHONPATH": str(REPO_ROOT),
        **extra,
    }


def test_basic_auth_from_stdin_and_auth_file_and_wrong_password(auth_reg: Registry, tmp_path: Path) -> None:
    make_bundle(tmp_path / "b.tar.zst", {"model.safetensors": weights(50_000, 9)})
    ref = f"{auth_reg.host}/models/tiny:v1"
    env = offline_env(tmp_path)
    anon = cli("push", str(tmp_path / "b.tar.zst"), ref, "--plain-http", env=env)
    assert anon.returncode == 1 and "needs credentials" in anon.stderr, anon.stderr
    ok = cli(
        "push", str(tmp_path / "b.tar.zst"), ref, "--plain-http", "--username", USER, "--password-stdin", "--json",
        env=env, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert PASSWORD not in ok.stdout + ok.stderr
    wrong = cli(
        "pull", ref, "--install", "--plain-http", "--username", USER, "--password-stdin",
        env=env, stdin="not-the-password\n",
    )  # fmt: skip
    assert wrong.returncode == 1
    first, *rest = wrong.stderr.strip().splitlines()
    assert first.startswith("error: ") and "authentication failed" in first and "Traceback" not in wrong.stderr
    assert all(line.startswith("  hint:") for line in rest)
    assert "not-the-password" not in wrong.stderr
    auth_file = tmp_path / "auth.json"
    token = __import__("base64").b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth_file.write_text(json.dumps({"auths": {auth_reg.host: {"auth": token}}}))
    pulled = cli("pull", ref, "--install", "--plain-http", "--json", env={**env, "REGISTRY_AUTH_FILE": str(auth_file)})
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["install"] is not None
    assert token not in pulled.stdout + pulled.stderr and PASSWORD not in pulled.stdout + pulled.stderr


def test_bearer_token_auth(tmp_path: Path) -> None:
    from tests.testing.registry import TokenServer

    with (
        TokenServer(tmp_path / "token", {USER: PASSWORD}) as tokens,
        Registry(tmp_path / "registry", token=tokens) as reg,
    ):
        files = {"model.safetensors": weights(60_000, 11), "config.json": b"{}"}
        manifest = make_bundle(tmp_path / "b.tar.zst", files)
        creds = TransferOptions(credentials=Credentials(USER, PASSWORD), plain_http=True, retries=1, backoff=0.05)
        push_file(tmp_path / "b.tar.zst", f"{reg.host}/models/tiny:v1", creds)
        assert tokens.issued >= 1
        pulled = pull(parse_ref(f"{reg.host}/models/tiny:v1"), creds, cache_dir=tmp_path / "cache")
        assert pulled.bundle_id == manifest.bundle_id and pulled.install is not None
        with pytest.raises(RegistryError, match="authentication failed"):
            bad = TransferOptions(credentials=Credentials(USER, "wrong"), plain_http=True, retries=1, backoff=0.05)
            pull(parse_ref(f"{reg.host}/models/tiny:v1"), bad, cache_dir=tmp_path / "cache2")
        with pytest.raises(RegistryError, match="needs credentials"):
            pull(parse_ref(f"{reg.host}/models/tiny:v1"), PLAIN, cache_dir=tmp_path / "cache3")


def test_identity_token_from_the_auth_file_answers_the_token_service(tmp_path: Path) -> None:
    """What `docker login` stores for ACR or Harbor with OIDC: an `identitytoken` (an OAuth2 refresh token),
    traded for an access token with a POST, as docker does; the token never reaches the output."""
    from tests.testing.registry import TokenServer

    refresh = "refresh-" + "5" * 24
    with (
        TokenServer(tmp_path / "token", {USER: PASSWORD}, refresh_tokens={refresh: USER}) as tokens,
        Registry(tmp_path / "registry", token=tokens) as reg,
    ):
        make_bundle(tmp_path / "b.tar.zst", {"model.safetensors": weights(60_000, 14), "config.json": b"{}"})
        creds = TransferOptions(credentials=Credentials(USER, PASSWORD), plain_http=True, retries=1, backoff=0.05)
        push_file(tmp_path / "b.tar.zst", f"{reg.host}/models/tiny:v1", creds)
        auth_file = tmp_path / "auth.json"
        entry = {"auth": __import__("base64").b64encode(b"<token>:").decode(), "identitytoken": refresh}
        auth_file.write_text(json.dumps({"auths": {reg.host: entry}}))
        env = offline_env(tmp_path, REGISTRY_AUTH_FILE=str(auth_file))
        ref = f"{reg.host}/models/tiny:v1"
        pulled = cli("pull", ref, "--install", "--plain-http", "--cache-dir", str(tmp_path / "cache"), env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert tokens.refreshed >= 1
        assert refresh not in pulled.stdout + pulled.stderr
        assert verify_cache(tmp_path / "cache").ok
        entry["identitytoken"] = "refresh-expired"
        auth_file.write_text(json.dumps({"auths": {reg.host: entry}}))
        refused = cli("pull", ref, "--install", "--plain-http", "--cache-dir", str(tmp_path / "cache2"), env=env)
        assert refused.returncode == 1
        assert "refused the identity token" in refused.stderr and "docker login" in refused.stderr
        assert "refresh-expired" not in refused.stdout + refused.stderr
        assert not (tmp_path / "cache2" / "models--models--tiny").exists()


def test_5xx_and_a_cut_download_are_retried_and_resumed(reg: Registry, tmp_path: Path) -> None:
    from tests.testing.registry import FaultProxy

    data = weights(3_000_000, 12)
    manifest = make_bundle(tmp_path / "b.tar.zst", {"model.safetensors": data, "config.json": b"{}"})
    push_file(tmp_path / "b.tar.zst", f"{reg.host}/models/tiny:v1", PLAIN)
    with FaultProxy(reg.host, fail_gets=2, cut_after=1_000_000) as proxy:
        pulled = pull(parse_ref(f"{proxy.host}/models/tiny:v1"), PLAIN, cache_dir=tmp_path / "cache")
    assert pulled.bundle_id == manifest.bundle_id
    ranges = [r for m, p, r in proxy.seen if m == "GET" and sha(data) in p and r]
    assert ranges == ["bytes=1000000-"]  # resumed where the cut happened, not from the start
    assert verify_cache(tmp_path / "cache").ok


def test_chunked_upload_survives_a_dropped_chunk(reg: Registry, tmp_path: Path) -> None:
    from tests.testing.registry import FaultProxy

    data = weights(5_500_000, 13)
    make_bundle(tmp_path / "b.tar.zst", {"model.safetensors": data})
    chunked = TransferOptions(plain_http=True, retries=3, backoff=0.05, chunk_size=1 << 20)
    with FaultProxy(reg.host, drop_patch=2) as proxy:
        report = push_file(tmp_path / "b.tar.zst", f"{proxy.host}/models/tiny:v1", chunked)
    patches = [p for m, p, _r in proxy.seen if m == "PATCH"]
    assert len(patches) == 7  # 6 chunks of 1 MiB (the last one short), the second one sent twice
    assert report.uploaded == 2
    pull(parse_ref(f"{reg.host}/models/tiny:v1"), PLAIN, output=tmp_path / "again.tar.zst")
    assert (tmp_path / "again.tar.zst").read_bytes() == (tmp_path / "b.tar.zst").read_bytes()


def plain_modelpack(layout: Path, files: dict[str, bytes], annotations: dict[str, str]) -> None:
    """A ModelPack artifact as another packer writes it: raw layers with file paths, no hfbundle layer."""
    from bundler.oci.layout import LayoutStore

    store = LayoutStore(layout, create=True)
    layers = []
    for path, data in files.items():
        digest = "sha256:" + sha(data)
        store.push_blob(digest, len(data), lambda data=data: io.BytesIO(data))  # type: ignore[misc]
        media = "weight.v1.raw" if path.endswith(".safetensors") else "weight.config.v1.raw"
        layers.append(
            {
                "mediaType": f"application/vnd.cncf.model.{media}",
                "digest": digest,
                "size": len(data),
                "annotations": {"org.cncf.model.filepath": path},
            }
        )
    config = json.dumps({"descriptor": {"name": "tiny"}, "config": {}, "modelfs": {"type": "layers", "diffIds": []}})
    raw_config = config.encode()
    store.push_blob("sha256:" + sha(raw_config), len(raw_config), lambda: io.BytesIO(raw_config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.cncf.model.config.v1+json",
            "digest": "sha256:" + sha(raw_config),
            "size": len(raw_config),
        },
        "layers": layers,
        "annotations": annotations,
    }
    store.put_manifest(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json", "v1")


def test_plain_modelpack_artifact_installs_when_it_names_repo_and_commit(tmp_path: Path) -> None:
    files = {"model.safetensors": weights(70_000, 14), "config.json": b'{"x": 1}'}
    plain_modelpack(
        tmp_path / "named",
        files,
        {
            "org.opencontainers.image.source": "https://huggingface.co/org/plain",
            "org.opencontainers.image.revision": COMMIT,
        },
    )
    cache = tmp_path / "cache"
    pull(parse_ref(f"oci-layout:{tmp_path / 'named'}:v1"), cache_dir=cache)
    snap = cache / "models--org--plain" / "snapshots" / COMMIT
    assert {p: (snap / p).read_bytes() for p in files} == files
    assert (cache / "models--org--plain" / "refs" / "main").read_text() == COMMIT
    assert verify_cache(cache).ok

    plain_modelpack(tmp_path / "anonymous", files, {})
    with pytest.raises(Exception, match=r"does not name the Hugging Face repo .* nor the commit"):
        pull(parse_ref(f"oci-layout:{tmp_path / 'anonymous'}:v1"), cache_dir=tmp_path / "cache2")
    assert not (tmp_path / "cache2").exists()


def test_push_of_wrong_bytes_commits_nothing(reg: Registry) -> None:
    from bundler.oci.client import RegistryClient

    good, bad = weights(6_000_000, 15), weights(6_000_000, 16)
    client = RegistryClient(reg.host, "models/tiny", plain_http=True, push=True, retries=1, backoff=0.05)
    try:
        for data in (bad[:1000], bad):  # one PUT from memory; streamed PATCH chunks
            digest = "sha256:" + sha(good[: len(data)])
            with pytest.raises(IntegrityError, match="another digest"):
                client.push_blob(digest, len(data), lambda data=data: io.BytesIO(data))  # type: ignore[misc]
            assert not client.has_blob(digest)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pull", "reg.lan/a:v1"], "give -o BUNDLE or --install"),
        (["pull", "reg.lan/a:v1", "--install", "--password-stdin"], "--password-stdin needs --username"),
        (["pull", "not-a-ref", "--install"], "does not name a registry host"),
        (["push", "b.tar.zst", "https://reg.lan/a"], "unsupported reference"),
    ],
)
def test_cli_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_cli import call

    code, _, err = call(argv, capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_unreachable_registry_is_one_line_exit_1(tmp_path: Path) -> None:
    port = registry.free_port()  # nothing listens there
    done = cli(
        "pull", f"127.0.0.1:{port}/a:v1", "--install", "--plain-http", "--retries", "1", env=offline_env(tmp_path)
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot reach 127.0.0.1:{port}") and "Traceback" not in done.stderr
