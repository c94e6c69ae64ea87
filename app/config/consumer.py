"""The worker's consumer: it reconnects to a restarted broker every RECONNECT_INTERVAL_S seconds, and sets
up native delayed delivery once per cluster, binding only the queues it consumes.

Reconnecting: Celery's stock consumer calls kombu's `ensure_connection` with fixed intervals of 2, 4, 6 ...
30 s (no setting changes them), so a worker came back 2-10 s after a broker that was down for 17-22 s, and
after a longer outage it can lag by up to 30 s; with this consumer, under 1 s. bench/recovery.py measures
both side by side (bench/RESULTS.md, "Recovery"). Here the intervals are bounded at one second;
CELERY_BROKER_CONNECTION_MAX_RETRIES is raised to match, so the worker waits about as long in total before
giving up (see config/settings/base.py).

Delayed delivery, once per cluster: Celery's DelayedDelivery step declares the delayed-delivery exchanges and
queues and binds the task queues on *every* URL of a failover list, in no fixed order, retrying each for
about 10 s. The URLs of this stack are the nodes of one cluster, whose exchanges, queues and bindings are
cluster-wide: one node that answers is enough. With the stock step, a worker reconnecting after its node was
SIGKILLed spent 19 s retrying the dead node before it consumed again (tests/app/test_cluster.py); this step
starts with the node the worker is connected to.

Delayed delivery, own queues only: the stock step binds *every* queue of `task_queues` to
`celery_delayed_delivery` (`#.<key>`), which needs `write` on each of them; a worker of one pool may write
only to its own (docs/security.md), and the queue it consumes is the one whose delayed tasks must reach
it. Each pool binds its own queues.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery as CeleryDelayedDelivery
from kombu import Connection
from kombu.utils.url import maybe_sanitize_url

RECONNECT_INTERVAL_S = 1.0
STOCK_DELAYED_DELIVERY = "celery.worker.consumer.delayed_delivery:DelayedDelivery"

logger = logging.getLogger(__name__)


def _node(connection) -> tuple:
    """(host, port) of a URL or a kombu Connection (a failover one: the node it is on now)."""
    if connection is None:
        return ()
    if isinstance(connection, str):
        connection = Connection(connection)
    return connection.hostname, connection.port


class DelayedDelivery(CeleryDelayedDelivery):
    """Native delayed delivery set up through the first node that answers, the worker's own first, binding
    the queues this worker consumes."""

    def _bind_queues(self, app, connection) -> None:
        # The stock step reads only `app.amqp.queues.values()`: hand it the consumed queues alone.
        consumed = SimpleNamespace(amqp=SimpleNamespace(queues=app.amqp.queues.consume_from))
        super()._bind_queues(consumed, connection)

    def start(self, c) -> None:
        self._validate_configuration(c.app)
        urls = (
            [u for u in c.app.conf.broker_url.split(";") if u]
            if isinstance(c.app.conf.broker_url, str)
            else list(c.app.conf.broker_url)
        )
        for url in sorted(urls, key=lambda u: _node(u) != _node(c.connection)):
            try:
                self._setup_delayed_delivery(c, url)
                return
            except Exception as exc:  # noqa: BLE001 (the next node may answer; the stock step retries below)
                logger.warning(
                    "delayed delivery: %s did not answer (%s), trying the next node", maybe_sanitize_url(url), exc
                )
        super().start(c)  # no node answered: Celery's own retries and error reporting


class Consumer(CeleryConsumer):
    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [
            f"{__name__}:DelayedDelivery" if step == STOCK_DELAYED_DELIVERY else step
            for step in CeleryConsumer.Blueprint.default_steps
        ]

    def ensure_connected(self, conn):
        stock = conn.ensure_connection

        def bounded(*args, **kwargs):
            kwargs.setdefault("interval_start", 0)
            kwargs.setdefault("interval_step", RECONNECT_INTERVAL_S)
            kwargs.setdefault("interval_max", RECONNECT_INTERVAL_S)
            return stock(*args, **kwargs)

        conn.ensure_connection = bounded
        return super().ensure_connected(conn)
