"""OpenSSF Model Signing (OMS) v1.0 signatures with EC keys: make them, check them.

An OMS signature is a Sigstore bundle (JSON) holding a DSSE envelope over an in-toto statement whose
predicate lists files (``resources``: name, sha256) — the format ``model_signing sign key`` writes and
``model_signing verify key`` reads (spec: ``shared/reference/oms/v1.0.md``). hfbundle signs

- each repo snapshot: the resources are the snapshot's files with the sha256 the manifest gives (no
  re-hashing), so ``model_signing verify key --allow_symlinks`` accepts the installed snapshot folder;
- the manifest: one resource, ``manifest.json``, whose digest is the bundle id.

The crypto comes from ``cryptography`` (the ``sign`` extra), imported only here and only when a key is used.

Example::

    key = load_private_key(Path("site.key"))
    oms = sign_statement(key, statement_for("manifest.json", {"manifest.json": bundle_id}))
    checked = verify_oms(oms, [load_public_key(Path("site.pub"))])
    checked.resources == {"manifest.json": bundle_id}
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from . import oscompat
from .errors import HfBundleError, UsageError
from .hashing import is_sha256

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey

__all__ = [
    "DEFAULT_IGNORES",
    "MEDIA_TYPE",
    "PREDICATE_TYPE",
    "PublicKey",
    "SignatureError",
    "VerifiedStatement",
    "generate_key",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "sign_statement",
    "statement_for",
    "verify_oms",
]

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MEDIA_TYPES = (MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3")
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# OMS §6.2: excluded by default at the top of the model folder, by every signer and verifier.
DEFAULT_IGNORES = (".git", ".gitattributes", ".github", ".gitignore")
INSTALL_HINT = "install the signing extra: pip install 'hfbundle[sign]' (it adds the `cryptography` package)"
MAX_OMS_BYTES = 16 << 20

Reason = Literal["unsigned", "unknown key", "bad signature", "manifest changed after signing", "malformed"]


class SignatureError(HfBundleError):
    """A signature is missing, by a key nobody trusts, invalid, or for other content. ``reason`` names which."""

    def __init__(self, message: str, *, reason: Reason, hint: str | None = None) -> None:
        super().__init__(f"signature check failed ({reason}): {message}", hint=hint)
        self.reason = reason


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError as err:
        raise UsageError("signing and signature checks need the `cryptography` package", hint=INSTALL_HINT) from err
    return ec


# -- keys -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """An EC public key and its fingerprint: the sha256 of its PEM (SubjectPublicKeyInfo), which OMS calls the
    key ``hint`` (model_signing writes the same)."""

    key: EllipticCurvePublicKey
    fingerprint: str
    source: str = ""


def _pem_of(public: EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def key_fingerprint(public: EllipticCurvePublicKey) -> str:
    return hashlib.sha256(_pem_of(public)).hexdigest()


def _check_curve(public: EllipticCurvePublicKey, where: str) -> None:
    if public.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise UsageError(f"{where}: curve {public.curve.name} is not one OMS allows (P-256, P-384, P-521)")


def generate_key(output: Path) -> PublicKey:
    """Write a new EC P-256 key pair: ``OUTPUT.key`` (private, PKCS#8 PEM, mode 0600, created exclusively so
    it never replaces a key) and ``OUTPUT.pub`` (public PEM). Returns the public key; the private key is never
    returned or printed."""
    ec = _crypto()
    from cryptography.hazmat.primitives import serialization

    private_path, public_path = _key_paths(output)
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path} already exists", hint="choose another name; a key is never overwritten")
    if not private_path.parent.is_dir():
        raise UsageError(f"folder {private_path.parent} does not exist", hint="create it first")
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        oscompat.fchmod(fd, private_path, 0o600)  # whatever the umask says
        os.write(fd, pem)
    finally:
        os.close(fd)
    public = private.public_key()
    tmp = public_path.with_name(f".{public_path.name}.tmp")
    tmp.write_bytes(_pem_of(public))
    os.replace(tmp, public_path)
    return PublicKey(public, key_fingerprint(public), str(public_path))


def _key_paths(output: Path) -> tuple[Path, Path]:
    base = output.with_suffix("") if output.suffix in (".key", ".pub", ".pem") else output
    return base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")


def load_private_key(path: Path) -> EllipticCurvePrivateKey:
    """Read an unencrypted PEM EC private key. Errors never quote the file's bytes."""
    ec = _crypto()
    from cryptography.hazmat.primitives import serialization

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read key {path}: {e.strerror or e}") from e
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as err:
        raise UsageError(
            f"{path} is not an unencrypted PEM private key",
            hint="create one with `hfbundle keygen -o NAME` (or openssl ecparam -name prime256v1 -genkey)",
        ) from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{path} is not an EC key", hint="OMS key signing uses EC keys: `hfbundle keygen`")
    _check_curve(key.public_key(), str(path))
    return cast("EllipticCurvePrivateKey", key)


