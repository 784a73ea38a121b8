"""Signed bundles end to end: where signatures live, install refusals, installed proof, interop, no key leaks."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from bundler.bundle.manifest import Manifest
from bundler.bundle.reader import BundleWriter, inspect_bundle, open_bundle
from bundler.bundle.volumes import OutputSink
from bundler.bundle.writer import write_tail
from bundler.cache.layout import RepoLayout
from bundler.cli import main
from bundler.signing import SignatureError, generate_key, load_private_key, load_public_key
from bundler.trust import (
    BundleSignatures,
    check_bundle,
    make_signatures,
    sign_bundle,
    signature_path,
    snapshot_resources,
)
from tests.bundle.test_reader import stream_of
from tests.install.test_install import Bundle, Repo, Snap, build, commit_id, randbytes, standard_repos

# -- helpers ----------------------------------------------------------------------------------------------


def write_bundle(path: Path, b: Bundle, *, key: Path | None = None, split_size: int | None = None) -> Path:
    with BundleWriter(path, threads=1, frame_size=4096, split_size=split_size) as w:
        w.write_manifest(b.manifest.dumps())
        if key is not None:
            w.set_signatures(BundleSignatures(make_signatures(b.manifest, load_private_key(key))).dumps())
        for blob in b.manifest.blobs:
            w.add_blob(blob.sha256, blob.size, io.BytesIO(b.blobs[blob.sha256]))
    return path


def with_signatures(src: Path, dst: Path, payload: bytes) -> Path:
    """``src``'s data frames with ``payload`` as its signatures frame (a tampered copy)."""
    with open_bundle(src, threads=1) as r:
        assert r.index is not None
        sink = OutputSink(dst)
        for data in r.iter_data():
            sink.write(data)
        write_tail(sink, r.index.members, r.index.tar_length, payload)
        sink.commit()
    return dst


def signatures_of(path: Path) -> bytes:
    with open_bundle(path, threads=1) as r:
        assert r.signatures is not None
        return r.signatures


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def small_bundle(label: str = "a") -> Bundle:
    c = commit_id(label)
    files = {
        "config.json": (b'{"x": 1}\n', False),
        "unet/weights.safetensors": (randbytes(20_000, 1), True),
        ".gitattributes": (b"*.safetensors filter=lfs\n", False),
    }
    return build([Repo("model", f"org/{label}", {"main": c}, [Snap(c, files)])])


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    generate_key(tmp_path / "site")
    generate_key(tmp_path / "other")
    return {
        "key": tmp_path / "site.key",
        "pub": tmp_path / "site.pub",
        "other_key": tmp_path / "other.key",
        "other_pub": tmp_path / "other.pub",
    }


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# -- where signatures live ----------------------------------------------------------------------------------


def test_signing_keeps_the_bundle_id_and_the_data_bytes(tmp_path: Path, keys: dict[str, Path]) -> None:
    b = build(standard_repos())
    plain = write_bundle(tmp_path / "plain.tar.zst", b)
    signed = write_bundle(tmp_path / "signed.tar.zst", b, key=keys["key"])
    later = tmp_path / "later.tar.zst"
    shutil.copy(plain, later)
    report = sign_bundle(later, load_private_key(keys["key"]))
    with open_bundle(plain, threads=1) as r:
        assert r.index is not None
        data_length = r.index.data_length
        assert r.signatures is None and r.index.version == 1
    for path in (signed, later):
        info = inspect_bundle(path)
        assert info.bundle_id == b.manifest.bundle_id == report.bundle_id
        assert path.read_bytes()[:data_length] == plain.read_bytes()[:data_length]  # copied, not recompressed
        with open_bundle(path, threads=1) as r:
            assert r.index is not None and r.index.version == 2
            assert r.signatures is not None
            assert sum(1 for _ in r.iter_blobs()) == len(b.manifest.blobs)
    # plain zstd + tar still give exactly the tar stream: the signatures frame is skipped by decoders
    tar = subprocess.run(["zstd", "-dc", str(later)], capture_output=True, check=True).stdout
    assert tar == subprocess.run(["zstd", "-dc", str(plain)], capture_output=True, check=True).stdout
    listing = subprocess.run(["tar", "-t"], input=tar, capture_output=True, check=True).stdout.decode().split()
    assert listing[0] == "manifest.json" and all(n.startswith("blobs/sha256/") for n in listing[1:])


def test_signed_bundle_reads_from_a_pipe(tmp_path: Path, keys: dict[str, Path]) -> None:
    b = small_bundle()
    signed = write_bundle(tmp_path / "s.tar.zst", b, key=keys["key"])
    with open_bundle(stream_of(signed.read_bytes())) as r:
        assert r.signatures is None  # not yet: a pipe carries them after the blobs
        for _, s in r.iter_blobs():
            s.read()
        assert r.signatures == signatures_of(signed)


