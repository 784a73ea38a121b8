"""Hostile names: as tar member names (the manifest's place and a blob's) and as paths, repo ids, commits and
refs inside the manifest. Every one is refused before anything is written (docs/SECURITY.md, "Names")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bundler.errors import UnsafePathError
from bundler.paths import check_relpath, check_repo_id

from . import craft
from .harness import CANARY, assert_refused

pytestmark = pytest.mark.usefixtures("lane_modes")  # each case in order and on lanes

SPEC = craft.standard()
BLOBS = SPEC.blobs()
VICTIM = min(BLOBS)  # the blob whose member gets a hostile name (the first one stored)
HEX = VICTIM
CANARY_REL = "../" * 12 + CANARY.as_posix().lstrip("/")

# -- tar member names ------------------------------------------------------------------------------------------

BLOB_NAMES: dict[str, bytes] = {
    "dotdot escape": CANARY_REL.encode(),
    "absolute": CANARY.as_posix().encode(),
    "dotdot inside": f"blobs/sha256/../../{HEX[:40]}".encode(),
    "dot prefix": f"./blobs/sha256/{HEX}".encode(),
    "dot component": f"blobs/./sha256/{HEX}".encode(),
    "double slash": f"blobs//sha256/{HEX}".encode(),
    "trailing slash": f"blobs/sha256/{HEX}/".encode(),
    "backslashes": f"blobs\\sha256\\{HEX}".encode(),
    "backslash escape": f"blobs/sha256/{HEX}\\..\\..\\x".encode(),
    "NUL inside": f"blobs/sha256/{HEX}".encode() + b"\0../../x",
    "newline": f"blobs/sha256/{HEX}\n".encode(),
    "escape sequence": f"\x1b[2Jblobs/sha256/{HEX}".encode(),
    "DEL": f"blobs/sha256/{HEX}\x7f".encode(),
    "100 bytes, no NUL": f"blobs/sha256/{HEX}".encode().ljust(100, b"a"),
    "upper case twin": f"BLOBS/SHA256/{HEX}".encode(),
    "upper case hex": f"blobs/sha256/{HEX.upper()}".encode(),
    "cyrillic look-alike": f"blobs/sha256/{HEX}".replace("s", "\u0455", 1).encode(),
    "fullwidth solidus": f"blobs\uff0fsha256\uff0f{HEX}".encode(),
    "combining accent (NFD)": f"blobs/sha256/{HEX}\u0301".encode(),
    "latin-1 byte": f"blobs/sha256/{HEX}".encode() + b"\xe9",
    "invalid utf-8": b"blobs/sha256/\xff\xfe" + HEX[:60].encode(),
    "other blob's name": f"blobs/sha256/{'e' * 64}".encode(),
    "manifest's name": b"manifest.json",
}

MANIFEST_NAMES: dict[str, bytes] = {
    "dotdot": b"../manifest.json",
    "absolute": b"/manifest.json",
    "dot prefix": b"./manifest.json",
    "upper case twin": b"MANIFEST.JSON",
    "trailing slash": b"manifest.json/",
    "trailing space": b"manifest.json ",
    "NUL inside": b"manifest.json\0.evil",
    "newline": b"manifest.json\n",
    "backslash": b"dir\\manifest.json",
    "cyrillic e": "manif\u0435st.json".encode(),
    "NFD twin": "manife\u0301st.json".encode(),
    "blob name first": f"blobs/sha256/{HEX}".encode(),
}


def _named(parts: list[craft.Part], index: int, name: bytes) -> list[craft.Part]:
    part = parts[index]
    data = part.raw[craft.TAR_BLOCK : craft.TAR_BLOCK + part.size]
    raw = craft.tar_member(craft.tar_header(name, part.size), data)
    return [*parts[:index], craft.Part(part.kind, part.sha256, part.size, raw), *parts[index + 1 :]]


@pytest.mark.parametrize("case", sorted(BLOB_NAMES))
def test_blob_member_name(case: str, tmp_path: Path, template: Path) -> None:
    parts = craft.standard_parts(SPEC)
    victim = next(i for i, p in enumerate(parts) if p.sha256 == VICTIM)
    data, _ = craft.assemble(_named(parts, victim, BLOB_NAMES[case]))
    assert_refused(data, tmp_path, template, match=r"member|name|tar header|bundle is damaged")


@pytest.mark.parametrize("case", sorted(MANIFEST_NAMES))
def test_manifest_member_name(case: str, tmp_path: Path, template: Path) -> None:
    data, _ = craft.assemble(_named(craft.standard_parts(SPEC), 0, MANIFEST_NAMES[case]))
    assert_refused(data, tmp_path, template, match=r"first member|member name|not an hfbundle|tar header")


def test_ustar_prefix_field_is_refused(tmp_path: Path, template: Path) -> None:
    """ustar may split a long path into prefix + name; a bundle never does, so a prefix is refused."""
    parts = craft.standard_parts(SPEC)
    victim = next(i for i, p in enumerate(parts) if p.sha256 == VICTIM)
    part = parts[victim]
    body = part.raw[craft.TAR_BLOCK : craft.TAR_BLOCK + part.size]
    raw = craft.tar_member(craft.tar_header(HEX.encode(), part.size, prefix=b"blobs/sha256"), body)
    data, _ = craft.assemble(
        [*parts[:victim], craft.Part(part.kind, part.sha256, part.size, raw), *parts[victim + 1 :]]
    )
    assert_refused(data, tmp_path, template, match=r"member name|tar header|damaged")


# -- paths inside the manifest ---------------------------------------------------------------------------------

BAD_PATHS: dict[str, Any] = {
    "dotdot escape": CANARY_REL,
    "dotdot into another repo": "../../../models--hostile--other/snapshots/" + craft.OLD_COMMIT + "/x",
    "dotdot inside": "unet/../../x",
    "absolute": CANARY.as_posix(),
    "dot prefix": "./config2.json",
    "dot component": "unet/./x.json",
    "dot alone": ".",
    "dotdot alone": "..",
    "empty": "",
    "empty component": "unet//x.json",
    "trailing slash": "unet/",
    "backslash escape": "..\\..\\x",
    "backslash": "unet\\x.json",
    "UNC": "\\\\server\\share\\x",
    "drive letter": "C:/Windows/x",
    "drive relative": "C:x",
    "NUL": "a\0b",
    "newline": "a\nb.json",
    "carriage return": "a\rb",
    "escape sequence": "\x1b]0;pwned\x07x",
    "DEL": "a\x7fb",
    "C1 control (NEL)": "a\x85b",
    "C1 CSI": "a\x9b31mb",
    "bidi override": "\u202etxt.exe",
    "bidi isolate": "a\u2066b",
    "NFD": "cafe\u0301.json",
    "fullwidth dotdot": "\uff0e\uff0e/\uff0e\uff0e/x",
    "one-dot-leader dotdot": "\u2024\u2024/x",
    "fullwidth solidus": "a\uff0fb",
    "fullwidth reverse solidus": "a\uff3cb",
    "overlong path": "a/" * 600 + "x",
    "overlong component": "x" * 256,
    "not a string": 5,
    "null": None,
    "list": ["a"],
}
TWINS: dict[str, tuple[str, str]] = {
    "case twins": ("Config.json", "config.json"),
    "casefold twins": ("stra\u00dfe.txt", "STRASSE.txt"),
    "NFC/NFD twins": ("caf\u00e9.json", "cafe\u0301.json"),
    "file and folder": ("unet", "unet/config.json"),
}


def _manifest_with_file(path: Any, *, twin: str | None = None) -> dict[str, Any]:
    obj = SPEC.manifest()
    files = obj["repos"][0]["snapshots"][0]["files"]
    data, _lfs = SPEC.files["config.json"]
    files.append({**craft.file_entry("x", data, lfs=False), "path": path})
    if twin is not None:
        files.append(craft.file_entry(twin, data, lfs=False))
    return obj


@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_file_path_in_manifest(case: str, tmp_path: Path, template: Path) -> None:
    data = craft.with_manifest(_manifest_with_file(BAD_PATHS[case]))
    assert_refused(data, tmp_path, template, match=r"path|string|manifest")


@pytest.mark.parametrize("case", sorted(TWINS))
def test_twin_paths_in_manifest(case: str, tmp_path: Path, template: Path) -> None:
    first, second = TWINS[case]
    data = craft.with_manifest(_manifest_with_file(first, twin=second))
    assert_refused(data, tmp_path, template, match=r"twice|only in case|below the file|NFC")


@pytest.mark.parametrize("case", ["dotdot escape", "absolute", "backslash escape", "NUL", "C1 CSI", "NFD"])
def test_no_exist_path_in_manifest(case: str, tmp_path: Path, template: Path) -> None:
    obj = SPEC.manifest()
    obj["repos"][0]["snapshots"][0]["no_exist"] = [BAD_PATHS[case]]
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"path")


BAD_REPO_IDS: dict[str, Any] = {
    "dotdot": "../x",
    "dotdot part": "org/..",
    "dotdot inside": "a..b/c",
    "three parts": "a/b/c",
    "leading slash": "/a",
    "trailing slash": "a/",
    "double slash": "a//b",
    "empty": "",
    "dot": ".",
    "leading dot": ".hidden/x",
    "leading dash": "-a/b",
    "trailing dot": "org/name.",
    "double dash alias": "hostile--tiny",
    "double dash in name": "hostile/ti--ny",
    "backslash": "a\\b",
    "space": "a b/c",
    "NUL": "a\0/b",
    "newline": "org/name\n",
    "cyrillic look-alike": "h\u043estile/tiny",
    "fullwidth": "\uff48ostile/tiny",
    "NFD": "hostile/tine\u0301",
    "overlong": "o/" + "n" * 97,
    "absolute": CANARY.as_posix(),
    "not a string": 7,
}


@pytest.mark.parametrize("case", sorted(BAD_REPO_IDS))
def test_repo_id_in_manifest(case: str, tmp_path: Path, template: Path) -> None:
    obj = SPEC.manifest()
    obj["repos"][0]["repo_id"] = BAD_REPO_IDS[case]
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"repo id|repo_id|string")


@pytest.mark.parametrize("repo_type", ["models", "../model", "", "Model", "model/../x", None])
def test_repo_type_in_manifest(repo_type: Any, tmp_path: Path, template: Path) -> None:
    obj = SPEC.manifest()
    obj["repos"][0]["repo_type"] = repo_type
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"repo type|repo_type")


def test_repo_ids_differing_only_in_case(tmp_path: Path, template: Path) -> None:
    obj = SPEC.manifest()
    twin = dict(obj["repos"][0], repo_id=craft.REPO.upper())
    obj["repos"].append(twin)
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"listed twice")


def test_path_checks_agree_with_the_manifest_cases() -> None:
    """The name rules themselves (bundler/paths.py), for the cases above that are strings."""
    for path in BAD_PATHS.values():
        if isinstance(path, str):
            with pytest.raises(UnsafePathError, match="path"):
                check_relpath(path)
    for repo_id in BAD_REPO_IDS.values():
        if isinstance(repo_id, str):
            with pytest.raises(UnsafePathError, match="repo id"):
                check_repo_id(repo_id)


@pytest.mark.parametrize(
    "path",
    [
        "caf\u00e9.json",
        "\u6a21\u578b/\u914d\u7f6e.json",
        "a\u200bb.txt",
        "x\uff0ey.txt",
        "emoji-\U0001f600.png",
        "a b.txt",
    ],
)
def test_real_world_unicode_names_still_pass(path: str) -> None:
    """The look-alike and control rules do not refuse names real repos use (NFC accents, CJK, a fullwidth dot
    inside a name, zero-width characters, emoji, spaces): only what folds to path syntax or hides itself."""
    assert check_relpath(path) == path
