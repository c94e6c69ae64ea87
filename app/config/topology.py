"""celery.json → Celery settings: the only place queues, exchanges, routes, rate limits, the default queue,
the broker-derived limits and the broker's TLS files come from.

`celery.json` is rendered by the stack toolkit (`python -m infra render`) from the same plan that declares
the queues on the broker, so what the app declares is exactly what the broker has (a queue declared with
other arguments would fail with PRECONDITION_FAILED).
"""

from __future__ import annotations

import json
import math
import ssl
from pathlib import Path

from kombu import Exchange, Queue

# A task must finish well before the broker's consumer timeout, or the broker closes the worker's channel
# and every unacknowledged delivery on it (other tasks too) is redelivered. The hard limit kills a runaway
# task at 80% of the timeout; the soft limit, at 70%, first raises SoftTimeLimitExceeded so it can clean up.
HARD_LIMIT_FRACTION = 0.8
SOFT_LIMIT_FRACTION = 0.7
# The priority of work nobody waits for (recovery's re-sends): the lowest, so on a queue with priorities
# (celery.json's routes carry the user-facing one) a sync a user asked for runs first.
BACKGROUND_PRIORITY = 0


def _queue(declaration: dict) -> Queue:
    exchange = Exchange(
        declaration["exchange"], type=declaration["exchange_type"], durable=declaration["exchange_durable"]
    )
    # no_declare: the deployer declares the queue, its exchange and binding; the app's users may not
    # (no `configure` on them: docs/security.md), and kombu then neither declares nor binds them.
    return Queue(
        declaration["name"],
        exchange,
        routing_key=declaration["routing_key"],
        durable=declaration["durable"],
        queue_arguments=declaration["queue_arguments"],
        no_declare=declaration.get("no_declare", False),
    )


class RegionalRouter:
    """Celery router of celery.json's `task_regional_routes`: the task goes to the queue of the Riot routing
    region its arguments call (the task's `riot_region(*args, **kwargs)`), else to the `default` one."""

    def __init__(self, routes: dict):
        self.routes = routes

    def __call__(self, name, args, kwargs, options, task=None, **kw):
        by_region = self.routes.get(name)
        if not by_region:
            return None
        if task is None:  # send_task by name
            from celery import current_app

            task = current_app.tasks.get(name)
        region = task.riot_region(*(args or ()), **(kwargs or {})) if task is not None else None
        return dict(by_region.get(region) or by_region["default"])  # a copy: Celery's router pops from it


def time_limits(consumer_timeout_ms: int) -> tuple[int, int]:
    """(soft, hard) task time limits in whole seconds, both below the broker's consumer timeout."""
    timeout_s = consumer_timeout_ms / 1000
    hard = max(1, math.floor(timeout_s * HARD_LIMIT_FRACTION))
    soft = max(1, min(hard - 1, math.floor(timeout_s * SOFT_LIMIT_FRACTION))) if hard > 1 else 1
    return soft, hard


def celery_settings(declarations: dict) -> dict:
    """Celery settings (lower-case names) from the content of celery.json."""
    settings = {
        "task_queues": [_queue(d) for d in declarations["task_queues"]],
        # the regional routes first: a task is in one of the two
        "task_routes": (RegionalRouter(declarations.get("task_regional_routes", {})), declarations["task_routes"]),
        "task_annotations": declarations["task_annotations"],
        "task_default_queue": declarations["task_default_queue"],
        "task_default_exchange": declarations["task_default_exchange"],
        "task_default_exchange_type": declarations["task_default_exchange_type"],
        "task_default_routing_key": declarations["task_default_routing_key"],
        "task_create_missing_queues": False,  # a queue that is not in celery.json is a bug, not a queue
    }
    if declarations.get("task_compression"):
        # Every task body compressed (routes may pick another codec); the worker decompresses by the
        # message's own `compression` header.
        settings["task_compression"] = declarations["task_compression"]
    if any(d["queue_arguments"].get("x-queue-type") == "quorum" for d in declarations["task_queues"]):
        # Quorum queues: Celery detects them and uses per-consumer prefetch (they refuse global QoS), and
        # sends countdowns and retries through native delayed delivery, whose own queues are quorum too.
        settings["worker_detect_quorum_queues"] = True
        settings["broker_native_delayed_delivery_queue_type"] = "quorum"
    if "broker_heartbeat_s" in declarations:
        # The broker proposes its heartbeat and the lower of the two wins; asking for the same value keeps
        # a dead connection detected within 2 heartbeats on both sides.
        settings["broker_heartbeat"] = int(declarations["broker_heartbeat_s"])
    if declarations.get("broker_tls"):
        # AMQPS with verification both ways: the broker's certificate must chain to the stack's CA and name
        # the URL's host (server_hostname None: kombu puts the URL's host there, and py-amqp then checks the
        # name), and the app presents its client certificate (the broker requires one with mutual TLS).
        # https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-use-ssl
        # https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.pyamqp.html
        settings["broker_use_ssl"] = {
            **declarations["broker_tls"],
            "cert_reqs": ssl.CERT_REQUIRED,
            "server_hostname": None,
        }
    if "broker_consumer_timeout_ms" in declarations:
        soft, hard = time_limits(int(declarations["broker_consumer_timeout_ms"]))
        settings["task_soft_time_limit"] = soft
        settings["task_time_limit"] = hard
    return settings


def load(path: str | Path) -> dict:
    """The declarations of the celery.json at `path`."""
    return json.loads(Path(path).read_text())


def dead_letter_queue(declarations: dict) -> dict:
    """The declaration of the parking queue dead letters go to (the first, there is one per vhost)."""
    parking = declarations.get("dead_letter", {}).get("parking_queues", [])
    if not parking:
        raise LookupError("celery.json declares no parking queue")
    return parking[0]


def queue_declaration(declarations: dict, name: str) -> dict:
    for declaration in declarations["task_queues"]:
        if declaration["name"] == name:
            return declaration
    raise LookupError(f"queue {name!r} is not a task queue of celery.json")
