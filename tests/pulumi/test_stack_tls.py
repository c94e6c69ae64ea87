"""A TLS stack deployed for real (`python -m infra deploy`, the engine and the
plugins `make pulumi` built, the local images) and destroyed.

TLS: the local stack with `broker.tls` on and `ca: generate` (TLS only, mutual TLS: what staging and prod ship),
its CA, server and client certificates issued by pulumi_tls. AMQPS is reached with nothing but what the stack
hands out: `pulumi stack output ca_cert` as the only trusted root, and the app's client certificate from the
stack's state. `deploy` then upgrades it to RabbitMQ 4.0 blue-green, every message crossing over AMQPS. Its
`pulumi destroy` leaves no container or network. The 3-node cluster stack: test_stack_cluster.py."""

from __future__ import annotations

import ssl
import tempfile
import uuid
from pathlib import Path

import pika
import pytest
import requests

from tests.e2e.harness import docker
from tests.pulumi.project import (
    DEPLOY_TIMEOUT,
    admin,
    amqps_parameters,
    assert_destroyed,
    assert_every_container_healthy,
    deployed,
    new_project,
    tls_context,
    tls_listeners,
    wait_healthy,
)
from tests.pulumi.test_stack_upgrade import FOUR
from tests.support.rabbit_node import port_open

# The first test waits for the stack's deploy from nothing, on a shared 2-core machine.
pytestmark = [pytest.mark.pulumi, pytest.mark.timeout(2400)]
PARKED = 2000  # in the parking queue, which nobody consumes: the upgrade's shovels alone move them


@pytest.fixture(scope="module")
def tls_stack():
    project = new_project(Path(tempfile.mkdtemp(prefix="pulumi-tls-")))
    project.edit_stack({"broker": {"tls": tls_listeners(project)}})
    yield from deployed(project)


def test_the_tls_stack_comes_up_healthy_with_only_its_tls_listeners(tls_stack):
    project = tls_stack
    assert_every_container_healthy(project, ["rabbitmq"])
    outputs = project.outputs()
    assert outputs["management_url"] == f"https://127.0.0.1:{project.ports['https']}"
    assert outputs["ca_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert not port_open("127.0.0.1", project.ports["amqp"]) and not port_open("127.0.0.1", project.ports["management"])


def test_amqps_works_with_the_generated_ca(tls_stack, tmp_path):
    project = tls_stack
    context = tls_context(project, tmp_path)
    params = amqps_parameters(project, context)
    body = f"over amqps {uuid.uuid4().hex}".encode()
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, body, mandatory=True)
        method, _, received = channel.basic_get(queue, auto_ack=True)
    assert method is not None and received == body
    # the management API over HTTPS, verified against the same CA
    (tmp_path / "ca.pem").write_text(project.outputs()["ca_cert"])
    response = requests.get(
        f"{project.outputs()['management_url']}/api/connections",
        auth=admin(project),
        verify=str(tmp_path / "ca.pem"),
        timeout=30,
    )
    response.raise_for_status()
    apps = [c for c in response.json() if c["user"] != "admin"]
    assert apps and all(c["ssl"] and c["peer_cert_subject"] for c in apps), apps  # the app's own: TLS, with its cert


def test_a_client_without_the_stacks_certificate_is_refused(tls_stack, tmp_path):
    project = tls_stack
    context = ssl.create_default_context(cadata=project.outputs()["ca_cert"])  # trusts the CA, presents nothing
    params = amqps_parameters(project, context, connection_attempts=1)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params).close()


def test_a_sync_over_amqps_is_stored(tls_stack):
    job = tls_stack.sync_sample_player()
    assert job["status"] == "complete", job


def test_deploy_upgrades_the_tls_stack_to_4_0_with_every_message_crossing_over_amqps(tls_stack, tmp_path):
    """prod's TLS, upgraded blue-green by `deploy`: the shovels cross over AMQPS with the app's certificate
    from the state, the upgrade reaches green's HTTPS API; parked messages (nobody consumes them) come across
    both hops; the stack ends on 4.0.5 with its TLS listeners alone, green gone, `verify` exit 0, nothing left
    for `preview` to change, a sync stored."""
    project = tls_stack
    context = tls_context(project, tmp_path)
    with pika.BlockingConnection(amqps_parameters(project, context)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(PARKED):
            channel.basic_publish("", "dead_letters", f"parked-{i}".encode(), pika.BasicProperties(delivery_mode=2))
    broker = f"{project.prefix}-rabbitmq"
    project.edit_stack(FOUR)
    result = project.deploy(check=False, timeout=DEPLOY_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upgrade: shovel back" in result.stderr and "upgraded: the broker runs" in result.stderr, result.stderr

    assert "4.0.5" in docker("exec", broker, "rabbitmqctl", "version")
    assert docker("inspect", f"{broker}-green", check=False) in ("", "[]")
    assert not port_open("127.0.0.1", project.ports["amqp"]) and not port_open("127.0.0.1", project.ports["management"])
    with pika.BlockingConnection(amqps_parameters(project, context)) as connection:
        channel = connection.channel()
        assert channel.queue_declare("dead_letters", passive=True).method.message_count == PARKED
    (tmp_path / "ca.pem").write_text(project.outputs()["ca_cert"])
    checked = project.infra(
        "verify", "--stack", project.stack, "--management-url", project.outputs()["management_url"],
        "--ca-cert", str(tmp_path / "ca.pem"), env={"RABBITMQ_PASSWORD": admin(project)[1]}, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    project.pulumi("preview", "--expect-no-changes", env={"RABBITMQ_CELERY_MIGRATIONS_CHECKED": "1"})
    wait_healthy(project)
    job = project.sync_sample_player()
    assert job["status"] == "complete", job


def test_destroy_of_the_tls_stack_leaves_no_container_or_network(tls_stack):
    assert_destroyed(tls_stack)
