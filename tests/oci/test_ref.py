"""Registry and layout references: the distribution grammar, explicit hosts, tags and digests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundler.errors import UsageError
from bundler.oci.ref import LayoutRef, RegistryRef, parse_ref

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci://localhost:5000/a/b:v1", RegistryRef("localhost:5000", "a/b", "v1")),
        ("reg.lan/a", RegistryRef("reg.lan", "a", "latest")),
        ("127.0.0.1:5000/models/sd-turbo:fp16-v1.2", RegistryRef("127.0.0.1:5000", "models/sd-turbo", "fp16-v1.2")),
        (f"reg.lan/a@{DIGEST}", RegistryRef("reg.lan", "a", None, DIGEST)),
        (f"reg.lan/a:v1@{DIGEST}", RegistryRef("reg.lan", "a", "v1", DIGEST)),
        ("oci-layout:/m/usb:tiny", LayoutRef(Path("/m/usb"), "tiny")),
        ("oci-layout:rel/dir", LayoutRef(Path("rel/dir"), None)),
        (f"oci-layout:/m/usb@{DIGEST}", LayoutRef(Path("/m/usb"), None, DIGEST)),
    ],
)
def test_parse(text: str, expected: object) -> None:
    assert parse_ref(text) == expected


def test_reference_prefers_the_digest() -> None:
    assert parse_ref(f"reg.lan/a:v1@{DIGEST}").reference == DIGEST
    assert parse_ref("reg.lan/a").reference == "latest"
    assert str(parse_ref("oci://reg.lan:5000/a/b:v1")) == "reg.lan:5000/a/b:v1"


@pytest.mark.parametrize(
    "bad",
    [
        "noslash",
        "https://reg/a",
        "reg.lan/UPPER",
        "reg.lan/a:bad tag",
        "reg.lan/a@sha256:12",
        "reg.lan/",
        "oci-layout:",
    ],
)
def test_malformed_refs_say_the_form(bad: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_ref(bad)
    assert err.value.exit_code == 2
