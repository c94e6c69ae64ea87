"""Regenerate what is generated from the model: the README's field reference (equal to `python -m infra docs`)
and the stack files' JSON Schema."""
from __future__ import annotations

from infra.definition.schema import schema_text
from infra.paths import README, STACK_SCHEMA
from infra.definition.reference import reference

START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def with_reference(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference()}{END}{tail}"


if __name__ == "__main__":
    path = README
    path.write_text(with_reference(path.read_text()))
    STACK_SCHEMA.parent.mkdir(exist_ok=True)
    STACK_SCHEMA.write_text(schema_text())
