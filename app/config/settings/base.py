"""Settings every environment shares. Everything that differs comes from the environment:

DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DJANGO_DATA_DIR, DATABASE_URL, CELERY_BROKER_URL,
CELERY_TOPOLOGY_FILE, RIOT_API_KEY, RIOT_API_BASE_URL (see docs/app.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config import topology

APP_DIR = Path(__file__).resolve().parent.parent.parent  # app/
DATA_DIR = Path(os.environ.get("DJANGO_DATA_DIR", APP_DIR))


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Django -----------------------------------------------------------------------------------------
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
DEBUG = False
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "players",
    "matches",
    "riot",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES: list = []
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def database(url: str | None) -> dict:
    """DATABASE_URL, or the embedded SQLite file under DJANGO_DATA_DIR (default app/db.sqlite3)."""
    config = dj_database_url.parse(
        url or f"sqlite:///{DATA_DIR / 'db.sqlite3'}", conn_max_age=60, conn_health_checks=True
    )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            # Web and worker processes write the same file: wait for the lock instead of failing at once,
            # take it when a transaction starts (no deadlocked read-then-write upgrades), and let readers
            # read while one process writes (WAL).
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


DATABASES = {"default": database(os.environ.get("DATABASE_URL"))}
# The Riot rate limiter's store (riot/ratelimit.py): the app's database, or its own when this is set.
if os.environ.get("RIOT_RATE_LIMIT_DATABASE_URL"):
    DATABASES["ratelimit"] = database(os.environ["RIOT_RATE_LIMIT_DATABASE_URL"])
    # A store that does not answer within a second: the limiter goes on per process instead of waiting.
    if DATABASES["ratelimit"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["ratelimit"]["OPTIONS"]["timeout"] = 1
    else:
        DATABASES["ratelimit"].setdefault("OPTIONS", {})["connect_timeout"] = 2
RIOT_RATE_LIMIT_DATABASE = "ratelimit" if "ratelimit" in DATABASES else "default"
DATABASE_ROUTERS = ["riot.routers.RateLimitRouter"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}

# --- Riot API ---------------------------------------------------------------------------------------
RIOT_API_KEY = os.environ.get("RIOT_API_KEY", "")
RIOT_API_BASE_URL = os.environ.get("RIOT_API_BASE_URL", "https://{routing}.api.riotgames.com")
if "{routing}" not in RIOT_API_BASE_URL:
    raise ImproperlyConfigured("RIOT_API_BASE_URL must contain {routing}, e.g. https://{routing}.api.riotgames.com")
# The Riot rate limiter (docs/rate-limits.md). The application limit until Riot's headers say otherwise:
# a development key's 20 per second and 100 per 2 minutes, per routing region.
RIOT_APP_RATE_LIMIT = os.environ.get("RIOT_APP_RATE_LIMIT", "20:1,100:120")
# When the limiter's store does not answer, each worker process keeps 1/this of a limit (set per pool by the
# stack: its processes × the number of pools).
RIOT_RATE_LIMIT_PROCESSES = int(os.environ.get("RIOT_RATE_LIMIT_PROCESSES", "1"))
RIOT_RATE_LIMIT_MARGIN_S = 0.05  # added to each window: the spread of request latencies Riot counts by arrival
RIOT_RATE_LIMIT_INLINE_WAIT_S = 10.0  # a slot further away than this: the task is delayed instead of sleeping
# A task that keeps getting 429s fails (and is parked) once its 429 waits add up to more than this.
RIOT_RATE_LIMIT_MAX_WAIT_S = float(os.environ.get("RIOT_RATE_LIMIT_MAX_WAIT_S", 15 * 60))
RIOT_MATCHES_PER_SYNC = 20  # recent matches a sync job fetches
SYNC_JOB_STALE_AFTER_S = 30 * 60  # a running job untouched this long is recovered (players.tasks.recover_stale_jobs)
DATA_RETENTION_DAYS = 90  # matches.tasks.purge_old_data deletes matches and finished jobs older than this

# --- Celery (namespace CELERY: Django setting CELERY_X is Celery's x) --------------------------------
# amqps://user:pass@rabbitmq:5671/%2F with TLS: then celery.json's broker_tls gives CELERY_BROKER_USE_SSL (the CA
# and the client certificate's paths, verification required: config/topology.py).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-url
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
CELERY_TOPOLOGY_FILE = os.environ.get("CELERY_TOPOLOGY_FILE", "")


def celery_topology(path: str) -> dict:
    """Queues, exchanges, routes, rate limits, the default queue and the broker-derived limits: only from
    the rendered celery.json (CELERY_TOPOLOGY_FILE)."""
    if not path:
        raise ImproperlyConfigured(
            "CELERY_TOPOLOGY_FILE is not set: point it at the rendered celery.json "
            "(python -m infra render --stack dev --out build/dev)"
        )
    try:
        declarations = topology.load(path)
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"CELERY_TOPOLOGY_FILE {path}: {exc} (render it: python -m infra render --stack dev --out build/dev)"
        ) from exc
    return {f"CELERY_{key.upper()}": value for key, value in topology.celery_settings(declarations).items()}


# Reliability. Each setting says why; the seed's are marked (seed).
CELERY_TASK_ACKS_LATE = True  # (seed) ack after the task ran: a task whose worker dies is redelivered
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # (seed) a worker holds one unstarted task per process, no more
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # (seed) a killed pool process requeues its task instead of acking it
# A failed task (retries exhausted, or an error that is not worth retrying) is rejected without requeue,
# so the queue's dead-letter policy parks it in dead_letters, instead of being acked and silently lost.
# A hard time-limit kill is rejected *with* requeue: the queue's delivery limit then parks it.
CELERY_TASK_ACKS_ON_FAILURE = False
CELERY_TASK_ACKS_ON_TIMEOUT = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True  # (seed) a worker started before the broker waits for it
CELERY_BROKER_CONNECTION_RETRY = True  # (seed) and reconnects by itself after a broker restart
# A worker retries its broker connection every second (config/consumer.py; Celery's stock 2, 4 ... 30 s
# brought a worker back up to 10 s after a restarted broker: bench/RESULTS.md, "Recovery"), 3,000 times:
# about 50 minutes, as long as Celery's default 100 retries at up to 30 s waited.
CELERY_WORKER_CONSUMER = "config.consumer:Consumer"
CELERY_BROKER_CONNECTION_MAX_RETRIES = 3000
# Publisher confirms: a publish returns only once the broker has the message (or raises, e.g. when a full
# queue refuses it with overflow reject-publish), so neither the web nor a task acks what was never stored.
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"  # written to disk: survives a broker crash (durable queues)
# Retry a publish through a broker restart (about 40 s) instead of Celery's default of under a second.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 10, "interval_start": 0, "interval_step": 1, "interval_max": 5}
# Quorum-queue settings (per-consumer prefetch, native delayed delivery on quorum queues routed back over
# the topic exchange) are set from celery.json where its queues are quorum: config/topology.py.
# On connection loss, unacked deliveries go back to the queue anyway: stop the running copies instead of
# letting them finish next to the redelivered ones.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Progress lives in the database (SyncJob); task results are not stored anywhere.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "recover-stale-jobs": {"task": "players.tasks.recover_stale_jobs", "schedule": 10 * 60},
    "purge-old-data": {"task": "matches.tasks.purge_old_data", "schedule": 24 * 60 * 60},
}
