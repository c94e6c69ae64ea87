"""A three-node cluster on real parts: three Debian RabbitMQ nodes rendered from the dev stack with
`broker.nodes: 3` over it, the web process and real Celery workers with the app's failover URL (one per
node), and the fake Riot API. Nodes are SIGKILLed, stopped and restarted under load.

One cluster, web and database for the module; workers per test. Each test uses its own player and match
ids, so tests do not see each other's rows."""

from __future__ import annotations

import shutil
import ssl
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import amqp
import pytest

from tests.app.deployment import OVERLAY, Deployment, TunedNode, wait_for
from tests.app.test_reliability import match_ids, riot, rows  # noqa: F401 (riot: the module's fake Riot API)
from tests.support.rabbit_cluster import TASK_QUEUES, RabbitCluster
from tests.support.rabbit_node import RabbitNode


@pytest.fixture(scope="module")
def cluster():
    cluster = RabbitCluster(3, stack="dev", overlays=(OVERLAY,), node_class=TunedNode)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def deployment(cluster, riot):
    workdir = Path(tempfile.mkdtemp(prefix="app-cluster-"))
    deployment = Deployment(cluster.nodes[0], cluster.rendered[0], riot, workdir)
    use_urls(deployment, cluster)
    try:
        deployment.start_web()
        yield deployment
    finally:
        deployment.close()
        shutil.rmtree(workdir, ignore_errors=True)


def use_urls(deployment: Deployment, cluster: RabbitCluster, order=None) -> None:
    """The processes started from now on connect with the failover URL (nodes in `order`), each service as
    its own user."""
    users = deployment.rendered.celery["broker_users"]
    deployment.broker_urls = {service: cluster.amqp_url(user, order=order) for service, user in users.items()}
    deployment.broker_url = deployment.env["CELERY_BROKER_URL"] = deployment.broker_urls["web"]


@pytest.fixture
def app(deployment, cluster, request):
    use_urls(deployment, cluster)
    deployment.purge()
    try:
        yield deployment
    finally:
        deployment.after_test(request)
        for node in cluster.nodes:  # a test that stopped nodes leaves the next one a whole cluster
            if node not in cluster.alive():
                node.start()
        # Two nodes restarting together over TLS distribution took longer than 120 s to show as running in
        # one clean-clone run (not reproduced yet): a longer bound for restoring the cluster, not a test's check.
        cluster.wait_running(3, timeout=300)


def test_the_cluster_forms_and_every_quorum_queue_has_a_member_on_each_node(cluster):
    assert cluster.running_nodes() == set(cluster.names)
    for name in TASK_QUEUES:
        queue = cluster.queue(name)
        assert queue["type"] == "quorum"
        assert sorted(queue["members"]) == sorted(cluster.names), name
        assert queue["leader"] in cluster.names
    conf = (cluster.rendered[0].config_dir / "rabbitmq.conf").read_text()
    assert "cluster_partition_handling = pause_minority" in conf
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_killing_the_task_queues_leader_mid_batch_loses_nothing_and_the_node_rejoins(app, cluster, riot):
    ids = match_ids("6", 12)
    riot.add_player("Leader", "EUW", "puuid-leader", ids)
    riot.slow(r"/matches/EUW1_6\d{3}$", 1.0)
    leader = cluster.leader_of("match_processing")
    # The workers' first URL is the leader's node: killing it also cuts their connections, the harder case.
    order = [leader] + [n for n in cluster.nodes if n is not leader]
    use_urls(app, cluster, order)
    workers = [app.start_worker("sync"), app.start_worker("matches")]
    job_id = app.sync("Leader", "EUW", "euw1")
    wait_for(lambda: len(riot.seen(r"/matches/EUW1_6\d{3}$")) >= 3, 60, "three match downloads started")
    killed_at = time.time()
    leader.kill()
    job = app.wait_job(job_id, 180, matches_processed=12)
    assert (job["status"], job["matches_found"], job["matches_failed"]) == ("complete", 12, 0)
    assert rows(app, job_id, ids) == {
        "matches": 12,
        "distinct_matches": 12,
        "participants": 120,
        "timelines": 12,
        "job_matches": 12,
    }
    assert all(w.alive() for w in workers)  # failed over by themselves
    new_leader = cluster.queue("match_processing")["leader"]
    assert new_leader != leader.name
    # Failover: the kill → the first match task started after it has its match stored.
    started = app.query(
        "SELECT started_at, argsrepr FROM players_taskattempt WHERE task_name = ? AND "
        "argsrepr LIKE ? ORDER BY started_at",
        "matches.tasks.process_match",
        "%EUW1_6%",
    )
    after = [(s, a) for s, a in started if _utc(s) > killed_at]
    assert after, "no match task was delivered after the kill"
    first_id = next(i for i in ids if i in after[0][1])
    stored = app.query("SELECT fetched_at FROM matches_match WHERE match_id = ?", first_id)[0][0]
    print(
        f"failover: node killed → first task completed after {_utc(stored) - killed_at:.2f} s (new leader {new_leader})"
    )
    # The web publishes through its failover URL too: a sync asked for while the node is still down.
    riot.add_player("AfterKill", "EUW", "puuid-after-kill", match_ids("8", 2))
    job = app.wait_job(app.sync("AfterKill", "EUW", "euw1"), 90, matches_processed=2)
    assert (job["status"], job["matches_failed"]) == ("complete", 0)
    leader.start()  # and it rejoins: every queue has its three members online again
    cluster.wait_running(3)
    cluster.wait_members_online(TASK_QUEUES)


