"""celery.json → Celery settings with kombu objects: what the Celery app does with the rendered file."""
from __future__ import annotations

from kombu import Exchange, Queue


def _queue(declaration: dict) -> Queue:
    exchange = Exchange(declaration["exchange"], type=declaration["exchange_type"],
                        durable=declaration["exchange_durable"])
    return Queue(declaration["name"], exchange, routing_key=declaration["routing_key"],
                 durable=declaration["durable"], queue_arguments=declaration["queue_arguments"])


def celery_settings(declarations: dict) -> dict:
    return {
        "task_queues": [_queue(d) for d in declarations["task_queues"]],
        "task_routes": declarations["task_routes"],
        "task_annotations": declarations["task_annotations"],
        "task_default_queue": declarations["task_default_queue"],
        "task_default_exchange": declarations["task_default_exchange"],
        "task_default_exchange_type": declarations["task_default_exchange_type"],
        "task_default_routing_key": declarations["task_default_routing_key"],
        "task_create_missing_queues": False,  # a queue that is not in celery.json is a bug, not a queue
    }
