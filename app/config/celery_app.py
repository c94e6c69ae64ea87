"""The Celery app: `celery -A config worker -l info -Q player_sync`, `celery -A config beat -l info`.

Every setting comes from Django's settings under the CELERY_ namespace (config/settings/base.py), and
the queues, routes and rate limits in them only from the rendered celery.json (CELERY_TOPOLOGY_FILE).
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
