"""The base of every task: retries with growing, jittered delays, and a record of each attempt (TaskAttempt).

Rate limits are not failures: a 429 (or no slot in the limiter soon enough) delays the task by Retry-After
(the limiter's estimate) without spending its retry budget, which is for 5xx, timeouts and refused
connections. The 429 waits of one task are bounded in total time (RIOT_RATE_LIMIT_MAX_WAIT_S), not count.
Both are kept in the message's headers, so they survive the retry's republish."""

from __future__ import annotations

import logging
import math
import random
import time

from celery import Task
from django.conf import settings
from django.db import OperationalError

from riot import RiotRateLimited, RiotTransientError

log = logging.getLogger(__name__)

# What is worth retrying: the Riot API's 429/5xx/timeouts, and a database briefly locked or unreachable.
TRANSIENT_ERRORS = (RiotTransientError, OperationalError)

# The seed's retry settings: exponential backoff (1 s, 2 s, 4 s, ... at most 600 s) with jitter, 3 retries.
RETRY_OPTIONS = {
    "autoretry_for": TRANSIENT_ERRORS,
    "max_retries": 3,
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "retry_jitter": False,  # replaced by the additive jitter of AppTask.retry, see there
}


def backoff_delay(retries: int, factor: int = 1, maximum: int = 600, rng: random.Random = random) -> int:
    """Whole seconds before retry number `retries + 1`: factor·2^retries, plus up to half of it again.

    Celery's own (full) jitter draws from [0, backoff] and can come back sooner than the previous attempt;
    adding the jitter on top keeps every delay longer than the one before while still spreading retries.
    Whole seconds: native delayed delivery (quorum queues) counts in seconds.
    """
    base = min(maximum, factor * 2**retries)
    return max(1, min(maximum, base + rng.randint(0, base // 2)))


# Message headers: how many of the task's retries were rate-limit waits, and when its first 429 came.
WAITS_HEADER = "riot_rate_limit_waits"
SINCE_HEADER = "riot_rate_limited_since"


class RateLimitedTooLong(Exception):
    """429s for longer than RIOT_RATE_LIMIT_MAX_WAIT_S: the task fails and is parked in dead_letters."""


class AppTask(Task):
    abstract = True

    def retry(
        self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None, max_retries=None, **options
    ):
        if eta is None and countdown is not None:  # an automatic retry
            # the custom headers without the broker's x-death: a message that carries them into the delayed
            # delivery's queues again is taken for a dead-letter cycle and dropped (as Celery's own retry does)
            headers = self.request.as_execution_options()["headers"]
            waits = int(headers.get(WAITS_HEADER, 0))
            if isinstance(exc, RiotRateLimited):
                countdown = max(1, math.ceil(exc.retry_after))
                if not exc.by_limiter:
                    since = float(headers.get(SINCE_HEADER) or time.time())
                    if time.time() + countdown - since > settings.RIOT_RATE_LIMIT_MAX_WAIT_S:
                        raise RateLimitedTooLong(
                            f"rate limited (429) for more than {settings.RIOT_RATE_LIMIT_MAX_WAIT_S:.0f}s in "
                            f"total, the bound of RIOT_RATE_LIMIT_MAX_WAIT_S: {exc}"
                        ) from exc
                    headers[SINCE_HEADER] = since
                headers[WAITS_HEADER] = waits = waits + 1
                max_retries = self.request.retries + 1  # a wait, never the last straw
            else:  # a failure: our backoff over the failures alone, and their own budget
                factor = int(max(1.0, float(self.retry_backoff or 1)))
                countdown = backoff_delay(self.request.retries - waits, factor, int(self.retry_backoff_max or 600))
                # (not the `max_retries` Celery's autoretry hands over: a failed retry() leaves its override
                # on the task object, for the next task of the process)
                max_retries = self.max_retries + waits
            options["headers"] = headers
            log.info(
                "%s[%s] retry %d (%d of them rate-limit waits) in %ss: %s",
                self.name,
                self.request.id,
                self.request.retries + 1,
                waits,
                countdown,
                exc,
            )
        return super().retry(
            args=args,
            kwargs=kwargs,
            exc=exc,
            throw=throw,
            eta=eta,
            countdown=countdown,
            max_retries=max_retries,
            **options,
        )

    def before_start(self, task_id, args, kwargs):
        if self.request.is_eager:
            return
        from players.models import TaskAttempt

        delivery = self.request.delivery_info or {}
        try:
            TaskAttempt.objects.create(
                task_id=task_id,
                task_name=self.name,
                queue=delivery.get("routing_key") or "",
                retries=self.request.retries,
                redelivered=bool(delivery.get("redelivered")),
                argsrepr=repr(list(args) + [f"{k}={v!r}" for k, v in (kwargs or {}).items()])[:300],
            )
        except Exception:  # the record is for operators: never fail the task over it
            log.exception("could not record the attempt of %s[%s]", self.name, task_id)
