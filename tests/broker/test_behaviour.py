"""What the rendered policies and permissions make a real broker do: TTL, overflow, delivery limits,
persistence across a crash and a restart, and what each role may and may not do."""

from __future__ import annotations

import time
from pathlib import Path

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, NackError

from tests.support.rabbit_series import current
from tests.support.stacks import booted

DEFINITION = Path("tests/data/valid/behaviour.yaml")
VHOST = "behaviour"
WAIT_S = 15  # the longest any broker-side effect here may take; every poll below is bounded by it


@pytest.fixture(scope="module")
def broker():
    with booted(file=DEFINITION) as (node, rendered):
        yield node, rendered


def connect(node, rendered, user: str = "admin") -> pika.BlockingConnection:
    credentials = pika.PlainCredentials(user, rendered.password(user))
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", node.ports.amqp, VHOST, credentials, connection_attempts=5, retry_delay=1
        )
    )


@pytest.fixture
def channel(broker):
    node, rendered = broker
    connection = connect(node, rendered)
    ch = connection.channel()
    ch.confirm_delivery()  # every publish below waits for the broker's confirm (or raises NackError)
    for queue in rendered.plan.topology.queues:
        ch.queue_purge(queue.name)
    yield ch
    if connection.is_open:
        connection.close()


PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


def publish(ch, queue: str, body: str, properties=PERSISTENT) -> None:
    ch.basic_publish("tasks", queue, body.encode(), properties, mandatory=True)


def depth(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def get_parked(ch, timeout: float = WAIT_S):
    """The next dead letter in `parked`, waiting up to `timeout`; (properties, body) or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, properties, body = ch.basic_get("parked", auto_ack=True)
        if method:
            return properties, body.decode()
        time.sleep(0.1)
    return None


@pytest.mark.parametrize("queue", ["ttl_quorum", "ttl_classic"])
def test_message_past_its_ttl_is_dead_lettered_as_expired(channel, queue):
    publish(channel, queue, "stale")
    parked = get_parked(channel)
    assert parked is not None, "nothing dead-lettered within the wait"
    properties, body = parked
    death = properties.headers["x-death"][0]
    assert (body, death["reason"], death["queue"]) == ("stale", "expired", queue)
    assert depth(channel, queue) == 0


@pytest.mark.parametrize("queue", ["drop_head_quorum", "drop_head_classic"])
def test_drop_head_dead_letters_the_oldest(channel, queue):
    for body in ("first", "second", "third"):
        publish(channel, queue, body)
    properties, body = get_parked(channel)
    assert (body, properties.headers["x-death"][0]["reason"]) == ("first", "maxlen")
    assert [channel.basic_get(queue, auto_ack=True)[2].decode() for _ in range(2)] == ["second", "third"]


def publish_outcomes(ch, queue: str, count: int) -> list[str]:
    outcomes = []
    for i in range(count):
        try:
            publish(ch, queue, f"message {i}")
            outcomes.append("ack")
        except NackError:
            outcomes.append("nack")
    return outcomes


@pytest.mark.parametrize("queue, accepted", [("reject_classic", 2), ("reject_quorum", 3)])
def test_reject_publish_nacks_the_publisher_and_keeps_the_queue(channel, queue, accepted):
    # max_length 2. A classic queue refuses the third message; a quorum queue finds it is full only
    # after applying the message that overfills it, so it holds one more (RabbitMQ 3.10 to 4.x).
    outcomes = publish_outcomes(channel, queue, 6)
    assert outcomes == ["ack"] * accepted + ["nack"] * (6 - accepted)
    assert depth(channel, queue) == accepted
    assert get_parked(channel, timeout=1) is None  # refused, not dead-lettered
    channel.basic_get(queue, auto_ack=True)
    channel.basic_get(queue, auto_ack=True)  # room again: publishes are confirmed again
    time.sleep(0.2)
    assert publish_outcomes(channel, queue, 1) == ["ack"]


def test_reject_publish_dlx_nacks_and_dead_letters_the_refused_message(channel):
    publish(channel, "reject_dlx_classic", "first")
    publish(channel, "reject_dlx_classic", "second")
    with pytest.raises(NackError):
        publish(channel, "reject_dlx_classic", "third")
    properties, body = get_parked(channel)
    assert (body, properties.headers["x-death"][0]["reason"]) == ("third", "maxlen")


def test_max_length_bytes_refuses_what_does_not_fit(channel):
    publish(channel, "bytes_classic", "x" * 600)
    with pytest.raises(NackError):
        publish(channel, "bytes_classic", "y" * 600)  # 1200 bytes > 1kB
    assert depth(channel, "bytes_classic") == 1


def reject_until_gone(ch, queue: str, most: int) -> int:
    """Get and reject (requeue) the queue's message until it is gone or `most` deliveries; how many."""
    deliveries = 0
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and deliveries < most:
        method, _, _ = ch.basic_get(queue)
        if method is None:
            if depth(ch, queue) == 0:
                break
            time.sleep(0.05)
            continue
        deliveries += 1
        ch.basic_reject(method.delivery_tag, requeue=True)
    return deliveries


def test_quorum_message_rejected_past_its_delivery_limit_is_dead_lettered(channel):
    publish(channel, "limited_quorum", "poison")
    deliveries = reject_until_gone(channel, "limited_quorum", 10)
    properties, body = get_parked(channel)
    death = properties.headers["x-death"][0]
    assert (body, death["reason"], death["queue"]) == ("poison", "delivery_limit", "limited_quorum")
    assert deliveries == 3  # delivery_limit: 2 → the third return is one too many


def test_quorum_queue_without_delivery_limit_follows_its_series(channel):
    """RabbitMQ 3.x requeues a rejected quorum message forever; 4.x dead-letters it after 20 returns."""
    publish(channel, "unlimited_quorum", "poison")
    deliveries = reject_until_gone(channel, "unlimited_quorum", 30)
    if current().name.startswith("3."):
        assert deliveries == 30
        deadline = time.monotonic() + WAIT_S  # the last return is applied by the queue's Raft log, not at once
        while depth(channel, "unlimited_quorum") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert depth(channel, "unlimited_quorum") == 1  # still there, to be delivered a 31st time
        assert get_parked(channel, timeout=1) is None
        return
    assert deliveries == 21  # the default delivery limit 20 → the 21st return is one too many
    properties, body = get_parked(channel)
    death = properties.headers["x-death"][0]
    assert (body, death["reason"], death["queue"]) == ("poison", "delivery_limit", "unlimited_quorum")


@pytest.mark.parametrize("crash", [True, False], ids=["sigkill", "clean-restart"])
def test_confirmed_persistent_messages_survive_a_broker_restart(broker, crash):
    node, rendered = broker
    count = 500
    connection = connect(node, rendered)
    ch = connection.channel()
    ch.confirm_delivery()
    for queue in ("durable_quorum", "durable_classic"):
        ch.queue_purge(queue)
        for i in range(count):
            publish(ch, queue, f"{queue}-{i}")
    # Control: transient messages in a durable queue are not kept across a restart.
    transient = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Transient)
    for _ in range(10):
        ch.basic_publish("tasks", "durable_classic", b"transient", transient)
    assert depth(ch, "durable_classic") == count + 10
    connection.close()

    node.kill() if crash else node.stop()
    node.start()

    connection = connect(node, rendered)
    ch = connection.channel()
    for queue in ("durable_quorum", "durable_classic"):
        bodies = []
        for _ in range(count + 10):
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            bodies.append(body.decode())
        assert bodies == [f"{queue}-{i}" for i in range(count)], queue  # all of them, once, in order
    connection.close()


