"""Rewrite what is generated from the model: the docs' field reference (equal to `python -m infra docs`)
and the stack files' JSON Schema. `python -m infra.cli.regenerate` after changing infra/definition/model.py."""

from __future__ import annotations

from infra.definition.reference import reference
from infra.definition.schema import schema_text
from infra.paths import REFERENCE_PAGE, STACK_SCHEMA

START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def with_reference(page: str) -> str:
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference()}{END}{tail}"


if __name__ == "__main__":
    REFERENCE_PAGE.write_text(with_reference(REFERENCE_PAGE.read_text()))
    STACK_SCHEMA.parent.mkdir(exist_ok=True)
    STACK_SCHEMA.write_text(schema_text())
