"""OMS v1.0 signatures: keys, sign/verify, the OMS test vectors, and interop with the `model-signing` package."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")

from bundler.errors import UsageError
from bundler.signing import (
    SignatureError,
    generate_key,
    key_fingerprint,
    load_private_key,
    load_public_key,
    load_trusted_keys,
    read_oms,
    sign_statement,
    statement_for,
    verify_oms,
)

VECTORS = Path("/work/shared/reference/oms/test-vectors")
# The public key of the OMS key test vector (valid_key.bundle.json). The vector carries only its fingerprint
# (the `hint`); this key was recovered from the vector's ECDSA P-384 signature (public-key recovery gives
# four candidates) and is the one candidate whose PEM sha256 equals the hint e8450dec…: so it is the signer's.
VECTOR_KEY = b"""-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEsu6rZGBTjxtvRWPMixT+3HyndV0J0Ybt
aHZUcO4DEK+OJHO/4e32bb/fbJKSpRgcBsIpKLcVijUomyFOERbd7u+BTPSUjGZD
Qq6J7lTvp/EAXQGOKxW9RP0MGX3qAkvi
-----END PUBLIC KEY-----
"""
VECTOR_HINT = "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e"
RESOURCES = {"config.json": "5e" * 32, "weights/model.safetensors": "45" * 32}


@pytest.fixture
def keys(tmp_path: Path):
    a = generate_key(tmp_path / "a")
    b = generate_key(tmp_path / "b")
    return tmp_path / "a.key", a, tmp_path / "b.key", b


def test_keygen_writes_a_0600_private_key_and_its_public_half(tmp_path: Path) -> None:
    pub = generate_key(tmp_path / "site")
    private = tmp_path / "site.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PRIVATE" not in (tmp_path / "site.pub").read_bytes()
    assert load_public_key(tmp_path / "site.pub").fingerprint == pub.fingerprint
    assert key_fingerprint(load_private_key(private).public_key()) == pub.fingerprint
    assert load_private_key(private).curve.name == "secp256r1"
    with pytest.raises(UsageError, match="already exists"):
        generate_key(tmp_path / "site")


def test_sign_then_verify_round_trip(keys) -> None:
    key_a, pub_a, _, pub_b = keys
    oms = sign_statement(load_private_key(key_a), statement_for("abc", RESOURCES))
    checked = verify_oms(oms, [pub_b, pub_a])
    assert checked.fingerprint == pub_a.fingerprint and dict(checked.resources) == RESOURCES
    assert checked.name == "abc" and ".gitattributes" in checked.ignore_paths
    assert oms["verificationMaterial"]["publicKey"]["hint"] == pub_a.fingerprint


def test_other_key_is_unknown(keys) -> None:
    key_a, _, _, pub_b = keys
    oms = sign_statement(load_private_key(key_a), statement_for("abc", RESOURCES))
    with pytest.raises(SignatureError) as e:
        verify_oms(oms, [pub_b])
    assert e.value.reason == "unknown key" and "unknown key" in e.value.message


def tampered_payload(oms: dict[str, Any]) -> dict[str, Any]:
    statement = json.loads(base64.b64decode(oms["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    out: dict[str, Any] = json.loads(json.dumps(oms))
    out["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return out


def test_altered_statement_or_forged_hint_is_a_bad_signature(keys) -> None:
    key_a, pub_a, key_b, _ = keys
    oms = sign_statement(load_private_key(key_a), statement_for("abc", RESOURCES))
    with pytest.raises(SignatureError) as e:
        verify_oms(tampered_payload(oms), [pub_a])
    assert e.value.reason == "bad signature"
    forged = sign_statement(load_private_key(key_b), statement_for("abc", RESOURCES))
    forged["verificationMaterial"]["publicKey"]["hint"] = pub_a.fingerprint  # claims to be a
    with pytest.raises(SignatureError) as e:
        verify_oms(forged, [pub_a])
    assert e.value.reason == "bad signature"


def test_oms_valid_key_vector_passes(tmp_path: Path) -> None:
    (tmp_path / "vector.pub").write_bytes(VECTOR_KEY)
    key = load_public_key(tmp_path / "vector.pub")
    assert key.fingerprint == VECTOR_HINT
    checked = verify_oms(read_oms((VECTORS / "valid_key.bundle.json").read_bytes()), [key])
    assert checked.fingerprint == VECTOR_HINT
    assert sorted(checked.resources) == ["signme-1", "signme-2"]
    assert checked.resources["signme-1"] == "bc9a717db6064a32cbe9eae6fc40651dd6d36ef1757183f590eff2b1765d7ebc"
    assert "ignore-me" in checked.ignore_paths


@pytest.mark.parametrize(
    "name", ["invalid-payload_wrong-predicate.bundle.json", "invalid_missing-envelope.bundle.json"]
)
def test_oms_invalid_vectors_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "vector.pub").write_bytes(VECTOR_KEY)
    key = load_public_key(tmp_path / "vector.pub")
    with pytest.raises(SignatureError) as e:
        verify_oms(read_oms((VECTORS / name).read_bytes()), [key])
    assert e.value.reason in ("bad signature", "malformed")


def test_wrong_predicate_is_refused_even_when_validly_signed(keys) -> None:
    """The wrong-predicate vector is also refused for its (re-encoded) signature; this checks the statement
    rule alone: a correctly signed statement with another predicate type is not an OMS signature."""
    key_a, pub_a, _, _ = keys
    statement = json.loads(statement_for("abc", RESOURCES))
    statement["predicateType"] = "https://example.com/wrong-predicate/v1.0"
    oms = sign_statement(load_private_key(key_a), json.dumps(statement).encode())
    with pytest.raises(SignatureError, match="predicateType") as e:
        verify_oms(oms, [pub_a])
    assert e.value.reason == "malformed"


def test_truncated_signature_file_is_refused() -> None:
    raw = (VECTORS / "valid_key.bundle.json").read_bytes()
    with pytest.raises(SignatureError) as e:
        read_oms(raw[: len(raw) // 2])
    assert e.value.reason == "malformed"


def test_trusted_keys_from_a_folder_and_errors_never_quote_a_key(tmp_path: Path) -> None:
    generate_key(tmp_path / "k1")
    generate_key(tmp_path / "k2")
    folder = tmp_path / "trusted"
    folder.mkdir()
    for n in ("k1", "k2"):
        (folder / f"{n}.pub").write_bytes((tmp_path / f"{n}.pub").read_bytes())
    assert len(load_trusted_keys([folder])) == 2
    private = (tmp_path / "k1.key").read_bytes()
    with pytest.raises(UsageError) as e:
        load_public_key(tmp_path / "k1.key")  # a private key given as a trusted key
    assert private.decode().splitlines()[1] not in str(e.value)


def test_missing_cryptography_says_how_to_get_it() -> None:
    code = (
        "import sys\nsys.modules['cryptography'] = None\n"
        "from pathlib import Path\nfrom bundler.signing import load_public_key\nfrom bundler.errors import UsageError\n"
        "try:\n    load_public_key(Path('x.pub'))\nexcept UsageError as e:\n    print(e.hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "hfbundle[sign]" in out


# -- the OMS JSON schemas (spec §3.1: conformance suites validate bundles against all four) ------------------


def oms_validators() -> dict[str, Any]:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    schemas = {p.name.split(".")[0]: json.loads(p.read_text()) for p in (VECTORS.parent / "schemas").glob("*.json")}
    registry = referencing.Registry().with_resources(
        (s["$id"], referencing.Resource.from_contents(s)) for s in schemas.values()
    )
    return {name: jsonschema.Draft202012Validator(s, registry=registry) for name, s in schemas.items()}


def schema_errors(oms: Any) -> list[str]:
    validators = oms_validators()
    errors = [e.message for e in validators["bundle"].iter_errors(oms)]
    if not errors:
        statement = json.loads(base64.b64decode(oms["dsseEnvelope"]["payload"]))
        errors += [e.message for e in validators["statement"].iter_errors(statement)]
        errors += [e.message for e in validators["predicate"].iter_errors(statement["predicate"])]
        errors += [e.message for e in validators["envelope"].iter_errors(oms["dsseEnvelope"])]
    return errors


def test_our_signatures_conform_to_the_oms_schemas(keys) -> None:
    from bundler.trust import MANIFEST_RESOURCE

    key_a, _, _, _ = keys
    private = load_private_key(key_a)
    for statement in (
        statement_for("abc", RESOURCES),
        statement_for(MANIFEST_RESOURCE, {MANIFEST_RESOURCE: "ab" * 32}, ignore_paths=()),
    ):
        assert schema_errors(sign_statement(private, statement)) == []


def test_the_schema_check_itself_tells_the_vectors_apart() -> None:
    assert schema_errors(json.loads((VECTORS / "valid_key.bundle.json").read_text())) == []
    for name in ("invalid-payload_wrong-predicate.bundle.json", "invalid_missing-envelope.bundle.json"):
        assert schema_errors(json.loads((VECTORS / name).read_text())) != []
