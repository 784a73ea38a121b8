"""Signed bundles: which signatures a bundle carries, whether to trust it, and proof for installed snapshots.

A signed bundle carries, in a skippable frame between its data and its index (``docs/FORMAT.md``,
"Signatures"), a JSON list of OMS signatures (:mod:`bundler.signing`) per signing key:

- one over the manifest (resource ``manifest.json`` = the bundle id), which pins every blob, so ``install``
  decides before it writes a byte;
- one per repo snapshot (its files and their sha256 from the manifest), copied beside the install records
  (``<repo>/.hfbundle/<commit>.<key>.sig``), where ``model_signing verify key`` or ``hfbundle verify
  --trusted-key`` later prove the installed snapshot is what was signed.

The trust decision (:func:`check_bundle`) is separate from the integrity checks (hashes, sizes), which still
run in full during the install: both must pass.

Example::

    report = check_bundle(reader.manifest, reader.signatures, load_trusted_keys([Path("site.pub")]))
    report.signer  # the trusted fingerprint that signed this exact manifest; SignatureError otherwise

Longer than ~500 lines: signing a bundle, checking its signatures and proving installed snapshots share one
statement and key model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .bundle.manifest import Manifest, SnapshotEntry
from .cache.layout import RepoLayout, atomic_write_bytes, iter_repo_folders
from .cache.records import RECORD_DIR
from .errors import UsageError
from .hashing import sha256_file
from .records import JsonRecord, record_json
from .signing import (
    DEFAULT_IGNORES,
    PublicKey,
    SignatureError,
    VerifiedStatement,
    oms_hint,
    read_oms,
    sign_statement,
    statement_for,
    verify_oms,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from .bundle.source import BundleSource

__all__ = [
    "BundleSignatures",
    "SignatureEntry",
    "SignedSnapshotReport",
    "TrustReport",
    "check_bundle",
    "make_signatures",
    "record_signatures",
    "sign_bundle",
    "snapshot_resources",
    "verify_signed_snapshots",
]

TRUSTED_KEYS_ENV = "HFBUNDLE_TRUSTED_KEYS"
MANIFEST_RESOURCE = "manifest.json"
Scope = Literal["manifest", "snapshot"]


# -- the signatures a bundle carries ----------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureEntry(JsonRecord, skip=("repo_type", "repo_id", "commit")):
    """One OMS signature: over the manifest, or over one snapshot (``repo_type``, ``repo_id``, ``commit``)."""

    scope: Scope
    oms: Mapping[str, Any]
    repo_type: str = ""
    repo_id: str = ""
    commit: str = ""

    @property
    def fingerprint(self) -> str | None:
        return oms_hint(self.oms)

    def json_extra(self) -> dict[str, Any]:
        if self.scope != "snapshot":
            return {}
        return {"repo_type": self.repo_type, "repo_id": self.repo_id, "commit": self.commit}


@dataclass(frozen=True)
class BundleSignatures:
    entries: tuple[SignatureEntry, ...]

    def dumps(self) -> bytes:
        return json.dumps({"signatures": [e.to_json() for e in self.entries]}, sort_keys=True, indent=1).encode()

    @classmethod
    def loads(cls, raw: bytes) -> BundleSignatures:
        """Parse the signatures frame. Anything malformed (a truncated or edited frame) is a SignatureError:
        the bundle's data may be intact, but its signatures cannot be trusted."""
        try:
            data = json.loads(raw)
            entries = []
            for e in data["signatures"]:
                scope = e["scope"]
                if scope not in ("manifest", "snapshot") or not isinstance(e["oms"], dict):
                    raise ValueError(scope)
                if scope == "snapshot":
                    entries.append(SignatureEntry("snapshot", e["oms"], e["repo_type"], e["repo_id"], e["commit"]))
                else:
                    entries.append(SignatureEntry("manifest", e["oms"]))
        except (ValueError, TypeError, KeyError) as err:
            raise SignatureError(
                "the bundle's signatures are damaged (truncated or edited)",
                reason="bad signature",
                hint="get the bundle again from its signer, or sign it again (`hfbundle sign`)",
            ) from err
        return cls(tuple(entries))

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """The keys the manifest signatures name (claimed: unverified until checked against a trusted key)."""
        return tuple(dict.fromkeys(e.fingerprint or "?" for e in self.entries if e.scope == "manifest"))

    def merged(self, new: Sequence[SignatureEntry]) -> BundleSignatures:
        """These signatures plus ``new``, replacing any by the same key."""
        keys = {e.fingerprint for e in new}
        return BundleSignatures(tuple(e for e in self.entries if e.fingerprint not in keys) + tuple(new))


