"""A manifest that lies: about commits, refs, versions, sizes and hashes of its blobs, its own place and size.
The manifest is validated as a whole before anything is written; what it claims about content is checked while
the content streams, and only verified content is kept."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bundler.cache.layout import RepoLayout

from . import craft
from .harness import assert_installed_safely, assert_refused, install_bytes, loader_problems

pytestmark = pytest.mark.usefixtures("lane_modes")  # each case in order and on lanes

SPEC = craft.standard()
BLOBS = SPEC.blobs()
WEIGHTS, _ = SPEC.files["model.safetensors"]
CONFIG, _ = SPEC.files["config.json"]


def manifest() -> dict[str, Any]:
    return copy.deepcopy(SPEC.manifest())


def snap(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = obj["repos"][0]["snapshots"][0]
    return found


def file_of(obj: dict[str, Any], path: str) -> dict[str, Any]:
    return next(f for f in snap(obj)["files"] if f["path"] == path)


# -- structure of the manifest --------------------------------------------------------------------------------

BAD_COMMITS: dict[str, Any] = {
    "39 hex": craft.COMMIT[:39],
    "41 hex": craft.COMMIT + "0",
    "upper case": craft.COMMIT.upper(),
    "trailing newline": craft.COMMIT + "\n",
    "leading space": " " + craft.COMMIT[1:],
    "dotdot": "../../" + craft.COMMIT[6:],
    "absolute": "/" + craft.COMMIT[1:],
    "not hex": "g" * 40,
    "not a string": 1234,
}


@pytest.mark.parametrize("case", sorted(BAD_COMMITS))
def test_commit_not_40_hex(case: str, tmp_path: Path, template: Path) -> None:
    obj = manifest()
    snap(obj)["commit"] = BAD_COMMITS[case]
    obj["repos"][0]["refs"] = {}
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"commit|string")


BAD_REFS: dict[str, tuple[str, Any]] = {
    "name dotdot escape": ("../../../../tmp/x", craft.COMMIT),
    "name absolute": ("/tmp/x", craft.COMMIT),
    "name dotdot inside": ("refs/../../x", craft.COMMIT),
    "name empty": ("", craft.COMMIT),
    "name dot": (".", craft.COMMIT),
    "name double slash": ("a//b", craft.COMMIT),
    "name trailing newline": ("main\n", craft.COMMIT),
    "name NUL": ("ma\0in", craft.COMMIT),
    "name backslash": ("..\\x", craft.COMMIT),
    "name non-ASCII": ("m\u0430in", craft.COMMIT),
    "name overlong": ("m" * 256, craft.COMMIT),
    "target not in the bundle": ("main", craft.OLD_COMMIT),
    "target with newline": ("main", craft.COMMIT + "\n"),
    "target short": ("main", craft.COMMIT[:12]),
    "target not a string": ("main", None),
}


@pytest.mark.parametrize("case", sorted(BAD_REFS))
def test_ref_pointing_outside(case: str, tmp_path: Path, template: Path) -> None:
    name, target = BAD_REFS[case]
    obj = manifest()
    obj["repos"][0]["refs"] = {name: target}
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"ref|commit|string")


def test_refs_that_collide_as_file_and_folder(tmp_path: Path, template: Path) -> None:
    """``refs/a`` and ``refs/a/b`` cannot both exist: refused, and no ref is left behind half-written."""
    obj = manifest()
    obj["repos"][0]["refs"] = {"main": craft.COMMIT, "v": craft.COMMIT, "v/1": craft.COMMIT}
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"ref")


def test_no_exist_markers_that_collide_as_file_and_folder(tmp_path: Path, template: Path) -> None:
    obj = manifest()
    snap(obj)["no_exist"] = ["tokenizer", "tokenizer/vocab.json"]
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"no_exist|marker|below")


VERSIONS: dict[str, Any] = {
    "3": 3,
    "0": 0,
    "-1": -1,
    "string": "1",
    "float": 1.5,
    "float one": 1.0,  # == 1 in Python: refused as a version, not later as "not canonical"
    "true": True,  # == 1 in Python, likewise
    "null": None,
}


@pytest.mark.parametrize("case", sorted(VERSIONS))
def test_unknown_format_version(case: str, tmp_path: Path, template: Path) -> None:
    obj = manifest()
    obj["format_version"] = VERSIONS[case]
    outcome = assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"format version")
    assert all(e.hint and "newer hfbundle" in e.hint for e in outcome.errors.values())


TOP_LEVEL: dict[str, Any] = {
    "not hfbundle": {"format": "other"},
    "format missing": {"format": None},
    "unknown kind": {"kind": "exploit"},
    "base not a bundle id": {"base": "../x"},
    "unknown top-level key": {"run_this": "rm -rf /"},
    "recipe not an object": {"recipe": "x"},
    "extra not an object": {"extra": [1]},
    "skipped not a list": {"skipped": {}},
    "repos not a list": {"repos": {}},
    "blobs not a list": {"blobs": "all"},
}


@pytest.mark.parametrize("case", sorted(TOP_LEVEL))
def test_top_level_fields(case: str, tmp_path: Path, template: Path) -> None:
    obj = {**manifest(), **TOP_LEVEL[case]}
    if obj["format"] is None:
        del obj["format"]
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"manifest|kind|base|unknown|format")


NOT_OBJECTS: dict[str, bytes] = {
    "array": b"[]\n",
    "string": b'"hfbundle"\n',
    "null": b"null\n",
    "number": b"1e999\n",
    "empty": b"",
    "BOM": b"\xef\xbb\xbf" + craft.canonical(SPEC.manifest()),
    "latin-1": craft.canonical(SPEC.manifest()).replace(b"hfbundle", b"hfb\xfcndle", 1),
    "truncated JSON": craft.canonical(SPEC.manifest())[:-20],
    "deeply nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "deeply nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "duplicate keys": craft.canonical(SPEC.manifest()).replace(b'{\n "base"', b'{\n "format": "x",\n "base"', 1),
    "NaN": craft.canonical({**SPEC.manifest(), "extra": {"x": float("nan")}}),
    "Infinity": craft.canonical({**SPEC.manifest(), "extra": {"x": float("inf")}}),
    "non-canonical whitespace": json.dumps(SPEC.manifest(), sort_keys=True).encode(),
    "non-canonical key order": (json.dumps(SPEC.manifest(), indent=1, ensure_ascii=False) + "\n").encode(),
    "lone surrogate in a path": craft.canonical(SPEC.manifest()).replace(b'"empty.txt"', b'"\\ud800.txt"'),
    "lone surrogate in extra": craft.canonical({**SPEC.manifest(), "extra": {"k": "@@"}}).replace(
        b'"@@"', b'"\\udfff"'
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_OBJECTS))
def test_manifest_bytes(case: str, tmp_path: Path, template: Path) -> None:
    data = craft.with_manifest(NOT_OBJECTS[case])
    # (an empty manifest has the sha256 of the empty blob: the index refuses it as a duplicate)
    assert_refused(data, tmp_path, template, match=r"manifest|JSON|not an hfbundle|empty|format|listed twice")


def test_manifest_over_the_size_limit(tmp_path: Path, template: Path) -> None:
    """A real 64 MiB + 1 manifest (whitespace inside valid JSON): refused from its tar header (a pipe) or its
    index entry (a file), before it is read."""
    from bundler.bundle.manifest import MAX_MANIFEST_BYTES

    body = craft.canonical(SPEC.manifest())
    raw = body[:1] + b" " * (MAX_MANIFEST_BYTES + 1 - len(body)) + body[1:]
    part = craft.manifest_part(raw, cuts=tuple(range(16 << 20, len(raw) + 512, 16 << 20)))
    parts = [part, *craft.standard_parts(SPEC)[1:-1]]
    data, _ = craft.assemble(craft.with_end(parts), level=1)
    assert len(data) < 1 << 20  # tiny on disk
    assert_refused(data, tmp_path, template, match=r"over the .* limit|too large|manifest", cli=False)


def test_manifest_claiming_a_huge_size(tmp_path: Path, template: Path) -> None:
    """The tar header claims 1 TiB for manifest.json (the stream ends long before)."""
    parts = craft.standard_parts(SPEC)
    raw = parts[0].raw[craft.TAR_BLOCK :]
    header = craft.tar_header("manifest.json", 1 << 40)
    data, _ = craft.assemble(
        craft.with_end([craft.Part(0, parts[0].sha256, 1 << 40, header + raw), *parts[1:-1]]), index=False
    )
    assert_refused(data, tmp_path, template, match=r"over the .* limit|manifest|truncated", modes=["pipe"])


def test_manifest_member_not_first(tmp_path: Path, template: Path) -> None:
    parts = craft.standard_parts(SPEC)
    moved = [parts[1], parts[0], *parts[2:-1]]
    relabelled = [
        craft.Part(craft.KIND_MANIFEST if i == 0 else craft.KIND_BLOB, p.sha256, p.size, p.raw)
        for i, p in enumerate(moved)
    ]
    data, _ = craft.assemble(craft.with_end(relabelled))
    assert_refused(data, tmp_path, template, match=r"first member|manifest")


def test_no_manifest_at_all(tmp_path: Path, template: Path) -> None:
    parts = craft.standard_parts(SPEC)[1:-1]
    relabelled = [
        craft.Part(craft.KIND_MANIFEST if i == 0 else craft.KIND_BLOB, p.sha256, p.size, p.raw)
        for i, p in enumerate(parts)
    ]
    data, _ = craft.assemble(craft.with_end(relabelled))
    assert_refused(data, tmp_path, template, match=r"first member|manifest")


# -- what the manifest says about content ----------------------------------------------------------------------


def test_blob_whose_bytes_do_not_match_its_hash(tmp_path: Path, template: Path) -> None:
    """Same size, other bytes, stored under the declared hash: refused while streaming, nothing kept."""
    sha = craft.sha256(WEIGHTS)
    evil = bytes(reversed(WEIGHTS))
    blobs = {**BLOBS, sha: evil}
    outcome = assert_refused(craft.with_manifest(SPEC.manifest(), blobs), tmp_path, template, match=r"does not match")
    e = outcome.errors["file-empty"]
    assert e.expected == sha and e.actual == craft.sha256(evil)  # type: ignore[attr-defined]
    assert "model.safetensors" in e.message and craft.REPO in e.message


def test_blob_larger_than_declared_everywhere_consistently(tmp_path: Path, template: Path) -> None:
    """The manifest, tar header and index all say one byte more than the content the hash names: the extra
    byte makes the hash differ: refused."""
    sha = craft.sha256(WEIGHTS)
    obj = manifest()
    for b in obj["blobs"]:
        if b["sha256"] == sha:
            b["size"] += 1
    file_of(obj, "model.safetensors")["size"] += 1
    file_of(obj, "model.safetensors")["blob_id"] = craft.file_entry("x", WEIGHTS + b"!", lfs=True)["blob_id"]
    assert_refused(
        craft.with_manifest(obj, {**BLOBS, sha: WEIGHTS + b"!"}), tmp_path, template, match=r"does not match"
    )


def test_tar_header_size_differs_from_the_manifest(tmp_path: Path, template: Path) -> None:
    sha = craft.sha256(WEIGHTS)
    parts = craft.standard_parts(SPEC)[:-1]
    parts = [craft.blob_part(WEIGHTS[:-100], sha=sha) if p.sha256 == sha else p for p in parts]
    data, _ = craft.assemble(craft.with_end(parts))
    assert_refused(data, tmp_path, template, match=r"bytes")


def test_declared_blob_missing_from_the_bundle(tmp_path: Path, template: Path) -> None:
    sha = craft.sha256(WEIGHTS)
    parts = [p for p in craft.standard_parts(SPEC)[:-1] if p.sha256 != sha]
    data, _ = craft.assemble(craft.with_end(parts))
    assert_refused(data, tmp_path, template, match=r"does not hold|missing|declares")


def test_regular_file_whose_git_blob_id_lies(tmp_path: Path, template: Path) -> None:
    obj = manifest()
    file_of(obj, "config.json")["blob_id"] = "0" * 40
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"git blob")


def test_blob_listed_twice_with_different_sizes(tmp_path: Path, template: Path) -> None:
    obj = manifest()
    first = obj["blobs"][0]
    obj["blobs"].append({"sha256": first["sha256"], "size": first["size"] + 7})
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"listed twice")


def test_file_size_differs_from_its_blob(tmp_path: Path, template: Path) -> None:
    obj = manifest()
    file_of(obj, "model.safetensors")["size"] = 5
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"size")


def test_one_etag_for_two_contents(tmp_path: Path, template: Path) -> None:
    """Two regular files claiming the same git blob id with different contents: blobs/<etag> cannot be both."""
    obj = manifest()
    other = craft.file_entry("other.json", b'{"other": 1}\n', lfs=False)
    other["blob_id"] = file_of(obj, "config.json")["blob_id"]
    snap(obj)["files"].append(other)
    obj["blobs"].append({"sha256": other["sha256"], "size": other["size"]})
    obj["blobs"].sort(key=lambda b: b["sha256"])
    blobs = {**BLOBS, other["sha256"]: b'{"other": 1}\n'}
    assert_refused(craft.with_manifest(obj, blobs), tmp_path, template, match=r"two different contents")


def test_file_pointing_at_an_undeclared_blob(tmp_path: Path, template: Path) -> None:
    obj = manifest()
    f = file_of(obj, "model.safetensors")
    f["lfs_sha256"] = "e" * 64
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"does not declare")


def test_incremental_bundle_without_its_base(tmp_path: Path, template: Path) -> None:
    """``base`` set, a file's blob neither carried nor in the cache: the install names it and writes nothing."""
    sha = craft.sha256(WEIGHTS)
    obj = manifest()
    obj["kind"] = "backup"
    obj["base"] = "b" * 64
    obj["blobs"] = [b for b in obj["blobs"] if b["sha256"] != sha]
    blobs = {k: v for k, v in BLOBS.items() if k != sha}
    assert_refused(
        craft.with_manifest(obj, blobs), tmp_path, template, match=r"neither in this bundle nor in the cache"
    )


