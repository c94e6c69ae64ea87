"""Rewrite what is generated from the code: the docs' generated blocks (infra/cli/doc_blocks.py: the field
reference, equal to `python -m infra docs`, worker command lines, `diff`'s classes, exit statuses, …) and
the stack files' JSON Schema. `python -m infra.cli.regenerate` after changing what they come from."""

from __future__ import annotations

import re
from pathlib import Path

from infra.definition.schema import schema_text
from infra.paths import REPO, STACK_SCHEMA

MARKER = re.compile(r"<!-- ([a-z0-9-]+):start -->\n.*?<!-- \1:end -->", re.S)
START = re.compile(r"<!-- ([a-z0-9-]+):start -->")


def pages() -> list[Path]:
    """Every page that may hold a generated block: README.md and the docs site."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def regenerated(page: str, where: str = "page") -> str:
    """`page` with each generated block rewritten from the code; an unknown or unclosed block is an error."""
    from infra.cli.doc_blocks import BLOCKS

    closed = {m.group(1) for m in MARKER.finditer(page)}
    for name in START.findall(page):
        if name not in BLOCKS:
            raise ValueError(f"{where}: unknown generated block {name!r} (known: {', '.join(BLOCKS)})")
        if name not in closed:
            raise ValueError(f"{where}: generated block {name!r} has no <!-- {name}:end -->")
    return MARKER.sub(lambda m: f"<!-- {m.group(1)}:start -->\n{BLOCKS[m.group(1)]()}<!-- {m.group(1)}:end -->", page)


def main() -> None:
    for path in pages():
        text = path.read_text()
        new = regenerated(text, str(path.relative_to(REPO)))
        if new != text:
            path.write_text(new)
            print(f"rewrote {path.relative_to(REPO)}")
    STACK_SCHEMA.parent.mkdir(exist_ok=True)
    STACK_SCHEMA.write_text(schema_text())


if __name__ == "__main__":
    main()
