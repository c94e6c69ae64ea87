"""The app's production settings with Celery's stock worker consumer (reconnect every 2, 4, 6 ... 30 s):
the recovery benchmark's 'before' worker, beside one on the app's own settings."""

from config.settings.production import *  # noqa: F401,F403

CELERY_WORKER_CONSUMER = "celery.worker.consumer:Consumer"