@pytest.mark.parametrize("tree", ["../x", "FILES", "", 5])
def test_tree_mode_invalid(tree: Any, tmp_path: Path, template: Path) -> None:
    obj = manifest()
    snap(obj)["tree"] = tree
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"tree|string")


def test_embedded_lock_with_an_escaping_path(tmp_path: Path, template: Path) -> None:
    obj = manifest()
    obj["lock"] = {
        "lock_version": 1,
        "repos": [
            {
                "repo_type": "model",
                "repo_id": craft.REPO,
                "revision": "main",
                "commit": craft.COMMIT,
                "role": "whole-repo",
                "files": [craft.file_entry("../../../x", CONFIG, lfs=False)],
            }
        ],
    }
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"path")


# -- trees listings that lie: left out, never written as they are ---------------------------------------------


def _tree_blob(files: dict[str, Any]) -> bytes:
    return json.dumps({"format_version": 1, "files": files}, indent=1).encode()


LISTINGS: dict[str, bytes] = {
    "lists files the snapshot lacks": _tree_blob(
        {
            **{
                f["path"]: {"size": f["size"], "blob_id": f["blob_id"]}
                for f in craft.standard().manifest()["repos"][0]["snapshots"][0]["files"]
            },
            "unet/diffusion_pytorch_model.fp16.safetensors": {"size": 10, "blob_id": "1" * 40, "lfs_sha256": "2" * 64},
        }
    ),
    "escaping path": _tree_blob({"../../../x": {"size": 1, "blob_id": "1" * 40}}),
    "wrong sizes": _tree_blob({"config.json": {"size": 999, "blob_id": "1" * 40}}),
    "not JSON": b"\x00\x01 not json",
    "deeply nested": b"[" * 100_000,
}


