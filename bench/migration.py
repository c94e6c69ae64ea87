"""A queue's type changed with its messages in it: `python -m infra migrate`'s executor against a plain
hand-made shovel, on one real RabbitMQ node, for 10,000 and 100,000 persistent messages (issue 15).

Each run fills the classic queue `effects` (tests/app/data/migration.yaml over the dev stack) with N
persistent 200-byte messages, starts a publisher (50 messages/s, confirmed) and a consumer (prefetch 50,
10 ms of work and a manual ack per message, re-subscribing within 0.1 s when its queue is deleted or
missing), then:
- toolkit: `Migrator.run` re-creates `effects` as a quorum queue through `effects.migrating` (two shovels,
  on-confirm; the drain waits out the statistics interval); timed until it returns;
- hand-made: one dynamic shovel (on-confirm) from `effects` into a new quorum queue `effects.copy`, timed
  until the backlog is out of `effects`: the copy's messages (AMQP passive declare, exact) plus the ones the
  consumer (competing with the shovel) took, less the ones published meanwhile. It moves the messages once,
  to another name: the consumers and publishers must then be moved by hand, which is not timed.
The consumers' longest pause: the longest gap between two deliveries to the consumer during the run.
The queues are deleted and declared again between runs.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pika  # noqa: E402
from harness import machine  # noqa: E402
from stats import median, table  # noqa: E402

from infra.definition.load import load_definition, require  # noqa: E402
from infra.ops.broker_api import ManagementClient  # noqa: E402
from infra.ops.migration import Migration  # noqa: E402
from infra.ops.migrator import Migrator  # noqa: E402
from infra.plan.plan import build_plan  # noqa: E402
from tests.app.migration_rig import OVERLAY, QUEUE  # noqa: E402
from tests.support.rabbit_node import Ports, RabbitNode  # noqa: E402
from tests.support.stacks import TEST_SECRETS, render_for_node  # noqa: E402

ADMIN = ("admin", TEST_SECRETS["rabbitmqAdminPassword"])
BODY = b"x" * 200


class Load(threading.Thread):
    """The publisher (50/s into the `tasks` exchange) or the consumer (on `effects`), until stopped."""

    def __init__(self, node: RabbitNode, consume: bool):
        super().__init__(daemon=True)
        self.node, self.consume = node, consume
        self.halt = threading.Event()
        self.deliveries: list[float] = []
        self.errors: list[str] = []

    def connection(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(self.node.amqp_params("/", *ADMIN, heartbeat=30))

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                with self.connection() as connection:
                    channel = connection.channel()
                    self.consume_from(channel, connection) if self.consume else self.publish_to(channel, connection)
            except pika.exceptions.AMQPError as exc:
                self.errors.append(repr(exc))
                self.halt.wait(0.1)  # the queue is being re-created: subscribe again

    def publish_to(self, channel, connection) -> None:
        channel.confirm_delivery()
        start, sent = time.monotonic(), 0
        while not self.halt.is_set():
            channel.basic_publish("tasks", QUEUE, BODY, pika.BasicProperties(delivery_mode=2))
            self.deliveries.append(time.monotonic())  # the publisher's: its confirmed publishes
            sent += 1
            connection.sleep(max(0.0, start + sent / 50 - time.monotonic()))

    def consume_from(self, channel, connection) -> None:
        channel.basic_qos(prefetch_count=50)

        def on_message(ch, method, properties, body):
            self.deliveries.append(time.monotonic())
            time.sleep(0.01)  # a task's work: about 100 messages/s, so the backlog outlasts the migration
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(QUEUE, on_message)
        while not self.halt.is_set() and channel.consumer_tags:  # none: the broker cancelled it (queue deleted)
            connection.process_data_events(time_limit=0.2)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)

    def longest_gap(self, since: float) -> float:
        times = [t for t in self.deliveries if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def fill(node: RabbitNode, count: int) -> None:
    with pika.BlockingConnection(node.amqp_params("/", *ADMIN)) as connection:
        channel = connection.channel()
        channel.queue_delete(QUEUE)
        channel.queue_delete(QUEUE + ".copy")
        channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "classic"})
        channel.queue_bind(QUEUE, "tasks", QUEUE)
        for _ in range(count):  # unconfirmed, for speed; counted in below before the clock starts
            channel.basic_publish("", QUEUE, BODY, pika.BasicProperties(delivery_mode=2))
        deadline = time.monotonic() + 600
        while channel.queue_declare(QUEUE, passive=True).method.message_count < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{QUEUE} not filled with {count} messages")
            connection.sleep(0.2)


def ready(node: RabbitNode, queue: str) -> int:
    with pika.BlockingConnection(node.amqp_params("/", *ADMIN)) as connection:
        return connection.channel().queue_declare(queue, passive=True).method.message_count


def toolkit(node: RabbitNode, client: ManagementClient, plan, consumer: Load, publisher: Load) -> float:
    start = time.monotonic()
    Migrator(client, plan, progress=lambda line: None).run(Migration("/", QUEUE, QUEUE, "classic", "quorum"))
    return time.monotonic() - start


def hand_made(node: RabbitNode, client: ManagementClient, plan, consumer: Load, publisher: Load) -> float:
    backlog = ready(node, QUEUE)
    client.call("PUT", f"queues/%2F/{QUEUE}.copy", json={"durable": True, "arguments": {"x-queue-type": "quorum"}})
    start = time.monotonic()
    client.call(
        "PUT",
        "parameters/shovel/%2F/by-hand",
        json={
            "value": {
                "src-uri": "amqp://",
                "src-queue": QUEUE,
                "dest-uri": "amqp://",
                "dest-queue": QUEUE + ".copy",
                "ack-mode": "on-confirm",
            }
        },
    )
    deadline = start + 3600

    def taken() -> int:
        """Messages out of `effects` since the start (into the copy, or to the consumer, which competes with
        the shovel), less the ones the publisher added meanwhile."""
        since = lambda load: sum(1 for t in list(load.deliveries) if t >= start)  # noqa: E731
        return ready(node, QUEUE + ".copy") + since(consumer) - since(publisher)

    while taken() < backlog and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    client.call("DELETE", "parameters/shovel/%2F/by-hand")
    return elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args(argv)
    ports = Ports.pick()
    rendered = render_for_node(ports, stack="dev", overlays=(OVERLAY,))
    quorum = rendered.config_dir.parent / "quorum.yaml"
    quorum.write_text("vhosts: {'/': {queues: {effects: {type: quorum}}}}\n")
    plan = build_plan(
        require(load_definition(stack="dev", overlays=(rendered.config_dir.parent / "ports.yaml", OVERLAY, quorum)))
    )
    node = RabbitNode(rendered.config_dir, ports).start()
    client = ManagementClient(f"http://127.0.0.1:{ports.management}", *ADMIN)
    rows = []
    try:
        for size in args.sizes:
            figures = {"toolkit": ([], []), "hand-made shovel": ([], [])}
            for run in range(args.runs):
                for name, method in (("toolkit", toolkit), ("hand-made shovel", hand_made)):
                    fill(node, size)
                    consumer, publisher = Load(node, consume=True), Load(node, consume=False)
                    consumer.start()
                    publisher.start()
                    time.sleep(1)
                    start = time.monotonic()
                    figures[name][0].append(method(node, client, plan, consumer, publisher))
                    time.sleep(1)
                    publisher.stop()
                    consumer.stop()
                    figures[name][1].append(consumer.longest_gap(start))
                    print(
                        f"  consumer: {len(consumer.deliveries)} deliveries, errors {consumer.errors[:2]}; "
                        f"publisher errors {publisher.errors[:2]}",
                        file=sys.stderr,
                    )
                    print(
                        f"{size} {name} run {run + 1}: {figures[name][0][-1]:.1f} s, pause "
                        f"{figures[name][1][-1]:.1f} s",
                        file=sys.stderr,
                    )
            for name, (times, gaps) in figures.items():
                rows.append(
                    (
                        f"{size:,}",
                        name,
                        f"{median(times):.1f}",
                        f"{max(times):.1f}",
                        f"{median(gaps):.1f}",
                        f"{max(gaps):.1f}",
                    )
                )
    finally:
        node.close()
    print(f"{machine()}; {args.runs} run(s) per figure\n")
    print(
        table(
            (
                "messages",
                "method",
                "time median (s)",
                "time max (s)",
                "longest pause median (s)",
                "longest pause max (s)",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    main()
