"""One stack as every command uses it: loaded once (definition, source, findings) and its plan built once,
on first use, then passed down, so no command parses the files or builds the same plan twice."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from infra.definition.load import Loaded, load_definition, require
from infra.paths import STACKS_DIR
from infra.plan.plan import CONTAINER, NodeLayout, Plan, build_plan


@dataclass
class Stack(Loaded):
    """`Loaded` with its plan. Here, not in infra/definition: the definition layer knows no plan."""

    @classmethod
    def load(
        cls,
        *,
        stack: str | None = None,
        file: str | Path | None = None,
        overlays: tuple = (),
        stacks_dir: Path = STACKS_DIR,
    ) -> Stack:
        """As `load_definition`: exactly one of `stack` or `file`."""
        loaded = load_definition(stack=stack, file=file, overlays=overlays, stacks_dir=stacks_dir)
        return cls(loaded.definition, loaded.source, loaded.findings)

    @cached_property
    def plan(self) -> Plan:
        """The plan for nodes in containers (Pulumi, compose, Kubernetes); DefinitionError when not `ok`."""
        return build_plan(require(self))

    def plan_for(self, layout: NodeLayout) -> Plan:
        """The plan for nodes laid out as `layout` (`render --target host`)."""
        return self.plan if layout == CONTAINER else build_plan(require(self), layout)
