"""The Topology component under mocks: every object of the plan exactly once, with the inputs that make
the broker hold what definitions.json holds."""

from __future__ import annotations

import json

import pulumi
import pulumi_rabbitmq as rabbitmq
import pytest
from pulumi.runtime import rpc

from infra.definition.load import load_definition, require
from infra.plan.plan import build_plan
from infra.pulumi.components.topology import Topology, TopologyArgs
from infra.pulumi.preview import run
from infra.render import files as render
from tests.support import stackgen
from tests.support.stacks import TEST_SECRETS


def _provider_int(value: str):
    """What the provider does to each policy value before the API call (see policy_definition_inputs)."""
    try:
        return int(value)
    except ValueError:
        return value


def secret_value(value):
    """A registered input that is a secret arrives wrapped in Pulumi's secret envelope: unwrap it, or fail."""
    assert isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig, (
        f"not a secret: {value!r}"
    )
    return value["value"]


def canonical(document: dict) -> dict:
    """Each list sorted: registration order under the engine is not the plan's order."""
    return {kind: sorted(items, key=lambda item: json.dumps(item, sort_keys=True)) for kind, items in document.items()}


def definitions_from(monitor) -> dict:
    """The captured rabbitmq:* registrations read back into a definitions document."""

    def inputs(kind):
        return [r.inputs for r in monitor.of_type(f"rabbitmq:index/{kind}")]

    return canonical(
        {
            "users": [
                {"name": u["name"], "password": secret_value(u["password"]), "tags": sorted(u.get("tags", []))}
                for u in inputs("user:User")
            ],
            "vhosts": [{"name": v["name"], "description": v.get("description", "")} for v in inputs("vHost:VHost")],
            "permissions": [
                {
                    "user": p["user"],
                    "vhost": p["vhost"],
                    **{k: p["permissions"].get(k, "") for k in ("configure", "write", "read")},
                }
                for p in inputs("permissions:Permissions")
            ],
            "policies": [
                {
                    "vhost": p["vhost"],
                    "name": p["name"],
                    "pattern": p["policy"]["pattern"],
                    "apply-to": p["policy"]["applyTo"],
                    "priority": p["policy"]["priority"],
                    "definition": {k: _provider_int(v) for k, v in p["policy"]["definition"].items()},
                }
                for p in inputs("policy:Policy")
            ],
            "queues": [
                {
                    "name": q["name"],
                    "vhost": q["vhost"],
                    "durable": q["settings"]["durable"],
                    "auto_delete": q["settings"]["autoDelete"],
                    "arguments": json.loads(q["settings"]["argumentsJson"]),
                }
                for q in inputs("queue:Queue")
            ],
            "exchanges": [
                {
                    "name": e["name"],
                    "vhost": e["vhost"],
                    "type": e["settings"]["type"],
                    "durable": e["settings"]["durable"],
                    "auto_delete": e["settings"]["autoDelete"],
                }
                for e in inputs("exchange:Exchange")
            ],
            "bindings": [
                {
                    "source": b["source"],
                    "vhost": b["vhost"],
                    "destination": b["destination"],
                    "destination_type": b["destinationType"],
                    "routing_key": b["routingKey"],
                }
                for b in inputs("binding:Binding")
            ],
        }
    )


def rendered_as_captured(definitions: dict) -> dict:
    """definitions.json, in the read-back shape (users carry the password the provider sends)."""
    by_hash = {
        render.hash_for(name, pw): pw
        for name in [u["name"] for u in definitions["users"]]
        for pw in TEST_SECRETS.values()
    }
    return canonical(
        {
            "users": [
                {"name": u["name"], "password": by_hash[u["password_hash"]], "tags": sorted(u["tags"])}
                for u in definitions["users"]
            ],
            "vhosts": definitions["vhosts"],
            "permissions": definitions["permissions"],
            "policies": definitions["policies"],
            "queues": definitions["queues"],
            "exchanges": [
                {k: e[k] for k in ("name", "vhost", "type", "durable", "auto_delete")} for e in definitions["exchanges"]
            ],
            "bindings": [
                {k: b[k] for k in ("source", "vhost", "destination", "destination_type", "routing_key")}
                for b in definitions["bindings"]
            ],
        }
    )


def topology_program(plan, protect=False):
    def program():
        provider = rabbitmq.Provider(
            "broker-provider",
            endpoint="http://127.0.0.1:15672",
            username="admin",
            password=pulumi.Output.secret(TEST_SECRETS["rabbitmqAdminPassword"]),
        )
        passwords = {k: pulumi.Output.secret(v) for k, v in TEST_SECRETS.items()}
        return Topology("topology", TopologyArgs(plan.topology, passwords, provider, protect_queues=protect))

    return program


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_captured_topology_equals_the_rendered_definitions(stack):
    plan = build_plan(require(load_definition(stack=stack)))
    monitor, _ = run(topology_program(plan), stack=stack)
    captured = definitions_from(monitor)
    rendered = rendered_as_captured(render.definitions(plan.topology, TEST_SECRETS))
    for kind in rendered:  # lists in the same order: each object exactly once, nothing extra
        assert captured[kind] == rendered[kind], kind


def test_generated_topology_equals_the_rendered_definitions(tmp_path):
    path = stackgen.write(tmp_path / "g.yaml", stackgen.generate(7, 120, 5))
    plan = build_plan(require(load_definition(file=path)))
    monitor, _ = run(topology_program(plan), stack="generated")
    rendered = rendered_as_captured(render.definitions(plan.topology, TEST_SECRETS))
    assert definitions_from(monitor) == rendered


def test_children_are_parented_provided_named_and_bindings_follow_their_queue():
    plan = build_plan(require(load_definition(stack="prod")))
    monitor, _ = run(topology_program(plan, protect=True), stack="prod")
    component = monitor.named("topology")
    assert component.type == "rabbitmq-celery:broker:Topology"
    children = [r for r in monitor.registered if r.type.startswith("rabbitmq:index/")]
    assert children and all(r.parent == component.urn and r.name.startswith("topology-") for r in children)
    provider_urn = monitor.named("broker-provider").urn
    assert all(r.request.provider.startswith(provider_urn) for r in children)
    queues = {r.urn: r for r in monitor.of_type("rabbitmq:index/queue:Queue")}
    assert all(r.request.protect for r in queues.values())
    for binding in monitor.of_type("rabbitmq:index/binding:Binding"):
        replaced_with = set(binding.request.replace_with)
        assert any(urn in queues for urn in replaced_with), binding.name
        assert queues[next(u for u in replaced_with if u in queues)].inputs["name"] == binding.inputs["destination"]
    assert (
        monitor.named("topology-queue-root-player_sync").inputs["settings"]["argumentsJson"]
        == '{"x-queue-type": "quorum"}'
    )


def test_user_passwords_are_secret_in_the_program():
    plan = build_plan(require(load_definition(stack="dev")))
    holder = {}

    def program():
        component = topology_program(plan)()
        holder["secret"] = [u.password.is_secret() for u in component.users.values()]
        return component

    run(program)
    from pulumi.runtime.sync_await import _sync_await

    assert holder["secret"] and all(_sync_await(s) for s in holder["secret"])
