"""Loaded YAML → the typed model, driven by the dataclasses' type hints.

One generic walk checks every type, unit and key and collects findings instead of stopping at the first,
so a user sees everything wrong with a file in one run.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

from infra.definition.findings import Finding
from infra.definition.model import Secret
from infra.definition.sources import Source

_INVALID = object()  # a value that produced a finding; its parent is invalid too

_SECRET_HINT = (
    "a password is never written in the definition: use {secret: KEY} (set it with "
    "`pulumi config set --secret KEY`), and `generate: true` to generate it when unset"
)


@cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def type_name(tp: Any) -> str:
    """How the field reference and the messages name a type."""
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(str(a) for a in get_args(tp))
    if origin is Union:
        return type_name(next(a for a in get_args(tp) if a is not type(None)))
    if origin is list:
        return f"list of {type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"map of name → {type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return tp.__name__
    plain = {str: "string", bool: "true | false", float: "number", int: "integer"}
    return plain.get(tp) or getattr(tp, "label", tp.__name__)


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Builder:
    def __init__(self, source: Source):
        self.source = source
        self.findings: list[Finding] = []

    def error(self, path: tuple, message: str) -> object:
        file, line = self.source.where(path)
        self.findings.append(Finding(file, line, path, message))
        return _INVALID

    def build(self, tp: Any, raw: Any, path: tuple) -> Any:
        origin = get_origin(tp)
        if origin is Union:  # Optional[X]
            return None if raw is None else self.build(get_args(tp)[0], raw, path)
        if raw is None:
            return self.error(path, f"expected {type_name(tp)}, got nothing")
        if origin is Literal:
            choices = get_args(tp)
            if raw in choices:
                return raw
            return self.error(
                path,
                f"expected one of {', '.join(map(str, choices))}, got {raw!r}"
                + (suggest(raw, choices) if isinstance(raw, str) else ""),
            )
        if origin is list:
            if not isinstance(raw, list):
                return self.error(path, f"expected a list, got {raw!r}")
            items = [self.build(get_args(tp)[0], item, path + (i,)) for i, item in enumerate(raw)]
            return _INVALID if _INVALID in items else items
        if origin is dict:
            return self._mapping(get_args(tp)[1], raw, path)
        if tp is Secret and not isinstance(raw, dict):
            return self.error(path, _SECRET_HINT)
        if dataclasses.is_dataclass(tp):
            return self._dataclass(tp, raw, path)
        if hasattr(tp, "parse"):
            try:
                return tp.parse(raw)
            except ValueError as exc:
                return self.error(path, str(exc))
        return self._plain(tp, raw, path)

    def _plain(self, tp: type, raw: Any, path: tuple) -> Any:
        ok = (isinstance(raw, tp) and not (tp is int and isinstance(raw, bool))) or (
            tp is float and isinstance(raw, int) and not isinstance(raw, bool)
        )
        if not ok:
            return self.error(path, f"expected {type_name(tp)}, got {raw!r}")
        return float(raw) if tp is float else raw

    def _mapping(self, value_type: Any, raw: Any, path: tuple) -> Any:
        if not isinstance(raw, dict):
            return self.error(path, f"expected a mapping of names, got {raw!r}")
        out = {}
        for name, value in raw.items():
            problem = (
                "a name cannot be empty"
                if not name
                else f"{name!r}: names starting with `amq.` are the broker's"
                if name.startswith("amq.")
                else "a name is at most 255 bytes"
                if len(name.encode("utf-8")) > 255
                else None
            )
            if problem:
                self.error(path + (name,), problem)
                continue
            out[name] = self.build(value_type, value, path + (name,))
        return _INVALID if _INVALID in out.values() or len(out) != len(raw) else out

    def _dataclass(self, cls: type, raw: Any, path: tuple) -> Any:
        if not isinstance(raw, dict):
            return self.error(path, f"expected a mapping ({cls.__name__}), got {raw!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values, ok = {}, True
        for key in raw:
            if key not in fields:
                self.error(
                    path + (key,), f"unknown key {key!r}{suggest(key, fields)}; expected one of {', '.join(fields)}"
                )
                ok = False
        for name, spec in fields.items():
            if name in raw:
                value = self.build(hints(cls)[name], raw[name], path + (name,))
                ok = ok and value is not _INVALID
                values[name] = value
            elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                self.error(path, f"missing required key {name!r} ({type_name(hints(cls)[name])})")
                ok = False
        return cls(**values) if ok else _INVALID


def build(cls: type, source: Source) -> tuple[Any, list[Finding]]:
    """The model built from `source`, or None, with the findings of the walk."""
    builder = Builder(source)
    value = builder.build(cls, source.data, ())
    return (None if value is _INVALID else value), builder.findings
