"""`python -m infra migrate` against a three-node cluster, as `make local` runs it before it applies the
topology: persistent messages in a classic queue (allowed on a cluster by the stack's switch) become a quorum
queue with a member on each node, none lost; the same with the nodes' distribution over TLS. Apart from
tests/app/test_migrate.py so that the parallel runs put them on another worker."""

from __future__ import annotations

import shutil

import pika
import pytest

from infra.cli.localstack import LocalStack
from infra.render.secrets import write_secrets_file
from tests.app.migration_rig import OVERLAY, QUEUE
from tests.app.test_migrate import CLASSIC, QUORUM
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.stacks import TEST_SECRETS
from tests.support.waiting import wait_for

CLUSTER_MESSAGES = 2000
# TLS with the plain listeners kept: on a cluster, inter-node TLS by default (the nodes and their CLI tools speak
# TLS distribution), while the test publishes over plain AMQP; the migration goes through HTTPS management.
INTER_NODE_TLS = "broker:\n  tls: {enabled: true, plain_listeners: true}\n"


@pytest.mark.parametrize("inter_node_tls", [False, True], ids=["plain-distribution", "tls-distribution"])
def test_classic_to_quorum_on_a_three_node_cluster_gives_every_node_a_member(tmp_path, inter_node_tls):
    """`make local`'s migration step against a cluster: persistent messages in a classic queue (allowed on a
    cluster by the stack's switch), a quorum queue with a member on each node afterwards, none lost; the same
    with the nodes' distribution over TLS."""
    classic, quorum, tls = tmp_path / "classic.yaml", tmp_path / "quorum.yaml", tmp_path / "tls.yaml"
    classic.write_text("broker: {allow_classic_task_queues: true}\n" + CLASSIC)
    quorum.write_text(QUORUM)
    tls.write_text(INTER_NODE_TLS)
    with_tls = (tls,) if inter_node_tls else ()
    cluster = RabbitCluster(3, stack="dev", overlays=(OVERLAY, classic, *with_tls))
    assert cluster.inter_node_tls == inter_node_tls
    try:
        cluster.start()
        if inter_node_tls:  # where `make local` keeps the CA it verifies the management API with
            (tmp_path / "tls").mkdir()
            shutil.copy(cluster.nodes[0].tls_dir / "ca.pem", tmp_path / "tls" / "ca.pem")
        first = cluster.nodes[0]
        with pika.BlockingConnection(first.amqp_params("/", "admin", TEST_SECRETS["rabbitmqAdminPassword"])) as c:
            channel = c.channel()
            channel.confirm_delivery()
            for i in range(CLUSTER_MESSAGES):
                channel.basic_publish("tasks", QUEUE, str(i).encode(), pika.BasicProperties(delivery_mode=2))
        # as `make local` runs it, before it applies the topology: the first node's ports, the stack's secrets
        secrets = tmp_path / "secrets.yaml"
        write_secrets_file(secrets, TEST_SECRETS)
        local = LocalStack(
            "dev",
            tmp_path,
            "unused",
            secrets,
            overlays=(
                cluster.work / "cluster.yaml",
                cluster.rendered[0].config_dir.parent / "ports.yaml",
                OVERLAY,
                quorum,
                *with_tls,
            ),
        )
        assert [m.describe() for m in local.migrate_queues()] == ["queue /:effects classic → quorum"]
        queue = wait_for(
            lambda: (lambda q: q if q.get("messages") == CLUSTER_MESSAGES else None)(cluster.queue(QUEUE)),
            30,
            "every message in the quorum queue",
        )
        assert queue["type"] == "quorum" and set(queue["members"]) == set(cluster.names)
        assert not [q for q in cluster.api().get("queues") if q["name"].endswith(".migrating")]
    finally:
        cluster.close()