def snapshot_resources(snapshot: SnapshotEntry) -> dict[str, str]:
    """path → sha256 of a snapshot's files, as the manifest gives them, without OMS's default exclusions
    (``.gitattributes`` and co. at the top, which ``model_signing`` skips when it verifies a folder)."""
    out: dict[str, str] = {}
    for f in snapshot.files:
        if f.path.split("/", 1)[0] in DEFAULT_IGNORES:
            continue
        digest = f.lfs_sha256 or f.sha256
        if digest is None:
            raise UsageError(f"{f.path} has no sha256 in the manifest; cannot sign it")
        out[f.path] = digest
    return out


def make_signatures(manifest: Manifest, key: EllipticCurvePrivateKey) -> tuple[SignatureEntry, ...]:
    """The manifest signature and one per snapshot with files, by ``key``."""
    entries = [SignatureEntry("manifest", sign_statement(key, _manifest_statement(manifest.bundle_id)))]
    for repo in manifest.repos:
        for snap in repo.snapshots:
            resources = snapshot_resources(snap)
            if resources:
                oms = sign_statement(key, statement_for(snap.commit, resources))
                entries.append(SignatureEntry("snapshot", oms, repo.repo_type, repo.repo_id, snap.commit))
    return tuple(entries)


def _manifest_statement(bundle_id: str) -> bytes:
    return statement_for(MANIFEST_RESOURCE, {MANIFEST_RESOURCE: bundle_id}, ignore_paths=())


# -- the trust decision -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustReport(JsonRecord):
    """Whether a bundle is signed, by which keys, and (with trusted keys) which trusted key vouches for it."""

    signed: bool
    fingerprints: tuple[str, ...]
    checked: bool  # trusted keys were given and one of them verified this exact manifest
    signer: str | None = None
    damaged: bool = False  # a signatures frame is there but does not parse (reported; refused with trusted keys)

    def json_extra(self) -> dict[str, Any]:
        return {"summary": self.render()}

    def render(self) -> str:
        if self.signer:
            return f"signature: valid, by trusted key {self.signer}"
        if self.damaged:
            return "signature: signed, but its signatures are damaged (not checked: no --trusted-key)"
        if self.signed:
            return f"signature: signed by {', '.join(self.fingerprints)} (not checked: no --trusted-key)"
        return "signature: unsigned"


