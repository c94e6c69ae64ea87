"""`broker.hosts` under mocks: one Docker provider per node, every resource of that node on it, the same ports
on each host's address with Erlang distribution, /etc/hosts entries for the peers and the app, the topology
after every node, and the secrets still secret."""

from __future__ import annotations

import json
from urllib.parse import quote

from infra.definition.load import load_definition, require
from infra.plan.plan import build_plan
from infra.plan.services import broker_ports
from infra.pulumi import preview, program
from infra.pulumi.preview import run
from infra.render import files as render
from tests.support.stacks import TEST_SECRETS
from tests.unit.program.test_program import PROJECT, clean_config, is_secret, unwrap, with_config  # noqa: F401

HOSTS = [
    ("ssh://deploy@10.0.0.11", "10.0.0.11", ["-i", "/keys/deploy", "-o", "StrictHostKeyChecking=yes"]),
    ("tcp://10.0.0.12:2376", "10.0.0.12", []),
    ("unix:///run/docker-3.sock", "10.0.0.13", []),
]
ADDRESSES = {f"rabbitmq-{i}": address for i, (_, address, _) in enumerate(HOSTS, start=1)}


def on_hosts(tmp_path, stack: str = "dev"):
    overlay = tmp_path / "hosts.yaml"
    overlay.write_text(
        "broker:\n  nodes: 3\n  hosts:\n"
        + "".join(
            f"    - {json.dumps({'docker': docker, 'address': address, 'ssh_opts': opts})}\n"
            for docker, address, opts in HOSTS
        )
    )
    definition = require(load_definition(stack=stack, overlays=(overlay,)))
    with_config(TEST_SECRETS)
    monitor, _ = run(lambda: program.main(definition), stack=stack)
    return monitor, build_plan(definition)


def entries(inputs) -> dict[str, str]:
    return {h["host"]: h["ip"] for h in inputs.get("hosts") or []}


def test_one_docker_provider_per_node_with_its_host_and_ssh_options(tmp_path):
    monitor, _ = on_hosts(tmp_path)
    providers = sorted(monitor.of_type("pulumi:providers:docker"), key=lambda p: p.name)
    assert [p.name for p in providers] == ["broker-1-docker", "broker-2-docker", "broker-3-docker"]
    for provider, (docker, _, opts) in zip(providers, HOSTS):
        assert provider.inputs["host"] == docker and provider.parent_name == "broker"
        # the engine receives a provider's list-valued configuration JSON-encoded
        assert json.loads(provider.inputs.get("sshOpts", "[]")) == opts


def test_every_resource_of_a_node_is_on_its_own_host(tmp_path):
    monitor, _ = on_hosts(tmp_path)
    for i in (1, 2, 3):
        provider = monitor.named(f"broker-{i}-docker").urn
        for role in ("network", "image", "data", "container"):
            resource = monitor.named(f"broker-{i}-{role}")
            assert resource.request.provider.startswith(provider + "::"), (i, role)
    # one after another across the hosts: node i is created once node i - 1 is healthy
    for i in (2, 3):
        previous = monitor.named(f"broker-{i - 1}-container").urn
        assert previous in monitor.named(f"broker-{i}-container").request.dependencies
    network = monitor.named("broker-2-network").inputs["name"]
    assert network == f"{PROJECT}-dev-rabbitmq-2-net"
    assert monitor.named("broker-2-container").inputs["networksAdvanced"][0]["name"] == network
    # the app stays on the default Docker host, on a network of its own
    assert not monitor.named("app-web").request.provider and not monitor.named("app-network").request.provider
    assert monitor.named("app-network").inputs["name"] == f"{PROJECT}-dev-net"
    assert monitor.named("app-web").inputs["networksAdvanced"][0]["name"] == f"{PROJECT}-dev-net"
    assert not any(r.name in ("broker-network", "broker-image") for r in monitor.registered)