def load_public_key(path: Path) -> PublicKey:
    ec = _crypto()
    from cryptography.hazmat.primitives import serialization

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read public key {path}: {e.strerror or e}") from e
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError) as err:
        hint = "give the .pub file `hfbundle keygen` wrote, not the private key"
        raise UsageError(f"{path} is not a PEM public key", hint=hint) from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UsageError(f"{path} is not an EC public key")
    _check_curve(key, str(path))
    return PublicKey(key, key_fingerprint(key), str(path))


def load_trusted_keys(paths: Sequence[Path]) -> tuple[PublicKey, ...]:
    """Public keys from files, or from every ``*.pub`` / ``*.pem`` in a folder."""
    keys: dict[str, PublicKey] = {}
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".pub", ".pem") and p.is_file())
            if not found:
                raise UsageError(f"no *.pub key in folder {path}", hint="put the signers' .pub files there")
        else:
            found = [path]
        for p in found:
            key = load_public_key(p)
            keys.setdefault(key.fingerprint, key)
    return tuple(keys.values())


# -- statements and envelopes -----------------------------------------------------------------------------


def statement_for(name: str, resources: Mapping[str, str], *, ignore_paths: Sequence[str] = DEFAULT_IGNORES) -> bytes:
    """The in-toto statement (JSON bytes) for a model called ``name`` made of ``resources`` (path → sha256).

    ``allow_symlinks`` is true: an installed snapshot's files are links into ``blobs/`` (OMS §6.1.1)."""
    if not resources:
        raise UsageError(f"nothing to sign in {name}: OMS needs at least one file")
    items = sorted(resources.items())
    root = hashlib.sha256(b"".join(bytes.fromhex(d) for _, d in items)).hexdigest()
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": [{"name": n, "digest": d, "algorithm": "sha256"} for n, d in items],
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": True,
                "ignore_paths": list(ignore_paths),
            },
        },
    }
    return json.dumps(statement, indent=2).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding (DSSE protocol v1)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _hash_for(public: EllipticCurvePublicKey) -> Any:
    from cryptography.hazmat.primitives import hashes

    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[public.curve.key_size]


def sign_statement(private: EllipticCurvePrivateKey, statement: bytes) -> dict[str, Any]:
    """An OMS signature (Sigstore bundle as a JSON object) of ``statement`` with ``private``."""
    ec = _crypto()
    public = private.public_key()
    sig = private.sign(pae(PAYLOAD_TYPE, statement), ec.ECDSA(_hash_for(public)))
    return {
        "mediaType": MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_fingerprint(public)}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
        },
    }


@dataclass(frozen=True)
class VerifiedStatement:
    """What a valid signature says: signed by ``fingerprint``, these files (path → sha256)."""

    fingerprint: str
    name: str
    resources: Mapping[str, str]
    ignore_paths: tuple[str, ...]


def oms_hint(oms: Any) -> str | None:
    """The key fingerprint an OMS signature names (its ``publicKey.hint``), or None."""
    try:
        hint = oms["verificationMaterial"]["publicKey"].get("hint")
    except (TypeError, KeyError, AttributeError):
        return None
    return hint if isinstance(hint, str) else None


def _malformed(what: str) -> SignatureError:
    return SignatureError(f"malformed signature: {what}", reason="malformed", hint="sign the bundle again")


