"""The worker's consumer: it reconnects to a restarted broker every RECONNECT_INTERVAL_S seconds, and binds
only the queues it consumes to native delayed delivery.

Celery's stock consumer calls kombu's `ensure_connection` with fixed intervals of 2, 4, 6 ... 30 s (no
setting changes them), so a worker came back 2-10 s after a broker that was down for 17-22 s, and after
a longer outage it can lag by up to 30 s; with this consumer, under 1 s. bench/recovery.py measures both
side by side (bench/RESULTS.md, "Recovery").
Here the intervals are bounded at one second; CELERY_BROKER_CONNECTION_MAX_RETRIES is raised to match,
so the worker waits about as long in total before giving up (see config/settings/base.py).

Celery's DelayedDelivery step binds *every* queue of `task_queues` to `celery_delayed_delivery` (`#.<key>`),
which needs `write` on each of them; a worker of one pool may write only to its own (README, "Security"),
and the queue it consumes is the one whose delayed tasks must reach it. Each pool binds its own queues.
"""
from __future__ import annotations

from types import SimpleNamespace

from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery as CeleryDelayedDelivery

STOCK_DELAYED_DELIVERY = "celery.worker.consumer.delayed_delivery:DelayedDelivery"


class DelayedDelivery(CeleryDelayedDelivery):
    def _bind_queues(self, app, connection) -> None:
        # The stock step reads only `app.amqp.queues.values()`: hand it the consumed queues alone.
        consumed = SimpleNamespace(amqp=SimpleNamespace(queues=app.amqp.queues.consume_from))
        super()._bind_queues(consumed, connection)


RECONNECT_INTERVAL_S = 1.0


class Consumer(CeleryConsumer):
    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [f"{__name__}:DelayedDelivery" if step == STOCK_DELAYED_DELIVERY else step
                         for step in CeleryConsumer.Blueprint.default_steps]

    def ensure_connected(self, conn):
        stock = conn.ensure_connection

        def bounded(*args, **kwargs):
            kwargs.setdefault("interval_start", 0)
            kwargs.setdefault("interval_step", RECONNECT_INTERVAL_S)
            kwargs.setdefault("interval_max", RECONNECT_INTERVAL_S)
            return stock(*args, **kwargs)

        conn.ensure_connection = bounded
        return super().ensure_connected(conn)
