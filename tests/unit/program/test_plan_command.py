"""`python -m infra plan`: the program under mocks, offline, as a tree and as JSON, secrets masked."""

from __future__ import annotations

import json
import shutil

from infra.cli import main as cli
from infra.definition.load import load_definition, require
from infra.plan import plan as planning
from infra.plan import stack as stacks
from infra.plan.plan import CONTAINER, NodeLayout, build_plan
from infra.plan.stack import Stack
from infra.pulumi import preview, program
from infra.pulumi.preview import PLACEHOLDER
from tests.unit.program.test_program import expected_graph
from tests.unit.test_cli import infra


def test_plan_prints_the_resource_tree_with_secrets_masked():
    result = infra("plan", "--stack", "dev")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[0] == "dev (pulumi:pulumi:Stack)"
    assert any(l.startswith("├─ broker  rabbitmq-celery:broker:Broker") for l in lines)
    assert "   ├─ topology-queue-root-player_sync  rabbitmq:index/queue:Queue" in out  # under topology, the last root
    assert "name=admin  tags=[administrator]  password=[secret]" in out
    assert "ports=[127.0.0.1:8000->8000]" in out and "amqp_url: [secret]" in out
    assert PLACEHOLDER not in out
    # then the queue and pool summary of the plan
    assert any(l.split()[:4] == ["/", "player_sync", "quorum", "sync"] for l in lines)
    assert "riotApiKey is not set" in result.stderr and "pulumi config set --secret riotApiKey" in result.stderr


def test_plan_json_lists_exactly_the_resources_of_the_program():
    result = infra("plan", "--stack", "staging", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    plan = build_plan(require(load_definition(stack="staging")))
    # nothing is set in stacks/Pulumi.staging.yaml, so every generated secret is a RandomPassword
    graph = expected_graph(plan, "staging") | {
        ("random:index/randomPassword:RandomPassword", f"secret-{ref.secret}", "")
        for _, ref in plan.all_secrets()
        if ref.generate
    }
    assert {(r["type"], r["name"], r["parent"]) for r in data["resources"]} == graph
    users = [r for r in data["resources"] if r["type"] == "rabbitmq:index/user:User"]
    assert users and all(u["inputs"]["password"] == "[secret]" for u in users)
    assert data["outputs"]["amqp_url"] == "[secret]"
    web = next(r for r in data["resources"] if r["name"] == "app-web")
    assert web["inputs"]["envs"] == "[secret]" and "topology" not in web["depends_on"]
    assert "topology-user-web" in web["depends_on"]
    assert PLACEHOLDER not in result.stdout


def test_secrets_set_in_the_stack_config_are_not_generated(tmp_path):
    stacks = tmp_path / "stacks"
    shutil.copytree("stacks", stacks)
    (stacks / "Pulumi.dev.yaml").write_text(
        "config:\n  rabbitmq-celery:riotApiKey:\n    secure: v1:AAAA\n"
        "  rabbitmq-celery:rabbitmqAdminPassword:\n    secure: v1:BBBB\n"
    )
    result = infra("plan", "--stack", "dev", "--json", "--stacks-dir", str(stacks))
    assert result.returncode == 0, result.stderr
    assert "riotApiKey is not set" not in result.stderr
    generated = {
        r["name"]
        for r in json.loads(result.stdout)["resources"]
        if r["type"] == "random:index/randomPassword:RandomPassword"
    }
    assert generated == {
        "secret-rabbitmqMonitorPassword",
        "secret-djangoSecretKey",
        *(
            f"secret-{key}"
            for key in (
                "rabbitmqWebPassword",
                "rabbitmqBeatPassword",
                "rabbitmqWorkerSyncPassword",
                "rabbitmqWorkerMatchesPassword",
                "rabbitmqWorkerBackgroundPassword",
            )
        ),
    }


def test_plan_of_an_invalid_definition_exits_2_and_runs_nothing():
    result = infra("plan", "--file", "tests/data/invalid/ttl-not-a-duration.yaml")
    assert result.returncode == 2 and result.stdout == ""


def test_plan_without_the_apps_dockerfile_says_so(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("app: {build: no-such-dir}\n")
    result = infra("plan", "--stack", "dev", "--overlay", str(overlay))
    assert result.returncode == 2, result.stderr
    assert "app.build: " in result.stderr and "no-such-dir/Dockerfile does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_plan_loads_the_stack_and_builds_its_plan_once(monkeypatch, capsys):
    """The plan the command prints is the one the program ran on: built once, handed down, and the
    program's CA directory is passed to it rather than swapped on the module."""
    built, ran_with = [], []
    real_main, ca_dir = program.main, program.CA_DIR

    def counted(*args, **kwargs):
        built.append(build_plan(*args, **kwargs))
        return built[-1]

    def main(definition=None, plan=None, ca_dir=None):
        ran_with.append((plan, ca_dir, program.CA_DIR))
        real_main(definition, plan, ca_dir)

    for module in (planning, stacks, program, preview):  # wherever it is called from
        monkeypatch.setattr(module, "build_plan", counted)
    monkeypatch.setattr(program, "main", main)
    assert cli.main(["plan", "--stack", "prod"]) == 0
    assert "(pulumi:pulumi:Stack)" in capsys.readouterr().out
    [(plan, scratch, module_ca_dir)] = ran_with
    assert built == [plan] and scratch != ca_dir and module_ca_dir == ca_dir


def test_a_loaded_stack_keeps_its_plan_and_plans_another_layout_apart():
    stack = Stack.load(stack="dev")
    assert stack.ok and stack.plan is stack.plan is stack.plan_for(CONTAINER)
    host = stack.plan_for(NodeLayout(listen_on_bind=True, config_dir="/srv/rmq"))
    assert (host.broker.listen_ip, stack.plan.broker.listen_ip) == ("127.0.0.1", "0.0.0.0")
