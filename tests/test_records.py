"""The one to_json convention (bundler.records): plain fields, the hooks, nesting."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundler.records import JsonRecord, jsonable


@dataclass(frozen=True)
class Leaf(JsonRecord, skip_none=True):
    name: str
    note: str | None = None


@dataclass(frozen=True)
class Node(
    JsonRecord,
    rename={"version": "node_version"},
    skip=("secret",),
    skip_empty=("tags",),
    rounding={"elapsed": 2},
    convert={"leaves_count": len},
):
    version: int
    leaves: tuple[Leaf, ...]
    leaves_count: tuple[str, ...]
    where: Path
    elapsed: float
    by_path: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    secret: str = "s3cret"

    def json_extra(self) -> dict[str, Any]:
        return {"ok": not self.tags}


def test_plain_fields_in_order_with_nested_records_and_hooks() -> None:
    node = Node(1, (Leaf("a"), Leaf("b", "x")), ("p", "q", "r"), Path("/c"), 1.23456, {"f": ("r1",)})
    out = node.to_json()
    assert list(out) == ["node_version", "leaves", "leaves_count", "where", "elapsed", "by_path", "ok"]
    assert out == {
        "node_version": 1,
        "leaves": [{"name": "a"}, {"name": "b", "note": "x"}],
        "leaves_count": 3,
        "where": "/c",
        "elapsed": 1.23,
        "by_path": {"f": ["r1"]},
        "ok": True,
    }
    assert "secret" not in json.dumps(out)


def test_skip_empty_keeps_a_non_empty_value() -> None:
    node = Node(1, (), (), Path("c"), 0.0, tags=("t",))
    assert node.to_json()["tags"] == ["t"]
    assert node.to_json()["ok"] is False


def test_jsonable_sets_sorted_and_scalars_kept() -> None:
    assert jsonable({"b", "a"}) == ["a", "b"]
    assert jsonable((1, None, "x")) == [1, None, "x"]
