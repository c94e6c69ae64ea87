"""One Riot rate limiter for every worker process on every host: per routing region (the application limit)
and per region and method (the method limits), in the database the app already shares.

Riot counts requests per key in sliding windows (`20:1,100:120` = 20 per second and 100 per 2 minutes).
Every request is first granted a slot here: a slot is free when, for each window of both keys, fewer than
`limit` grants fall within the last `window + margin` seconds; once its answer is back, a grant counts from
then (Riot counts by arrival, which is no later). The grants are rows in the limiter's store,
so every process sees every other's. The limits are learned from each response's `X-App-Rate-Limit` /
`X-Method-Rate-Limit` headers (until then the application limit is the configured RIOT_APP_RATE_LIMIT; a
method's limit is unknown until its first answer), and a 429's `Retry-After` blocks its key for everyone.

The store is the app's database (RIOT_RATE_LIMIT_DATABASE_URL may point elsewhere). When it does not answer,
each process keeps its own grants, with every limit divided by RIOT_RATE_LIMIT_PROCESSES (the number of
worker processes of the stack): slower, never more than the key allows, and no task fails over it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict, deque

from django.db import DatabaseError, transaction

log = logging.getLogger(__name__)

Limits = dict  # window seconds → requests allowed in it

PRUNE_EVERY = 50  # grants: one acquire in this many deletes the grants no window can see any more


def parse_limits(value: str | None) -> Limits:
    """'20:1,100:120' → {1: 20, 120: 100}; the headers' and RIOT_APP_RATE_LIMIT's format."""
    limits = {}
    for part in (value or "").split(","):
        count, _, window = part.strip().partition(":")
        if count.isdigit() and window.isdigit() and int(window) > 0:
            limits[int(window)] = int(count)
    return limits


def format_limits(limits: Limits) -> str:
    return ",".join(f"{count}:{window}" for window, count in sorted(limits.items()))


def app_key(region: str) -> str:
    return region


def method_key(region: str, method: str) -> str:
    return f"{region}:{method}"


def wait_for_slot(grants_newest_first: list[float], limits: Limits, now: float, margin: float) -> float:
    """Seconds until one more grant fits every window, given the key's grants (newest first)."""
    wait = 0.0
    for window, limit in limits.items():
        if limit <= 0:
            return float(window)
        in_window = [at for at in grants_newest_first[:limit] if at > now - window - margin]
        if len(in_window) >= limit:
            wait = max(wait, in_window[limit - 1] + window + margin - now)
    return wait