def test_publisher_may_publish_but_not_consume_or_declare(broker):
    node, rendered = broker
    connection = connect(node, rendered, "publisher")
    ch = connection.channel()
    ch.confirm_delivery()
    publish(ch, "durable_quorum", "from the publisher")
    with pytest.raises(ChannelClosedByBroker, match="ACCESS_REFUSED"):
        ch.basic_get("durable_quorum")
    with pytest.raises(ChannelClosedByBroker, match="ACCESS_REFUSED"):
        connection.channel().queue_declare("publisher_made_this", durable=True)
    connection.close()


def test_consumer_may_consume_but_not_configure_or_publish(broker):
    node, rendered = broker
    admin = connect(node, rendered).channel()
    admin.confirm_delivery()
    admin.queue_purge("durable_quorum")
    publish(admin, "durable_quorum", "for the consumer")

    connection = connect(node, rendered, "consumer")
    ch = connection.channel()
    method, _, body = ch.basic_get("durable_quorum", auto_ack=True)
    assert body == b"for the consumer"
    with pytest.raises(ChannelClosedByBroker, match="ACCESS_REFUSED"):
        connection.channel().queue_declare("consumer_made_this", durable=True)
    with pytest.raises(ChannelClosedByBroker, match="ACCESS_REFUSED"):
        connection.channel().exchange_declare("consumer_exchange", "topic", durable=True)
    with pytest.raises(ChannelClosedByBroker, match="ACCESS_REFUSED"):
        connection.channel().queue_delete("durable_quorum")
    publisher = connection.channel()
    publisher.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker, match="ACCESS_REFUSED"):
        publish(publisher, "durable_quorum", "not allowed")
    with pytest.raises(ChannelClosedByBroker, match="ACCESS_REFUSED"):
        connection.channel().basic_get("ttl_quorum")  # a queue outside its read pattern
    connection.close()