def check_bundle(manifest: Manifest, raw: bytes | None, trusted: Sequence[PublicKey]) -> TrustReport:
    """Decide whether to trust a bundle. Without ``trusted`` keys this only reports what is there (and needs
    no cryptography). With them, a manifest signature by one of them must verify and name this manifest's
    bundle id, and that key's snapshot signatures must match the manifest; otherwise :class:`SignatureError`
    says why: unsigned, unknown key, bad signature, or manifest changed after signing."""
    if not trusted:
        try:
            sigs = BundleSignatures.loads(raw) if raw is not None else None
        except SignatureError:
            return TrustReport(True, (), False, damaged=True)
        if sigs is None:
            return TrustReport(False, (), False)
        return TrustReport(bool(sigs.fingerprints), sigs.fingerprints, False)
    sigs = BundleSignatures.loads(raw) if raw is not None else None
    if sigs is None or not sigs.fingerprints:
        raise SignatureError(
            "the bundle is unsigned, and trusted keys were given",
            reason="unsigned",
            hint="ask its maker to sign it (`hfbundle sign BUNDLE --key KEY`), or install without --trusted-key",
        )
    errors: list[SignatureError] = []
    for entry in (e for e in sigs.entries if e.scope == "manifest"):
        try:
            statement = verify_oms(entry.oms, trusted)
        except SignatureError as e:
            errors.append(e)
            continue
        if dict(statement.resources) != {MANIFEST_RESOURCE: manifest.bundle_id}:
            signed_id = statement.resources.get(MANIFEST_RESOURCE, "?")
            errors.append(
                SignatureError(
                    f"key {statement.fingerprint} signed bundle {signed_id}, "
                    f"this bundle is {manifest.bundle_id} (an edited manifest, or a signature from another bundle)",
                    reason="manifest changed after signing",
                    hint="do not install it; get the bundle again from its signer",
                )
            )
            continue
        _check_snapshot_signatures(manifest, sigs, statement.fingerprint, trusted)
        return TrustReport(True, sigs.fingerprints, True, statement.fingerprint)
    order = ["manifest changed after signing", "bad signature", "malformed", "unknown key"]
    raise min(errors, key=lambda e: order.index(e.reason))


def _check_snapshot_signatures(
    manifest: Manifest, sigs: BundleSignatures, fingerprint: str, trusted: Sequence[PublicKey]
) -> None:
    for repo in manifest.repos:
        for snap in repo.snapshots:
            for entry in _entries_for(sigs, repo.repo_type, repo.repo_id, snap.commit):
                if entry.fingerprint != fingerprint:
                    continue
                statement = verify_oms(entry.oms, trusted)
                if dict(statement.resources) != snapshot_resources(snap):
                    raise SignatureError(
                        f"the signature of {repo.repo_id}@{snap.commit[:12]} does not match the manifest's files",
                        reason="manifest changed after signing",
                        hint="do not install it; get the bundle again from its signer",
                    )


def _entries_for(sigs: BundleSignatures, repo_type: str, repo_id: str, commit: str) -> Iterator[SignatureEntry]:
    for e in sigs.entries:
        if e.scope == "snapshot" and (e.repo_type, e.repo_id, e.commit) == (repo_type, repo_id, commit):
            yield e


def require_seekable(source: BundleSource) -> None:
    """Trusted installs need the signatures before the blobs: a pipe carries them after (FORMAT.md)."""
    if not getattr(source, "random_access", False):
        raise UsageError(
            "--trusted-key needs the bundle file: a pipe carries its signatures after the blobs, so they could "
            "not be checked before writing",
            hint="save the bundle to a file first, then install the file",
        )


def trusted_key_paths(given: Sequence[Path]) -> list[Path]:
    """``--trusted-key`` values, or else the ``HFBUNDLE_TRUSTED_KEYS`` list (``os.pathsep``-separated files or
    folders)."""
    if given:
        return list(given)
    env = os.environ.get(TRUSTED_KEYS_ENV, "")
    return [Path(p) for p in env.split(os.pathsep) if p]


# -- signing a bundle -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignReport(JsonRecord):
    bundle_id: str
    paths: tuple[Path, ...]
    fingerprint: str
    signatures: int

    def render(self) -> list[str]:
        return [
            f"signed bundle {self.bundle_id} with key {self.fingerprint} ({self.signatures} signatures)",
            *(f"wrote {p}" for p in self.paths),
        ]


