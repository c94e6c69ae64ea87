"""A three-node stack under mocks: three broker containers, each with its own volume, host name and ports,
the shared Erlang cookie as a secret upload, the topology only after all three, and failover URLs for the app."""

from __future__ import annotations

from urllib.parse import quote

from infra.definition.load import load_definition, require
from infra.plan.plan import build_plan
from infra.pulumi import program
from infra.pulumi.preview import run
from infra.render import files as render
from tests.support.stacks import TEST_SECRETS
from tests.unit.program.test_program import PROJECT, clean_config, is_secret, unwrap, with_config  # noqa: F401


def three_nodes(tmp_path, stack: str = "dev"):
    overlay = tmp_path / "cluster.yaml"
    overlay.write_text("broker: {nodes: 3}\n")
    definition = require(load_definition(stack=stack, overlays=(overlay,)))
    with_config(TEST_SECRETS)
    monitor, _ = run(lambda: program.main(definition), stack=stack)
    return monitor, build_plan(definition)


def test_three_broker_containers_each_with_its_volume_host_and_ports(tmp_path):
    monitor, plan = three_nodes(tmp_path)
    b = plan.broker
    for i in (1, 2, 3):
        inputs = monitor.named(f"broker-{i}-container").inputs
        assert inputs["name"] == f"{PROJECT}-dev-rabbitmq-{i}" and inputs["hostname"] == f"rabbitmq-{i}"
        assert inputs["networksAdvanced"][0]["aliases"] == [f"rabbitmq-{i}"]
        assert inputs["volumes"] == [
            {"containerPath": "/var/lib/rabbitmq", "volumeName": f"{PROJECT}-dev-rabbitmq-{i}-data"}
        ]
        assert monitor.named(f"broker-{i}-data").request.retainOnDelete
        ports = {(p["internal"], p["external"]) for p in inputs["ports"]}
        assert ports == {(p, p + i - 1) for p in (b.amqp_port, b.management_port, b.prometheus_port)}
        assert inputs["wait"] is True
        uploads = {u["file"]: u for u in unwrap(inputs["uploads"])}
        assert unwrap(uploads["/run/secrets/rabbitmq/erlang.cookie"]["content"]) == TEST_SECRETS["rabbitmqErlangCookie"]
        assert uploads["/run/secrets/rabbitmq/erlang.cookie"]["permissions"] == "0400"
        assert (
            "/run/secrets/rabbitmq/boot-definitions.json" in uploads and "/etc/rabbitmq/definitions.json" not in uploads
        )
        conf = unwrap(uploads["/etc/rabbitmq/rabbitmq.conf"]["content"])
        assert conf == render.config_files(plan)["rabbitmq.conf"]
        assert "cluster_formation.classic_config.nodes.3 = rabbit@rabbitmq-3" in conf
        assert inputs["entrypoints"][:2] == ["sh", "-c"] and ".erlang.cookie" in inputs["entrypoints"][2]
    assert is_secret(monitor.named("broker-1-container").inputs["uploads"])
    assert not any(r.name in ("broker-container", "broker-data") for r in monitor.registered)


def test_the_topology_waits_for_every_node(tmp_path):
    monitor, _ = three_nodes(tmp_path)
    provider = monitor.named("broker-api")
    assert {monitor.named(f"broker-{i}-container").urn for i in (1, 2, 3)} <= set(provider.request.dependencies)


def test_each_node_is_created_once_the_one_before_it_is_healthy(tmp_path):
    monitor, _ = three_nodes(tmp_path)
    containers = [monitor.named(f"broker-{i}-container") for i in (1, 2, 3)]
    assert not {c.urn for c in containers} & set(containers[0].request.dependencies)
    for before, node in zip(containers, containers[1:]):
        assert before.urn in node.request.dependencies and node.inputs["wait"] is True


def test_the_app_gets_every_nodes_url(tmp_path):
    monitor, plan = three_nodes(tmp_path)
    for spec in plan.services:
        if spec.runs_app:
            user = spec.name  # each service as its own user
            key = "rabbitmq" + "".join(part.capitalize() for part in user.split("-")) + "Password"
            password = quote(TEST_SECRETS[key], safe="")
            expected = ";".join(f"amqp://{user}:{password}@rabbitmq-{i}:5672/%2F" for i in (1, 2, 3))
            env = unwrap(monitor.named(f"app-{spec.name}").inputs["envs"])
            assert f"CELERY_BROKER_URL={expected}" in env, spec.name
    password = quote(TEST_SECRETS["rabbitmqWebPassword"], safe="")
    assert unwrap(monitor.outputs["amqp_url"]) == ";".join(
        f"amqp://web:{password}@127.0.0.1:{5672 + i}/%2F" for i in range(3)
    )