def verify_oms(oms: Any, keys: Sequence[PublicKey]) -> VerifiedStatement:
    """Check an OMS signature (a parsed Sigstore bundle) against ``keys`` and return its statement.

    Follows OMS §8.1 to 8.3: media type, key method, DSSE signature over the PAE, in-toto statement with the OMS
    predicate, sorted resources whose root digest matches the subject. Raises :class:`SignatureError` with
    ``reason`` "unknown key" (no key in ``keys`` has the signature's fingerprint), "bad signature" or
    "malformed". Matching files against the statement is the caller's job.
    """
    ec = _crypto()
    from cryptography.exceptions import InvalidSignature

    if not isinstance(oms, dict) or oms.get("mediaType") not in MEDIA_TYPES:
        raise _malformed("not a Sigstore bundle (mediaType)")
    material = oms.get("verificationMaterial")
    if not isinstance(material, dict) or not isinstance(material.get("publicKey"), dict):
        raise _malformed("no publicKey verification material (only OMS key signatures are supported)")
    envelope = oms.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise _malformed("no DSSE envelope")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise _malformed(f"payloadType is {envelope.get('payloadType')!r}, not {PAYLOAD_TYPE}")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs or not all(isinstance(s, dict) for s in sigs):
        raise _malformed("the envelope has no signatures")
    try:
        payload = base64.b64decode(envelope.get("payload", ""), validate=True)
        raw_sigs = [base64.b64decode(s.get("sig", ""), validate=True) for s in sigs]
    except (ValueError, TypeError) as err:
        raise _malformed("payload or signature is not base64") from err
    hint = oms_hint(oms)
    candidates = [k for k in keys if hint is None or k.fingerprint == hint]
    if not candidates:
        raise SignatureError(
            f"signed by key {hint}, which is not a trusted key",
            reason="unknown key",
            hint="pass the signer's public key with --trusted-key (or HFBUNDLE_TRUSTED_KEYS)",
        )
    message = pae(PAYLOAD_TYPE, payload)
    signer: PublicKey | None = None
    for key in candidates:
        for raw in raw_sigs:
            try:
                key.key.verify(raw, message, ec.ECDSA(_hash_for(key.key)))
            except InvalidSignature:
                continue
            signer = key
            break
        if signer is not None:
            break
    if signer is None:
        raise SignatureError(
            f"the signature by key {hint or candidates[0].fingerprint} is invalid: the signed statement "
            "or the signature was altered",
            reason="bad signature",
            hint="the signature is not trustworthy: get the bundle again from its signer",
        )
    return _parse_statement(payload, signer.fingerprint)


def _parse_statement(payload: bytes, fingerprint: str) -> VerifiedStatement:
    try:
        statement = json.loads(payload)
    except ValueError as err:
        raise _malformed("the signed payload is not JSON") from err
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise _malformed("the payload is not an in-toto v1 statement")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise _malformed(f"predicateType is {statement.get('predicateType')!r}, not {PREDICATE_TYPE}")
    subjects = statement.get("subject")
    predicate = statement.get("predicate")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise _malformed("the statement must have exactly one subject")
    if not isinstance(predicate, dict) or not isinstance(predicate.get("resources"), list):
        raise _malformed("the statement has no resources")
    serialization = predicate.get("serialization")
    if not isinstance(serialization, dict) or serialization.get("method") != "files":
        raise _malformed("only the `files` serialization method is supported")
    if serialization.get("hash_type") != "sha256" or not isinstance(serialization.get("allow_symlinks"), bool):
        raise _malformed("only sha256 file digests are supported")
    resources: dict[str, str] = {}
    names: list[str] = []
    for r in predicate["resources"]:
        if not isinstance(r, dict) or r.get("algorithm") != "sha256":
            raise _malformed("a resource is not a sha256 file digest")
        name, digest = r.get("name"), r.get("digest")
        if not isinstance(name, str) or not name or not isinstance(digest, str) or not is_sha256(digest):
            raise _malformed("a resource has no name or no sha256 digest")
        if name in resources:
            raise _malformed(f"resource {name!r} is listed twice")
        resources[name] = digest
        names.append(name)
    if not names or names != sorted(names):
        raise _malformed("the resources are empty or not sorted by name")
    root = hashlib.sha256(b"".join(bytes.fromhex(resources[n]) for n in names)).hexdigest()
    digest = subjects[0].get("digest")
    if not isinstance(digest, dict) or digest.get("sha256") != root:
        raise _malformed("the subject's root digest does not match the resources")
    ignores = serialization.get("ignore_paths", [])
    if not isinstance(ignores, list) or not all(isinstance(p, str) for p in ignores):
        raise _malformed("ignore_paths is not a list of paths")
    name = subjects[0].get("name")
    return VerifiedStatement(fingerprint, name if isinstance(name, str) else "", resources, tuple(ignores))


def read_oms(raw: bytes) -> Any:
    """Parse an OMS signature file's bytes (JSON)."""
    if len(raw) > MAX_OMS_BYTES:
        raise _malformed("over 16 MiB")
    try:
        return json.loads(raw)
    except ValueError as err:
        raise _malformed("not JSON (truncated?)") from err
