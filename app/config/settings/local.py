"""Development: DEBUG, a fixed insecure key, localhost only. CELERY_TOPOLOGY_FILE defaults to the dev
stack's celery.json as `make render STACK=dev` writes it."""

import os

from .base import *  # noqa: F401,F403
from .base import APP_DIR, celery_topology, env_list

DEBUG = True
SECRET_KEY = SECRET_KEY or "local-development-only-not-secret"  # noqa: F405
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CELERY_TOPOLOGY_FILE = os.environ.get("CELERY_TOPOLOGY_FILE") or str(APP_DIR.parent / "build" / "dev" / "celery.json")
globals().update(celery_topology(CELERY_TOPOLOGY_FILE))
