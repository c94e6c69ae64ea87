"""pytest: eager tasks, an in-memory broker, the shipped dev topology, a fake Riot host."""

import os

from .base import *  # noqa: F401,F403
from .base import APP_DIR, celery_topology

SECRET_KEY = "test-only"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
CELERY_TOPOLOGY_FILE = os.environ.get("CELERY_TOPOLOGY_FILE") or str(
    APP_DIR.parent / "tests" / "golden" / "dev" / "celery.json"
)
globals().update(celery_topology(CELERY_TOPOLOGY_FILE))
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
RIOT_API_KEY = "test-key"
RIOT_APP_RATE_LIMIT = "500:10,30000:600"  # a production key's: the eager tests are not about limits
RIOT_API_BASE_URL = os.environ.get("RIOT_API_BASE_URL", "http://riot.invalid/{routing}")
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