@pytest.mark.parametrize("case", sorted(LISTINGS))
def test_trees_blob_that_lies_is_not_written(case: str, tmp_path: Path, template: Path) -> None:
    """A backup's saved listing (``tree`` = a blob's sha256) is written verbatim only if every file it lists is
    present and agrees; otherwise no listing is written (never a cut-down one) and the report says so. Tolerated
    input, by design (docs/CACHE.md "Trees"): a listing naming a missing file is what the real client leaves
    after a partial download, and it is exactly the IncompleteSnapshotError trap the rule keeps out."""
    listing = LISTINGS[case]
    obj = manifest()
    snap(obj)["tree"] = craft.sha256(listing)
    obj["blobs"].append({"sha256": craft.sha256(listing), "size": len(listing)})
    obj["blobs"].sort(key=lambda b: b["sha256"])
    data = craft.with_manifest(obj, {**BLOBS, craft.sha256(listing): listing})
    assert_installed_safely(data, tmp_path / "safe", template)
    cache = tmp_path / "one" / "cache"
    report = install_bytes(data, cache)
    assert any("listing" in n for n in report.notes)
    assert not RepoLayout(cache, "model", craft.REPO).tree(craft.COMMIT).exists()
    assert loader_problems(cache) == []


@pytest.mark.parametrize("key", ["a\nb", "\x1b[2Jcleared", "a\x9bb"])
def test_unknown_key_with_control_characters(key: str, tmp_path: Path, template: Path) -> None:
    """Unknown keys are named in the error: quoted, so a crafted key cannot break the one-line message or send
    terminal escapes (found by fuzzing; fixed in bundler/lock.py `_expect_keys`)."""
    obj = manifest()
    file_of(obj, "config.json")[key] = 1
    assert_refused(craft.with_manifest(obj), tmp_path, template, match=r"unknown keys")