def test_second_signer_is_added_and_resigning_replaces(tmp_path: Path, keys: dict[str, Path]) -> None:
    b = small_bundle()
    path = write_bundle(tmp_path / "x.tar.zst", b, key=keys["key"])
    sign_bundle(path, load_private_key(keys["other_key"]))
    sign_bundle(path, load_private_key(keys["other_key"]))
    sigs = BundleSignatures.loads(signatures_of(path))
    assert len(sigs.fingerprints) == 2
    assert len(sigs.entries) == 4  # per key: the manifest and one snapshot
    for pub in ("pub", "other_pub"):
        trusted = [load_public_key(keys[pub])]
        assert check_bundle(b.manifest, signatures_of(path), trusted).signer == trusted[0].fingerprint


def test_split_bundle_is_signed_volume_by_volume(tmp_path: Path, keys: dict[str, Path]) -> None:
    b = build(standard_repos())
    write_bundle(tmp_path / "v.tar.zst", b, split_size=64 * 1024)
    report = sign_bundle(tmp_path / "v.tar.zst.001", load_private_key(keys["key"]))
    assert len(report.paths) > 1 and all(p.name.startswith("v.tar.zst.") for p in report.paths)
    assert check_bundle(b.manifest, signatures_of(tmp_path / "v.tar.zst"), [load_public_key(keys["pub"])]).checked


def test_snapshot_signature_leaves_out_omss_default_ignores() -> None:
    (snap,) = small_bundle().manifest.repos[0].snapshots
    assert sorted(snapshot_resources(snap)) == ["config.json", "unet/weights.safetensors"]


# -- install refusals ---------------------------------------------------------------------------------------


