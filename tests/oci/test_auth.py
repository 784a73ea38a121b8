"""Registry credentials from the places docker/podman/skopeo keep them, and 401 challenges."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from bundler.errors import RegistryError
from bundler.oci.auth import Credentials, find_credentials, parse_challenge


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_challenges() -> None:
    c = parse_challenge('Bearer realm="https://auth.lan/token",service="reg.lan",scope="repository:a/b:pull,push"')
    assert c is not None and c.scheme == "bearer"
    assert dict(c.params) == {
        "realm": "https://auth.lan/token",
        "service": "reg.lan",
        "scope": "repository:a/b:pull,push",
    }
    basic = parse_challenge('Basic realm="registry"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("Negotiate abc") is None


def test_auth_file_order_and_keys(tmp_path: Path) -> None:
    auth_file, docker = tmp_path / "auth.json", tmp_path / "docker"
    auth_file.write_text(json.dumps({"auths": {"reg.lan:5000": {"auth": b64("podman:pw1")}}}))
    docker.mkdir()
    (docker / "config.json").write_text(
        json.dumps({"auths": {"https://reg.lan:5000": {"auth": b64("docker:pw2")}, "other.lan": {"auth": b64("o:p")}}})
    )
    env = {"REGISTRY_AUTH_FILE": str(auth_file), "DOCKER_CONFIG": str(docker)}
    found = find_credentials("reg.lan:5000", env)
    assert found is not None and (found.username, found.password) == ("podman", "pw1")
    found = find_credentials("reg.lan:5000", {"DOCKER_CONFIG": str(docker)})
    assert found is not None and (found.username, found.password) == ("docker", "pw2")
    assert find_credentials("nowhere.lan", env) is None


def test_damaged_auth_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "auth.json").write_text("{not json")
    with pytest.raises(RegistryError, match="credentials file"):
        find_credentials("reg.lan", {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"), "DOCKER_CONFIG": str(tmp_path)})


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread host\necho "{\\"Username\\": \\"u-$host\\", \\"Secret\\": \\"s3\\"}"\n')
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"reg.lan": "fake"}}))
    found = find_credentials("reg.lan", {"DOCKER_CONFIG": str(tmp_path)})
    assert found is not None and (found.username, found.password) == ("u-reg.lan", "s3")


def test_secrets_stay_out_of_repr() -> None:
    creds = Credentials("u", "p4ss-w0rd", "--username")
    assert "p4ss-w0rd" not in repr(creds) and "p4ss-w0rd" not in str(creds)
    assert creds.basic_header() == "Basic " + b64("u:p4ss-w0rd")


def test_identity_token_entries_are_kept_as_docker_keeps_them(tmp_path: Path) -> None:
    """`docker login` to ACR/Harbor-OIDC writes `auth` = b64("<token>:") plus `identitytoken`; a credential
    helper answers Username "<token>". Both become an identity token, never a password for basic auth."""
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"acr.lan": {"auth": b64("<token>:"), "identitytoken": "rt-123"}}})
    )
    found = find_credentials("acr.lan", {"DOCKER_CONFIG": str(tmp_path)})
    assert found is not None and found.is_identity_token and found.password == "rt-123"
    assert not Credentials("user", "pw").is_identity_token
    assert "rt-123" not in repr(found)
