"""What `diff` tells an operator who resizes a cluster, checked on real nodes: quorum queues keep the members
they were declared with when nodes join, `rabbitmq-queues grow` places replicas on the new ones, and
`rabbitmq-queues shrink` then `rabbitmqctl forget_cluster_node` take a leaving node out, the queues
available throughout."""
from __future__ import annotations

import pytest

from tests.support.rabbit_cluster import TASK_QUEUES, RabbitCluster


@pytest.fixture
def five():
    cluster = RabbitCluster(5, stack="dev")
    try:
        yield cluster
    finally:
        cluster.close()


def members(cluster: RabbitCluster) -> set[tuple[str, ...]]:
    return {tuple(sorted(cluster.queue(q)["members"])) for q in TASK_QUEUES}


def test_new_nodes_hold_no_replica_until_grown_onto_and_a_leaving_node_is_shrunk_off(five):
    cluster = five
    first, joining = cluster.nodes[:3], cluster.nodes[3:]
    for node in first:  # a three-node cluster with its topology ...
        node.start()
    cluster.wait_running(3)
    cluster.apply_topology()
    three = tuple(sorted(n.name for n in first))
    assert members(cluster) == {three}
    cluster.start_together(joining)  # ... grown by two nodes: the queues keep their three members
    cluster.wait_running(5)
    assert members(cluster) == {three}
    for node in joining:  # what `diff` says to run after `pulumi up`
        first[0].ctl("rabbitmq-queues", "grow", node.name, "all")
    assert members(cluster) == {tuple(sorted(cluster.names))}
    leaving = joining[-1]  # shrinking: the queues first, then the node, then the cluster forgets it
    first[0].ctl("rabbitmq-queues", "shrink", leaving.name)
    assert members(cluster) == {tuple(sorted(n.name for n in cluster.nodes[:4]))}
    leaving.stop()
    first[0].ctl("rabbitmqctl", "forget_cluster_node", leaving.name)
    assert leaving.name not in {n["name"] for n in cluster.api().get("nodes")}
    assert all(cluster.queue(q)["leader"] != leaving.name for q in TASK_QUEUES)
