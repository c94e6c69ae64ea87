"""The three-node cluster with TLS on (AMQPS and HTTPS only, mutual TLS, one CA for the cluster) and so,
by default, inter-node TLS (the Erlang distribution between the nodes and from their CLI tools over TLS, a
certificate per node): the cluster tests of tests/app/test_cluster.py, faults included (the leader killed,
two of three down, a rolling restart), run against it, with the app's failover URLs over AMQPS; and every
connection the app makes is TLS with its client certificate."""

from __future__ import annotations

import pytest

from tests.app.deployment import OVERLAY, TunedNode
from tests.app.test_cluster import (  # noqa: F401 (fixtures and tests, run here against the TLS cluster)
    app,
    deployment,
    test_a_rolling_restart_while_tasks_flow_loses_nothing,
    test_killing_the_task_queues_leader_mid_batch_loses_nothing_and_the_node_rejoins,
    test_the_cluster_forms_and_every_quorum_queue_has_a_member_on_each_node,
    test_two_of_three_down_refuses_publishing_and_every_confirmed_message_survives,
)
from tests.app.test_reliability import riot  # noqa: F401 (the module's fake Riot API)
from tests.broker.test_tls import TLS_ONLY
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.rabbit_node import port_open
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    overlay = tmp_path_factory.mktemp("cluster-tls") / "tls.yaml"
    overlay.write_text(TLS_ONLY)
    cluster = RabbitCluster(3, stack="dev", overlays=(OVERLAY, overlay), node_class=TunedNode)
    assert cluster.inter_node_tls  # the default with TLS on a cluster
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def test_every_node_serves_tls_alone_and_the_apps_connections_are_tls(app, cluster, riot):
    assert cluster.tls and all(url.startswith("amqps://") for url in app.broker_urls.values())
    assert app.broker_urls["web"].count("amqps://") == 3  # one per node
    for node in cluster.nodes:
        assert not port_open("127.0.0.1", node.ports.amqp) and not port_open("127.0.0.1", node.ports.management)
    riot.add_player("TlsCluster", "EUW", "puuid-tls-cluster", ["EUW1_7001", "EUW1_7002"])
    app.start_worker("sync")
    app.start_worker("matches")
    job = app.wait_job(app.sync("TlsCluster", "EUW", "euw1"), 90, matches_processed=2)
    assert (job["status"], job["matches_failed"]) == ("complete", 0)

    def app_connections() -> list[dict]:  # the management API lists a connection a few seconds after it opens
        found = [c for c in cluster.api().get("connections") if c["user"] != "admin"]
        return found if {c["user"] for c in found} >= {"worker-sync", "worker-matches"} else []

    connections = wait_for(app_connections, 30, "both workers' connections listed", interval=1.0)
    assert all(c["ssl"] and c["peer_cert_subject"] for c in connections), connections
