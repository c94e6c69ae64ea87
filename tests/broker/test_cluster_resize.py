"""What `diff` tells an operator who resizes a cluster, checked on real nodes: quorum queues keep the members
they were declared with when nodes join, `rabbitmq-queues grow` places replicas on the new ones, and
`rabbitmq-queues shrink` then `rabbitmqctl forget_cluster_node` take a leaving node out, the queues
available throughout; with the distribution in plaintext and over TLS."""

from __future__ import annotations

import json

import pytest

from tests.broker.test_tls import TLS_ONLY
from tests.support.rabbit_cluster import TASK_QUEUES, RabbitCluster


@pytest.fixture(params=["plaintext", "inter-node TLS"])
def five(request, tmp_path):
    """Five nodes, their distribution plaintext or TLS (`broker.tls` on: AMQPS only, inter-node TLS by
    default), so the CLI tools `diff` names run over either."""
    overlays = ()
    if request.param == "inter-node TLS":
        (tmp_path / "tls.yaml").write_text(TLS_ONLY)
        overlays = (tmp_path / "tls.yaml",)
    cluster = RabbitCluster(5, stack="dev", overlays=overlays)
    assert cluster.inter_node_tls is (request.param == "inter-node TLS")
    try:
        yield cluster
    finally:
        cluster.close()


def records(cluster: RabbitCluster) -> list[dict]:
    """The task queues' records (`rabbitmqctl list_queues`): the management API would show a membership or
    leader change only with its next statistics."""
    queues = json.loads(
        cluster.nodes[0].ctl("rabbitmqctl", "list_queues", "-q", "--formatter", "json", "name", "members", "leader")
    )
    return [q for q in queues if q["name"] in TASK_QUEUES]


def members(cluster: RabbitCluster) -> set[tuple[str, ...]]:
    return {tuple(sorted(q["members"])) for q in records(cluster)}


def names(nodes) -> set[tuple[str, ...]]:
    return {tuple(sorted(n.name for n in nodes))}


def every_queue_ok(output: str) -> bool:
    """`rabbitmq-queues grow|shrink` prints a row per quorum queue (vhost, name, size, result): the task
    queues among them (the stack has regional ones too), every row ok."""
    rows = [line.split("\t") for line in output.splitlines() if line.startswith("/\t")]
    return set(TASK_QUEUES) <= {r[1] for r in rows} and all(r[-1] == "ok" for r in rows)


def test_new_nodes_hold_no_replica_until_grown_onto_and_a_leaving_node_is_shrunk_off(five):
    cluster = five
    first, joining = cluster.nodes[:3], cluster.nodes[3:]
    for node in first:  # a three-node cluster with its topology ...
        node.start()
    cluster.wait_running(3)
    cluster.apply_topology()
    assert members(cluster) == names(first)
    cluster.start_together(joining)  # ... grown by two nodes: the queues keep their three members
    cluster.wait_running(5)
    assert members(cluster) == names(first)
    for node in joining:  # what `diff` says to run after `pulumi up`
        assert every_queue_ok(first[0].ctl("rabbitmq-queues", "grow", node.name, "all"))
    assert members(cluster) == names(cluster.nodes)
    leaving = joining[-1]  # shrinking: the queues first, then the node, then the cluster forgets it
    assert every_queue_ok(first[0].ctl("rabbitmq-queues", "shrink", leaving.name))
    assert members(cluster) == names(cluster.nodes[:4])
    leaving.stop()
    first[0].ctl("rabbitmqctl", "forget_cluster_node", leaving.name)
    assert leaving.name not in {n["name"] for n in cluster.api().get("nodes")}
    assert all(q["leader"] != leaving.name for q in records(cluster))
