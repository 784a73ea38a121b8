"""The manifest's canonical-form check (read side) writes exactly json's indented text (issue 18: a faster
encoder must refuse exactly what comparing with ``Manifest.dumps()`` refuses)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from bundler.bundle import manifest as m

_SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    -5,
    10**20,
    1.5,
    -0.0,
    1e300,
    float("nan"),
    float("inf"),
    -float("inf"),
    "",
    'a"b\\c\n\u00e9\u2028\x7f\x01',
    "日本",
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice(_SCALARS)
    if r < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["a", "b", "é", 'k"', "", "Z"]
    return {rng.choice(keys) + str(i): _random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def _canonical(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def test_same_text_as_json_and_refuses_any_change() -> None:
    rng = random.Random(18)
    for _ in range(3000):
        value = _random_value(rng)
        text = _canonical(value)
        assert m._same_text(value, text)
        cut = rng.randrange(len(text))
        assert not m._same_text(value, text[:cut] + text[cut + 1 :])
        assert not m._same_text(value, text + b" ")
        assert not m._same_text(value, text.replace(b"\n ", b"\n  ", 1)) or b"\n " not in text


def test_values_json_accepts_compare_as_json_writes_them() -> None:
    class Sub(str):
        pass

    assert m._same_text({"a": Sub("x")}, _canonical({"a": Sub("x")}))
    assert m._same_text({1: "x", 2.5: None}, _canonical({1: "x", 2.5: None}))
    with pytest.raises(TypeError):
        m._same_text({"a": object()}, b"")


def test_long_lists_compare_in_slices() -> None:
    value = {"files": [{"path": f"data/{i:06d}.json", "size": i} for i in range(20_000)]}
    text = _canonical(value)
    assert m._same_text(value, text)
    assert not m._same_text(value, text[:-3] + b"1}\n")
