"""The rate limiter's shared state (riot/ratelimit.py): one row per key, one per granted request."""

from django.db import models


class RateKey(models.Model):
    """A routing region (application limit) or `region:method` (method limit)."""

    key = models.CharField(max_length=100, primary_key=True)
    limits = models.CharField(max_length=200, blank=True, default="")  # as learned from Riot: "20:1,100:120"
    blocked_until = models.FloatField(default=0.0)  # epoch seconds: a 429's Retry-After, for everyone


class RateGrant(models.Model):
    key = models.CharField(max_length=100)
    at = models.FloatField()  # epoch seconds

    class Meta:
        indexes = [models.Index(fields=["key", "at"], name="riot_grant_key_at")]