def sign_bundle(bundle: Path, key: EllipticCurvePrivateKey, *, output: Path | None = None) -> SignReport:
    """Add ``key``'s signatures to a bundle file (or split volumes), replacing any earlier ones by the same key.

    The data frames are copied byte for byte (nothing is decompressed or recompressed); the signatures frame,
    the index and the trailer are written after them, to temp files moved over ``output`` (default: the
    bundle itself) only once complete. The bundle id does not change.
    """
    from .bundle.reader import open_bundle
    from .bundle.volumes import OutputSink
    from .bundle.writer import write_tail
    from .signing import key_fingerprint

    with open_bundle(bundle, threads=1) as reader:
        index = reader.index
        if index is None:
            raise UsageError("sign needs a bundle file, not a pipe")
        old = BundleSignatures.loads(reader.signatures) if reader.signatures is not None else BundleSignatures(())
        new = make_signatures(reader.manifest, key)
        payload = old.merged(new).dumps()
        volumes = reader.volumes
        target = output or (_split_base(volumes[0]) if index.split_size else volumes[0])
        sink = OutputSink(target, index.split_size or None)
        try:
            for data in reader.iter_data():
                sink.write(data)
            write_tail(sink, index.members, index.tar_length, payload)
        except BaseException:
            sink.abort()
            raise
        bundle_id = reader.bundle_id
    paths = sink.commit()
    return SignReport(bundle_id, paths, key_fingerprint(key.public_key()), len(new))


def _split_base(first: Path) -> Path:
    return first.with_suffix("") if first.suffix[1:].isdigit() else first


# -- installed snapshots ----------------------------------------------------------------------------------


def signature_path(layout: RepoLayout, commit: str, fingerprint: str) -> Path:
    """``<repo folder>/.hfbundle/<commit>.<first 16 hex of the key>.sig``: beside the install record, outside
    ``snapshots/`` (so it is not part of what it signs)."""
    return layout.folder / RECORD_DIR / f"{layout.snapshot(commit).name}.{fingerprint[:16]}.sig"


def record_signatures(cache_dir: Path, source: BundleSource, raw: bytes | None) -> list[Path]:
    """Copy each snapshot signature of an installed bundle beside its install record."""
    if raw is None:
        return []
    try:
        entries = BundleSignatures.loads(raw).entries
    except SignatureError:  # reported by check_bundle; nothing worth keeping
        return []
    written = []
    for e in entries:
        fp = e.fingerprint
        if e.scope != "snapshot" or fp is None or len(fp) != 64:
            continue
        path = signature_path(RepoLayout(cache_dir, e.repo_type, e.repo_id), e.commit, fp)
        atomic_write_bytes(path, json.dumps(dict(e.oms), indent=2).encode())
        written.append(path)
    return written


@dataclass(frozen=True)
class SignedSnapshot(JsonRecord):
    repo_type: str
    repo_id: str
    commit: str
    signer: str | None
    problems: tuple[str, ...]

    def json_extra(self) -> dict[str, Any]:
        return {"ok": not self.problems}


@dataclass(frozen=True)
class SignedSnapshotReport(JsonRecord):
    """``verify --trusted-key``: for each installed snapshot, is it still exactly what a trusted key signed?"""

    snapshots: tuple[SignedSnapshot, ...]

    @property
    def ok(self) -> bool:
        return bool(self.snapshots) and all(not s.problems for s in self.snapshots)

    def json_extra(self) -> dict[str, Any]:
        return {"ok": self.ok}

    def render(self) -> list[str]:
        if not self.snapshots:
            return ["no installed snapshot to check"]
        lines = []
        for s in self.snapshots:
            state = f"signed by trusted key {s.signer}" if not s.problems else "NOT as signed"
            lines.append(f"{s.repo_type}:{s.repo_id}@{s.commit[:12]}: {state}")
            lines += [f"    {p}" for p in s.problems]
        return lines


def verify_signed_snapshots(
    cache_dir: Path,
    trusted: Sequence[PublicKey],
    repos: Sequence[tuple[str, str, str]] | None = None,
    repo_ids: Sequence[str] | None = None,
) -> SignedSnapshotReport:
    """Check installed snapshots against their recorded signatures: a signature by a trusted key must verify,
    and the snapshot folder must hold exactly the signed files with the signed sha256 (every file re-hashed;
    OMS's default exclusions apply). ``repos`` limits the check to ``(repo_type, repo_id, commit)`` triples,
    ``repo_ids`` to every snapshot of those repos."""
    wanted = set(repos) if repos is not None else None
    out = []
    for repo_type, repo_id, folder in iter_repo_folders(cache_dir):
        if repo_ids is not None and repo_id not in repo_ids:
            continue
        snapshots = folder / "snapshots"
        commits = sorted(p.name for p in snapshots.iterdir()) if snapshots.is_dir() else []
        for commit in commits:
            if wanted is not None and (repo_type, repo_id, commit) not in wanted:
                continue
            out.append(_check_snapshot(RepoLayout(cache_dir, repo_type, repo_id), repo_type, repo_id, commit, trusted))
    if wanted is not None:
        found = {(s.repo_type, s.repo_id, s.commit) for s in out}
        out += [SignedSnapshot(t, r, c, None, ("not installed",)) for t, r, c in sorted(wanted - found)]
    return SignedSnapshotReport(tuple(out))


