"""Mutations of a valid bundle for fuzzing, and the one property every input must satisfy.

Two kinds of mutation (each takes a :class:`random.Random`, so an input is reproducible from its seed):

- *raw*: bit and byte flips, truncations, insertions, deletions, overwrites, and frame splices (a zstd frame
  duplicated, dropped, swapped, moved) of the bundle's bytes. Most are stopped by checksums, early.
- *structured*: the bundle is taken apart (manifest, blobs, tar headers, index), one piece is changed — a JSON
  token of the manifest, a value of the manifest replaced by a hostile one, a blob's bytes, a tar header field, a
  member dropped or repeated, an index field — and it is put back together with frames, index and trailer that
  agree. These reach the manifest validator and the installer.

The property (:func:`run_one`): installing the input either succeeds, and then the cache verifies and a loader
finds nothing wrong, or raises our own :class:`~bundler.errors.HfBundleError` (not a usage error). Anything else
— another exception type, a hang, a cache that does not verify — is a finding.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import craft

# -- the seed bundle -------------------------------------------------------------------------------------------

WEIGHTS = craft.fake("fuzz weights", 3000)
DATA_COMMIT = "d" * 40
FUZZ_FILES: dict[str, tuple[bytes, bool]] = {
    "config.json": (b'{"hidden": 8}\n', False),
    "model.safetensors": (WEIGHTS, True),
    "unet/config.json": (b'{"block": [8, 16]}\n', False),
    "empty.txt": (b"", False),
}
# A second repo (a dataset) sharing content with the first, whose snapshot carries a saved trees listing.
DATA_FILES: dict[str, tuple[bytes, bool]] = {
    "data/train.parquet": (WEIGHTS, True),
    "copy.txt": (b'{"hidden": 8}\n', False),
}
LISTING = craft.canonical(
    {
        "format_version": 1,
        "files": {
            p: {k: v for k, v in craft.file_entry(p, d, lfs=lfs).items() if k in ("size", "blob_id", "lfs_sha256")}
            for p, (d, lfs) in DATA_FILES.items()
        },
    }
)


def seed_manifest() -> tuple[dict[str, Any], dict[str, bytes]]:
    tiny = craft.repo_obj(
        craft.REPO,
        craft.COMMIT,
        [craft.file_entry(p, d, lfs=lfs) for p, (d, lfs) in sorted(FUZZ_FILES.items())],
        refs={"main": craft.COMMIT, "refs/pr/1": craft.COMMIT},
        no_exist=["tokenizer.json"],
    )
    data = craft.repo_obj(
        "hostile/data",
        DATA_COMMIT,
        [craft.file_entry(p, d, lfs=lfs) for p, (d, lfs) in sorted(DATA_FILES.items())],
        repo_type="dataset",
        tree=craft.sha256(LISTING),
    )
    contents = [d for d, _ in FUZZ_FILES.values()] + [d for d, _ in DATA_FILES.values()] + [LISTING]
    return craft.manifest_obj([tiny, data], contents), {craft.sha256(d): d for d in contents}


@dataclass(frozen=True)
class Seed:
    """A valid bundle and its pieces, taken apart once."""

    data: bytes
    layout: craft.Layout
    manifest: dict[str, Any]
    blobs: dict[str, bytes]
    leaves: tuple[Any, ...]

    @classmethod
    def make(cls) -> Seed:
        manifest, blobs = seed_manifest()
        data = craft.written_manifest(manifest, blobs, frame_size=1024)
        leaves = tuple(v for _, v in _walk(manifest) if not isinstance(v, (dict, list)))
        return cls(data, craft.layout_of(data), manifest, blobs, leaves)


# -- raw mutations ---------------------------------------------------------------------------------------------


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data)) if data else 0


def flip_bits(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 4, 8))):
        if out:
            out[_pos(rng, data)] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_bytes(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 3))):
        if out:
            out[_pos(rng, data)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    return bytes(out)


def truncate(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    return data[: _pos(rng, data)]


def insert(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    at = _pos(rng, data)
    blob = rng.choice((bytes(rng.randrange(1, 600)), rng.randbytes(rng.randrange(1, 64)), data[at : at + 512]))
    return data[:at] + blob + data[at:]


def delete(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    at = _pos(rng, data)
    return data[:at] + data[at + rng.randrange(1, 1024) :]


def overwrite(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    at = _pos(rng, data)
    n = rng.randrange(1, 256)
    fill = rng.choice((bytes(n), b"\xff" * n, rng.randbytes(n)))
    return data[:at] + fill + data[at + n :]


def copy_chunk(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    a, b = _pos(rng, data), _pos(rng, data)
    n = rng.randrange(1, 2048)
    return data[:b] + data[a : a + n] + data[b + n :]


def _frames(seed: Seed, data: bytes) -> list[bytes]:
    return [data[o : o + n] for o, n in seed.layout.frames if o + n <= len(data)]


def splice_frames(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    """Rearrange whole zstd frames, keeping the original index and trailer (which then lie)."""
    frames = _frames(seed, data)
    tail = data[seed.layout.data_length :]
    if len(frames) < 2:
        return data
    op = rng.randrange(5)
    i, j = rng.randrange(len(frames)), rng.randrange(len(frames))
    if op == 0:
        frames.insert(j, frames[i])
    elif op == 1:
        del frames[i]
    elif op == 2:
        frames[i], frames[j] = frames[j], frames[i]
    elif op == 3:
        frames.insert(j, frames.pop(i))
    else:
        frames[i] = frames[j]
    return b"".join(frames) + tail


RAW: list[Callable[[random.Random, Seed, bytes], bytes]] = [
    flip_bits,
    set_bytes,
    truncate,
    insert,
    delete,
    overwrite,
    copy_chunk,
    splice_frames,
]


# -- structured mutations --------------------------------------------------------------------------------------

HOSTILE_STRINGS = [
    "",
    ".",
    "..",
    "../x",
    "../../../../tmp/hfbundle-hostile-canary",
    "/tmp/hfbundle-hostile-canary",
    "a/../b",
    "a//b",
    "a\\b",
    "C:x",
    "a\0b",
    "a\nb",
    "\x1b[2J",
    "a\x9bb",
    "\u202eexe.txt",
    "\uff0e\uff0e",
    "caf\u0065\u0301",
    "Config.json",
    "config.json",
    "unet",
    "unet/config.json",
    "model.safetensors",
    "tokenizer.json",
    "main",
    "refs/pr/1",
    "refs/../x",
    "x" * 300,
    "hostile/tiny",
    "hostile/data",
    "HOSTILE/TINY",
    "hostile--tiny",
    "other/repo",
    "model",
    "dataset",
    "space",
    "files",
    "none",
    craft.COMMIT,
    craft.OLD_COMMIT,
    craft.COMMIT.upper(),
    craft.COMMIT + "\n",
    "0" * 40,
    "0" * 64,
    "d" * 40,
    "backup",
    "bundle",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
]
HOSTILE_VALUES: list[Any] = [
    *HOSTILE_STRINGS,
    0,
    1,
    -1,
    2,
    3000,
    2**31,
    2**63,
    True,
    False,
    None,
    1.5,
    [],
    {},
    [None],
    {"": ""},
]


def _walk(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, (*path, i))


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return obj


def _known_value(rng: random.Random, seed: Seed) -> Any:
    """A value taken from elsewhere in the manifest (a valid hash, path, size or commit of another field)."""
    return rng.choice(seed.leaves)


def mutate_manifest_value(rng: random.Random, manifest: Any, seed: Seed) -> Any:
    nodes = list(_walk(manifest))
    path, node = rng.choice(nodes)
    roll = rng.random()
    if roll < 0.45:
        return _set(manifest, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))  # a copy: never mutate the constant
    if roll < 0.7:
        return _set(manifest, path, _known_value(rng, seed))
    if roll < 0.8 and isinstance(node, dict) and node:
        del node[rng.choice(list(node))]
        return manifest
    if roll < 0.9 and isinstance(node, list) and node:
        item = copy.deepcopy(rng.choice(node))
        node.insert(rng.randrange(len(node) + 1), item)  # a duplicate entry, maybe changed next
        return manifest
    if isinstance(node, dict):
        node[rng.choice(HOSTILE_STRINGS)] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
        return manifest
    if isinstance(node, list) and node:
        del node[rng.randrange(len(node))]
    return manifest


def _manifest_bytes(rng: random.Random, seed: Seed) -> tuple[bytes, bool]:
    """Mutated manifest bytes; True if the blobs should follow what it now declares."""
    obj = copy.deepcopy(seed.manifest)
    if rng.random() < 0.25:
        raw = bytearray(craft.canonical(obj))
        for _ in range(rng.randrange(1, 4)):
            raw[_pos(rng, bytes(raw))] = rng.choice(b'{}[]",:0123456789 abcdefnul\\\n')
        return bytes(raw), False
    for _ in range(rng.randrange(1, 4)):
        obj = mutate_manifest_value(rng, obj, seed)
    try:
        return craft.canonical(obj), True
    except (TypeError, ValueError):
        return craft.canonical(seed.manifest), True


def _blobs_for(manifest_raw: bytes, seed: Seed) -> dict[str, bytes]:
    """The seed's blobs, plus zero-filled ones for any other blob the manifest declares (wrong content, right
    size: the installer must catch it)."""
    blobs = dict(seed.blobs)
    with contextlib.suppress(Exception):
        declared = json.loads(manifest_raw)["blobs"]
        for b in declared:
            sha, size = b["sha256"], b["size"]
            if isinstance(sha, str) and len(sha) == 64 and isinstance(size, int) and 0 <= size < 1 << 16:
                blobs.setdefault(sha, bytes(size))
    return blobs


def structured(rng: random.Random, seed: Seed, data: bytes) -> bytes:
    """Take the seed apart, change one piece, assemble a consistent bundle around it."""
    manifest = craft.canonical(seed.manifest)
    blobs = dict(seed.blobs)
    choice = rng.randrange(8)
    if choice <= 2:
        manifest, follow = _manifest_bytes(rng, seed)
        blobs = _blobs_for(manifest, seed) if follow else blobs
    parts = [craft.manifest_part(manifest)] + [craft.blob_part(d, sha=s) for s, d in sorted(blobs.items())]
    if choice == 3 and len(parts) > 1:  # a blob's bytes changed (same size), index still consistent
        i = rng.randrange(1, len(parts))
        p = parts[i]
        body = bytearray(p.raw)
        if p.size:
            body[craft.TAR_BLOCK + rng.randrange(p.size)] ^= 0x55
        parts[i] = craft.Part(p.kind, p.sha256, p.size, bytes(body))
    elif choice == 4:  # a tar header field changed, checksum fixed or not
        i = rng.randrange(len(parts))
        p = parts[i]
        header = bytearray(p.raw[: craft.TAR_BLOCK])
        at = rng.choice((0, 99, 100, 108, 124, 135, 136, 156, 157, 257, 263, 265, 345, rng.randrange(512)))
        header[at] = rng.choice((0, 0x20, ord("0"), ord("7"), ord("/"), ord("."), 0xFF, rng.randrange(256)))
        if rng.random() < 0.7:
            header[148:156] = b" " * 8
            header[148:156] = b"%06o\0 " % sum(header)
        parts[i] = craft.Part(p.kind, p.sha256, p.size, bytes(header) + p.raw[craft.TAR_BLOCK :])
    elif choice == 5 and len(parts) > 1:  # member order, drops, repeats
        op = rng.randrange(3)
        i = rng.randrange(len(parts))
        if op == 0:
            del parts[i]
        elif op == 1:
            parts.insert(rng.randrange(len(parts) + 1), parts[i])
        else:
            j = rng.randrange(len(parts))
            parts[i], parts[j] = parts[j], parts[i]
        parts = [craft.Part(0 if k == 0 else 1, p.sha256, p.size, p.raw) for k, p in enumerate(parts)]
    elif choice == 6:  # frames cut differently (members split across frames at odd places)
        parts = [
            craft.Part(
                p.kind,
                p.sha256,
                p.size,
                p.raw,
                cuts=tuple(sorted(rng.sample(range(1, max(2, len(p.raw))), k=min(3, max(0, len(p.raw) - 2))))),
            )
            for p in parts
        ]
    parts = craft.with_end(parts)
    index_options: dict[str, Any] = {}
    described = None
    if choice == 7:  # the index lies about one member, with a valid checksum
        i = rng.randrange(len(parts))
        p = parts[i]
        field = rng.randrange(3)
        changed = craft.Part(
            rng.randrange(3) if field == 0 else p.kind,
            rng.choice([*blobs, craft.ZERO_SHA]) if field == 1 else p.sha256,
            max(0, p.size + rng.choice((-513, -1, 1, 512))) if field == 2 else p.size,
            p.raw,
        )
        described = [changed if k == i else q for k, q in enumerate(parts)]
    try:
        out, _ = craft.assemble(parts, level=1, index_parts=described, index_options=index_options)
    except Exception:  # struct limits on absurd values: fall back to a raw mutation
        return flip_bits(rng, seed, data)
    return out


def mutate(rng: random.Random, seed: Seed) -> bytes:
    """One fuzz input: a structured mutation (half the time), then 0-2 raw ones, or 1-3 raw ones."""
    data = seed.data
    if rng.random() < 0.5:
        data = structured(rng, seed, data)
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            data = rng.choice(RAW)(rng, seed, data)
        return data
    for _ in range(rng.choice((1, 1, 2, 3))):
        data = rng.choice(RAW)(rng, seed, data)
    return data


# -- the property ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    outcome: str  # installed | refused:<Error> | finding:<what>
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.outcome.startswith("finding")


def run_one(
    data: bytes, *, streamed: bool, workdir: Path, prefilled: Path | None = None, strict: bool = False
) -> Result:
    """Install ``data`` into a fresh cache under ``workdir`` (copied from ``prefilled`` if given); classify.
    ``strict`` also checks, on refusal, that only verified blobs and locks were added (slower)."""
    import os

    from bundler.bundle.reader import open_bundle
    from bundler.errors import HfBundleError, UsageError
    from bundler.install import install
    from bundler.verify import verify_cache

    from .harness import CANARY, assert_only_verified_blobs_added, loader_problems, pipe, state

    # The reader never writes: open it first, and make a cache only for inputs it accepts (most do not).
    try:
        reader = open_bundle(pipe(data) if streamed else io.BytesIO(data), threads=1)
    except UsageError as e:
        return Result("finding:UsageError", e.message)
    except HfBundleError as e:
        if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in e.message):
            return Result("finding:control characters in the message", repr(e.message)[:500])
        return Result(f"refused:{type(e).__name__}", e.message)
    except Exception as e:
        return Result(f"finding:{type(e).__name__}", repr(e)[:500])
    world = Path(tempfile.mkdtemp(dir=workdir))
    cache = world / "cache"
    try:
        if prefilled is not None:
            shutil.copytree(prefilled, cache, symlinks=True)
        before = state(world) if strict else {}
        try:
            with reader:
                install(reader, cache)
        except UsageError as e:
            return Result("finding:UsageError", e.message)
        except HfBundleError as e:
            if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in e.message):
                return Result("finding:control characters in the message", repr(e.message)[:500])
            if os.listdir(world) not in ([], ["cache"]) or os.path.lexists(CANARY):
                return Result("finding:escape", str(os.listdir(world)))
            if strict:
                try:
                    assert_only_verified_blobs_added(before, state(world), world, "cache")
                except AssertionError as a:
                    return Result("finding:cache changed", str(a)[:500])
            problems = loader_problems(cache)
            if problems:
                return Result("finding:loader after refusal", "; ".join(problems)[:500])
            return Result(f"refused:{type(e).__name__}", e.message)
        except Exception as e:
            return Result(f"finding:{type(e).__name__}", repr(e)[:500])
        if os.listdir(world) != ["cache"] or os.path.lexists(CANARY):
            return Result("finding:escape", str(os.listdir(world)))
        report = verify_cache(cache)
        if not report.ok:
            return Result("finding:verify", "; ".join(i.message for i in report.errors)[:500])
        problems = loader_problems(cache)
        if problems:
            return Result("finding:loader", "; ".join(problems)[:500])
        return Result("installed")
    finally:
        shutil.rmtree(world, ignore_errors=True)