def test_each_node_publishes_the_same_ports_with_erlang_distribution_on_its_address(tmp_path):
    monitor, plan = on_hosts(tmp_path)
    for i, (_, address, _) in enumerate(HOSTS, start=1):
        inputs = monitor.named(f"broker-{i}-container").inputs
        ports = {(p["internal"], p["external"], p["ip"]) for p in inputs["ports"]}
        assert ports == {(p, p, address) for p in [*broker_ports(plan.broker), 4369, 25672]}
        assert inputs["envs"] == ["RABBITMQ_DIST_PORT=25672"]
        assert inputs["hostname"] == f"rabbitmq-{i}" and inputs["name"] == f"{PROJECT}-dev-rabbitmq-{i}"
        assert inputs["volumes"] == [
            {"containerPath": "/var/lib/rabbitmq", "volumeName": f"{PROJECT}-dev-rabbitmq-{i}-data"}
        ]
        assert monitor.named(f"broker-{i}-data").request.retainOnDelete
        assert entries(inputs) == {h: a for h, a in ADDRESSES.items() if h != f"rabbitmq-{i}"}
        # the peer list names the same nodes as on one Docker host
        conf = unwrap({u["file"]: u for u in unwrap(inputs["uploads"])}["/etc/rabbitmq/rabbitmq.conf"]["content"])
        assert conf == render.config_files(plan)["rabbitmq.conf"]
        assert "cluster_formation.classic_config.nodes.3 = rabbit@rabbitmq-3" in conf


def test_the_app_reaches_every_node_by_name_at_its_address(tmp_path):
    monitor, plan = on_hosts(tmp_path)
    for spec in plan.services:
        inputs = monitor.named(f"app-{spec.name}").inputs
        if not spec.runs_app:
            assert not entries(inputs)
            continue
        assert entries(inputs) == ADDRESSES
        env = unwrap(inputs["envs"])
        url = next(e for e in env if e.startswith("CELERY_BROKER_URL="))
        assert [u.split("@")[1].split("/")[0] for u in url.split(";")] == [f"rabbitmq-{i}:5672" for i in (1, 2, 3)]
    password = quote(TEST_SECRETS["rabbitmqWebPassword"], safe="")
    assert unwrap(monitor.outputs["amqp_url"]) == ";".join(
        f"amqp://web:{password}@{address}:5672/%2F" for address in ADDRESSES.values()
    )


def test_the_topology_reaches_the_first_node_at_its_address_after_every_node(tmp_path):
    monitor, _ = on_hosts(tmp_path)
    provider = monitor.named("broker-api")
    assert provider.inputs["endpoint"] == "http://10.0.0.11:15672"
    assert {monitor.named(f"broker-{i}-container").urn for i in (1, 2, 3)} <= set(provider.request.dependencies)
    assert monitor.outputs["management_url"] == "http://10.0.0.11:15672"


def test_secrets_stay_secret_on_every_host(tmp_path):
    monitor, _ = on_hosts(tmp_path)
    for i in (1, 2, 3):
        uploads = monitor.named(f"broker-{i}-container").inputs["uploads"]
        assert is_secret(uploads)
        cookie = {u["file"]: u for u in unwrap(uploads)}["/run/secrets/rabbitmq/erlang.cookie"]
        assert unwrap(cookie["content"]) == TEST_SECRETS["rabbitmqErlangCookie"]
    assert is_secret(monitor.named("app-web").inputs["envs"]) and is_secret(monitor.outputs["amqp_url"])
    assert is_secret(monitor.named("broker-api").inputs["password"])


def test_with_tls_the_certificate_names_the_nodes_and_their_addresses(tmp_path):
    monitor, plan = on_hosts(tmp_path, stack="prod")
    csr = monitor.named("tls-server-csr").inputs
    assert {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"} <= set(csr["dnsNames"])
    assert set(ADDRESSES.values()) <= set(csr["ipAddresses"])
    assert monitor.named("broker-api").inputs["endpoint"] == f"https://10.0.0.11:{plan.broker.tls.management_port}"


def test_plan_shows_each_nodes_provider(tmp_path):
    monitor, _ = on_hosts(tmp_path)
    shown = preview.Preview("dev", monitor.registered, {}, [])
    lines = preview.tree(shown).splitlines()
    # each resource's line, then its key inputs' line
    detail = {
        line.split("─ ", 1)[1].split()[0]: lines[n + 1] for n, line in enumerate(lines[:-1]) if "─ broker-" in line
    }
    assert "host=ssh://deploy@10.0.0.11" in detail["broker-1-docker"]
    assert "StrictHostKeyChecking=yes" in detail["broker-1-docker"]
    for role in ("network", "image", "data", "container"):
        assert "provider=broker-2-docker" in detail[f"broker-2-{role}"], role
    assert "hosts=[rabbitmq-1=10.0.0.11, rabbitmq-3=10.0.0.13]" in detail["broker-2-container"]
    resources = {r["name"]: r for r in preview.as_json(shown)["resources"]}
    assert resources["broker-3-container"]["provider"] == "broker-3-docker" and "provider" not in resources["app-web"]