def _connection(node: RabbitNode, user: str, password: str, **options) -> amqp.Connection:
    """To `node`: plain AMQP, or AMQPS with the app's client certificate when the node serves TLS alone."""
    if not node.tls_only:
        return amqp.Connection(f"127.0.0.1:{node.ports.amqp}", userid=user, password=password, **options)
    certs = {
        "ca_certs": str(node.tls_dir / "ca.pem"),
        "certfile": str(node.tls_dir / "client.pem"),
        "keyfile": str(node.tls_dir / "client.key"),
    }
    tls = {**certs, "server_hostname": "127.0.0.1", "cert_reqs": ssl.CERT_REQUIRED}
    return amqp.Connection(f"127.0.0.1:{node.ports.amqps}", userid=user, password=password, ssl=tls, **options)


def _publish(node: RabbitNode, user: str, password: str, body: str, timeout: float = 5) -> bool:
    """One persistent publish to the default queue, True once the broker confirmed it."""
    try:
        connection = _connection(node, user, password, virtual_host="/", confirm_publish=True, connect_timeout=timeout)
        connection.connect()
        try:
            channel = connection.channel()
            channel.basic_publish(
                amqp.Message(body, delivery_mode=2), exchange="tasks", routing_key="default", confirm_timeout=timeout
            )
            return True
        finally:
            connection.collect()
    except Exception:  # noqa: BLE001 (refused, closed, nacked or timed out: not confirmed, whichever)
        return False


def test_two_of_three_down_refuses_publishing_and_every_confirmed_message_survives(app, cluster):
    user = app.rendered.plan.broker.admin_user  # reads the queue directly: no app user may
    password = app.rendered.password(user)
    survivor, *others = cluster.nodes
    confirmed = [b for b in (f"msg-{i}" for i in range(50)) if _publish(survivor, user, password, b)]
    assert len(confirmed) == 50
    for node in others:
        node.stop()
    refused = [_publish(survivor, user, password, f"late-{i}") for i in range(3)]
    assert refused == [False, False, False], "a minority accepted a publish"
    paused_at = len(survivor.console_output())
    cluster.start_together(others, resuming=(survivor, paused_at))
    cluster.wait_running(3)
    cluster.wait_members_online(["default"])
    connection = _connection(survivor, user, password, virtual_host="/")
    connection.connect()
    try:
        channel, bodies = connection.channel(), []
        while (message := channel.basic_get("default", no_ack=True)) is not None:
            bodies.append(message.body if isinstance(message.body, str) else message.body.decode())
    finally:
        connection.collect()
    assert set(confirmed) <= set(bodies), sorted(set(confirmed) - set(bodies))


def test_a_rolling_restart_while_tasks_flow_loses_nothing(app, cluster, riot):
    ids = match_ids("7", 16)
    riot.add_player("Rolling", "EUW", "puuid-rolling", ids)
    riot.slow(r"/matches/EUW1_7\d{3}$", 0.5)
    workers = [app.start_worker("sync"), app.start_worker("matches")]
    job_id = app.sync("Rolling", "EUW", "euw1")
    wait_for(lambda: len(riot.seen(r"/matches/EUW1_7\d{3}$")) >= 2, 60, "match downloads started")
    for node in cluster.nodes:  # one at a time, each back and caught up before the next goes
        node.stop()
        node.start()
        cluster.wait_running(3)
        cluster.wait_members_online(TASK_QUEUES)
    job = app.wait_job(job_id, 180, matches_processed=16)
    assert (job["status"], job["matches_found"], job["matches_failed"]) == ("complete", 16, 0)
    assert rows(app, job_id, ids) == {
        "matches": 16,
        "distinct_matches": 16,
        "participants": 160,
        "timelines": 16,
        "job_matches": 16,
    }
    assert all(w.alive() for w in workers)
