"""The whole program under mocks: broker container, topology behind it, secrets, outputs."""

from __future__ import annotations

import json

import pulumi
import pytest
from pulumi.runtime import rpc

from infra.definition.load import load_definition, require
from infra.plan.plan import build_plan
from infra.plan.services import broker_ports
from infra.pulumi import program
from infra.pulumi.preview import run
from infra.pulumi.stack_config import MissingSecret
from infra.render import files as render
from tests.support.stacks import TEST_SECRETS

PROJECT = "rabbitmq-celery"


def with_config(values: dict[str, str]):
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:{k}": v for k, v in values.items()}, secret_keys=[f"{PROJECT}:{k}" for k in values]
    )


def is_secret(value) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap(value):
    return value["value"] if is_secret(value) else value


@pytest.fixture(autouse=True)
def clean_config():
    yield
    pulumi.runtime.set_all_config({})


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_broker_container_gets_the_rendered_files_and_waits_healthy(stack):
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack=stack)
    plan = build_plan(require(load_definition(stack=stack)))
    container = monitor.named("broker-container")
    inputs = container.inputs
    assert inputs["name"] == f"{PROJECT}-{stack}-rabbitmq" and inputs["hostname"] == "rabbitmq"
    assert inputs["wait"] is True and inputs["restart"] == "unless-stopped"
    assert container.request.deleteBeforeReplace
    check = inputs["healthcheck"]  # RabbitMQ's check_running, paced: every 2 s until it passed, then every 10 s
    assert check["tests"][0] == "CMD-SHELL" and "rabbitmq-diagnostics -q check_running" in check["tests"][1]
    assert (check["interval"], check["retries"]) == ("2s", 30) and "-lt 10 ]" in check["tests"][1]
    # definitions.json is secret, so the whole uploads input travels as one secret
    assert is_secret(inputs["uploads"])
    uploads = {u["file"]: u for u in unwrap(inputs["uploads"])}
    expected = render.render_files(plan, TEST_SECRETS)
    for name in ("rabbitmq.conf", "enabled_plugins"):
        assert unwrap(uploads[f"/etc/rabbitmq/{name}"]["content"]) == expected[name], name
    # the broker boots knowing its admin alone; the Topology component creates the rest through the API
    # the private file is staged root-only and installed for the rabbitmq user by the entry point (the docker
    # provider uploads everything as root)
    staged = "/run/secrets/rabbitmq/definitions.json"
    boot = json.loads(unwrap(uploads[staged]["content"]))
    assert [u["name"] for u in boot["users"]] == ["admin"] and "administrator" in boot["users"][0]["tags"]
    assert not any(boot[k] for k in ("vhosts", "permissions", "queues", "exchanges", "bindings", "policies"))
    assert unwrap(uploads[staged]["content"]) == render.boot_definitions_json(plan, TEST_SECRETS)
    assert uploads[staged]["permissions"] == "0400" and "/etc/rabbitmq/definitions.json" not in uploads
    sh, flag, script = inputs["entrypoints"]
    assert (sh, flag) == ("sh", "-c") and script.endswith("exec docker-entrypoint.sh rabbitmq-server")
    assert f"install -D -o rabbitmq -g rabbitmq -m 0600 {staged} /etc/rabbitmq/definitions.json" in script
    ports = {(p["internal"], p["external"], p["ip"]) for p in inputs["ports"]}
    b = plan.broker
    assert ports == {(p, p, "127.0.0.1") for p in broker_ports(b)}  # with TLS: 5671, 15671 and 15692 only
    assert {5671, 15671}.isdisjoint(broker_ports(b)) if b.tls is None else {5672, 15672}.isdisjoint(broker_ports(b))
    assert inputs["volumes"] == [
        {"containerPath": "/var/lib/rabbitmq", "volumeName": f"{PROJECT}-{stack}-rabbitmq-data"}
    ]
    assert monitor.named("broker-data").request.retainOnDelete
    assert all(
        monitor.named(n).parent_name == "broker"
        for n in ("broker-network", "broker-data", "broker-image", "broker-container")
    )


def test_topology_provider_uses_the_admin_secret_after_the_container():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="dev")
    provider = monitor.named("broker-api")
    assert provider.inputs["endpoint"] == "http://127.0.0.1:15672" and provider.inputs["username"] == "admin"
    assert is_secret(provider.inputs["password"])
    assert unwrap(provider.inputs["password"]) == TEST_SECRETS["rabbitmqAdminPassword"]
    assert monitor.named("broker-container").urn in provider.request.dependencies


def test_unset_secrets_are_generated_as_random_passwords():
    with_config({"riotApiKey": TEST_SECRETS["riotApiKey"]})  # the one secret that is never generated
    monitor, _ = run(program.main, stack="dev")
    generated = {r.name for r in monitor.of_type("random:index/randomPassword:RandomPassword")}
    assert generated == {
        "secret-rabbitmqAdminPassword",
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
    assert all(is_secret(u.inputs["password"]) for u in monitor.of_type("rabbitmq:index/user:User"))


def test_a_secret_that_may_not_be_generated_must_be_set(tmp_path, monkeypatch):
    plan = build_plan(require(load_definition(file="tests/data/valid/behaviour.yaml")))
    from infra.pulumi.stack_config import passwords

    with pytest.raises(MissingSecret, match="pulumi config set --secret"):
        run(lambda: passwords(plan), stack="behaviour")


def test_no_plaintext_credential_in_any_registered_input():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="prod")
    for r in monitor.registered:
        plain = json.dumps({k: v for k, v in r.inputs.items()}, default=str)

        # secrets travel wrapped; strip them, and nothing of a password may be left
        def strip(value):
            if is_secret(value):
                return "[secret]"
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items()}
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value

        visible = json.dumps(strip(r.inputs), default=str)
        assert not any(s in visible for s in TEST_SECRETS.values()), (r.name, plain[:200])


