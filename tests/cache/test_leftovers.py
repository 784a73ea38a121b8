"""What an interrupted install leaves, measured against what the real client leaves after an interrupted first
download, and how the next hfbundle command brings the cache back (issue: no phantom repos)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bundler.cache.layout import RepoLayout
from bundler.cache.leftovers import QUIET_SECONDS, abandoned_repos
from bundler.doctor import doctor
from bundler.verify import verify_cache
from tests.hostile.harness import scan_view
from tests.testing.hf_client import client_env
from tests.testing.hub import HubServer

SHA = "ab" * 32


def _killed_install_leftover(cache: Path, *, age: float = 2 * QUIET_SECONDS) -> Path:
    """What SIGKILL during the blob phase of a first install leaves: blobs/ only (a verified blob, a temp)."""
    lay = RepoLayout(cache, "model", "org/killed")
    lay.blobs.mkdir(parents=True)
    (lay.blobs / SHA).write_bytes(b"verified")
    (lay.blobs / f".hfbundle-{SHA}.0123abcd.tmp").write_bytes(b"half")
    old = time.time() - age
    for p in (lay.blobs / SHA, lay.blobs / f".hfbundle-{SHA}.0123abcd.tmp", lay.blobs, lay.folder):
        os.utime(p, (old, old))
    return lay.folder


def test_killed_install_leftover_is_reported_then_removed_by_doctor_fix(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    folder = _killed_install_leftover(cache)
    repos, warnings = scan_view(cache)
    assert repos == () and len(warnings) == 1 and "Snapshots dir doesn't exist" in warnings[0]
    issues = [i for i in verify_cache(cache).issues if i.kind == "abandoned"]
    assert len(issues) == 1 and "doctor" in (issues[0].hint or "")
    report = doctor("tiny-demo", cache, fix=True)
    assert [a.repo_id for a in report.removed] == ["org/killed"]
    assert any("interrupted install" in line for line in report.render())
    assert not folder.exists()
    assert scan_view(cache) == ((), ())


def test_doctor_fix_leaves_what_is_not_an_install_leftover(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    recent = _killed_install_leftover(cache, age=0)  # may be an install still running
    client = RepoLayout(cache, "model", "org/downloading")  # the real client's interrupted download
    client.blobs.mkdir(parents=True)
    (client.blobs / f"{SHA}.1234abcd.incomplete").write_bytes(b"x")
    (client.folder / "refs").mkdir()
    (client.folder / "refs" / "main").write_text("c" * 40)
    assert abandoned_repos(cache) == []
    doctor("tiny-demo", cache, fix=True)
    assert recent.exists() and client.folder.exists()
    assert [a.repo_id for a in abandoned_repos(cache, now=time.time() + 2 * QUIET_SECONDS)] == ["org/killed"]


_INTERRUPT = """
import os, signal
import huggingface_hub.file_download as fd

def killed_mid_download(url, temp_file, *args, **kwargs):
    temp_file.write(b"half of the file")
    temp_file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

fd.http_get = killed_mid_download
fd.hf_hub_download("hfbundle-test/tiny-taesd", "diffusion_pytorch_model.safetensors")
"""


def test_the_real_clients_interrupted_download_leaves_the_same_kind_of_leftover(hub: HubServer, tmp_path: Path) -> None:
    """huggingface_hub killed while it downloads a repo's first file leaves ``refs/main``, an empty
    ``snapshots/<commit>/`` and ``blobs/<etag>.<id>.incomplete``: ``scan_cache_dir`` lists the repo with a revision
    that has no file (a phantom). A killed first install leaves less (the test above): no repo listed, one
    warning, and ``doctor --fix`` clears it."""
    cache = tmp_path / "client"
    env = client_env(cache=cache, endpoint=hub.endpoint)
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    repos, warnings = scan_view(cache)
    folder = cache / "models--hfbundle-test--tiny-taesd"
    commit = (folder / "refs" / "main").read_text()
    assert repos == (("model", "hfbundle-test/tiny-taesd", (commit,)),) and warnings == ()
    assert os.listdir(folder / "snapshots" / commit) == []
    assert any(name.endswith(".incomplete") for name in os.listdir(folder / "blobs"))
    assert abandoned_repos(cache, now=time.time() + 2 * QUIET_SECONDS) == []  # not ours: doctor leaves it
