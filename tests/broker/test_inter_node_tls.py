"""Inter-node TLS (`broker.tls.inter_node`) on three Debian nodes: the cluster forms over Erlang's TLS
distribution, a quorum queue's message published on node 1 is consumed on node 3, and the loopback wire
between the nodes, captured while that message crosses it, never shows its bytes. The same run with
inter-node TLS off (the control) must find them there, so the check can fail. The CLI tools work against
TLS nodes with the rendered flags and are refused without them; a node whose certificate comes from another
CA, and a node without inter-node TLS, cannot join, and the reason is in the logs."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pika
import pytest

from infra.render import certs
from tests.broker.test_tls import TLS_ONLY
from tests.support import rabbit_series
from tests.support.rabbit_cluster import RabbitCluster, join_refusal
from tests.support.rabbit_node import RabbitNode, port_open
from tests.support.stacks import render_for_node
from tests.support.waiting import wait_for
from tests.support.wire import WireCapture, assert_only_tls_crossed, tls_records

QUEUE = "player_sync"  # a quorum queue of the dev stack, with a member on every node


def overlay(tmp_path: Path, inter_node: bool) -> Path:
    path = tmp_path / f"inter-node-{inter_node}.yaml"
    path.write_text(
        TLS_ONLY.replace("verify_peer: true}", f"verify_peer: true, inter_node: {str(inter_node).lower()}}}")
    )
    return path


@pytest.fixture
def make_cluster():
    made: list[RabbitCluster] = []

    def make(*args, **kwargs) -> RabbitCluster:
        made.append(RabbitCluster(*args, **kwargs))
        return made[-1]

    yield make
    for cluster in made:
        cluster.close()


def publish_and_consume(cluster: RabbitCluster, body: bytes) -> bytes:
    """Publish `body` with confirms on node 1, consume it on node 3 (each through its own node), as the admin
    (the queue's own users publish through the task exchange only)."""
    first, third = cluster.nodes[0], cluster.nodes[2]
    admin = cluster.rendered[0].plan.broker.admin_user
    admin_password = cluster.rendered[0].password(admin)
    with pika.BlockingConnection(first.amqp_params("/", admin, admin_password)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    with pika.BlockingConnection(third.amqp_params("/", admin, admin_password)) as connection:
        channel = connection.channel()
        got = wait_for(lambda: channel.basic_get(QUEUE, auto_ack=True), 30, "the message on node 3", interval=0.2)
        return got[2]


@pytest.mark.parametrize("inter_node", [True, False], ids=["inter-node-tls", "control-plaintext"])
def test_the_payload_never_crosses_the_wire_in_clear_with_inter_node_tls(make_cluster, tmp_path, inter_node):
    cluster = make_cluster(3, stack="dev", overlays=(overlay(tmp_path, inter_node),)).start()
    assert cluster.inter_node_tls is inter_node
    body = b"inter-node-wire-check-" + secrets.token_hex(24).encode()  # distinctive: nothing else carries it
    dist_ports = {n.ports.dist for n in cluster.nodes}
    with WireCapture(dist_ports) as wire:
        assert publish_and_consume(cluster, body) == body
    if inter_node:
        assert_only_tls_crossed(wire, body)
    else:
        assert wire.payload_bytes() > len(body) and wire.drops == 0
        assert wire.contains(body)  # the control: the check finds the payload when it is in clear
        assert not any(tls_records(s) for s in wire.streams())  # and the TLS check tells the two apart


def test_the_cli_tools_work_against_tls_nodes_and_are_refused_without_the_flags(make_cluster, tmp_path):
    cluster = make_cluster(3, stack="dev", overlays=(overlay(tmp_path, True),)).start()
    node = cluster.nodes[1]
    assert "-proto_dist inet_tls" in node.env["RABBITMQ_CTL_ERL_ARGS"]
    status = node.ctl("rabbitmqctl", "cluster_status", "--formatter", "json")
    assert all(n.name in status for n in cluster.nodes)
    assert "fully booted and running" in node.ctl("rabbitmq-diagnostics", "check_running")
    assert "leader" in node.ctl("rabbitmq-queues", "quorum_status", QUEUE)
    # the same tool without the TLS distribution flags cannot talk to the node
    env = {k: v for k, v in node.env.items() if k != "RABBITMQ_CTL_ERL_ARGS"}
    plain = subprocess.run(
        [*node._argv("rabbitmq-diagnostics"), "check_running"], env=env, capture_output=True, text=True, timeout=90
    )
    assert plain.returncode != 0, plain.stdout


STRANGERS = {  # the third node, and the alert its peers or it log
    "another CA": "'Unknown CA'",
    "no inter-node TLS": "'Unexpected Message'",
}


def stranger_node(cluster: RabbitCluster, tmp_path: Path, stranger: str) -> RabbitNode:
    """The third node re-rendered: certificates from a fresh CA of its own, a certificate from the stack's
    CA for another host name (as a provided one could be), or inter-node TLS off."""
    third = cluster.nodes[2]
    passwords = dict(cluster.rendered[0].passwords)
    if stranger == "another CA":
        passwords = {k: v for k, v in passwords.items() if not k.startswith("tls")}
    rendered = render_for_node(
        third.ports,
        stack="dev",
        overlays=(cluster.work / "cluster.yaml", overlay(tmp_path, stranger != "no inter-node TLS")),
        node_names=cluster.names,
        passwords=passwords,
    )
    cluster.rendered.append(rendered)  # removed with the cluster
    tls = rendered.plan.broker.tls
    if stranger == "another host name":
        ca = certs.Issued(passwords[tls.secrets.ca_cert], passwords[tls.secrets.ca_key])
        wrong = certs.node_cert(ca, ["elsewhere.example"])
        (rendered.config_dir / "tls" / "node-3.pem").write_text(wrong.cert_pem)
        (rendered.config_dir / "tls" / "node-3.key").write_text(wrong.key_pem)
    return type(third)(rendered.config_dir, third.ports, third.name, tls_only=True, dist_env=tls.dist_env(3))


@pytest.mark.parametrize("stranger", sorted(STRANGERS))
def test_a_node_from_another_ca_for_another_host_or_without_tls_cannot_join(make_cluster, tmp_path, stranger):
    cluster = make_cluster(3, stack="dev", overlays=(overlay(tmp_path, True),))
    first, second, _ = cluster.nodes
    cluster.nodes[2] = node = stranger_node(cluster, tmp_path, stranger)
    first.start()
    second.start()
    cluster.wait_running(2)
    node.start()  # it reaches no peer it may talk to, so it boots as a cluster of its own
    assert port_open("127.0.0.1", node.ports.amqps)
    assert cluster.running_nodes(first) == {first.name, second.name}
    reason = join_refusal(cluster)  # the TLS alert from the logs, not a timeout
    assert STRANGERS[stranger] in reason, reason


def test_a_node_certificate_for_another_host_name_is_refused_by_whoever_connects_to_that_node(make_cluster, tmp_path):
    """Erlang checks the name of the node it connects to, not of the node that connects: a node with a
    certificate from the stack's CA for another host name still joins RabbitMQ 3.10 by connecting to its
    peers, but its own CLI tools (and a peer that connects to it) refuse it. RabbitMQ 4.0's peers connect
    back to a joining node, so there it did not join. What keeps foreign nodes out is the CA; a provided
    certificate's name is checked by `render` (tests/unit/test_inter_node_tls.py)."""
    cluster = make_cluster(3, stack="dev", overlays=(overlay(tmp_path, True),))
    first, second, _ = cluster.nodes
    cluster.nodes[2] = node = stranger_node(cluster, tmp_path, "another host name")
    first.start()
    second.start()
    cluster.wait_running(2)
    with pytest.raises(RuntimeError, match="await_startup"):
        node.start()  # booted, but its own CLI tool refuses its certificate
    assert port_open("127.0.0.1", node.ports.amqps)
    assert "(hostname_check_failed)" in join_refusal(cluster)  # Handshake Failure on 3.10, Bad Certificate on 4.0
    joined = set(cluster.names) if rabbit_series.current().name == "3.10" else {first.name, second.name}
    assert cluster.running_nodes(first) == joined
