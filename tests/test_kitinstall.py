"""The kit's install.py, in pieces that need no wheels: the SHA256SUMS check, kit.json, the offline lines."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bundler import kitinstall
from bundler.kitinstall import KitError, check_kit, offline_lines, read_kit_json

CVARS = ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"]


def make_kit(root: Path, files: dict[str, bytes] | None = None) -> Path:
    kit_json = {"format": "hfbundle-kit", "kit_version": 1, "hfbundle": "0.1.0", "runner": False}
    kit_json |= {"bundles": ["bundles/01-demo.tar.zst"], "doctor": ["tiny-demo", "recipes/x.toml"], "targets": []}
    kit_json |= {"offline": {"stacks": ["optimum-intel"], "sets": [["HF_HUB_OFFLINE", "1"]], "cache_variables": CVARS}}
    content = {
        "install.py": b"print('hi')\n",
        "kit.json": json.dumps(kit_json).encode(),
        "bundles/01-demo.tar.zst": b"bundle bytes",
        "wheels/pip-25.0-py3-none-any.whl": b"PK pip",
        "recipes/x.toml": b"[recipe]\n",
        **(files or {}),
    }
    for rel, data in content.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {rel}\n" for rel, d in sorted(content.items()))
    (root / "SHA256SUMS").write_text(sums)
    return root


def test_a_good_kit_passes_and_the_venv_is_ignored(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    (kit / ".venv" / "bin").mkdir(parents=True)
    (kit / ".venv" / "bin" / "python").write_text("not listed, not checked")
    assert check_kit(kit) == 5
    info = read_kit_json(kit)
    assert info.bundles == ("bundles/01-demo.tar.zst",) and info.doctor == ("tiny-demo", "recipes/x.toml")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("flipped", "bundles/01-demo.tar.zst: damaged"),
        ("missing", "bundles/01-demo.tar.zst: missing from the kit"),
        ("unlisted", "wheels/extra-1.0-py3-none-any.whl: not listed"),
        ("escape", "line 1 is damaged or unsafe"),
        ("absolute", "line 1 is damaged or unsafe"),
        ("no sums", "SHA256SUMS is missing"),
    ],
)
def test_a_damaged_kit_is_refused_naming_the_file(tmp_path: Path, case: str, message: str) -> None:
    kit = make_kit(tmp_path)
    if case == "flipped":
        (kit / "bundles/01-demo.tar.zst").write_bytes(b"bundle bytez")
    elif case == "missing":
        (kit / "bundles/01-demo.tar.zst").unlink()
    elif case == "unlisted":
        (kit / "wheels/extra-1.0-py3-none-any.whl").write_bytes(b"PK")
    elif case in ("escape", "absolute"):
        name = "../outside" if case == "escape" else "/etc/passwd"
        (kit / "SHA256SUMS").write_text(f"{'0' * 64}  {name}\n" + (kit / "SHA256SUMS").read_text())
    else:
        (kit / "SHA256SUMS").unlink()
    with pytest.raises(KitError, match=message):
        check_kit(kit)


@pytest.mark.parametrize(
    "patch",
    [
        {"format": "other"},
        {"kit_version": 2},
        {"offline": None},
        {"offline": {"sets": [["HF_HUB_OFFLINE", "1; rm -rf ~"]], "cache_variables": []}},
        {"offline": {"sets": [], "cache_variables": ["A'B"]}},
        {"bundles": ["../../x.tar.zst"]},
        {"bundles": ["wheels/pip.whl"]},
        {"doctor": ["../evil.toml"]},
        {"hfbundle": "1.0; rm -rf /"},
        {"bundles": "bundles/a.tar.zst"},
    ],
)
def test_kit_json_is_validated(tmp_path: Path, patch: dict[str, object]) -> None:
    kit = make_kit(tmp_path)
    data = json.loads((kit / "kit.json").read_text()) | patch
    (kit / "kit.json").write_text(json.dumps(data))
    with pytest.raises(KitError):
        read_kit_json(kit)


def test_offline_lines_for_each_shell_quote_paths(tmp_path: Path) -> None:
    py = Path("/opt/my kit/.venv/bin/python")
    cache = Path("/data/it's hub")
    info = read_kit_json(make_kit(tmp_path))
    assert info.offline_pairs(None) == [("HF_HUB_OFFLINE", "1")]
    sh = offline_lines("sh", py, info.offline_pairs(cache), venv=True)
    quoted = "'/data/it'\"'\"'s hub'"
    assert sh[:3] == ["export HF_HUB_OFFLINE=1", *(f"export {v}={quoted}" for v in CVARS)]
    assert ". '/opt/my kit/.venv/bin/activate'" in sh
    cmd = offline_lines("cmd", Path("C:/kit/.venv/Scripts/python.exe"), info.offline_pairs(None), venv=False)
    assert 'set "HF_HUB_OFFLINE=1"' in cmd and 'setx HF_HUB_OFFLINE "1"' in cmd
    assert not any("activate" in line for line in cmd) and not any("HF_HUB_CACHE" in line for line in cmd)
    ps = offline_lines("powershell", py, info.offline_pairs(cache), venv=True)
    assert "$env:HF_HUB_OFFLINE = '1'" in ps
    assert "[Environment]::SetEnvironmentVariable('HF_HUB_CACHE', '/data/it''s hub', 'User')" in ps


def test_install_py_refuses_a_damaged_kit_with_exit_1(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, {"install.py": Path(kitinstall.__file__).read_bytes()})
    run = [sys.executable, str(kit / "install.py"), "--check-only"]
    ok = subprocess.run(run, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "kit OK: 5 files" in ok.stdout
    (kit / "bundles/01-demo.tar.zst").write_bytes(b"other")
    bad = subprocess.run(run, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: bundles/01-demo.tar.zst: damaged")
    assert "hint: copy that file" in bad.stderr
