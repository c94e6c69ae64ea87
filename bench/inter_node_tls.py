"""What inter-node TLS costs (`broker.tls.inter_node`): a quorum queue's throughput on a three-node cluster
with the Erlang distribution over TLS next to the same cluster with it in plaintext, and the failover time
of the TLS cluster.

Two clusters of three Debian nodes, both rendered from the dev stack with TLS for clients (AMQPS only,
mutual TLS) and `broker.nodes: 3`; they differ only in `inter_node`. Throughput: pika over AMQPS,
persistent publishes each waiting for its confirm into a quorum queue (replicated on the three nodes, so
every message crosses the distribution twice), then one consumer with manual acks at prefetch 16; the two
clusters interleaved run by run, through node 1, 2, 3 in turn. Failover: bench/cluster.py's round on the TLS
cluster (the leader of `match_processing` SIGKILLed mid-batch; killed → the first match task delivered after
it completed). And the CLI tools' cost: one `rabbitmq-diagnostics check_running` (the containers' health
check) against each cluster, interleaved. Medians of --runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pika  # noqa: E402
from cluster import failover_round  # noqa: E402
from harness import FakeRiot, machine  # noqa: E402
from pipeline import RAW_QUEUE, raw_consume, raw_publish  # noqa: E402
from stats import median, percentile, table  # noqa: E402

from tests.app.deployment import OVERLAY, Deployment, TunedNode  # noqa: E402
from tests.app.test_cluster import use_urls  # noqa: E402
from tests.support.rabbit_cluster import RabbitCluster  # noqa: E402
from tests.support.rabbit_node import RabbitNode  # noqa: E402

CLIENT_TLS = "broker:\n  tls: {{enabled: true, plain_listeners: false, verify_peer: true, inter_node: {on}}}\n"


def tls_cluster(work: Path, inter_node: bool) -> RabbitCluster:
    overlay = work / f"inter-node-{inter_node}.yaml"
    overlay.write_text(CLIENT_TLS.format(on=str(inter_node).lower()))
    cluster = RabbitCluster(3, stack="dev", overlays=(OVERLAY, overlay), node_class=TunedNode)
    assert cluster.inter_node_tls is inter_node
    return cluster


def throughput(node: RabbitNode, user: str, password: str, count: int) -> tuple[float, float]:
    connection = pika.BlockingConnection(node.amqp_params("/", user, password))
    try:
        channel = connection.channel()
        channel.queue_declare(RAW_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_purge(RAW_QUEUE)
        channel.confirm_delivery()
        return raw_publish(channel, count), raw_consume(channel, count, 16)
    finally:
        connection.close()


def cli_seconds(node: RabbitNode) -> float:
    """One `rabbitmq-diagnostics check_running` (the containers' health check) against the node, wall time:
    with inter-node TLS the tool's own Erlang VM starts TLS distribution and handshakes first."""
    started = time.monotonic()
    node.ctl("rabbitmq-diagnostics", "-q", "check_running")
    return time.monotonic() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="bench/inter_node_tls.py")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-inter-node-"))
    riot = FakeRiot().start()
    tls, plain = tls_cluster(work, True), tls_cluster(work, False)
    try:
        tls.start()
        plain.start()
        on, off, cli_on, cli_off = [], [], [], []
        for n in range(args.runs):
            cli_on.append(cli_seconds(tls.nodes[n % 3]))
            cli_off.append(cli_seconds(plain.nodes[n % 3]))
            for cluster, runs in ((tls, on), (plain, off)):
                admin = cluster.rendered[0].plan.broker.admin_user
                runs.append(throughput(cluster.nodes[n % 3], admin, cluster.rendered[0].password(admin), args.messages))
            print(
                f"throughput {n + 1}/{args.runs}: inter-node TLS {on[-1][0]:.0f}/{on[-1][1]:.0f}, "
                f"plaintext {off[-1][0]:.0f}/{off[-1][1]:.0f} msgs/s",
                file=sys.stderr,
            )
        plain.close()  # the failover rounds on the TLS cluster alone
        (work / "app").mkdir()
        deployment = Deployment(tls.nodes[0], tls.rendered[0], riot, work / "app")
        use_urls(deployment, tls)
        deployment.start_web()
        failovers = []
        try:
            for n in range(args.runs):
                failovers.append(failover_round(tls, deployment, riot, n))
                print(f"failover {n + 1}/{args.runs}: {failovers[-1]:.2f} s", file=sys.stderr)
        finally:
            deployment.close()
    finally:
        tls.close()
        plain.close()
        riot.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{machine()}; {args.runs} runs, medians; RabbitMQ 3.10 (Debian), three nodes on one machine.\n")
    rows = [
        (label, f"{median([p for p, _ in runs]):.0f}", f"{median([c for _, c in runs]):.0f}")
        for label, runs in (("inter-node TLS", on), ("plaintext distribution", off))
    ]
    rows.append(
        (
            "TLS / plaintext",
            f"{median([p for p, _ in on]) / median([p for p, _ in off]):.2f}",
            f"{median([c for _, c in on]) / median([c for _, c in off]):.2f}",
        )
    )
    print(
        table(
            ("quorum queue on 3 nodes, AMQPS, persistent, confirms", "publish msgs/s", "consume msgs/s (prefetch 16)"),
            rows,
        )
    )
    print()
    print(
        table(
            ("inter-node TLS cluster", "median", "p95", "max", "n"),
            [
                (
                    "leader SIGKILL → first task delivered after it completed (s)",
                    f"{median(failovers):.2f}",
                    f"{percentile(failovers, 95):.2f}",
                    f"{max(failovers):.2f}",
                    len(failovers),
                )
            ],
        )
    )
    print(f"\nper run (s): {', '.join(f'{f:.2f}' for f in failovers)}\n")
    print(
        table(
            ("`rabbitmq-diagnostics check_running`", "median (s)", "max (s)"),
            [
                ("inter-node TLS", f"{median(cli_on):.2f}", f"{max(cli_on):.2f}"),
                ("plaintext distribution", f"{median(cli_off):.2f}", f"{max(cli_off):.2f}"),
                ("TLS / plaintext", f"{median(cli_on) / median(cli_off):.2f}", ""),
            ],
        )
    )


if __name__ == "__main__":
    main()
