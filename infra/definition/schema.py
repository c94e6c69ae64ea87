"""A JSON Schema for stack files, generated from the model (the same dataclasses and `doc=` strings as the
field reference), so that editors validate and complete `stacks/*.yaml` as the user types.

It checks what one file can be checked for alone: types, enums, units, unknown keys. Every stack file may be
an overlay, so nothing is required and any key may be `null` (an overlay's `null` removes a key); the rules
across objects and files stay `validate`'s.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Literal, Union, get_args, get_origin

from infra.definition.build import hints
from infra.definition.model import RABBITMQ_SERIES, DockerHost, IPAddress, NodeAddress, RabbitVersion, StackDefinition
from infra.definition.units import Duration, RateLimit, RiotRateLimit, Size

SCHEMA_ID = "https://rabbitmq-celery.invalid/stack.schema.json"


def _positive(pattern: re.Pattern) -> str:
    """A unit's pattern with its number made positive (the parser refuses 0)."""
    return pattern.pattern.replace(r"(\d+)", r"(0*[1-9]\d*)", 1)


# The value types with their own `parse`: what each accepts, as JSON Schema.
PARSED: dict[type, dict] = {
    # Quoted, or a number that reads as the series (4.0, 3.13; not 3.10, which YAML reads as 3.1).
    RabbitVersion: {
        "anyOf": [{"enum": list(RABBITMQ_SERIES)}, {"enum": [float(s) for s in RABBITMQ_SERIES if str(float(s)) == s]}]
    },
    IPAddress: {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    NodeAddress: {"type": "string", "format": "ipv4", "not": {"pattern": r"^(127\.|0\.0\.0\.0$)"}},
    DockerHost: {"type": "string", "pattern": r"^(unix|tcp|ssh)://\S+$"},
    Duration: {"type": "string", "pattern": _positive(Duration.pattern)},
    Size: {"type": "string", "pattern": _positive(Size.pattern)},
    RateLimit: {
        "anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?(/[smh])?$"}, {"type": "number", "exclusiveMinimum": 0}]
    },
    # count:seconds windows, as Riot's X-App-Rate-Limit header writes them (the walk also refuses zeros)
    RiotRateLimit: {"type": "string", "pattern": r"^\s*\d+:\d+\s*(,\s*\d+:\d+\s*)*$"},
}
PLAIN = {str: "string", bool: "boolean", float: "number", int: "integer"}
# A mapping's names (queues, users, vhosts…): the walk refuses empty, over 255 bytes and the broker's `amq.`.
NAMES = {"minLength": 1, "maxLength": 255, "not": {"pattern": r"^amq\."}}


def _default(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        value = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        value = spec.default_factory()
    else:
        return dataclasses.MISSING
    if dataclasses.is_dataclass(value):
        return dataclasses.MISSING
    if isinstance(value, (Duration, Size)):
        return str(value)
    return value


class _Generator:
    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}

    def of(self, tp: Any) -> dict:
        origin = get_origin(tp)
        if origin is Union:  # Optional[X]: null is already allowed on every key
            return self.of(next(a for a in get_args(tp) if a is not type(None)))
        if origin is Literal:
            return {"enum": list(get_args(tp))}
        if origin is list:
            return {"type": "array", "items": self.of(get_args(tp)[0])}
        if origin is dict:
            return {
                "type": "object",
                "propertyNames": NAMES,
                "additionalProperties": _nullable(self.of(get_args(tp)[1])),
            }
        if dataclasses.is_dataclass(tp):
            return {"$ref": f"#/$defs/{self.dataclass(tp)}"}
        if tp in PARSED:
            return dict(PARSED[tp])
        if isinstance(tp, type) and issubclass(tp, int) and hasattr(tp, "low"):  # the model's bounded integers
            return {"type": "integer", "minimum": tp.low, **({"maximum": tp.high} if tp.high else {})}
        if tp in PLAIN:
            return {"type": PLAIN[tp]}
        raise TypeError(f"no JSON Schema for {tp!r}: add it to infra/definition/schema.py's PARSED")

    def dataclass(self, cls: type) -> str:
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: a class may be reached again while it is being built
            properties = {}
            for spec in dataclasses.fields(cls):
                prop = {"description": spec.metadata["doc"], **self.of(hints(cls)[spec.name])}
                default = _default(spec)
                if default is not dataclasses.MISSING:
                    prop["default"] = default
                properties[spec.name] = _nullable(prop)
            own_doc = cls.__doc__ if cls.__doc__ and not cls.__doc__.startswith(f"{name}(") else name
            self.defs[name] = {
                "type": "object",
                "description": " ".join(own_doc.split()),
                "properties": properties,
                "additionalProperties": False,
            }
        return name


def _nullable(schema: dict) -> dict:
    """`schema` or null (an overlay sets a key to null to remove it), its description and default outside."""
    outer = {k: v for k, v in schema.items() if k in ("description", "default")}
    inner = {k: v for k, v in schema.items() if k not in outer}
    return {**outer, "anyOf": [inner, {"type": "null"}]}


def stack_schema() -> dict:
    generator = _Generator()
    root = generator.dataclass(StackDefinition)
    top = generator.defs.pop(root)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Stack definition (stacks/*.yaml)",
        **top,
        "$defs": dict(sorted(generator.defs.items())),
    }


def schema_text() -> str:
    return json.dumps(stack_schema(), indent=2, ensure_ascii=False) + "\n"
