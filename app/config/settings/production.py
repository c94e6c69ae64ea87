"""Containers: every secret from the environment, no defaults for them."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import CELERY_TOPOLOGY_FILE, celery_topology

if not SECRET_KEY:  # noqa: F405
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is not set (it has no default in production)")
if not ALLOWED_HOSTS:  # noqa: F405
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is not set (a comma list of host names)")

DEBUG = False
SECURE_CONTENT_TYPE_NOSNIFF = True
globals().update(celery_topology(CELERY_TOPOLOGY_FILE))
