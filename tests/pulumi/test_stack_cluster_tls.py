"""The 3-node cluster stack with `broker.tls` on, deployed for real (`python -m infra deploy`, the engine and the
plugins `make pulumi` built, the local images): inter-node TLS is on by default there, so the three containers
pulumi-docker made form one cluster over Erlang's TLS distribution, with the certificates pulumi_tls issued per
node. The CLI tools work in the containers with the flags the program sets and not without; a message published
on node 1 and consumed on node 3 never shows on the stack's Docker bridge, where what crosses between the nodes
is TLS records; `pulumi destroy` leaves nothing. The plain cluster stack: test_stack_cluster.py."""

from __future__ import annotations

import json
import secrets as random
import tempfile
from pathlib import Path

import pika
import pytest

from tests.e2e.harness import DIST_PORT, bridge_of, cli_run, docker, docker_exec
from tests.pulumi.project import (
    amqps_parameters,
    assert_destroyed,
    assert_every_container_healthy,
    deployed,
    new_project,
    tls_context,
    tls_listeners,
)
from tests.support.waiting import wait_for
from tests.support.wire import WireCapture, assert_only_tls_crossed

# The first test waits for the stack's deploy from nothing, on a shared 2-core machine.
pytestmark = [pytest.mark.pulumi, pytest.mark.timeout(2400)]

NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]


@pytest.fixture(scope="module")
def tls_cluster_stack():
    project = new_project(Path(tempfile.mkdtemp(prefix="pulumi-cluster-tls-")), nodes=3)
    project.edit_stack({"broker": {"nodes": 3, "tls": tls_listeners(project, nodes=3)}})
    yield from deployed(project)


def test_the_tls_cluster_stack_forms_one_cluster_over_tls_distribution(tls_cluster_stack):
    project = tls_cluster_stack
    assert_every_container_healthy(project, NODES)  # each node's health check: a CLI tool over TLS distribution
    status = cli_run(f"{project.prefix}-rabbitmq-1", "rabbitmqctl", "cluster_status", "--formatter", "json")
    assert status.returncode == 0, status.stderr
    assert sorted(json.loads(status.stdout)["running_nodes"]) == [f"rabbit@{n}" for n in NODES]
    env = docker("inspect", "-f", "{{json .Config.Env}}", f"{project.prefix}-rabbitmq-2")
    assert "-proto_dist inet_tls -ssl_dist_optfile" in env
    plain = docker_exec(
        f"{project.prefix}-rabbitmq-1", "rabbitmq-diagnostics", "-q", "check_running", env={"RABBITMQ_CTL_ERL_ARGS": ""}
    )
    assert plain.returncode != 0, plain.stdout  # without the TLS flags the tool cannot reach its own node


def test_a_message_crosses_from_node_1_to_node_3_and_never_shows_on_the_bridge(tls_cluster_stack, tmp_path):
    project = tls_cluster_stack
    context = tls_context(project, tmp_path)
    queue = f"wire-{random.token_hex(4)}"  # the stack's own queues have workers on them
    body = b"inter-node-pulumi-wire-" + random.token_hex(24).encode()
    with WireCapture({DIST_PORT}, interface=bridge_of(f"{project.prefix}-net")) as wire:
        with pika.BlockingConnection(amqps_parameters(project, context, node=1)) as connection:
            channel = connection.channel()
            channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
            channel.confirm_delivery()
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        with pika.BlockingConnection(amqps_parameters(project, context, node=3)) as connection:
            channel = connection.channel()
            got = wait_for(lambda: channel.basic_get(queue, auto_ack=True), 30, "the message on node 3", interval=0.2)
            channel.queue_delete(queue)
    assert got[2] == body
    assert_only_tls_crossed(wire, body)


def test_destroy_of_the_tls_cluster_stack_leaves_no_container_or_network(tls_cluster_stack):
    assert_destroyed(tls_cluster_stack)
