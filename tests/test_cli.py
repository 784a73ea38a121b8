"""The CLI contract: exit codes, one-line errors with hints, no tracebacks, instant --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bundler.cli import main, parse_size
from bundler.testing.hub import HubServer
from tests.conftest import CLOSED_ENDPOINT
from tests.testing.hf_client import client_env

COMMANDS = (
    "resolve",
    "build",
    "inspect",
    "install",
    "verify",
    "backup",
    "restore",
    "doctor",
    "run",
    "keygen",
    "sign",
    "push",
    "pull",
    "trace",
)


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call(["--help"], capsys)
    assert code == 0
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call([name, "--help"], capsys)
    assert code == 0 and "Usage:" in out


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\nfrom bundler.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "names = ('torch', 'diffusers', 'transformers', 'huggingface_hub', 'zstandard', 'cryptography')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = call(["frobnicate"], capsys)
    assert code == 2 and "No such command" in err


def test_missing_bundle_is_usage_error_with_hint(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = call(["install", str(tmp_path / "nope.tar.zst"), "--cache-dir", str(tmp_path / "c")], capsys)
    assert code == 2
    assert err.startswith("error: no such bundle") and "hint:" in err and "Traceback" not in err


def test_garbage_bundle_fails_with_exit_1_and_no_traceback(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.tar.zst"
    junk.write_bytes(b"this is not a bundle" * 10)
    code, _, err = call(["install", str(junk), "--cache-dir", str(tmp_path / "c")], capsys)
    assert code == 1 and err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").glob("models--*"))


def test_unknown_recipe_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = call(["resolve", "tiny-dmeo"], capsys)
    assert code == 2 and "tiny-demo" in err  # did-you-mean


@pytest.mark.parametrize(
    ("text", "expected"), [("4G", 4 * 10**9), ("700M", 700 * 10**6), ("1GiB", 2**30), ("512", 512), ("1.5K", 1500)]
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "4Q"])
def test_parse_size_rejects(text: str) -> None:
    import click

    with pytest.raises(click.BadParameter):
        parse_size(text)


def test_progress_bar_counts_files_beside_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    """Long runs of many small files show how many files are done, not only bytes (issue 18)."""
    from bundler.output import ProgressBar

    bar = ProgressBar("packing", enabled=True)
    bar.files(3, 20_000)
    bar(100, 1000)
    bar.files(4, 20_000)
    bar(200, 1000)
    bar.close()
    assert "packing 3/20,000 files" in capsys.readouterr().err
    quiet = ProgressBar("packing", enabled=False)
    quiet.files(1, 2)
    quiet(1, 2)
    quiet.close()
    assert capsys.readouterr().err == ""


def _hfbundle(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bundler", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_debug_shows_the_hubs_error_and_each_decision_and_nothing_without_it(hub: HubServer, tmp_path: Path) -> None:
    online = client_env(cache=tmp_path / "online", endpoint=hub.endpoint)
    # A user error: one line without --debug; the Hub's own error (the cause) with it.
    plain = _hfbundle("resolve", "hfbundle-test/no-such-repo", env=online)
    debug = _hfbundle("--debug", "resolve", "hfbundle-test/no-such-repo", env=online)
    assert plain.returncode == debug.returncode == 1
    assert plain.stderr.startswith("error: ") and "Traceback" not in plain.stderr and "debug:" not in plain.stderr
    assert "RepositoryNotFoundError" not in plain.stderr
    assert "huggingface_hub.errors.RepositoryNotFoundError" in debug.stderr
    assert "The above exception was the direct cause of the following exception" in debug.stderr
    assert "debug: bundler.resolve: hfbundle-test/no-such-repo: asking" in debug.stderr

    # The I/O decisions: download on the build, write then reuse on the installs.
    bundle = tmp_path / "tiny-demo.tar.zst"
    built = _hfbundle("--debug", "build", "tiny-demo", "-o", str(bundle), env=online)
    assert built.returncode == 0, built.stderr
    assert "debug: bundler.fetch: download hfbundle-test/tiny-sd@" in built.stderr
    offline = client_env(cache=tmp_path / "offline", endpoint=CLOSED_ENDPOINT, offline=True)
    first = _hfbundle("--debug", "install", str(bundle), env=offline)
    assert first.returncode == 0, first.stderr
    assert ": write from the bundle" in first.stderr and "debug: bundler.install.run: write ref main" in first.stderr
    again = _hfbundle("--debug", "install", str(bundle), env=offline)
    assert again.returncode == 0, again.stderr
    assert "debug: bundler.install.run: reuse " in again.stderr and "write from the bundle" not in again.stderr
    quiet = _hfbundle("install", str(bundle), env=offline)
    assert quiet.returncode == 0 and "debug:" not in quiet.stderr and "debug:" not in quiet.stdout
