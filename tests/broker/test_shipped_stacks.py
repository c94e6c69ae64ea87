"""The shipped stacks on a real node: effective settings, topology, logins, and what Celery declares."""

from __future__ import annotations

import re

import kombu
import pika
import pytest
from celery import Celery

from config.topology import celery_settings  # the app's own reading of celery.json
from tests.support.live import expected_topology, live_topology
from tests.support.rabbit_node import port_open
from tests.support.stacks import booted


@pytest.fixture(scope="module", params=["dev", "staging", "prod"])
def stack(request):
    with booted(stack=request.param) as (node, rendered):
        yield node, rendered


def _admin(node, rendered):
    return node.api("admin", rendered.password("admin"))


def _env_value(environment: str, key: str) -> str:
    match = re.search(r"\{" + re.escape(key) + r",(.*?)\}\s*[,\]]", environment)
    assert match, f"{key} not in the node's environment"
    return match.group(1)


def test_effective_settings_equal_the_definition(stack):
    node, rendered = stack
    b = rendered.plan.broker
    environment = node.ctl("rabbitmq-diagnostics", "environment")
    assert float(_env_value(environment, "vm_memory_high_watermark")) == b.memory_high_watermark
    assert int(_env_value(environment, "disk_free_limit")) == b.disk_free_limit_bytes
    assert int(_env_value(environment, "heartbeat")) == b.heartbeat_s
    assert int(_env_value(environment, "consumer_timeout")) == b.consumer_timeout_ms
    assert int(_env_value(environment, "channel_max")) == b.channel_max
    assert int(_env_value(environment, "connection_max")) == b.connection_max
    if b.plain:
        assert f'{{tcp_listeners,[{{"127.0.0.1",{b.amqp_port}}}]}}' in environment
        expected = {("amqp", b.amqp_port), ("http", b.management_port), ("http/prometheus", b.prometheus_port)}
    else:  # TLS only (staging, prod): no plain AMQP, HTTP or Prometheus listener at all
        assert "{tcp_listeners,[]}" in environment
        assert f'{{ssl_listeners,[{{"127.0.0.1",{b.tls.amqps_port}}}]}}' in environment
        expected = {
            ("amqp/ssl", b.tls.amqps_port),
            ("https", b.tls.management_port),
            ("https/prometheus", b.prometheus_port),
        }
        assert not port_open("127.0.0.1", b.amqp_port) and not port_open("127.0.0.1", b.management_port)

    api = _admin(node, rendered)
    listeners = {(l["protocol"], l["port"]) for l in api.get("overview")["listeners"]}
    assert expected | {("clustering", node.ports.dist)} == listeners
    # Bound to the definition's address (127.0.0.1), not to every interface: 127.0.0.2 is refused.
    for port in [p for _, p in expected] + [node.ports.dist]:
        assert port_open("127.0.0.1", port) and not port_open("127.0.0.2", port), port
    node_info = api.get_when(f"nodes/{node.name}", lambda n: "disk_free_limit" in n)
    assert node_info["disk_free_limit"] == b.disk_free_limit_bytes
    total = int(node.ctl("rabbitmqctl", "eval", "vm_memory_monitor:get_total_memory().").strip())
    assert node_info["mem_limit"] == pytest.approx(total * b.memory_high_watermark, rel=1e-6)
    log_section = environment[environment.index("{log,") :]
    assert f"{{level,{b.log_level}}}" in log_section
    assert ("rabbit.log" in log_section) == (b.log_file is not None)
    enabled = node.ctl("rabbitmq-plugins", "list", "-E", "-m").split()
    assert set(b.plugins) <= set(enabled)


def test_topology_is_exactly_the_rendered_definitions(stack):
    node, rendered = stack
    live = live_topology(_admin(node, rendered))
    expected = expected_topology(rendered.definitions)
    for kind in expected:
        assert live[kind] == expected[kind], kind
    assert "guest" not in live["users"]


def test_every_user_logs_in_with_its_password_and_not_another(stack):
    node, rendered = stack
    for user in rendered.plan.topology.users:
        password = rendered.password(user.name)
        if user.tags:  # management users: the HTTP API
            assert node.api(user.name, password).status("whoami") == 200
            assert node.api(user.name, password + "x").status("whoami") == 401
        for permission in (p for p in rendered.plan.topology.permissions if p.user == user.name):
            pika.BlockingConnection(node.amqp_params(permission.vhost, user.name, password)).close()
            wrong = node.amqp_params(permission.vhost, user.name, password + "x")
            with pytest.raises(pika.exceptions.ProbableAuthenticationError):
                pika.BlockingConnection(wrong)


def _celery_app(node, rendered, user: str = "web") -> Celery:
    """The app's Celery client as `user` (web: the publisher)."""
    declarations = rendered.celery
    vhost = declarations["broker_vhost"]
    b = rendered.plan.broker  # AMQPS with celery.json's broker_tls when TLS is on, as the app connects
    url = (
        f"{b.client_scheme}://{user}:{rendered.password(user)}@127.0.0.1:{b.client_port}/"
        f"{kombu.utils.url.quote(vhost, safe='')}"
    )
    app = Celery("shipped-stack-test", broker=url)
    app.conf.update(celery_settings(declarations))
    # as the app publishes (app/config/settings/base.py): send_task returns once the broker has the message,
    # so a count read right after includes it (unconfirmed, a 4.0 pass read 0 of 1)
    app.conf.broker_transport_options = {"confirm_publish": True}
    return app


def test_celery_json_declares_every_queue_as_the_broker_has_it(stack):
    """The app never declares its task queues (no_declare: its users may not), but what celery.json says of
    them must still be what the broker has: declared with those arguments, by the deployer, no clash."""
    node, rendered = stack
    app = _celery_app(node, rendered, user="admin")
    assert all(queue.no_declare for queue in app.conf.task_queues)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.conf.task_queues:
            as_declared = kombu.Queue(
                queue.name,
                queue.exchange,
                queue.routing_key,
                durable=queue.durable,
                queue_arguments=queue.queue_arguments,
            )
            as_declared(channel).declare()  # PRECONDITION_FAILED here would mean celery.json disagrees
        first = app.conf.task_queues[0]
        clash = kombu.Queue(
            first.name, first.exchange, first.routing_key, queue_arguments={"x-queue-type": "classic"}, durable=True
        )
        with pytest.raises(Exception, match="PRECONDITION_FAILED"):
            clash(connection.channel()).declare()


def test_celery_routes_each_task_to_its_queue(stack):
    node, rendered = stack
    app = _celery_app(node, rendered)
    api = _admin(node, rendered)
    routes = rendered.celery["task_routes"]
    for task in routes:
        app.send_task(task, args=["probe"])
    app.send_task("some.unrouted.task")
    expected = {}
    for route in routes.values():
        expected[route["queue"]] = expected.get(route["queue"], 0) + 1
    expected[rendered.celery["task_default_queue"]] = expected.get(rendered.celery["task_default_queue"], 0) + 1
    vhost = kombu.utils.url.quote(rendered.celery["broker_vhost"], safe="")
    with _celery_app(node, rendered, user="admin").connection_for_write() as connection:  # counts, purges
        channel = connection.default_channel
        for queue_name, count in expected.items():
            assert channel.queue_declare(queue_name, passive=True).message_count == count, queue_name
            channel.queue_purge(queue_name)
    assert api.get(f"queues/{vhost}/{rendered.celery['task_queues'][0]['name']}")["durable"] is True