def tampered(tmp_path: Path, keys: dict[str, Path], case: str) -> tuple[Path, str]:
    """A bundle for each refusal case and the reason install must give."""
    b = small_bundle("a")
    good = write_bundle(tmp_path / "good.tar.zst", b, key=keys["key"])
    if case == "unsigned":
        return write_bundle(tmp_path / "u.tar.zst", b), "unsigned"
    if case == "other key":
        return write_bundle(tmp_path / "o.tar.zst", b, key=keys["other_key"]), "unknown key"
    if case == "manifest byte changed":
        # the same blobs, one byte of the manifest different (its creator), with the original's signatures
        changed = Bundle(Manifest.loads(b.manifest.dumps().replace(b'"hfbundle"', b'"hfbundlX"', 1)), b.blobs)
        assert changed.manifest.bundle_id != b.manifest.bundle_id
        unsigned = write_bundle(tmp_path / "c0.tar.zst", changed)
        return with_signatures(unsigned, tmp_path / "c.tar.zst", signatures_of(good)), "manifest changed after signing"
    if case == "signatures swapped":
        other = write_bundle(tmp_path / "b.tar.zst", small_bundle("b"), key=keys["key"])
        return with_signatures(other, tmp_path / "s.tar.zst", signatures_of(good)), "manifest changed after signing"
    if case == "signatures truncated":
        raw = signatures_of(good)
        return with_signatures(good, tmp_path / "t.tar.zst", raw[: len(raw) // 2]), "bad signature"
    if case == "signature bit flipped":
        data = json.loads(signatures_of(good))
        entry = next(e for e in data["signatures"] if e["scope"] == "manifest")
        sig = entry["oms"]["dsseEnvelope"]["signatures"][0]["sig"]
        entry["oms"]["dsseEnvelope"]["signatures"][0]["sig"] = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
        return with_signatures(good, tmp_path / "f.tar.zst", json.dumps(data).encode()), "bad signature"
    raise AssertionError(case)


CASES = [
    "unsigned",
    "other key",
    "manifest byte changed",
    "signatures swapped",
    "signatures truncated",
    "signature bit flipped",
]


@pytest.mark.parametrize("case", CASES)
def test_install_refuses_before_writing_anything(
    tmp_path: Path, keys: dict[str, Path], case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, reason = tampered(tmp_path, keys, case)
    cache = tmp_path / "cache"
    cache.mkdir()
    code, out, err = call(
        ["install", str(bundle), "--cache-dir", str(cache), "--trusted-key", str(keys["pub"])], capsys
    )
    assert code == 1, (out, err)
    assert f"({reason})" in err and "Traceback" not in err
    assert files_below(cache) == []


def test_install_refusal_in_the_api_names_the_reason(tmp_path: Path, keys: dict[str, Path]) -> None:
    from bundler import api

    bundle, reason = tampered(tmp_path, keys, "other key")
    for dry_run in (True, False):
        with pytest.raises(SignatureError) as e:
            api.install(bundle, cache_dir=tmp_path / "cache", trusted_keys=[keys["pub"]], dry_run=dry_run)
        assert e.value.reason == reason
    assert not (tmp_path / "cache").exists()


def test_trusted_keys_from_env_and_folder(tmp_path: Path, keys: dict[str, Path], monkeypatch) -> None:
    from bundler import api

    b = small_bundle()
    good = write_bundle(tmp_path / "g.tar.zst", b, key=keys["key"])
    folder = tmp_path / "trusted"
    folder.mkdir()
    shutil.copy(keys["other_pub"], folder / "other.pub")
    monkeypatch.setenv("HFBUNDLE_TRUSTED_KEYS", str(folder))
    with pytest.raises(SignatureError, match="unknown key"):
        api.install(good, cache_dir=tmp_path / "c1")
    shutil.copy(keys["pub"], folder / "site.pub")
    report = api.install(good, cache_dir=tmp_path / "c1")
    assert report.signature is not None
    assert report.signature["signer"] == load_public_key(keys["pub"]).fingerprint


def test_trusted_key_with_a_pipe_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    from bundler.errors import UsageError
    from bundler.install import install

    good = write_bundle(tmp_path / "g.tar.zst", small_bundle(), key=keys["key"])
    with open_bundle(stream_of(good.read_bytes())) as r, pytest.raises(UsageError, match="pipe"):
        install(r, tmp_path / "cache", trusted_keys=[load_public_key(keys["pub"])])
    assert not (tmp_path / "cache").exists()


def test_without_trusted_keys_install_reports_the_signer_and_proceeds(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_bundle(tmp_path / "g.tar.zst", small_bundle(), key=keys["key"])
    plain = write_bundle(tmp_path / "p.tar.zst", small_bundle("p"))
    fp = load_public_key(keys["pub"]).fingerprint
    code, out, _ = call(["install", str(good), "--cache-dir", str(tmp_path / "c"), "--json"], capsys)
    assert code == 0
    sig = json.loads(out)["signature"]
    assert sig["signed"] and sig["fingerprints"] == [fp] and not sig["checked"]
    code, out, _ = call(["install", str(plain), "--cache-dir", str(tmp_path / "c")], capsys)
    assert code == 0 and "signature: unsigned" in out
    code, out, _ = call(["inspect", str(good)], capsys)
    assert code == 0 and fp in out


# -- installed snapshots --------------------------------------------------------------------------------------


@pytest.mark.parametrize("copy", [False, True])
def test_verify_proves_the_installed_snapshot_is_what_was_signed(
    tmp_path: Path, keys: dict[str, Path], copy: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    b = small_bundle()
    good = write_bundle(tmp_path / "g.tar.zst", b, key=keys["key"])
    cache = tmp_path / "cache"
    argv = ["install", str(good), "--cache-dir", str(cache), "--trusted-key", str(keys["pub"])]
    assert call([*argv, *(["--copy"] if copy else [])], capsys)[0] == 0
    repo = b.manifest.repos[0]
    commit = repo.snapshots[0].commit
    fp = load_public_key(keys["pub"]).fingerprint
    assert signature_path(RepoLayout(cache, "model", repo.repo_id), commit, fp).is_file()
    code, out, _ = call(
        ["verify", str(good), "--cache-dir", str(cache), "--trusted-key", str(keys["pub"]), "--json"], capsys
    )
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["signature"]["signer"] == fp
    assert report["signed_snapshots"]["snapshots"][0]["signer"] == fp
    code, _, _ = call(["verify", "--cache-dir", str(cache), "--trusted-key", str(keys["other_pub"])], capsys)
    assert code == 1  # not signed by that key
    # change a signed file in the snapshot
    target = RepoLayout(cache, "model", repo.repo_id).snapshot(commit) / "config.json"
    real = target.resolve()
    os.chmod(real, 0o644)
    real.write_bytes(b'{"x": 2}\n')
    code, out, _ = call(["verify", "--cache-dir", str(cache), "--trusted-key", str(keys["pub"])], capsys)
    assert code == 1 and "config.json: sha256" in out


# -- interop with the model-signing package ------------------------------------------------------------------


def model_signing_verify(snapshot: Path, sig: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "model_signing", "verify", "key", "--signature", str(sig), "--public_key", str(pub)]
    return subprocess.run([*cmd, "--allow_symlinks", str(snapshot)], capture_output=True, text=True)


@pytest.mark.parametrize("copy", [False, True])
def test_model_signing_verifies_our_signature_of_an_installed_snapshot(
    tmp_path: Path, keys: dict[str, Path], copy: bool
) -> None:
    pytest.importorskip("model_signing")
    from bundler import api

    b = build(standard_repos())
    good = write_bundle(tmp_path / "g.tar.zst", b, key=keys["key"])
    cache = tmp_path / "cache"
    api.install(good, cache_dir=cache, copy=copy, trusted_keys=[keys["pub"]])
    fp = load_public_key(keys["pub"]).fingerprint
    checked = 0
    for repo in b.manifest.repos:
        for snap in repo.snapshots:
            layout = RepoLayout(cache, repo.repo_type, repo.repo_id)
            sig = signature_path(layout, snap.commit, fp)
            done = model_signing_verify(layout.snapshot(snap.commit), sig, keys["pub"])
            assert done.returncode == 0, done.stdout + done.stderr
            checked += 1
            wrong = model_signing_verify(layout.snapshot(snap.commit), sig, keys["other_pub"])
            assert wrong.returncode != 0
    assert checked == 4


def test_our_verifier_accepts_a_model_signing_signature_of_the_same_files(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("model_signing")
    from bundler import api

    b = small_bundle()
    plain = write_bundle(tmp_path / "p.tar.zst", b)
    cache = tmp_path / "cache"
    api.install(plain, cache_dir=cache)
    repo = b.manifest.repos[0]
    commit = repo.snapshots[0].commit
    layout = RepoLayout(cache, "model", repo.repo_id)
    fp = load_public_key(keys["pub"]).fingerprint
    sig = signature_path(layout, commit, fp)
    sig.parent.mkdir()
    cmd = [sys.executable, "-m", "model_signing", "sign", "key", "--signature", str(sig)]
    done = subprocess.run(
        [*cmd, "--private_key", str(keys["key"]), "--allow_symlinks", str(layout.snapshot(commit))],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    code, out, _ = call(["verify", "--cache-dir", str(cache), "--trusted-key", str(keys["pub"]), "--json"], capsys)
    snaps = json.loads(out)["signed_snapshots"]["snapshots"]
    assert code == 0 and snaps[0]["signer"] == fp and snaps[0]["ok"]


# -- the private key never leaks -----------------------------------------------------------------------------


def test_private_key_never_appears_in_bundles_logs_errors_or_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    outputs: list[str] = []

    def run(*argv: str) -> int:
        code, out, err = call(list(argv), capsys)
        outputs.extend([out, err])
        return code

    assert run("keygen", "-o", str(tmp_path / "k"), "--json") == 0
    assert run("keygen", "-o", str(tmp_path / "k")) == 2  # never overwritten
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    pem = key.read_bytes()
    private = load_private_key(key)
    secrets = [line for line in pem.decode().splitlines() if "-----" not in line] + [
        f"{private.private_numbers().private_value:x}"
    ]
    secret_raw = private.private_numbers().private_value.to_bytes(32, "big")
    b = small_bundle()
    bundle = write_bundle(tmp_path / "b.tar.zst", b)
    assert run("sign", str(bundle), "--key", str(key), "--json") == 0
    assert run("sign", str(bundle), "--key", str(key)) == 0
    assert run("inspect", str(bundle), "--json") == 0
    cache = str(tmp_path / "cache")
    assert run("install", str(bundle), "--cache-dir", cache, "--trusted-key", str(pub), "--json") == 0
    assert run("verify", str(bundle), "--cache-dir", cache, "--trusted-key", str(pub), "--json") == 0
    assert run("verify", "--cache-dir", cache, "--trusted-key", str(pub)) == 0
    assert run("install", str(bundle), "--cache-dir", cache, "--trusted-key", str(key)) != 0  # key mix-up
    assert run("--debug", "sign", str(bundle), "--key", str(pub)) != 0  # the public key given as a signing key
    outputs.append(caplog.text)
    blobs = [bundle.read_bytes(), *(p.read_bytes() for p in Path(cache).rglob("*") if p.is_file())]
    for text in outputs:
        for s in secrets:
            assert s not in text
    for data in blobs:
        assert secret_raw not in data and pem not in data
        for s in secrets[:1]:
            assert s.encode() not in data


@pytest.mark.parametrize("offset", [8, 16, 19])  # the tag, the version, inside the version
def test_a_damaged_signatures_frame_header_is_a_format_error(
    tmp_path: Path, keys: dict[str, Path], offset: int
) -> None:
    from bundler.errors import BundleFormatError

    good = write_bundle(tmp_path / "g.tar.zst", small_bundle(), key=keys["key"])
    with open_bundle(good, threads=1) as r:
        assert r.index is not None
        start = r.index.data_length
    data = bytearray(good.read_bytes())
    data[start + offset] ^= 0xFF
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(bytes(data))
    with pytest.raises(BundleFormatError, match="signatures"):
        open_bundle(bad, threads=1)
    with pytest.raises(BundleFormatError, match="signatures"), open_bundle(stream_of(bytes(data))) as r:
        for _, s in r.iter_blobs():
            s.read()


def test_api_reads_the_trusted_keys_variable_trust_names() -> None:
    """``api`` checks the variable without importing trust (a verify with no key imports neither)."""
    from bundler import api, trust

    assert api._TRUSTED_KEYS_ENV == trust.TRUSTED_KEYS_ENV
