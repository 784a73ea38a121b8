"""Hostile member types: links (inside and outside), devices, FIFOs, folders, pax and GNU extension headers,
duplicate members. A bundle holds regular files only; nothing from it is ever created as a link or device."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from bundler.cache.layout import RepoLayout

from . import craft
from .harness import (
    CANARY,
    api_install,
    assert_only_verified_blobs_added,
    assert_refused,
    make_world,
    state,
    write_bundle,
)

pytestmark = pytest.mark.usefixtures("lane_modes")  # each case in order and on lanes

SPEC = craft.standard()
VICTIM = min(SPEC.blobs())
VICTIM_DATA = SPEC.blobs()[VICTIM]
NAME = f"blobs/sha256/{VICTIM}"

# (typeflag name, linkname): a header of that type in the member's place, same size and data as the blob.
TYPES: dict[str, tuple[str, bytes]] = {
    "symlink outside": ("symlink", CANARY.as_posix().encode()),
    "symlink inside": ("symlink", b"manifest.json"),
    "symlink relative escape": ("symlink", b"../../../../../../etc/passwd"),
    "hardlink outside": ("hardlink", b"/etc/passwd"),
    "hardlink inside": ("hardlink", b"manifest.json"),
    "character device": ("chardev", b""),
    "block device": ("blockdev", b""),
    "FIFO": ("fifo", b""),
    "directory": ("directory", b""),
    "contiguous file": ("contiguous", b""),
    "v7 regular (NUL type)": ("old-regular", b""),
    "unknown type": ("unknown", b""),
    "pax header": ("pax", b""),
    "pax global header": ("pax-global", b""),
    "GNU long name": ("gnu-longname", b""),
    "GNU long link": ("gnu-longlink", b""),
}


def _replace(parts: list[craft.Part], sha: str, raw: bytes, *, size: int | None = None) -> list[craft.Part]:
    out = []
    for p in parts:
        out.append(craft.Part(p.kind, p.sha256, p.size if size is None else size, raw) if p.sha256 == sha else p)
    return craft.with_end(out[:-1])


@pytest.mark.parametrize("case", sorted(TYPES))
def test_blob_member_of_another_type(case: str, tmp_path: Path, template: Path) -> None:
    kind, link = TYPES[case]
    header = craft.tar_header(NAME, len(VICTIM_DATA), typeflag=craft.TYPEFLAGS[kind], linkname=link)
    data, _ = craft.assemble(_replace(craft.standard_parts(SPEC), VICTIM, craft.tar_member(header, VICTIM_DATA)))
    assert_refused(data, tmp_path, template, match=r"regular files only|member|tar header")


@pytest.mark.parametrize("case", sorted(TYPES))
def test_manifest_member_of_another_type(case: str, tmp_path: Path, template: Path) -> None:
    kind, link = TYPES[case]
    parts = craft.standard_parts(SPEC)
    manifest = parts[0].raw[craft.TAR_BLOCK : craft.TAR_BLOCK + parts[0].size]
    header = craft.tar_header("manifest.json", len(manifest), typeflag=craft.TYPEFLAGS[kind], linkname=link)
    parts[0] = craft.Part(parts[0].kind, parts[0].sha256, parts[0].size, craft.tar_member(header, manifest))
    data, _ = craft.assemble(parts)
    assert_refused(data, tmp_path, template, match=r"regular files only|first member|not an hfbundle")


def _tarfile_member(kind: bytes, **fields: object) -> bytes:
    info = tarfile.TarInfo(NAME)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


# Members as real tar tools write them: zero-size links and devices, two-header extensions. The index cannot
# describe them consistently, so in a file the index check refuses them; in a pipe, the member type check.
REAL_MEMBERS = {
    "symlink to /etc/passwd": lambda: _tarfile_member(tarfile.SYMTYPE, linkname="/etc/passwd"),
    "hardlink to manifest.json": lambda: _tarfile_member(tarfile.LNKTYPE, linkname="manifest.json"),
    "directory": lambda: _tarfile_member(tarfile.DIRTYPE),
    "FIFO": lambda: _tarfile_member(tarfile.FIFOTYPE),
    "char device": lambda: _tarfile_member(tarfile.CHRTYPE, devmajor=1, devminor=3),
    "pax header renaming the blob outside": lambda: craft.pax_member(NAME, VICTIM_DATA, {"path": CANARY.as_posix()}),
    "pax header with a long path": lambda: craft.pax_member(NAME, VICTIM_DATA, {"path": "blobs/sha256/" + "a" * 300}),
    "pax global header": lambda: craft.pax_member(NAME, VICTIM_DATA, {"comment": "x"}, global_header=True),
    "GNU long name escaping": lambda: craft.gnu_longname_member("../" * 40 + "tmp/x" + "y" * 200, VICTIM_DATA),
    "GNU long link": lambda: craft.gnu_longname_member(NAME, VICTIM_DATA, link=True),
}


@pytest.mark.parametrize("case", sorted(REAL_MEMBERS))
def test_real_tar_extension_members(case: str, tmp_path: Path, template: Path) -> None:
    raw = REAL_MEMBERS[case]()
    data, _ = craft.assemble(_replace(craft.standard_parts(SPEC), VICTIM, raw))
    assert_refused(data, tmp_path, template, match=r"regular files only|member|tar header|damaged")


def test_duplicate_blob_with_other_content(tmp_path: Path, template: Path) -> None:
    """The same member twice, the second with other bytes of the same size. The index cannot list a blob twice,
    so a file is refused by its index; a pipe by the second occurrence."""
    parts = craft.standard_parts(SPEC)[:-1]
    evil = bytes(len(VICTIM_DATA))
    parts.append(craft.Part(craft.KIND_BLOB, VICTIM, len(evil), craft.regular(NAME, evil)))
    data, _ = craft.assemble(craft.with_end(parts))
    assert_refused(data, tmp_path, template, match=r"listed twice|second time|damaged")


def test_duplicate_blob_wrong_copy_first(tmp_path: Path, template: Path) -> None:
    """A wrong copy first, the right one second: the first is what an installer would read."""
    parts = craft.standard_parts(SPEC)
    victim = next(i for i, p in enumerate(parts) if p.sha256 == VICTIM)
    evil = bytes(len(VICTIM_DATA))
    wrong = craft.Part(craft.KIND_BLOB, VICTIM, len(evil), craft.regular(NAME, evil))
    data, _ = craft.assemble(craft.with_end([*parts[:victim], wrong, *parts[victim:-1]]))
    assert_refused(data, tmp_path, template, match=r"listed twice|second time|does not match|damaged")


def test_second_manifest_member(tmp_path: Path, template: Path) -> None:
    """A second manifest.json further on, declaring other files: never read, always refused."""
    other = craft.prefill()
    raw = craft.canonical(other.manifest())
    parts = craft.standard_parts(SPEC)[:-1]
    parts.append(craft.Part(craft.KIND_BLOB, craft.sha256(raw), len(raw), craft.regular("manifest.json", raw)))
    data, _ = craft.assemble(craft.with_end(parts))
    assert_refused(data, tmp_path, template, match=r"second manifest|member|damaged|tar header")


def test_member_not_in_the_manifest(tmp_path: Path, template: Path) -> None:
    extra = b"not declared anywhere\n"
    parts = [*craft.standard_parts(SPEC)[:-1], craft.blob_part(extra)]
    data, _ = craft.assemble(craft.with_end(parts))
    assert_refused(data, tmp_path, template, match=r"does not declare|not declare")


def test_a_folder_where_a_blob_belongs_in_the_cache(tmp_path: Path) -> None:
    """The cache has a folder where the installer must write a file (a blob, a snapshot entry): refused before
    anything is written, and the folder is left as it was."""
    data = craft.bundle_bytes(SPEC)
    bundle = write_bundle(tmp_path / "in", data)
    entry = next(p for p, (d, _) in SPEC.files.items() if craft.sha256(d) == VICTIM)
    lfs = SPEC.files[entry][1]
    for where in ("blob", "entry"):
        world, cache = make_world(tmp_path / where, None)
        lay = RepoLayout(cache, "model", craft.REPO)
        etag = VICTIM if lfs else craft.file_entry(entry, VICTIM_DATA, lfs=False)["blob_id"]
        folder = lay.blob(etag) if where == "blob" else lay.snapshot_file(craft.COMMIT, entry)
        (folder / "inner").mkdir(parents=True)
        before = state(world)
        e = api_install(bundle, cache)
        assert e is not None and "folder is where a file must be" in e.message
        assert_only_verified_blobs_added(before, state(world), world, "cache")
        assert os.path.isdir(folder / "inner")
