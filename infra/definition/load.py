"""Load a stack definition once: files → merged YAML → typed model → cross-checks, with all findings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from infra.definition import validate
from infra.definition.build import build
from infra.definition.findings import DefinitionError, Finding
from infra.definition.model import StackDefinition
from infra.definition.sources import Source, load_single, load_stack
from infra.paths import STACKS_DIR


@dataclass
class Loaded:
    definition: Optional[StackDefinition]  # None when the types or keys are wrong
    source: Optional[Source]
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    @property
    def files(self) -> tuple[str, ...]:
        if self.source:
            return self.source.files
        return tuple(dict.fromkeys(f.file for f in self.findings))

    @property
    def ok(self) -> bool:
        return self.definition is not None and not self.errors


def load_definition(
    *, stack: str | None = None, file: str | Path | None = None, overlays: tuple = (), stacks_dir: Path = STACKS_DIR
) -> Loaded:
    """Exactly one of `stack` (base.yaml + <stack>.yaml) or `file` (that file alone)."""
    if (stack is None) == (file is None):
        raise ValueError("give exactly one of stack= or file=")
    try:
        source = load_stack(stacks_dir, stack, overlays) if stack else load_single(file, overlays)
    except DefinitionError as exc:
        return Loaded(None, None, exc.findings)
    definition, findings = build(StackDefinition, source)
    if definition is not None:
        findings += validate.check(definition, source)
    return Loaded(definition, source, findings)


def require(loaded: Loaded) -> StackDefinition:
    """The definition, or DefinitionError with every error finding."""
    if not loaded.ok:
        raise DefinitionError(loaded.errors)
    return loaded.definition
