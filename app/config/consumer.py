"""The worker's consumer, reconnecting to a restarted broker every RECONNECT_INTERVAL_S seconds.

Celery's stock consumer calls kombu's `ensure_connection` with fixed intervals of 2, 4, 6 ... 30 s (no
setting changes them), so a worker came back 2-10 s after a broker that was down for 17-22 s, and after
a longer outage it can lag by up to 30 s; with this consumer, under 1 s. bench/recovery.py measures both
side by side (bench/RESULTS.md, "Recovery").
Here the intervals are bounded at one second; CELERY_BROKER_CONNECTION_MAX_RETRIES is raised to match,
so the worker waits about as long in total before giving up (see config/settings/base.py).
"""
from __future__ import annotations

from celery.worker.consumer import Consumer as CeleryConsumer

RECONNECT_INTERVAL_S = 1.0


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn):
        stock = conn.ensure_connection

        def bounded(*args, **kwargs):
            kwargs.setdefault("interval_start", 0)
            kwargs.setdefault("interval_step", RECONNECT_INTERVAL_S)
            kwargs.setdefault("interval_max", RECONNECT_INTERVAL_S)
            return stock(*args, **kwargs)

        conn.ensure_connection = bounded
        return super().ensure_connected(conn)
