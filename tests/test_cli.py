"""The CLI contract: exit codes, one-line errors with hints, no tracebacks, instant --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bundler.cli import main, parse_size
from tests.conftest import CLOSED_ENDPOINT
from tests.testing.hf_client import client_env
from tests.testing.hub import HubServer

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
    from bundler.progress import Progress

    bar = ProgressBar("packing", enabled=True)
    bar(Progress("pack", 100, 1000, None, 3, 20_000))
    bar(Progress("pack", 200, 1000, None, 4, 20_000))
    bar.close()
    assert "packing 3/20,000 files" in capsys.readouterr().err
    quiet = ProgressBar("packing", enabled=False)
    quiet(Progress("pack", 1, 2, None, 1, 2))
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


def test_progress_bar_starts_over_for_each_phase_and_counts_without_a_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An install re-hashes what is present ("checking"), then streams ("installing", a new bar); verify does
    not know its total in advance: a running count."""
    from bundler.output import ProgressBar
    from bundler.progress import Counter, Progress

    bar = ProgressBar("installing", enabled=True)
    bar(Progress("verify", 500, 1000))
    bar(Progress("stream", 10, 100, "x", 1, 3))
    bar(Progress("link", 100, 100, "y", 3, 3))
    bar.close()
    err = capsys.readouterr().err
    assert (
        "installing (checking what is there)" in err and "installing 1/3 files" in err and "installing 3/3 files" in err
    )
    seen: list[Progress] = []
    counter = Counter(seen.append, "verify")
    counter.add(2_000_000, files=1)
    counter.add(1_000_000, files=1)
    assert seen[-1] == Progress("verify", 3_000_000, 0, None, 2, 0)
    counting = ProgressBar("verifying", enabled=True)
    for p in seen:
        counting(p)
    counting.close()
    assert "2 files" in capsys.readouterr().err


LONG_COMMANDS = ("build", "install", "restore", "backup", "verify", "push", "pull")


@pytest.mark.parametrize("name", LONG_COMMANDS)
def test_every_long_command_takes_quiet_and_quiet_draws_nothing(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bundler.output import Output
    from bundler.progress import Progress

    code, out, _ = call([name, "--help"], capsys)
    assert code == 0 and "--quiet" in out
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with Output(quiet=True).progress(name) as bar:
        bar(Progress("stream", 5, 10, None, 1, 2))
    assert capsys.readouterr().err == ""
    with Output().progress(name) as bar:
        bar(Progress("stream", 5, 10, None, 1, 2))
    assert "1/2 files" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["install", "restore", "pull"])
def test_copy_can_be_negated(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call([name, "--help"], capsys)
    assert code == 0 and "--copy / --no-copy" in out


def test_help_examples_work_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """`hfbundle --help` builds one spec and runs another: what it runs must be in what it built (the runner
    needs every repo of its recipe, e.g. TAESD besides the pipeline), and each command and option must exist."""
    from bundler.recipe import load_spec

    _, out, _ = call(["--help"], capsys)
    lines = [line for line in out.splitlines() if line.startswith("  ") and ": " in line and "hfbundle " in line]
    examples = [line.split(":", 1)[1].strip() for line in lines]
    commands = [part.split() for ex in examples for part in ex.split("&&") if part.strip().startswith("hfbundle")]
    built = {c[2]: c[c.index("-o") + 1] for c in commands if c[1] == "build"}
    installed = [c[2] for c in commands if c[1] == "install"]
    ran = [c[2] for c in commands if c[1] == "run"]
    assert built and installed and ran, out
    assert set(installed) <= set(built.values())
    built_repos = {r.repo for spec in built for r in load_spec(spec).repos}
    for spec in ran:
        assert {r.repo for r in load_spec(spec).repos} <= built_repos, f"`run {spec}` needs what no example built"
    for c in commands:  # every example parses: the command and its options exist
        ctx_args = [a for a in c[1:] if a.startswith("-")]
        code, usage, _ = call([c[1], "--help"], capsys)
        assert code == 0
        for option in ctx_args:
            assert option in usage, f"{' '.join(c)}: {option} is not an option of {c[1]}"


def test_a_command_runs_with_fewer_collections_and_sets_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records for every file of a cache: the collector runs after 50,000 new objects during a command, not 700
    (issue 18), and the caller's setting is back afterwards, whatever the outcome."""
    import gc

    import click

    import bundler.cli

    seen: list[tuple[int, ...]] = []

    def fake_main(**_kwargs: object) -> None:
        seen.append(gc.get_threshold())
        raise click.UsageError("refused")

    before = gc.get_threshold()
    monkeypatch.setattr(bundler.cli.cli, "main", fake_main)
    with pytest.raises(SystemExit):
        main(["inventory"])
    assert seen and seen[0][0] == 50_000 and gc.get_threshold() == before
