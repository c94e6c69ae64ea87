"""Inter-node TLS on the real Docker engine: the local stack's three broker containers from `render --compose`
with `broker.tls` on (so inter-node TLS by default) come up healthy (their health check is a CLI tool, over
TLS distribution), form one cluster, and the CLI tools work in them with the flags the compose file sets and
not without; a message published on node 1 and consumed on node 3 never shows on the stack's own Docker
bridge, captured there promiscuously on the distribution port, where what crosses is TLS records.
The plaintext control of the same capture runs on loopback: tests/broker/test_inter_node_tls.py."""

from __future__ import annotations

import json
import os
import secrets as random
import shutil
import tempfile
from pathlib import Path

import pika
import pytest
import yaml

from infra.cli.localstack import LocalStack
from infra.plan.services import broker_hosts
from tests.e2e.harness import (
    DIST_PORT,
    ImagesMissing,
    amqps_parameters,
    bridge_of,
    cli_run,
    docker,
    docker_exec,
    free_port_blocks,
    require_images,
)
from tests.support.stacks import TEST_SECRETS
from tests.support.waiting import wait_for
from tests.support.wire import WireCapture, assert_only_tls_crossed

pytestmark = pytest.mark.e2e
QUEUE = "player_sync"


@pytest.fixture(scope="module")
def brokers():
    try:
        require_images("local")
    except ImagesMissing as exc:
        raise pytest.UsageError(str(exc)) from None
    amqp, management, prometheus, amqps, https = free_port_blocks(5, 3)
    work = Path(tempfile.mkdtemp(prefix="e2e-inter-node-"))
    work.chmod(0o755)
    overlay = work / "overlay.yaml"
    listeners = {"bind": "127.0.0.1", "amqp": amqp, "management": management, "prometheus": prometheus}
    tls = {"enabled": True, "amqps": amqps, "management": https}
    overlay.write_text(yaml.safe_dump({"broker": {"nodes": 3, "listeners": listeners, "tls": tls}}))
    secrets_file = work / "secrets.yaml"
    secrets_file.write_text(yaml.safe_dump({"riotApiKey": TEST_SECRETS["riotApiKey"]}))
    secrets_file.chmod(0o600)
    local = LocalStack("local", work / "out", f"rcinternode{os.getpid()}", secrets=secrets_file, overlays=(overlay,))
    try:
        local.render()
        assert local.plan.broker.tls and local.plan.broker.tls.inter_node
        local.up(*broker_hosts(3))  # one after another (depends_on: service_healthy)
        local.wait_healthy(progress=lambda line: print(f"[e2e up] {line}", flush=True))
        local.wait_cluster(3)
        local.apply_topology()
        yield local, amqps
    finally:
        if os.environ.get("E2E_KEEP_LOGS"):
            print(local.compose("logs", "--no-color", "--tail=80", check=False).stdout)
        local.down(volumes=True)
        shutil.rmtree(work, ignore_errors=True)


def test_the_cli_tools_work_in_the_nodes_with_the_compose_files_tls_flags_and_not_without(brokers):
    local, _ = brokers
    env = docker("inspect", "-f", "{{json .Config.Env}}", local.container("rabbitmq-2"))
    assert "RABBITMQ_CTL_ERL_ARGS=-proto_dist inet_tls -ssl_dist_optfile /etc/rabbitmq/inter_node_tls-2.config" in env
    status = cli_run(local.container("rabbitmq-1"), "rabbitmqctl", "cluster_status", "--formatter", "json")
    assert status.returncode == 0, status.stderr
    assert sorted(json.loads(status.stdout)["running_nodes"]) == sorted(f"rabbit@{h}" for h in broker_hosts(3))
    queues = cli_run(local.container("rabbitmq-3"), "rabbitmq-queues", "quorum_status", QUEUE)
    assert queues.returncode == 0 and "leader" in queues.stdout, queues.stderr
    plain = docker_exec(
        local.container("rabbitmq-1"), "rabbitmq-diagnostics", "-q", "check_running", env={"RABBITMQ_CTL_ERL_ARGS": ""}
    )
    assert plain.returncode != 0, plain.stdout  # without the TLS flags the tool cannot reach its own node


def test_the_payload_never_shows_on_the_docker_bridge_between_the_nodes(brokers):
    local, amqps_port = brokers
    body = b"inter-node-docker-wire-" + random.token_hex(24).encode()
    with WireCapture({DIST_PORT}, interface=bridge_of(f"{local.project}_stack")) as wire:
        with pika.BlockingConnection(amqps_parameters(local, amqps_port)) as connection:  # node 1
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        with pika.BlockingConnection(amqps_parameters(local, amqps_port + 2)) as connection:  # node 3
            channel = connection.channel()
            got = wait_for(lambda: channel.basic_get(QUEUE, auto_ack=True), 30, "the message on node 3", interval=0.2)
    assert got[2] == body
    assert_only_tls_crossed(wire, body)
