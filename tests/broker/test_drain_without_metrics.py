"""`migrate`'s drain decision (is the queue empty, and no consumer holds one of its messages?) with the
management metrics collection on, and on a 4.x node also with it off (`broker.management_metrics: false`,
the deprecated feature denied): a backlog, part of it held unacknowledged by a consumer that lets go only
later, moved classic → quorum with none lost and none left behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pika
import pytest

from infra.ops.broker_api import ManagementClient
from infra.ops.migrator import Migrator, run_all
from tests.app.migration_rig import OVERLAY
from tests.support.rabbit_node import Ports, RabbitNode
from tests.support.rabbit_series import current
from tests.support.stacks import TEST_SECRETS, render_for_node
from tests.support.waiting import wait_for

BACKLOG = 2000
HELD = 50  # deliveries a consumer holds unacknowledged while the migration starts
HOLD_S = 12  # longer than the drain's quiet period: a decision from "ready = 0" alone would delete them
METRICS = [True] + ([False] if not current().name.startswith("3.") else [])  # 3.x has no such switch
PASSWORDS = {**TEST_SECRETS, "workerEffectsPassword": "worker-effects-password"}


def variant(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("metrics", METRICS, ids=lambda m: f"management_metrics={str(m).lower()}")
def test_a_migration_waits_for_held_messages_whatever_the_metrics(metrics, tmp_path):
    switch = f"broker: {{management_metrics: {str(metrics).lower()}}}\n"
    classic = variant(tmp_path, "classic", switch + "vhosts: {'/': {queues: {effects: {type: classic}}}}\n")
    quorum = variant(tmp_path, "quorum", switch + "vhosts: {'/': {queues: {effects: {type: quorum}}}}\n")
    ports = Ports.pick()
    before = render_for_node(ports, stack="dev", overlays=(OVERLAY, classic), passwords=PASSWORDS)
    after = render_for_node(ports, stack="dev", overlays=(OVERLAY, quorum), passwords=PASSWORDS)
    conf = (before.config_dir / "rabbitmq.conf").read_text()
    assert ("deprecated_features.permit.management_metrics_collection = false" in conf) is (not metrics)
    node = RabbitNode(before.config_dir, ports)
    node.start()
    try:
        admin = TEST_SECRETS["rabbitmqAdminPassword"]
        with pika.BlockingConnection(node.amqp_params("/", "admin", admin)) as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            for i in range(BACKLOG):
                channel.basic_publish("tasks", "effects", str(i).encode(), pika.BasicProperties(delivery_mode=2))
        holder = pika.BlockingConnection(node.amqp_params("/", "admin", admin))
        channel = holder.channel()
        channel.basic_qos(prefetch_count=HELD)
        held = []
        channel.basic_consume("effects", lambda ch, method, props, body: held.append(method.delivery_tag))
        deadline = time.monotonic() + 30
        while len(held) < HELD and time.monotonic() < deadline:
            holder.process_data_events(0.2)
        assert len(held) == HELD

        client = ManagementClient(f"http://127.0.0.1:{ports.management}", "admin", admin)
        migrator = Migrator(client, after.plan, progress=print, timeout_s=300)
        queue = client.get("queues/%2F/effects")
        print(f"management_metrics={metrics}: the queue's own page reports messages: {'messages' in queue}")
        # ready and held together, read either way (the statistics are emitted every 5 s)
        wait_for(lambda: migrator._messages("/", "effects") == BACKLOG, 30, "the queue's count", interval=1)
        done = threading.Event()
        worker = threading.Thread(target=lambda: (run_all(migrator), done.set()), daemon=True)
        worker.start()
        let_go = time.monotonic() + HOLD_S
        while time.monotonic() < let_go:
            holder.process_data_events(0.5)
        assert not done.is_set(), "the migration finished while a consumer still held its messages"
        holder.close()  # the held deliveries go back to the queue, and the migration moves them too
        worker.join(timeout=300)
        assert done.is_set()
        with pika.BlockingConnection(node.amqp_params("/", "admin", admin)) as connection:
            moved = connection.channel().queue_declare("effects", passive=True).method.message_count
        assert moved == BACKLOG
        assert client.get("queues/%2F/effects")["type"] == "quorum"
        assert not [q for q in client.get("queues") if q["name"].endswith(".migrating")]
    finally:
        node.close()
