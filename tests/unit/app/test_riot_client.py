"""The Riot client against the fake Riot API: routing, shapes, typed errors, Retry-After, rate-limit headers."""

from __future__ import annotations

import pytest

from riot import (
    RiotClient,
    RiotNotFound,
    RiotPermanentError,
    RiotRateLimited,
    RiotServerError,
    RiotUnavailable,
    regional_routing,
)
from riot.client import RateLimits, platform_of_match
from tests.support.rabbit_node import free_ports


@pytest.fixture
def client(riot):
    riot.add_player("Hide on bush", "KR1", "puuid-faker", ["KR_7000000001", "KR_7000000002"])
    return RiotClient("test-key", riot.base_url, timeout=(1, 2))


def test_regional_routing_follows_riots_table():
    assert [regional_routing(p) for p in ("euw1", "NA1", "kr", "oc1", "br1")] == [
        "europe",
        "americas",
        "asia",
        "sea",
        "americas",
    ]
    with pytest.raises(ValueError, match="unknown region"):
        regional_routing("moon1")
    assert platform_of_match("EUW1_6543210") == "euw1"
    with pytest.raises(ValueError):
        platform_of_match("EUW1-6543210")


def test_account_match_ids_match_and_timeline_in_their_shapes(client, riot):
    account = client.account_by_riot_id("Hide on bush", "KR1", "kr")
    assert account == {"puuid": "puuid-faker", "gameName": "Hide on bush", "tagLine": "KR1"}
    assert client.match_ids("puuid-faker", "kr", count=1) == ["KR_7000000001"]
    match = client.match("KR_7000000002")
    assert match["metadata"]["matchId"] == "KR_7000000002" and len(match["info"]["participants"]) == 10
    timeline = client.timeline("KR_7000000002")
    assert timeline["info"]["frameInterval"] == 60000 and timeline["info"]["frames"]
    # regional routing in the URL, the Riot ID escaped, the key in X-Riot-Token
    assert [(r.routing, r.path) for r in riot.requests][:2] == [
        ("asia", "/riot/account/v1/accounts/by-riot-id/Hide%20on%20bush/KR1"),
        ("asia", "/lol/match/v5/matches/by-puuid/puuid-faker/ids"),
    ]


def test_sea_players_resolve_their_account_on_asia(client, riot):
    riot.add_player("Oce", "OCE", "puuid-oce", [])
    client.account_by_riot_id("Oce", "OCE", "oc1")
    assert riot.requests[-1].routing == "asia"


def test_429_raises_rate_limited_with_retry_after_and_the_limit_headers(client, riot):
    riot.fail("/matches/KR_7000000001$", (429, {"Retry-After": "7", "X-Rate-Limit-Type": "method"}))
    with pytest.raises(RiotRateLimited) as caught:
        client.match("KR_7000000001")
    assert caught.value.retry_after == 7
    assert caught.value.limits.limit_type == "method"
    assert caught.value.limits.app_limit == {10: 500, 600: 30000}  # the fake's default, a production key's
    assert client.match("KR_7000000001")["metadata"]["matchId"] == "KR_7000000001"  # the next one succeeds


def test_429_without_retry_after_waits_a_second(client, riot):
    riot.fail("/matches/KR_7000000001$", 429)
    with pytest.raises(RiotRateLimited) as caught:
        client.match("KR_7000000001")
    assert caught.value.retry_after == 1


def test_errors_are_typed(client, riot):
    riot.fail("/matches/KR_7000000001$", 500, 503, 403, 400)
    for expected in (RiotServerError, RiotServerError, RiotPermanentError, RiotPermanentError):
        with pytest.raises(expected):
            client.match("KR_7000000001")
    with pytest.raises(RiotNotFound):
        client.match("KR_9999999999")
    with pytest.raises(RiotNotFound):
        client.account_by_riot_id("Nobody", "000", "kr")


def test_slow_and_unreachable_servers_are_unavailable(client, riot):
    riot.slow("/matches/KR_7000000001$", 3)
    with pytest.raises(RiotUnavailable):
        client.match("KR_7000000001")  # read timeout 2 s
    closed = RiotClient("k", f"http://127.0.0.1:{free_ports(1)[0]}/{{routing}}", timeout=(1, 1))
    with pytest.raises(RiotUnavailable):
        closed.match("KR_7000000001")


def test_rate_limit_headers_are_read():
    limits = RateLimits.from_headers(
        {
            "X-App-Rate-Limit": "20:1,100:120",
            "X-App-Rate-Limit-Count": "20:1,5:120",
            "X-Method-Rate-Limit": "50:10",
            "X-Method-Rate-Limit-Count": "3:10",
        }
    )
    assert limits.app_count == {1: 20, 120: 5}
    assert limits.exhausted_windows() == [1]
    assert RateLimits.from_headers({}).exhausted_windows() == []