def test_trees_blob_over_the_size_limit(tmp_path: Path, template: Path) -> None:
    """A saved listing of 64 MiB + 1 (whitespace, compressing to almost nothing): refused from its declared
    size, before it is read into memory."""
    from bundler.install import MAX_TREE_BYTES

    listing = b"{" + b" " * (MAX_TREE_BYTES - 1) + b"}"
    sha = craft.sha256(listing)
    obj = manifest()
    snap(obj)["tree"] = sha
    obj["blobs"].append({"sha256": sha, "size": len(listing)})
    obj["blobs"].sort(key=lambda b: b["sha256"])
    parts = [craft.manifest_part(craft.canonical(obj))]
    for s, d in sorted({**BLOBS, sha: listing}.items()):
        part = craft.blob_part(d, sha=s)
        parts.append(
            craft.Part(
                part.kind, part.sha256, part.size, part.raw, cuts=tuple(range(16 << 20, len(part.raw), 16 << 20))
            )
        )
    data, _ = craft.assemble(craft.with_end(parts), level=1)
    assert len(data) < 1 << 20
    assert_refused(data, tmp_path, template, match=r"trees blob .* over the .* limit", cli=False)


@pytest.mark.parametrize(
    "text",
    [
        '{"lock_version": 1, "recipe": "\\ud800", "repos": []}',
        '{"lock_version": 1, "recipe": "\ud800", "repos": []}',
        "[" * 100_000,
    ],
    ids=["lone surrogate", "lone surrogate in the text", "deep"],
)
def test_lock_file_json_that_crashed_the_parser(text: str) -> None:
    """A lock file (``build --lock FILE``) is parsed like a manifest: a lone surrogate made the build crash with
    UnicodeEncodeError when the manifest was written, deep nesting with RecursionError (fixed in lock.py)."""
    from bundler.errors import BundleFormatError
    from bundler.lockfile import Lock

    with pytest.raises(BundleFormatError, match="lock is not valid JSON"):
        Lock.loads(text)


def test_lock_file_with_a_backslash_before_u_d800_is_fine() -> None:
    """Only a surrogate escape is looked for (issue 18: no second serialisation of every lock): an escaped
    backslash followed by the text ``ud800`` is a plain string."""
    from bundler.lockfile import Lock

    assert Lock.loads('{"lock_version": 1, "recipe": "\\\\ud800", "repos": []}').recipe == "\\ud800"
