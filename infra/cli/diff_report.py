"""`python -m infra diff`'s output: a terminal table, or Markdown for a pull-request comment."""

from __future__ import annotations

from collections import Counter

from infra.cli.table import table
from infra.ops.changes import Change, Impact

MARK = {
    Impact.DATA_LOSS: "🛑 data loss",
    Impact.UPGRADE: "🔀 upgrade (blue-green)",
    Impact.MIGRATION: "🚚 migration",
    Impact.RESTART: "🔁 restart",
    Impact.IN_PLACE: "✅ in place",
}


# Both plans come from this working tree's code: what a change of code (templates/, infra/, app/) does is
# not in the comparison, so the report says so.
CODE_NOTE = (
    "Both definitions are read with this working tree's code; a change to the code itself "
    "(templates/, infra/, the app image) is not compared here: see pulumi preview."
)


def _summary(changes: list[Change], allow_data_loss: bool) -> str:
    if not changes:
        return "No change."
    counts = Counter(c.impact for c in changes)
    line = f"{len(changes)} change(s): " + ", ".join(f"{counts[i]} {i.value}" for i in Impact if counts[i])
    if counts[Impact.DATA_LOSS]:
        line += (
            ". Data loss accepted (--allow-data-loss)."
            if allow_data_loss
            else ". Exit 3: this change loses messages; pass --allow-data-loss to accept it."
        )
    return line


def text(stack: str, base: str, changes: list[Change], diffs: dict[str, str], allow_data_loss: bool) -> str:
    lines = [f"stack {stack}: {base} → working tree"]
    if changes:
        lines.append("")
        lines.append(table(("impact", "object", "change"), [(c.impact.value, c.subject, c.what) for c in changes]))
        warnings = [w for c in changes for w in c.warnings]
        if warnings:
            lines += ["", "Warnings:"] + [f"  ! {w}" for w in warnings]
    if diffs:
        lines += ["", "Rendered files: " + ", ".join(diffs)]
        lines += [d.rstrip("\n") for d in diffs.values()]
    lines += ["", _summary(changes, allow_data_loss), CODE_NOTE]
    return "\n".join(lines)


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown(stack: str, base: str, changes: list[Change], diffs: dict[str, str], allow_data_loss: bool) -> str:
    lines = [
        f"### Stack `{stack}`: changes since `{base}`",
        "",
        _summary(changes, allow_data_loss),
        "",
        f"<sub>{CODE_NOTE}</sub>",
        "",
    ]
    if changes:
        lines += ["| impact | object | change |", "| --- | --- | --- |"]
        lines += [f"| {MARK[c.impact]} | `{_cell(c.subject)}` | {_cell(c.what)} |" for c in changes]
        warnings = [w for c in changes for w in c.warnings]
        if warnings:
            lines += ["", "**Warnings**", ""] + [f"- ⚠️ {_cell(w)}" for w in warnings]
    for name, diff in diffs.items():
        lines += ["", f"<details><summary>{name}</summary>", "", "```diff", diff.rstrip("\n"), "```", "", "</details>"]
    return "\n".join(lines)
