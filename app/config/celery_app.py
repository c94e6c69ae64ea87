"""The Celery app: `celery -A config worker -l info -Q player_sync`, `celery -A config beat -l info`.

Every setting comes from Django's settings under the CELERY_ namespace (config/settings/base.py), and
the queues, routes and rate limits in them only from the rendered celery.json (CELERY_TOPOLOGY_FILE).
"""

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def mark_ready(**_) -> None:
    """Touch CELERY_WORKER_READY_FILE once the worker consumes: its container's health check pings it only
    then (infra/plan/services.py, WORKER_READY)."""
    ready = os.environ.get("CELERY_WORKER_READY_FILE")
    if ready:
        Path(ready).touch()
