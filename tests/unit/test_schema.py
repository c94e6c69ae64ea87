"""schema/stack.schema.json: generated from the model, current, accepting every shipped stack and refusing
every case the typed walk refuses (types, enums, units, unknown keys); the rules across objects are validate's."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from infra.definition.build import build
from infra.definition.findings import DefinitionError
from infra.definition.model import StackDefinition
from infra.definition.schema import schema_text
from infra.definition.sources import load_single
from infra.paths import STACK_SCHEMA, STACKS_DIR

STACK_FILES = sorted(p for p in STACKS_DIR.glob("*.yaml") if not p.name.startswith("Pulumi."))
MODELINE = "# yaml-language-server: $schema=../schema/stack.schema.json"


def validator():
    schema = json.loads(STACK_SCHEMA.read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def error_paths(errors) -> list[tuple]:
    """Where each error and each of its alternatives' errors (anyOf) points."""
    out = []
    for error in errors:
        out.append(tuple(error.absolute_path))
        out += error_paths(error.context or ())
    return out


def test_the_committed_schema_is_the_generated_one():
    assert STACK_SCHEMA.read_text() == schema_text(), "run: .venv/bin/python -m infra.cli.regenerate"


@pytest.mark.parametrize(
    "path", STACK_FILES + [Path("tests/data/valid/minimal.yaml"), Path("tests/data/valid/behaviour.yaml")], ids=str
)
def test_shipped_and_valid_stacks_pass_the_schema(path):
    errors = list(validator().iter_errors(yaml.safe_load(path.read_text())))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("path", STACK_FILES, ids=str)
def test_every_shipped_stack_names_the_schema_for_its_editor(path):
    assert path.read_text().splitlines()[0] == MODELINE


def walk_refusals() -> list[tuple[Path, list]]:
    """The invalid cases the typed walk refuses (not a missing key: every file may be an overlay)."""
    cases = []
    for path in sorted(Path("tests/data/invalid").glob("*.yaml")):
        try:
            source = load_single(path, ())
        except DefinitionError:  # not YAML, a duplicate key, an empty file: before any schema
            continue
        _, findings = build(StackDefinition, source)
        refused = [f for f in findings if not f.message.startswith("missing required key")]
        if refused:
            cases.append((path, source.data, refused))
    return cases


CASES = walk_refusals()


def test_the_walk_refuses_the_type_enum_and_unknown_key_cases():
    """The cases below are the ones the schema must also refuse: they are not an empty set."""
    names = {path.stem for path, _, _ in CASES}
    assert {
        "queue-type-typo",
        "queue-key-typo",
        "top-level-key-typo",
        "ttl-not-a-duration",
        "port-out-of-range",
        "plaintext-password",
        "reserved-amq-name",
    } <= names


@pytest.mark.parametrize("path, data, findings", CASES, ids=[str(c[0]) for c in CASES])
def test_the_schema_refuses_what_the_walk_refuses_at_the_same_key(path, data, findings):
    paths = error_paths(validator().iter_errors(data))
    for finding in findings:
        # At the key itself, or at the mapping holding it (an unknown key, a refused name).
        assert any(p in (finding.path, finding.path[:-1]) for p in paths), (finding, paths)


def test_an_overlay_may_remove_a_key_and_a_file_may_leave_out_required_keys():
    assert validator().is_valid({"broker": {"log": None}, "vhosts": {"lol": {"queues": {"old": None}}}})