class MemoryStore:
    """The per-process fallback: the same rule over this process's own grants, each limit divided by the
    number of processes that share the key."""

    def __init__(self, processes: int):
        self.processes = max(1, processes)
        self.grants: dict[str, deque] = defaultdict(deque)
        self.blocked: dict[str, float] = {}
        self.lock = threading.Lock()

    def share(self, limits: Limits) -> Limits:
        return {window: max(1, count // self.processes) for window, count in limits.items()}

    def try_acquire(self, keys: dict[str, Limits], now: float, margin: float) -> float:
        with self.lock:
            wait = max([self.blocked.get(k, 0.0) - now for k in keys] + [0.0])
            for key, limits in keys.items():
                grants = self.grants[key]
                while grants and grants[0] < now - max(limits, default=0) - margin:
                    grants.popleft()
                wait = max(wait, wait_for_slot(list(reversed(grants)), self.share(limits), now, margin))
            if wait <= 0:
                for key in keys:
                    self.grants[key].append(now)
            return wait

    def block(self, key: str, until: float) -> None:
        with self.lock:
            self.blocked[key] = max(until, self.blocked.get(key, 0.0))


class DatabaseStore:
    """Grants and learned limits as rows (riot.models), one transaction per attempt: PostgreSQL locks the
    keys' rows (SELECT ... FOR UPDATE), SQLite's immediate transactions serialize the writers."""

    def __init__(self, alias: str):
        self.alias = alias
        self.acquires = 0
        self.learned: dict[str, Limits] = {}  # the keys' limits as last read from the store
        self.granted: list[int] = []  # the rows of the last slot taken

    def try_acquire(self, keys: dict[str, Limits], now: float, margin: float) -> float:
        from riot.models import RateGrant, RateKey

        with transaction.atomic(using=self.alias):
            RateKey.objects.using(self.alias).bulk_create([RateKey(key=k) for k in keys], ignore_conflicts=True)
            rows = list(
                RateKey.objects.using(self.alias).select_for_update().filter(key__in=list(keys)).order_by("key")
            )
            wait = max([row.blocked_until - now for row in rows] + [0.0])
            # what any process learned, as of this very transaction; else what this one knows
            learned = {row.key: parse_limits(row.limits) for row in rows if row.limits}
            self.learned.update(learned)
            keys = {key: learned.get(key, limits) for key, limits in keys.items()}
            for key, limits in keys.items():
                if not limits:
                    continue
                newest = list(
                    RateGrant.objects.using(self.alias)
                    .filter(key=key)
                    .filter(at__gt=now - max(limits) - margin)
                    .order_by("-at")
                    .values_list("at", flat=True)[: max(limits.values())]
                )
                wait = max(wait, wait_for_slot(newest, limits, now, margin))
            if wait <= 0:
                grants = RateGrant.objects.using(self.alias).bulk_create([RateGrant(key=k, at=now) for k in keys])
                self.granted = [g.pk for g in grants]
                self.acquires += 1
                if self.acquires % PRUNE_EVERY == 0:
                    horizon = now - max((max(lim, default=0) for lim in keys.values()), default=0) - 60
                    RateGrant.objects.using(self.alias).filter(key__in=list(keys), at__lt=horizon).delete()
            return wait

    def answered(self, grants: list[int], now: float) -> None:
        from riot.models import RateGrant

        RateGrant.objects.using(self.alias).filter(pk__in=grants).update(at=now)

    def learn(self, key: str, limits: Limits) -> None:
        from riot.models import RateKey

        text = format_limits(limits)
        with transaction.atomic(using=self.alias):
            if not RateKey.objects.using(self.alias).filter(key=key).update(limits=text):
                RateKey.objects.using(self.alias).bulk_create([RateKey(key=key, limits=text)], ignore_conflicts=True)

    def block(self, key: str, until: float) -> None:
        from riot.models import RateKey

        with transaction.atomic(using=self.alias):
            RateKey.objects.using(self.alias).bulk_create([RateKey(key=key)], ignore_conflicts=True)
            RateKey.objects.using(self.alias).filter(key=key, blocked_until__lt=until).update(blocked_until=until)


class SlotUnavailable(Exception):
    """No slot within the wait a task may spend in-process: the task is delayed by `retry_after` instead."""

    def __init__(self, key: str, retry_after: float):
        super().__init__(f"no Riot rate-limit slot for {key} within {retry_after:.1f}s")
        self.key, self.retry_after = key, retry_after


class RateLimiter:
    def __init__(
        self,
        *,
        default_app_limits: Limits,
        alias: str,
        processes: int,
        margin: float = 0.05,
        inline_wait: float = 10.0,
        clock=time.time,
        sleep=time.sleep,
    ):
        self.default_app_limits = default_app_limits
        self.database = DatabaseStore(alias)
        self.memory = MemoryStore(processes)
        self.margin, self.inline_wait = margin, inline_wait
        self.clock, self.sleep = clock, sleep
        self.known: dict[str, Limits] = {}  # learned limits, as this process last learned or read them
        self._degraded_since: float | None = None

    @classmethod
    def from_settings(cls) -> "RateLimiter":
        from django.conf import settings

        # a quarter of the task's soft time limit at most, so a task that waited in-process still has time
        soft_limit = getattr(settings, "CELERY_TASK_SOFT_TIME_LIMIT", None) or float("inf")
        return cls(
            default_app_limits=parse_limits(settings.RIOT_APP_RATE_LIMIT),
            alias=settings.RIOT_RATE_LIMIT_DATABASE,
            processes=settings.RIOT_RATE_LIMIT_PROCESSES,
            margin=settings.RIOT_RATE_LIMIT_MARGIN_S,
            inline_wait=min(settings.RIOT_RATE_LIMIT_INLINE_WAIT_S, soft_limit / 4),
        )

    # -- the store, or this process alone when it does not answer -------------------------------------
    def _use(self, operation: str, *args):
        try:
            result = getattr(self.database, operation)(*args)
        except DatabaseError as exc:
            if self._degraded_since is None:
                self._degraded_since = self.clock()
                log.warning(
                    "rate limiter store unreachable (%s): per-process limits (1/%d of each) until it answers",
                    exc,
                    self.memory.processes,
                )
            return getattr(self.memory, operation)(*args) if hasattr(self.memory, operation) else None
        if self._degraded_since is not None:
            log.warning(
                "rate limiter store answers again after %.0fs: shared limits", self.clock() - self._degraded_since
            )
            self._degraded_since = None
        return result

    def _limits(self, region: str, method: str) -> dict[str, Limits]:
        """This process's view; the store's learned limits take precedence inside its transaction."""
        self.known.update(self.database.learned)
        a, m = app_key(region), method_key(region, method)
        return {a: self.known.get(a) or self.default_app_limits, m: self.known.get(m, {})}

    # -- what the client calls ---------------------------------------------------------------------
    def acquire(self, region: str, method: str) -> list[int]:
        """Wait for a slot for one request; SlotUnavailable if it is further away than `inline_wait`. Returns
        the slot's grants, for `answered`."""
        deadline = self.clock() + self.inline_wait
        while True:
            keys = self._limits(region, method)
            self.database.granted = []
            wait = self._use("try_acquire", keys, self.clock(), self.margin)
            if wait <= 0:
                return self.database.granted
            if self.clock() + wait > deadline:
                raise SlotUnavailable(method_key(region, method), wait)
            self.sleep(wait + random.uniform(0, 0.01))  # a little spread: waiters do not all wake at once

    def answered(self, grants: list[int]) -> None:
        """The request of these grants is answered: it reached Riot by now at the latest, so its grants count
        from now (a request that took long to arrive, e.g. over a new connection, is not counted too early)."""
        if grants:
            self._use("answered", grants, self.clock())

    def learn(self, region: str, method: str, app_limits: Limits, method_limits: Limits) -> None:
        """What a response's headers announce; written only when it differs from what is known."""
        for key, limits in ((app_key(region), app_limits), (method_key(region, method), method_limits)):
            if limits and self.known.get(key) != limits:
                self.known[key] = limits
                self._use("learn", key, limits)

    def rate_limited(self, region: str, method: str, limit_type: str | None, retry_after: float) -> None:
        """A 429 of the application or method limit: its key waits `retry_after` for every process."""
        key = {"application": app_key(region), "method": method_key(region, method)}.get(limit_type or "")
        if key:
            self._use("block", key, self.clock() + retry_after)
