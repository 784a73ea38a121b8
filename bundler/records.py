"""One ``to_json`` for every record: a frozen dataclass serialised field by field (and the checks that read
untrusted JSON back: :func:`expect_keys`, :func:`json_str`).

Every report, plan and finding hfbundle returns is a frozen dataclass; ``--json`` output, the lock, the bundle
manifest and the install record are its fields, in order. Instead of one hand-written ``to_json`` per record,
a record inherits :class:`JsonRecord` and states only what differs from the plain rule, as class keywords:

- the plain rule: every field (``dataclasses.fields``), its value made JSON-ready by :func:`jsonable`
  (tuples → lists, mappings → dicts, nested records → their ``to_json()``, paths → strings);
- ``rename``: field → key (``{"version": "record_version"}``);
- ``skip``: fields left out (internal state, or replaced by a computed key);
- ``skip_none`` / ``skip_empty``: fields left out when ``None`` / falsy (``True``: all fields);
- ``rounding``: float field → digits (``{"elapsed": 3}``);
- ``convert``: field → function of the raw value (``{"files": len}``);
- :meth:`JsonRecord.json_extra`: computed keys (``ok``, ``summary``), appended after the fields.

Example::

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Hit(JsonRecord, skip_none=True, rounding={"took": 1}):
    ...     path: str
    ...     took: float
    ...     note: str | None = None
    ...     def json_extra(self) -> dict[str, object]:
    ...         return {"ok": self.took < 1}
    >>> Hit("a.bin", 0.25).to_json()
    {'path': 'a.bin', 'took': 0.2, 'ok': True}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from pathlib import PurePath
from typing import Any, ClassVar

from .errors import BundleFormatError

__all__ = ["JsonRecord", "expect_keys", "json_str", "jsonable", "record_json"]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: records by their ``to_json()``, tuples/sets as lists, paths as strings."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json) and not isinstance(value, type):
        return to_json()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def _listed(spec: Collection[str] | bool, name: str) -> bool:
    return spec if isinstance(spec, bool) else name in spec


def record_json(record: JsonRecord, nested: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """The JSON object of a dataclass ``record`` following its class's hooks (see the module doc). ``nested``:
    what makes a field's value JSON-ready instead of :func:`jsonable` (the manifest's streamed encoding)."""
    cls = type(record)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):  # type: ignore[arg-type]  # a JsonRecord is always a dataclass
        name = f.name
        if name in cls.json_skip:
            continue
        raw = getattr(record, name)
        if raw is None and _listed(cls.json_skip_none, name):
            continue
        if not raw and _listed(cls.json_skip_empty, name):
            continue
        convert = cls.json_convert.get(name)
        if convert is not None:
            value = convert(raw)
        elif name in cls.json_round and raw is not None:
            value = round(raw, cls.json_round[name])
        else:
            value = (nested or jsonable)(raw)
        out[cls.json_rename.get(name, name)] = value
    out.update(record.json_extra())
    return out


class JsonRecord:
    """Mixin for frozen dataclasses: ``to_json()`` from the fields, and the hooks (module doc) as class keywords.

    ``class Issue(JsonRecord, skip_none=True): ...`` — a subclass states only what differs from the plain rule.
    """

    __slots__ = ()

    json_rename: ClassVar[Mapping[str, str]] = {}
    json_skip: ClassVar[Collection[str]] = ()
    json_skip_none: ClassVar[Collection[str] | bool] = ()
    json_skip_empty: ClassVar[Collection[str] | bool] = ()
    json_round: ClassVar[Mapping[str, int]] = {}
    json_convert: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def __init_subclass__(
        cls,
        *,
        rename: Mapping[str, str] | None = None,
        skip: Collection[str] | None = None,
        skip_none: Collection[str] | bool | None = None,
        skip_empty: Collection[str] | bool | None = None,
        rounding: Mapping[str, int] | None = None,
        convert: Mapping[str, Callable[[Any], Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if rename is not None:
            cls.json_rename = dict(rename)
        if skip is not None:
            cls.json_skip = frozenset(skip)
        if skip_none is not None:
            cls.json_skip_none = skip_none if isinstance(skip_none, bool) else frozenset(skip_none)
        if skip_empty is not None:
            cls.json_skip_empty = skip_empty if isinstance(skip_empty, bool) else frozenset(skip_empty)
        if rounding is not None:
            cls.json_round = dict(rounding)
        if convert is not None:
            cls.json_convert = dict(convert)

    def json_extra(self) -> Mapping[str, Any]:
        """Computed keys appended after the fields (override; ``{}`` by default)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        return record_json(self)


# -- reading records back from untrusted JSON --


def json_str(value: Any, what: str) -> str:
    """``value`` from untrusted JSON if it is a string; else :class:`~bundler.errors.BundleFormatError`."""
    if not isinstance(value, str):
        raise BundleFormatError(f"{what} must be a string, got {type(value).__name__}")
    return value


def expect_keys(data: Mapping[str, Any], required: set[str], optional: set[str], what: str) -> None:
    """Untrusted JSON ``data`` is an object with every ``required`` key and no key outside ``optional``."""
    if not isinstance(data, Mapping):
        raise BundleFormatError(f"{what} must be a JSON object")
    missing = required - data.keys()
    if missing:
        raise BundleFormatError(f"{what} is missing {', '.join(sorted(missing))}")
    unknown = data.keys() - required - optional
    if unknown:
        # repr: the keys come from untrusted JSON and land in a one-line terminal message
        raise BundleFormatError(f"{what} has unknown keys {', '.join(repr(k)[:80] for k in sorted(unknown))}")
