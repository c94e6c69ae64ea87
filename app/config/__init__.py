# The Celery app is loaded with Django, so shared_task uses it (`celery -A config` finds it here too).
from .celery_app import app as celery_app

__all__ = ("celery_app",)
