"""The command line as users run it: `python -m infra ...` in a subprocess, exit codes, output."""

import subprocess
import sys
from pathlib import Path

from infra.cli.doc_blocks import BLOCKS


def infra(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra", *args], capture_output=True, text=True, timeout=60)


def test_validate_shipped_stack_exits_0():
    result = infra("validate", "--stack", "prod")
    assert result.returncode == 0, result.stderr
    assert "stacks/base.yaml + stacks/prod.yaml: 0 errors, 0 warnings" in result.stderr


def test_validate_broken_file_exits_2_with_file_line_and_key():
    result = infra("validate", "--file", "tests/data/invalid/ttl-not-a-duration.yaml")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "tests/data/invalid/ttl-not-a-duration.yaml:17: "
        "vhosts.main.queues.default.ttl: expected a duration such as 90s, 30m or 2h"
    )


def test_unknown_stack_exits_2_and_names_the_known_ones():
    result = infra("validate", "--stack", "prd")
    assert result.returncode == 2
    assert "no stack 'prd': expected one of dev, local, prod, staging" in result.stderr


def test_wrong_command_line_exits_64():
    assert infra("validate").returncode == 64
    assert infra("render", "--stack", "dev").returncode == 64  # --out is required
    assert infra("frobnicate").returncode == 64


def test_the_docs_field_reference_is_the_generated_one():
    # every generated block is checked current in test_docs_current.py; this one also equals `infra docs`
    page = Path("docs/reference.md").read_text()
    assert "<!-- reference:start -->\n" + infra("docs").stdout + "<!-- reference:end -->" in page
    assert infra("docs").stdout == BLOCKS["reference"]()
