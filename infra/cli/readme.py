"""Keep the README's field reference equal to `python -m infra docs`."""
from __future__ import annotations


from infra.paths import README
from infra.definition.reference import reference

START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def with_reference(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference()}{END}{tail}"


if __name__ == "__main__":
    path = README
    path.write_text(with_reference(path.read_text()))
