"""The rate limiter's tables live in RIOT_RATE_LIMIT_DATABASE: the app's database unless
RIOT_RATE_LIMIT_DATABASE_URL names another (riot/ratelimit.py)."""

from django.conf import settings


class RateLimitRouter:
    def db_for_read(self, model, **hints):
        return settings.RIOT_RATE_LIMIT_DATABASE if model._meta.app_label == "riot" else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        if settings.RIOT_RATE_LIMIT_DATABASE == "default":
            return None
        return (db == settings.RIOT_RATE_LIMIT_DATABASE) == (app_label == "riot")
