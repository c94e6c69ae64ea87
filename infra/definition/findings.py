"""Findings: what validation says about a definition, each tied to a file, a line and a key path.

The core of every command returns findings; the CLI prints them with `format_finding`. Nothing else in
the package prints, so every check is testable as data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

Path = tuple  # a key path into the definition: ("vhosts", "lol", "queues", "default", "ttl")

_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


def dotted(path: Path) -> str:
    """`vhosts.lol.queues.default.ttl`; names that are not plain words are quoted: `vhosts["/"]`."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif _PLAIN_SEGMENT.match(segment):
            out += f".{segment}" if out else segment
        else:
            out += f'["{segment}"]'
    return out or "(top level)"


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    path: Path
    message: str
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def format_finding(finding: Finding) -> str:
    """`stacks/dev.yaml:12: vhosts.lol.queues.default.ttl: expected a duration such as 90s, 30m or 2h`."""
    prefix = "" if finding.is_error else "warning: "
    return f"{finding.file}:{finding.line}: {dotted(finding.path)}: {prefix}{finding.message}"


class DefinitionError(Exception):
    """Raised by the loaders when a definition has error findings; carries all of them."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("\n".join(format_finding(f) for f in findings))
