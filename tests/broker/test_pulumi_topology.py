"""What the Pulumi program declares, on a real node that boots the way the program's container does.

The container boots from `render.boot_definitions_json` (the admin alone); the Topology component then
creates everything else through the management API. Here the captured `rabbitmq:*` inputs of the program
(run under mocks) are sent to a real node with the HTTP calls pulumi-rabbitmq makes for them
(cyrilgdn/terraform-provider-rabbitmq via rabbit-hole: PUT vhosts, users, permissions, exchanges, queues,
policies; POST bindings), in the order the program's dependencies impose. The node must end up holding
exactly the rendered definitions.json, and keep it across a restart with the admin-only boot file.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pika
import pytest
import requests

from infra.definition.load import load_definition, require
from infra.pulumi import program
from infra.pulumi.preview import run
from infra.render import files as render
from tests.support.live import expected_topology, live_topology
from tests.support.rabbit_node import Ports, RabbitNode
from tests.support.stacks import TEST_SECRETS, render_for_node
from tests.unit.program.test_program import unwrap, with_config
from tests.unit.program.test_topology_component import _provider_int


def _q(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


def apply(monitor, base: str, auth: tuple[str, str], verify: str | bool = True) -> None:
    """`verify`: the CA of an HTTPS management API (prod: TLS only), as the provider's `cacert_file`."""
    session = requests.Session()
    session.auth = auth

    def call(method: str, path: str, body: dict) -> None:
        response = session.request(method, f"{base}/{path}", json=body, timeout=30, verify=verify)
        assert response.status_code in (200, 201, 204), (method, path, response.status_code, response.text)

    def each(kind: str):
        return [r.inputs for r in monitor.of_type(f"rabbitmq:index/{kind}")]

    for v in each("vHost:VHost"):
        call("PUT", _q("vhosts", v["name"]), {"description": v.get("description", "")})
    for u in each("user:User"):
        call("PUT", _q("users", u["name"]), {"password": unwrap(u["password"]), "tags": ",".join(u.get("tags", []))})
    for p in each("permissions:Permissions"):
        call(
            "PUT",
            _q("permissions", p["vhost"], p["user"]),
            {k: p["permissions"].get(k, "") for k in ("configure", "write", "read")},
        )
    for e in each("exchange:Exchange"):
        s = e["settings"]
        call(
            "PUT",
            _q("exchanges", e["vhost"], e["name"]),
            {"type": s["type"], "durable": s["durable"], "auto_delete": s["autoDelete"], "arguments": {}},
        )
    for q in each("queue:Queue"):
        s = q["settings"]
        call(
            "PUT",
            _q("queues", q["vhost"], q["name"]),
            {"durable": s["durable"], "auto_delete": s["autoDelete"], "arguments": json.loads(s["argumentsJson"])},
        )
    for b in each("binding:Binding"):
        call(
            "POST",
            _q("bindings", b["vhost"], "e", b["source"], "q", b["destination"]),
            {"routing_key": b["routingKey"], "arguments": {}},
        )
    for p in each("policy:Policy"):
        policy = p["policy"]
        call(
            "PUT",
            _q("policies", p["vhost"], p["name"]),
            {
                "pattern": policy["pattern"],
                "priority": int(policy["priority"]),
                "apply-to": policy["applyTo"],
                "definition": {k: _provider_int(v) for k, v in policy["definition"].items()},
            },
        )


def amqp(node: RabbitNode, vhost: str, user: str, password: str) -> pika.ConnectionParameters:
    """AMQPS with the app's client certificate when the stack has TLS (prod), plain AMQP otherwise."""
    return node.amqp_params(vhost, user, password, connection_attempts=3, retry_delay=1)


def without_hashes(topology: dict) -> dict:
    """Users set through the API get a fresh random salt: compare names and tags, and test logins instead."""
    return {**topology, "users": {name: tags for name, (tags, _, _) in topology["users"].items()}}


@pytest.mark.parametrize("stack", ["prod"])  # the stacks share one topology shape; one boot pair suffices
def test_the_programs_topology_on_a_node_booted_with_the_admin_alone(stack, tmp_path):
    ports = Ports.pick()
    rendered = render_for_node(ports, stack=stack)
    full = rendered.definitions
    (rendered.config_dir / "definitions.json").write_text(render.boot_definitions_json(rendered.plan, TEST_SECRETS))
    node = RabbitNode(rendered.config_dir, ports, tls_only=not rendered.plan.broker.plain)
    try:
        node.start()
        admin = node.api("admin", rendered.password("admin"))
        assert [u["name"] for u in admin.get("users")] == ["admin"]  # and no guest
        assert admin.get("queues") == []

        with_config(TEST_SECRETS)
        try:
            # the mock CA file, out of the repository
            definition = require(load_definition(stack=stack))
            monitor, _ = run(lambda: program.main(definition, ca_dir=tmp_path / "pulumi-tls"), stack=stack)
        finally:
            with_config({})
        assert (
            monitor.named("broker-api")
            .inputs["endpoint"]
            .startswith("https://" if rendered.plan.broker.tls else "http://")
        )
        apply(monitor, admin.base, ("admin", rendered.password("admin")), admin.verify)
        expected = without_hashes(expected_topology(full))
        assert without_hashes(live_topology(admin)) == expected
        for user in rendered.plan.topology.users:  # each logs in: management users over HTTP, all over AMQP
            if user.tags:
                assert node.api(user.name, rendered.password(user.name)).status("whoami") == 200
            for p in (p for p in rendered.plan.topology.permissions if p.user == user.name):
                with pika.BlockingConnection(amqp(node, p.vhost, user.name, rendered.password(user.name))):
                    pass

        # A replaced container boots from the same admin-only file; the data volume keeps the rest.
        node.stop()
        node.start()
        assert without_hashes(live_topology(node.api("admin", rendered.password("admin")))) == expected
        with pika.BlockingConnection(amqp(node, "/", "web", rendered.password("web"))) as connection:
            connection.channel().queue_declare("player_sync", passive=True)
    finally:
        node.close()
