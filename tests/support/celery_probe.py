"""A Celery app for the broker tests' real workers: its settings come only from the rendered celery.json
(CELERY_TOPOLOGY_FILE), as the Django app's do, and each task appends what it ran to PROBE_LOG.

`celery -A tests.support.celery_probe worker ...`, with CELERY_BROKER_URL, CELERY_TOPOLOGY_FILE, PROBE_LOG.
"""

from __future__ import annotations

import hashlib
import json
import os

from celery import Celery

from config.topology import celery_settings, load

app = Celery("probe", broker=os.environ.get("CELERY_BROKER_URL"))
app.conf.update(
    celery_settings(load(os.environ["CELERY_TOPOLOGY_FILE"])),
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def _record(entry: dict) -> None:
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")


@app.task(name="probe.urgent")
def urgent(label: str) -> None:
    _record({"label": label})


@app.task(name="probe.background")
def background(label: str) -> None:
    _record({"label": label})


@app.task(name="probe.bulk")
def bulk(payload: str) -> None:
    _record({"sha256": hashlib.sha256(payload.encode()).hexdigest(), "length": len(payload)})
