"""Names a Windows or case-folding cache cannot hold (``bundler.winnames``): every rejected form, at resolve
(a warning naming the file and the repo) and at install (refused before anything is written where the cache
cannot hold it, a warning where it can)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundler import api, oscompat, winnames
from bundler.errors import UnsafePathError
from tests.testing.hub import HubServer, publish

REPO = "org/names"
DEEP = "deep/" + "x" * 100 + "/" + "y" * 90 + ".json"  # fits Linux; too long under the default Windows cache

# (file in the repo, kind of problem, the text an error or warning must carry)
ROWS: list[tuple[str, str, str]] = [
    ("aux.json", "reserved", "'aux'"),
    ("CON", "reserved", "'CON'"),
    ("sub/nul.txt", "reserved", "'nul'"),
    ("prn .bin", "reserved", "'prn'"),
    ("com1.safetensors", "reserved", "'com1'"),
    ("LPT9.json", "reserved", "'LPT9'"),
    ("conin$", "reserved", "'conin$'"),
    ("COM\u00b9.txt", "reserved", "'COM\u00b9'"),
    ("model:v2.json", "character", "':'"),
    ("sub/ab:c", "character", "':'"),
    ("less<than", "character", "'<'"),
    ("more>than", "character", "'>'"),
    ('say"hi"', "character", "'\"'"),
    ("pipe|d", "character", "'|'"),
    ("what?.txt", "character", "'?'"),
    ("star*.txt", "character", "'*'"),
    ("trailing.", "trailing", "dot or a space"),
    ("trailing ", "trailing", "dot or a space"),
    ("dir./x.json", "trailing", "dot or a space"),
    ("readme.md", "case", "only in case"),  # README.md is in the repo too
    ("Unet", "case", "only in case"),  # a file spelt like the folder unet/
    (DEEP, "length", "characters long"),
]
TWIN = "readme.md"
INSTALL_ROWS = [r for r in ROWS if r[0] != TWIN]
FINE = {
    "README.md": "# r",
    "config.json": "{}",
    "unet/config.json": "{}",
    "auxiliary.json": "{}",
    "console.txt": "c",
    "A/x": "1",
}
FINE_ALSO = {"a/y": "2"}  # folders spelt two ways merge: not a problem


@pytest.fixture(scope="module")
def names_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    root = tmp_path_factory.mktemp("names-hub")
    src = tmp_path_factory.mktemp("names-src") / "repo"
    for rel, content in [*FINE.items(), *FINE_ALSO.items(), *((r[0], r[0]) for r in ROWS)]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(content)
    publish(root, REPO, src)
    with HubServer(root) as hub:
        yield hub


@pytest.fixture(scope="module")
def bundle(names_hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("names-bundle")
    out = work / "names.tar.zst"
    # Without the file-file case twin: the bundle format refuses twins up to case on every platform.
    api.build(REPO, output=out, endpoint=names_hub.endpoint, cache_dir=work / "cache", token=False, exclude=[TWIN])
    return out


@pytest.fixture(scope="module")
def lock_problems(names_hub: HubServer) -> list[winnames.NameProblem]:
    lock = api.resolve(REPO, endpoint=names_hub.endpoint, token=False)
    return winnames.lock_problems(lock)


def test_only_the_table_is_flagged(lock_problems: list[winnames.NameProblem]) -> None:
    assert sorted({p.path for p in lock_problems}) == sorted({r[0] for r in ROWS})


@pytest.mark.parametrize(("name", "kind", "text"), ROWS, ids=[repr(r[0])[:30] for r in ROWS])
def test_resolve_names_each_rejected_form(
    lock_problems: list[winnames.NameProblem], name: str, kind: str, text: str
) -> None:
    mine = [p for p in lock_problems if p.path == name]
    assert [p.kind for p in mine] == [kind]
    assert text in mine[0].describe() and REPO in mine[0].describe()


def test_resolve_cli_warns_on_stderr_and_keeps_json_clean(names_hub: HubServer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_ENDPOINT": names_hub.endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bundler", "resolve", REPO, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(ROWS)
    assert all(REPO in w and "installing on Windows will refuse it" in w for w in warnings)
    assert json.loads(result.stdout)["repos"][0]["repo_id"] == REPO  # the lock, unpolluted


@pytest.fixture
def posix_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oscompat, "WINDOWS", False)
    monkeypatch.delenv("HFBUNDLE_CASE_INSENSITIVE", raising=False)


@pytest.mark.parametrize(("name", "kind", "text"), INSTALL_ROWS, ids=[repr(r[0])[:30] for r in INSTALL_ROWS])
def test_install_on_windows_refuses_each_form_before_writing(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kind: str, text: str
) -> None:
    monkeypatch.setattr(oscompat, "WINDOWS", True)
    monkeypatch.setattr(oscompat, "long_paths_enabled", lambda: False)
    cache = tmp_path / "cache"
    with pytest.raises(UnsafePathError) as info:
        api.install(bundle, cache_dir=cache)
    assert repr(name) in info.value.message and text in info.value.message and REPO in info.value.message
    assert not cache.exists()


def test_install_on_windows_with_long_paths_enabled_only_warns_of_length(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oscompat, "WINDOWS", True)
    monkeypatch.setattr(oscompat, "long_paths_enabled", lambda: True)
    with pytest.raises(UnsafePathError) as info:
        api.install(bundle, cache_dir=tmp_path / "cache")
    assert repr(DEEP) not in info.value.message  # the other rows still refuse


@pytest.mark.usefixtures("posix_case_sensitive")
def test_install_on_a_case_sensitive_posix_cache_warns_and_installs(bundle: Path, tmp_path: Path) -> None:
    report = api.install(bundle, cache_dir=tmp_path / "cache")
    flagged = [n for n in report.notes if "a Windows cache would refuse it" in n]
    assert len(flagged) == len(INSTALL_ROWS)
    for name, _kind, text in INSTALL_ROWS:
        assert any(repr(name) in n and text in n and REPO in n for n in flagged), name
    snapshot = next((tmp_path / "cache" / "models--org--names" / "snapshots").iterdir())
    assert (snapshot / "aux.json").read_text() == "aux.json"


@pytest.mark.usefixtures("posix_case_sensitive")
def test_install_on_a_case_folding_filesystem_refuses_case_twins_only(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HFBUNDLE_CASE_INSENSITIVE", "1")  # as exFAT, macOS, the foreign lane
    cache = tmp_path / "cache"
    with pytest.raises(UnsafePathError) as info:
        api.install(bundle, cache_dir=cache)
    message = info.value.message
    assert "'Unet'" in message
    assert "'aux.json'" not in message  # a Windows-only problem does not block a POSIX install
    assert "case-sensitive" in (info.value.hint or "")
    assert not cache.exists()


def test_dry_run_shows_the_warnings(bundle: Path, tmp_path: Path, posix_case_sensitive: None) -> None:
    plan = api.install(bundle, cache_dir=tmp_path / "cache", dry_run=True)
    assert sum("a Windows cache would refuse it" in line for line in plan.render()) == len(INSTALL_ROWS)


def test_control_characters_are_flagged_too() -> None:
    problems = winnames.find_problems("model", "o/n", "0" * 40, ["a\x01b", "ok"])
    assert [(p.path, p.kind) for p in problems] == [("a\x01b", "character")]


def test_length_counts_the_real_cache_folder() -> None:
    path = "f" * 150
    short = winnames.find_problems("model", "o/n", "0" * 40, [path], cache_dir="C:\\hf")
    long = winnames.find_problems("model", "o/n", "0" * 40, [path], cache_dir="C:\\" + "d" * 60)
    assert short == [] and [p.kind for p in long] == ["length"]


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "\\\\server\\share\\x", "C:x", "sub/C:x", "sub\\x", "..", "a/../b", "./a", "a//b"],
)
def test_names_refused_under_both_rules_never_reach_the_windows_check(name: str) -> None:
    """Absolute, UNC, drive and '..' names: refused on every platform (as huggingface_hub since 1.26)."""
    from bundler.paths import check_relpath

    with pytest.raises(UnsafePathError):
        check_relpath(name)


def test_build_refuses_files_differing_only_in_case_naming_both(names_hub: HubServer, tmp_path: Path) -> None:
    """Resolve warns of the twin; build then stops before downloading, naming both files and the repo, with the
    --exclude that builds the bundle anyway (not the bare "invalid manifest" of the format check)."""
    out = tmp_path / "names.tar.zst"
    with pytest.raises(UnsafePathError) as info:
        api.build(REPO, output=out, endpoint=names_hub.endpoint, cache_dir=tmp_path / "cache", token=False)
    message, hint = info.value.message, info.value.hint or ""
    assert "'README.md' and 'readme.md'" in message and REPO in message and "only in case" in message
    assert "--exclude 'readme.md'" in hint
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing downloaded


def test_cli_build_of_case_twins_is_one_clear_error(names_hub: HubServer, tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": names_hub.endpoint, "HF_HOME": str(tmp_path / "hf")}
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "bundler", "build", REPO, "-o", str(tmp_path / "b.tar.zst")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'README.md' and 'readme.md'" in result.stderr and "--exclude 'readme.md'" in result.stderr


def test_a_manifest_with_case_twins_names_both() -> None:
    """The format's own check (a hand-made or foreign manifest) says which two paths collide."""
    from bundler.bundle.manifest import Manifest
    from bundler.errors import BundleFormatError
    from tests.install.test_install import C1, Repo, Snap, build

    good = build([Repo("model", "org/m", {"main": C1}, [Snap(C1, {"README.md": (b"a", False)})])]).manifest
    raw = json.loads(good.dumps())
    twin = dict(raw["repos"][0]["snapshots"][0]["files"][0], path="readme.md")
    raw["repos"][0]["snapshots"][0]["files"].append(twin)
    with pytest.raises(BundleFormatError, match=r"'README.md' and 'readme.md' differ only in case") as info:
        Manifest.from_json(raw)
    assert "--exclude 'readme.md'" in (info.value.hint or "")
