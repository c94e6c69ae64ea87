"""The CI preview workflow: valid against GitHub's schema, least privilege, and calling only commands and
flags that exist, for every shipped stack."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from infra.cli.main import parser
from infra.pulumi import deploy

WORKFLOW = Path(".github/workflows/preview.yml")
# every deployed stack; `local` is the laptop stack of docker-compose, not previewed
STACKS = sorted(
    p.stem
    for p in Path("stacks").glob("*.yaml")
    if p.stem not in ("base", "local") and not p.stem.startswith("Pulumi.")
)


def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(job: str) -> list[dict]:
    return workflow()["jobs"][job]["steps"]


def test_the_workflow_validates_against_githubs_schema():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_least_privilege_and_pull_requests_only():
    data = workflow()
    assert data["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert all("permissions" not in job for job in data["jobs"].values())  # no job widens them
    assert list(data["on"]) == ["pull_request"]  # not pull_request_target: fork code never sees secrets


def test_every_stack_is_classified_and_previewed():
    preview = workflow()["jobs"]["pulumi-preview"]
    assert sorted(preview["strategy"]["matrix"]["stack"]) == STACKS
    (loop,) = [s["run"] for s in steps("classify") if "-m infra diff" in s.get("run", "")]
    (stacks,) = re.findall(r"for stack in ([\w ]+); do", loop)
    assert sorted(stacks.split()) == STACKS


def test_infra_commands_in_the_workflow_parse_with_the_real_cli():
    runs = [s["run"] for job in workflow()["jobs"] for s in steps(job) if "-m infra" in s.get("run", "")]
    commands = [line.strip() for run in runs for line in run.splitlines() if "-m infra" in line]
    assert len(commands) == 2  # diff and validate
    for line in commands:
        line = line.replace("${{ matrix.stack }}", "dev").replace("$allow", "--allow-data-loss")
        argv = shlex.split(line.split("-m infra", 1)[1].split(">>")[0].replace('"', ""))
        argv = [re.sub(r"\$\w+", "x", a) for a in argv]
        args = parser().parse_args(argv)  # exits 64 on an unknown command or flag
        assert args.command in ("diff", "validate")
        if args.command == "diff":
            assert args.format == "markdown"


def test_pulumi_preview_posts_a_diff_with_the_pinned_cli_and_no_cloud_account():
    (action,) = [s for s in steps("pulumi-preview") if s.get("uses", "").startswith("pulumi/actions@")]
    w = action["with"]
    assert (w["command"], w["diff"], w["comment-on-pr"]) == ("preview", True, True)
    assert w["stack-name"] == "${{ matrix.stack }}" and w["secrets-provider"] == "passphrase"
    assert str(w["pulumi-version"]) == deploy.PULUMI_VERSION
    assert "secrets.PULUMI_BACKEND_URL" in w["cloud-url"] and "file://" in w["cloud-url"]
    assert "secret: true" in w["config-map"]


def test_no_untrusted_pull_request_text_is_interpolated_into_a_script():
    for job in workflow()["jobs"]:
        for step in steps(job):
            run = step.get("run", "")
            assert not re.search(r"\$\{\{\s*github\.(head_ref|event\.pull_request\.(title|body|head))", run), step
            assert "${{ secrets." not in run  # secrets reach scripts through env only
