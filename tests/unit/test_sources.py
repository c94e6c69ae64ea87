"""Loading YAML with the line of every key, and the overlay merge rules docs/stack-definition.md documents."""

from pathlib import Path

import pytest

from infra.definition.findings import DefinitionError
from infra.definition.sources import load_file, load_stack, merge


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_key_knows_its_file_and_line(tmp_path):
    source = load_file(write(tmp_path, "a.yaml", "a:\n  b: 1\n  c:\n    - x\n    - y\n"))
    assert source.where(("a", "b"))[1] == 2
    assert source.where(("a", "c", 1))[1] == 5
    assert source.where(("a", "missing"))[1] == 1  # a missing key points at its parent


def test_overlay_merges_mappings_replaces_lists_and_null_removes(tmp_path):
    base = load_file(
        write(
            tmp_path,
            "base.yaml",
            "broker:\n  plugins: [a, b]\n  log: {level: info, file: x}\n"
            "queues:\n  keep: {ttl: 2h}\n  drop: {ttl: 1h}\n",
        )
    )
    over = load_file(
        write(
            tmp_path,
            "over.yaml",
            "broker:\n  plugins: [c]\n  log: {level: debug}\nqueues:\n  drop: ~\n  keep: {max: 3}\n",
        )
    )
    merged = merge(base, over)
    assert merged.data == {
        "broker": {"plugins": ["c"], "log": {"level": "debug", "file": "x"}},
        "queues": {"keep": {"ttl": "2h", "max": 3}},
    }
    assert merged.where(("broker", "log", "level")) == (str(tmp_path / "over.yaml"), 3)
    assert merged.where(("broker", "log", "file")) == (str(tmp_path / "base.yaml"), 3)
    assert merged.where(("broker", "plugins", 0))[0].endswith("over.yaml")
    assert base.data["queues"]["drop"] == {"ttl": "1h"}  # inputs untouched


def test_stack_is_base_then_env_then_overlays(tmp_path):
    write(tmp_path, "base.yaml", "a: 1\nb: 1\nc: 1\n")
    write(tmp_path, "dev.yaml", "b: 2\nc: 2\n")
    extra = write(tmp_path, "extra.yaml", "c: 3\n")
    assert load_stack(tmp_path, "dev", (extra,)).data == {"a": 1, "b": 2, "c": 3}


def test_unknown_stack_names_the_known_ones(tmp_path):
    write(tmp_path, "base.yaml", "a: 1\n")
    write(tmp_path, "dev.yaml", "a: 2\n")
    with pytest.raises(DefinitionError, match="no stack 'prd': expected one of dev"):
        load_stack(tmp_path, "prd")


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("a: 1\na: 2\n", 2, "duplicate key 'a' (first at line 1)"),
        ("a: [1, 2\n", 2, "not valid YAML"),
        ("- 1\n- 2\n", 1, "expected a mapping at the top of the file"),
        ("yes: 1\n", 1, "key True must be a string (quote it)"),
        ("", 1, "the file is empty"),
    ],
)
def test_malformed_files(tmp_path, text, line, message):
    with pytest.raises(DefinitionError) as caught:
        load_file(write(tmp_path, "bad.yaml", text))
    finding = caught.value.findings[0]
    assert finding.line == line and message in finding.message


def test_unreadable_file(tmp_path):
    with pytest.raises(DefinitionError, match="cannot read the file"):
        load_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a: \xff\xfe\n", "not UTF-8 text"),
        (b"a: \x07bell\n", "not valid YAML"),
        (b"a: &x [*x]\n", "nested too deeply"),  # a recursive alias
    ],
)
def test_hostile_files_are_findings_not_tracebacks(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(DefinitionError, match=message):
        load_file(path)


def test_yaml_merge_keys_are_read(tmp_path):
    source = load_file(write(tmp_path, "m.yaml", "base: &q {type: quorum, ttl: 2h}\nqueue: {<<: *q, ttl: 1h}\n"))
    assert source.data["queue"] == {"type": "quorum", "ttl": "1h"}


def test_a_key_missing_after_the_overlay_points_at_the_last_file(tmp_path):
    merged = merge(load_file(write(tmp_path, "base.yaml", "a: 1\n")), load_file(write(tmp_path, "env.yaml", "b: 2\n")))
    assert merged.where(("environment",)) == (str(tmp_path / "env.yaml"), 1)
