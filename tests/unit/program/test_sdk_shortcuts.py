"""infra/pulumi/sdk_shortcuts.py: `plan` prints the same with and without the shortcuts, which touch only the
mock run and apply only to the SDK version they were read against."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pulumi.log
import pulumi.runtime.resource as sdk_resource
import pulumi.runtime.resource_cycle_breaker as cycle_breaker
import pytest

from infra.definition.load import load_definition, require
from infra.pulumi import preview, sdk_shortcuts
from tests.support import stackgen

STACKS = Path("stacks")


def printed(definition, stack: str, shortcuts: bool) -> tuple[str, str]:
    result = preview.preview(definition, stack, STACKS, shortcuts=shortcuts)
    return preview.tree(result), json.dumps(preview.as_json(result), indent=2)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_plan_prints_the_same_with_and_without_the_shortcuts(stack):
    definition = require(load_definition(stack=stack))
    assert printed(definition, stack, True) == printed(definition, stack, False)


def test_a_generated_topology_plans_the_same_with_and_without_the_shortcuts(tmp_path):
    # Several vhosts, and services depending on every topology resource: the cycle breaker's big sets.
    definition = require(load_definition(file=stackgen.write(tmp_path / "q60.yaml", stackgen.generate(7, 60, 3))))
    assert printed(definition, "staging", True) == printed(definition, "staging", False)


def test_the_shortcuts_are_undone_after_the_run():
    originals = (sdk_resource._get_stack_trace, cycle_breaker._add_dep, pulumi.log.debug)
    assert gc.isenabled()
    with sdk_shortcuts.applied():
        assert sdk_resource._get_stack_trace is not originals[0] and not gc.isenabled()
    assert (sdk_resource._get_stack_trace, cycle_breaker._add_dep, pulumi.log.debug) == originals
    assert gc.isenabled()


def test_the_shortcuts_apply_to_the_pinned_sdk():
    # Fails on a Pulumi upgrade on purpose: read the three functions again before bumping WRITTEN_FOR.
    pinned = next(
        line.split("==")[1].strip()
        for line in Path("requirements.txt").read_text().splitlines()
        if line.startswith("pulumi==")
    )
    assert sdk_shortcuts.WRITTEN_FOR == pinned and sdk_shortcuts.applicable()
