"""A small Riot Games API client: account-v1 (by Riot ID), match-v5 (match ids by puuid, match, timeline).

Routing: account-v1 and match-v5 are served per *region* (americas, asia, europe, sea), chosen from the
player's *platform* (euw1, na1, kr, ...). The base URL is a template with `{routing}`
(RIOT_API_BASE_URL, default https://{routing}.api.riotgames.com).

Errors are typed: transient ones (429, 5xx, timeouts, refused connections) are worth retrying, with the
server's Retry-After on a 429; permanent ones (400, 401, 403, 404, ...) are not.

Rate limits: every request first takes a slot from the shared limiter (riot/ratelimit.py), named by routing
region and Riot's method name; each response teaches it the limits, each 429 blocks its key.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import quote

import requests

from riot.ratelimit import RateLimiter, SlotUnavailable

log = logging.getLogger(__name__)

# Platform → regional routing value of match-v5 (Riot's routing table).
PLATFORM_REGIONS = {
    "na1": "americas",
    "br1": "americas",
    "la1": "americas",
    "la2": "americas",
    "kr": "asia",
    "jp1": "asia",
    "eun1": "europe",
    "euw1": "europe",
    "tr1": "europe",
    "ru": "europe",
    "me1": "europe",
    "oc1": "sea",
    "ph2": "sea",
    "sg2": "sea",
    "th2": "sea",
    "tw2": "sea",
    "vn2": "sea",
}
ACCOUNT_REGIONS = {"americas", "asia", "europe"}  # account-v1 has no sea cluster; asia serves those players
DEFAULT_RETRY_AFTER_S = 1  # a 429 without Retry-After (the underlying service's own limit)


def regional_routing(platform: str) -> str:
    try:
        return PLATFORM_REGIONS[platform.lower()]
    except KeyError:
        raise ValueError(f"unknown region {platform!r}; one of {', '.join(sorted(PLATFORM_REGIONS))}") from None


def platform_of_match(match_id: str) -> str:
    """EUW1_6543210 → euw1."""
    prefix, _, number = match_id.partition("_")
    if not number.isdigit() or prefix.lower() not in PLATFORM_REGIONS:
        raise ValueError(f"not a match id: {match_id!r}")
    return prefix.lower()


class RiotError(Exception):
    """Any failure of a Riot API call."""

    def __init__(self, message: str, *, status: int | None = None, url: str = ""):
        super().__init__(message)
        self.status = status
        self.url = url


class RiotTransientError(RiotError):
    """Worth retrying later."""


class RiotPermanentError(RiotError):
    """Retrying will not help: bad request, bad key, unknown resource."""


class RiotNotFound(RiotPermanentError):
    pass


class RiotServerError(RiotTransientError):
    pass


class RiotUnavailable(RiotTransientError):
    """No answer: refused connection, timeout."""


class RiotRateLimited(RiotTransientError):
    """A 429, or (`by_limiter`) no slot soon enough in the limiter: wait `retry_after`, no failure."""

    def __init__(self, message: str, *, retry_after: float, limits: "RateLimits", by_limiter: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.limits = limits
        self.by_limiter = by_limiter


def _windows(value: str | None) -> dict[int, int]:
    """'20:1,100:120' → {1: 20, 120: 100} (window seconds → count or limit)."""
    windows = {}
    for part in (value or "").split(","):
        match = re.fullmatch(r"\s*(\d+):(\d+)\s*", part)
        if match:
            windows[int(match.group(2))] = int(match.group(1))
    return windows


@dataclass(frozen=True)
class RateLimits:
    """What the X-App-Rate-Limit / X-Method-Rate-Limit headers (and their -Count) of a response say."""

    app_limit: dict[int, int] = field(default_factory=dict)
    app_count: dict[int, int] = field(default_factory=dict)
    method_limit: dict[int, int] = field(default_factory=dict)
    method_count: dict[int, int] = field(default_factory=dict)
    limit_type: str | None = None  # X-Rate-Limit-Type on a 429: application, method or service

    @classmethod
    def from_headers(cls, headers) -> "RateLimits":
        return cls(
            _windows(headers.get("X-App-Rate-Limit")),
            _windows(headers.get("X-App-Rate-Limit-Count")),
            _windows(headers.get("X-Method-Rate-Limit")),
            _windows(headers.get("X-Method-Rate-Limit-Count")),
            headers.get("X-Rate-Limit-Type"),
        )

    def exhausted_windows(self) -> list[int]:
        """Windows (seconds) whose count has reached the limit: the next call in them would get a 429."""
        full = [w for w, limit in self.app_limit.items() if self.app_count.get(w, 0) >= limit]
        full += [w for w, limit in self.method_limit.items() if self.method_count.get(w, 0) >= limit]
        return sorted(set(full))


class RiotClient:
    def __init__(
        self,
        api_key: str,
        base_url: str = "https://{routing}.api.riotgames.com",
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
        limiter: RateLimiter | None = None,
    ):
        if "{routing}" not in base_url:
            raise ValueError("base_url must contain {routing}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update({"X-Riot-Token": api_key, "Accept": "application/json"})
        self.last_rate_limits = RateLimits()
        self.limiter = limiter

    @classmethod
    def from_settings(cls) -> "RiotClient":
        from django.conf import settings

        return cls(settings.RIOT_API_KEY, settings.RIOT_API_BASE_URL, limiter=shared_limiter())

    # -- endpoints ---------------------------------------------------------------------------------
    def account_by_riot_id(self, game_name: str, tag_line: str, platform: str) -> dict:
        routing = regional_routing(platform)
        routing = routing if routing in ACCOUNT_REGIONS else "asia"
        return self._get(
            routing,
            "account-v1.getByRiotId",
            f"/riot/account/v1/accounts/by-riot-id/{quote(game_name, safe='')}/{quote(tag_line, safe='')}",
        )

    def match_ids(self, puuid: str, platform: str, count: int = 20, start: int = 0) -> list[str]:
        return self._get(
            regional_routing(platform),
            "match-v5.getMatchIdsByPUUID",
            f"/lol/match/v5/matches/by-puuid/{quote(puuid, safe='')}/ids",
            params={"start": start, "count": count},
        )

    def match(self, match_id: str) -> dict:
        return self._get(
            regional_routing(platform_of_match(match_id)), "match-v5.getMatch", f"/lol/match/v5/matches/{match_id}"
        )

    def timeline(self, match_id: str) -> dict:
        return self._get(
            regional_routing(platform_of_match(match_id)),
            "match-v5.getTimeline",
            f"/lol/match/v5/matches/{match_id}/timeline",
        )

    # -- transport ---------------------------------------------------------------------------------
    def _get(self, routing: str, method: str, path: str, params: dict | None = None):
        url = self.base_url.format(routing=routing) + path
        grants = []
        if self.limiter is not None:
            try:
                grants = self.limiter.acquire(routing, method)
            except SlotUnavailable as exc:
                raise RiotRateLimited(
                    f"GET {url}: {exc}", retry_after=exc.retry_after, limits=RateLimits(), by_limiter=True, url=url
                ) from None
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RiotUnavailable(f"GET {url}: {exc.__class__.__name__}: {exc}", url=url) from exc
        finally:
            if self.limiter is not None:
                self.limiter.answered(grants)
        self.last_rate_limits = limits = RateLimits.from_headers(response.headers)
        if self.limiter is not None:
            self.limiter.learn(routing, method, limits.app_limit, limits.method_limit)
        if limits.exhausted_windows():  # the limiter's business: it holds the next request back
            log.debug("Riot rate limit reached in window(s) %s s for %s", limits.exhausted_windows(), path)
        status = response.status_code
        if status == 200:
            try:
                return response.json()
            except ValueError as exc:
                raise RiotServerError(f"GET {url}: invalid JSON", status=status, url=url) from exc
        message = f"GET {url}: HTTP {status}"
        if status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            if self.limiter is not None:
                self.limiter.rate_limited(routing, method, limits.limit_type, retry_after)
            raise RiotRateLimited(
                f"{message} ({limits.limit_type or 'service'} limit), retry after {retry_after}s",
                retry_after=retry_after,
                limits=limits,
                status=status,
                url=url,
            )
        if status == 404:
            raise RiotNotFound(message, status=status, url=url)
        if status >= 500:
            raise RiotServerError(message, status=status, url=url)
        raise RiotPermanentError(message, status=status, url=url)


_limiter: RateLimiter | None = None


def shared_limiter() -> RateLimiter:
    """The process's limiter: what it learned stays learned between tasks."""
    global _limiter
    if _limiter is None:
        _limiter = RateLimiter.from_settings()
    return _limiter


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S
