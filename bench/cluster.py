"""What a three-node cluster buys and costs (issue 6): failover time, and throughput next to one node.

Failover: three Debian nodes rendered from the dev stack with `broker.nodes: 3` (tests/app/test_cluster.py's
set-up), the web and the app's `sync` and `matches` workers connected leader-first with the failover URL.
Each round syncs a player with slow match downloads, SIGKILLs the node leading `match_processing` mid-batch,
and measures node killed → the first match task that was delivered after the kill (by the new leader)
completed, read from the worker's log; then the node is restarted and rejoins before the next round.

Throughput: pika, persistent publishes each waiting for its confirm into a quorum queue, then one consumer
with manual acks at prefetch 16, on one node and on the three-node cluster (the queue replicated on all
three), interleaved run by run. Medians of --runs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pika  # noqa: E402
from harness import FakeRiot, machine, wait_for  # noqa: E402
from pipeline import RAW_QUEUE, raw_consume, raw_publish  # noqa: E402
from stats import median, percentile, table  # noqa: E402

from tests.app.deployment import OVERLAY, Deployment, TunedNode  # noqa: E402
from tests.app.test_cluster import use_urls  # noqa: E402
from tests.support.rabbit_cluster import RabbitCluster  # noqa: E402
from tests.support.stacks import booted  # noqa: E402

LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+ Task matches\.tasks\.process_match"
    r"\[([^\]]+)\] (received|succeeded)",
    re.M,
)


def _events(output: str) -> list[tuple[float, str, str]]:
    return [
        (datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp(), task_id, what)
        for stamp, task_id, what in LOG_LINE.findall(output)
    ]


def failover_round(cluster: RabbitCluster, deployment: Deployment, riot: FakeRiot, n: int) -> float:
    ids = [f"EUW1_9{n}{i:02d}" for i in range(1, 9)]
    riot.add_player(f"Failover{n}", "EUW", f"puuid-failover-{n}", ids)
    riot.slow(rf"/matches/EUW1_9{n}\d\d$", 0.5)
    leader = cluster.leader_of("match_processing")
    order = [leader] + [node for node in cluster.nodes if node is not leader]
    use_urls(deployment, cluster, order)
    workers = [deployment.start_worker("sync"), deployment.start_worker("matches")]
    try:
        job_id = deployment.sync(f"Failover{n}", "EUW", "euw1")
        wait_for(lambda: len(riot.seen(rf"/matches/EUW1_9{n}\d\d$")) >= 2, 60, "match downloads started")
        killed_at = time.time()
        leader.kill()
        deployment.wait_job(job_id, 180, matches_processed=len(ids))
        events = _events(workers[1].output())
        after = [task_id for at, task_id, what in events if what == "received" and at > killed_at]
        done = next(at for at, task_id, what in events if what == "succeeded" and task_id == after[0])
        return done - killed_at
    finally:
        for worker in workers:
            worker.stop()
        leader.start()
        cluster.wait_running(3)
        cluster.wait_members_online(["match_processing", "timeline_processing", "player_sync"])


def throughput(port: int, user: str, password: str, count: int) -> tuple[float, float]:
    connection = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", port, "/", pika.PlainCredentials(user, password))
    )
    try:
        channel = connection.channel()
        channel.queue_declare(RAW_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_purge(RAW_QUEUE)
        channel.confirm_delivery()
        return raw_publish(channel, count), raw_consume(channel, count, 16)
    finally:
        connection.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="bench/cluster.py")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args(argv)
    riot = FakeRiot().start()
    cluster = RabbitCluster(3, stack="dev", overlays=(OVERLAY,), node_class=TunedNode)
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        cluster.start()
        deployment = Deployment(cluster.nodes[0], cluster.rendered[0], riot, workdir)
        use_urls(deployment, cluster)
        deployment.start_web()
        failovers = []
        for n in range(args.runs):
            failovers.append(failover_round(cluster, deployment, riot, n))
            print(f"failover {n + 1}/{args.runs}: {failovers[-1]:.2f} s", file=sys.stderr)
        deployment.close()
        user = deployment.rendered.plan.broker.admin_user  # declares and purges the benchmark's queue
        password = deployment.rendered.password(user)
        one, three = [], []
        with booted(stack="dev") as (node, rendered):
            for n in range(args.runs):
                one.append(throughput(node.ports.amqp, user, rendered.password(user), args.messages))
                three.append(throughput(cluster.nodes[n % 3].ports.amqp, user, password, args.messages))
                print(
                    f"throughput {n + 1}/{args.runs}: one {one[-1][0]:.0f}/{one[-1][1]:.0f}, "
                    f"three {three[-1][0]:.0f}/{three[-1][1]:.0f} msgs/s",
                    file=sys.stderr,
                )
    finally:
        cluster.close()
        riot.close()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{machine()}; {args.runs} runs, medians; RabbitMQ 3.10 (Debian), three nodes on one machine.\n")
    print(
        table(
            ("measure", "median", "p95", "max", "n"),
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
    rows = []
    for label, runs in (("one node", one), ("three-node cluster", three)):
        rows.append((label, f"{median([p for p, _ in runs]):.0f}", f"{median([c for _, c in runs]):.0f}"))
    rows.append(
        (
            "cluster / one node",
            f"{median([p for p, _ in three]) / median([p for p, _ in one]):.2f}",
            f"{median([c for _, c in three]) / median([c for _, c in one]):.2f}",
        )
    )
    print(table(("quorum queue, persistent, confirms", "publish msgs/s", "consume msgs/s (prefetch 16)"), rows))


if __name__ == "__main__":
    main()