def _check_snapshot(
    layout: RepoLayout, repo_type: str, repo_id: str, commit: str, trusted: Sequence[PublicKey]
) -> SignedSnapshot:
    sig_files = sorted((layout.folder / RECORD_DIR).glob(f"{commit}.*.sig"))
    if not sig_files:
        return SignedSnapshot(repo_type, repo_id, commit, None, ("unsigned: no signature was installed with it",))
    statement: VerifiedStatement | None = None
    errors: list[str] = []
    for path in sig_files:
        try:
            statement = verify_oms(read_oms(path.read_bytes()), trusted)
            break
        except SignatureError as e:
            errors.append(f"{path.name}: {e.message}")
    if statement is None:
        return SignedSnapshot(repo_type, repo_id, commit, None, tuple(errors))
    problems = _compare_folder(layout.snapshot(commit), statement)
    return SignedSnapshot(repo_type, repo_id, commit, statement.fingerprint, tuple(problems))


def _compare_folder(root: Path, statement: VerifiedStatement) -> list[str]:
    ignored = set(DEFAULT_IGNORES) | set(statement.ignore_paths)
    present: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if (rel_dir + d) not in ignored)
        for name in filenames:
            rel = rel_dir + name
            if rel.split("/", 1)[0] not in ignored and rel not in ignored:
                present[rel] = Path(dirpath) / name
    problems = []
    for name, digest in sorted(statement.resources.items()):
        path = present.pop(name, None)
        if path is None:
            problems.append(f"{name}: missing")
            continue
        try:
            actual = sha256_file(str(path))
        except OSError as e:
            problems.append(f"{name}: unreadable ({e.strerror or e})")
            continue
        if actual != digest:
            problems.append(f"{name}: sha256 {actual}, signed {digest}")
    problems += [f"{name}: not signed" for name in sorted(present)]
    return problems


@dataclass(frozen=True)
class TrustedVerifyReport(
    JsonRecord,
    skip=("integrity",),
    rename={"bundle": "signature", "bundle_error": "signature_error", "snapshots": "signed_snapshots"},
):
    """``hfbundle verify`` with signatures: the integrity report (unchanged) and, separately, the trust
    checks: the bundle's signature (``verify BUNDLE``) and the installed snapshots' (``--trusted-key``)."""

    integrity: Any  # bundler.verify.VerifyReport
    bundle: TrustReport | None = None
    bundle_error: str | None = None
    snapshots: SignedSnapshotReport | None = None

    @property
    def ok(self) -> bool:
        return bool(self.integrity.ok and self.bundle_error is None and (self.snapshots is None or self.snapshots.ok))

    def json_extra(self) -> dict[str, Any]:
        return {"ok": self.ok}

    def to_json(self) -> dict[str, Any]:
        # the integrity report's keys at the top level, then the signature checks (its own "ok" replaced)
        return {**self.integrity.to_json(), **record_json(self)}

    def render(self) -> list[str]:
        lines = list(self.integrity.render())
        if self.bundle is not None:
            lines.append(self.bundle.render())
        if self.bundle_error is not None:
            lines.append(f"signature: REFUSED: {self.bundle_error}")
        if self.snapshots is not None:
            lines += self.snapshots.render()
        return lines


def trust_error_text(e: SignatureError) -> str:
    return e.message
