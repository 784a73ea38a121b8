"""A token never leaves the machine it is on: not in a bundle (compressed or not), a lock, a cache file, a log
line or ``--json`` output. A unique token is planted as ``HF_TOKEN`` and as ``$HF_HOME/token``, a loopback Hub
requires it for a gated repo, and resolve, build, inspect, install and verify run through the CLI; then every
output and every file produced is searched for it."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import hfbundle
from tests.testing.hf_client import client_env
from tests.testing.hub import HubServer, publish

from . import craft

TOKEN = f"hf_planted{uuid.uuid4().hex}"
WRONG = f"hf_wrong{uuid.uuid4().hex}"
REPO = "secret/gated"


def forms(secret: str) -> list[bytes]:
    """The secret as it could be written: plain, base64 (as in a Basic header), hex, UTF-16."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(b"x:" + raw), raw.hex().encode(), secret.encode("utf-16-le")]


def assert_absent(secret: str, data: bytes, where: str) -> None:
    for form in forms(secret):
        assert form not in data, f"the token appears in {where}"


@pytest.fixture(scope="module")
def gated_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    root = tmp_path_factory.mktemp("secret-hub")
    src = tmp_path_factory.mktemp("secret-src") / "repo"
    src.mkdir()
    (src / "config.json").write_text('{"hidden": 8}\n')
    (src / "model.safetensors").write_bytes(craft.fake("gated weights", 5000))
    (src / "README.md").write_text("# gated\n")
    publish(root, REPO, src, gated=True)
    with HubServer(root, token=TOKEN) as hub:
        yield hub


def every_file(root: Path, skip: Path | None = None) -> Iterator[tuple[Path, bytes]]:
    """Every file's bytes, and for bundles (split ones joined) what a plain ``tar --zstd -x`` would see."""
    volumes: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and p != skip:
            data = p.read_bytes()
            yield p, data
            if p.name.endswith(".tar.zst"):
                yield p, craft.decompress_frames(data)
            elif ".tar.zst." in p.name:
                volumes.setdefault(str(p).rsplit(".", 1)[0], []).append(p)
    for base, parts in volumes.items():
        yield Path(base), craft.decompress_frames(b"".join(p.read_bytes() for p in sorted(parts)))


@pytest.mark.parametrize("how", ["HF_TOKEN", "token file"])
def test_token_never_appears_anywhere(how: str, gated_hub: HubServer, tmp_path: Path) -> None:
    home = tmp_path / "hf-home"
    env = client_env(
        cache=tmp_path / "online-cache", endpoint=gated_hub.endpoint, token=TOKEN if how == "HF_TOKEN" else None
    )
    env["HF_HOME"] = str(home)
    token_file = home / "token"
    if how == "token file":
        home.mkdir(parents=True)
        token_file.write_text(TOKEN)
    outputs: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    def run(*args: str, run_env: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        proc = hfbundle(*args, env=run_env)
        outputs.append((" ".join(args), proc))
        return proc

    lock = tmp_path / "work" / "gated.lock.json"
    lock.parent.mkdir()
    assert run("resolve", REPO, "--json").returncode == 0
    assert run("resolve", REPO, "-o", str(lock)).returncode == 0
    bundle = tmp_path / "work" / "gated.tar.zst"
    built = run("build", REPO, "-o", str(bundle), "--json")
    assert built.returncode == 0, built.stderr
    assert run("build", "--lock", str(lock), "-o", str(tmp_path / "work" / "from-lock.tar.zst")).returncode == 0
    assert run("build", REPO, "-o", str(tmp_path / "work" / "split.tar.zst"), "--split-size", "4096").returncode == 0
    offline = client_env(cache=tmp_path / "offline-cache", endpoint="http://127.0.0.1:9", offline=True)
    offline["HF_TOKEN"] = TOKEN  # present on the offline side too: still never written anywhere
    for args in (
        ("inspect", str(bundle)),
        ("inspect", str(bundle), "--json"),
        ("install", str(bundle), "--json"),
        ("install", str(bundle)),
        ("install", str(bundle), "--dry-run", "--json"),
        ("verify", "--json"),
        ("verify", str(bundle)),
    ):
        proc = run(*args, run_env=offline)
        assert proc.returncode == 0, (args, proc.stderr)
    # failures print messages too: a wrong token, and the right one for a repo that does not exist
    wrong = {**env, "HF_TOKEN": WRONG}
    failed = run("build", REPO, "-o", str(tmp_path / "work" / "never.tar.zst"), run_env=wrong)
    assert failed.returncode != 0 and not (tmp_path / "work" / "never.tar.zst").exists()
    assert run("resolve", "secret/missing", run_env=env).returncode != 0

    for label, proc in outputs:
        for secret in (TOKEN, WRONG):
            assert_absent(secret, proc.stdout.encode(), f"stdout of `hfbundle {label}`")
            assert_absent(secret, proc.stderr.encode(), f"stderr of `hfbundle {label}`")
    files = 0
    for path, data in every_file(tmp_path, skip=token_file):
        files += 1
        for secret in (TOKEN, WRONG):
            assert_absent(secret, data, str(path.relative_to(tmp_path)))
    assert files > 20
    assert gated_hub.downloaded_files(REPO), "the gated repo was really downloaded with the token"


def test_token_absent_from_debug_tracebacks(gated_hub: HubServer, tmp_path: Path) -> None:
    """With ``--debug`` a failing build prints a traceback: the token must not be in it either."""
    env = client_env(cache=tmp_path / "cache", endpoint=gated_hub.endpoint, token=WRONG)
    proc = hfbundle("--debug", "build", REPO, "-o", str(tmp_path / "x.tar.zst"), env=env)
    assert proc.returncode != 0
    assert_absent(WRONG, (proc.stdout + proc.stderr).encode(), "the --debug output of a failed build")
    assert not os.path.exists(tmp_path / "x.tar.zst")
