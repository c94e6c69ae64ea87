"""The docs' field reference (docs/reference.md), generated from the model's `doc=` strings."""

from __future__ import annotations

import dataclasses
import json
from typing import get_args, get_origin

from infra.definition.build import hints, type_name
from infra.definition.model import StackDefinition


def _default(spec: dataclasses.Field) -> str:
    if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
        return "**required**"
    value = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
    if dataclasses.is_dataclass(value):
        return "see below"
    if value is None:
        return "unset"
    if isinstance(value, (list, dict, bool)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _nested(tp):
    """The dataclass inside Optional[...], list[...] or dict[str, ...], if any."""
    for arg in get_args(tp) or (tp,):
        if dataclasses.is_dataclass(arg):
            return arg
        if get_origin(arg):
            found = _nested(arg)
            if found:
                return found
    return None


def reference() -> str:
    sections, seen, todo = [], set(), [("the top level", StackDefinition)]
    while todo:
        where, cls = todo.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        lines = [f"#### {cls.__name__} ({where})", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for spec in dataclasses.fields(cls):
            tp = hints(cls)[spec.name]
            cells = (f"`{spec.name}`", type_name(tp), _default(spec), spec.metadata["doc"])
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
            nested = _nested(tp)
            if nested:
                todo.append((f"`{spec.name}`", nested))
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"