def expected_graph(plan, stack: str) -> set[tuple[str, str, str]]:
    """(type, name, parent) of every resource the definition asks for, and nothing else."""
    from infra.pulumi.components.topology import slug

    t = plan.topology
    rmq = "rabbitmq:index/"
    graph = {
        ("rabbitmq-celery:broker:Broker", "broker", ""),
        ("docker:index/network:Network", "broker-network", "broker"),
        ("docker:index/volume:Volume", "broker-data", "broker"),
        ("docker:index/remoteImage:RemoteImage", "broker-image", "broker"),
        ("docker:index/container:Container", "broker-container", "broker"),
        ("pulumi:providers:rabbitmq", "broker-api", ""),
        ("rabbitmq-celery:broker:Topology", "topology", ""),
        ("rabbitmq-celery:app:Services", "app", ""),
        ("docker:index/image:Image", "app-image", "app"),
        ("docker:index/volume:Volume", "app-data", "app"),
    }
    if any(s.name == "postgres" for s in plan.services):
        graph |= {
            ("docker:index/volume:Volume", "app-postgres-data", "app"),
            ("docker:index/remoteImage:RemoteImage", "app-image-postgres-16", "app"),
        }
    graph |= {
        ("random:index/randomPassword:RandomPassword", f"secret-{ref.secret}", "")
        for _, ref in plan.all_secrets()
        if ref.generate and ref.secret not in TEST_SECRETS
    }
    if plan.broker.tls and plan.broker.tls.ca == "generate":
        tls = "tls:index/"
        graph |= {
            ("rabbitmq-celery:tls:Certificates", "tls", ""),
            (f"{tls}selfSignedCert:SelfSignedCert", "tls-ca", "tls"),
        }
        graph |= {(f"{tls}privateKey:PrivateKey", f"tls-{who}-key", "tls") for who in ("ca", "server", "client")}
        graph |= {(f"{tls}certRequest:CertRequest", f"tls-{who}-csr", "tls") for who in ("server", "client")}
        graph |= {(f"{tls}locallySignedCert:LocallySignedCert", f"tls-{who}", "tls") for who in ("server", "client")}
    graph |= {(f"{rmq}vHost:VHost", f"topology-vhost-{slug(v)}", "topology") for v, _ in t.vhosts}
    graph |= {(f"{rmq}user:User", f"topology-user-{slug(u.name)}", "topology") for u in t.users}
    graph |= {
        (f"{rmq}permissions:Permissions", f"topology-permissions-{slug(p.user, p.vhost)}", "topology")
        for p in t.permissions
    }
    graph |= {
        (f"{rmq}exchange:Exchange", f"topology-exchange-{slug(e.vhost, e.name)}", "topology") for e in t.exchanges
    }
    graph |= {(f"{rmq}queue:Queue", f"topology-queue-{slug(q.vhost, q.name)}", "topology") for q in t.queues}
    graph |= {
        (
            f"{rmq}binding:Binding",
            f"topology-binding-{slug(b.vhost, b.source, b.destination, b.routing_key)}",
            "topology",
        )
        for b in t.bindings
    }
    graph |= {(f"{rmq}policy:Policy", f"topology-policy-{slug(p.vhost, p.name)}", "topology") for p in t.policies}
    graph |= {("docker:index/container:Container", f"app-{s.name}", "app") for s in plan.services}
    graph |= {("docker:index/remoteImage:RemoteImage", "app-image-local", "app")}  # removes the stack's tag
    return graph


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_resource_graph_is_exactly_what_the_definition_asks_for(stack):
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack=stack)
    plan = build_plan(require(load_definition(stack=stack)))
    registered = [(r.type, r.name, r.parent_name) for r in monitor.registered]
    assert len(registered) == len(set(registered)), "a resource registered twice"
    assert set(registered) == expected_graph(plan, stack)
    # every queue of the definition, once, protected in prod only
    queues = monitor.of_type("rabbitmq:index/queue:Queue")
    assert sorted(q.inputs["name"] for q in queues) == sorted(q.name for q in plan.topology.queues)
    assert all(q.request.protect == (stack == "prod") for q in queues)


def test_a_topology_change_leaves_the_broker_container_as_it_was(tmp_path):
    """A TTL, a new queue or a new user changes no input of the broker container, so `pulumi up` updates the
    topology through the API and never replaces the node."""
    import shutil

    stacks = tmp_path / "stacks"
    shutil.copytree("stacks", stacks)
    with_config(TEST_SECRETS)

    def container_inputs():
        definition = require(load_definition(stack="dev", stacks_dir=stacks))
        monitor, _ = run(lambda: program.main(definition), stack="dev")
        return monitor.named("broker-container").inputs, monitor.of_type("rabbitmq:index/policy:Policy")

    before, policies_before = container_inputs()
    (stacks / "dev.yaml").write_text(
        (stacks / "dev.yaml").read_text()
        + """
vhosts:
  "/":
    queues:
      player_sync: {ttl: 1h}
      extra: {type: quorum, parking: true}
users:
  reader:
    password: {secret: rabbitmqMonitorPassword}
    permissions: {"/": monitoring}
"""
    )
    after, policies_after = container_inputs()
    assert after == before
    ttl = {p.inputs["name"]: p.inputs["policy"]["definition"].get("message-ttl") for p in policies_after}
    assert ttl["queue.player_sync"] == str(3600 * 1000)
