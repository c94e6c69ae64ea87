"""Riot's rate limits on real parts (tests/app/rate_limit_run.py): one limiter shared by every worker process,
learned from Riot's headers; 429s that delay a task without failing it; the limiter's store taken away.

The fake Riot API enforces a development key's 20 per second with the 2-minute window shortened to 12 s
(`100:12`), so a run crosses it in seconds; bench/rate_limits.py runs the real `20:1,100:120`. The first
tests are the limiter alone, in this process."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from django.db import DatabaseError

from riot.ratelimit import DatabaseStore, RateLimiter, parse_limits, wait_for_slot
from sample_riot.server import FakeRiot
from tests.app.rate_limit_run import (
    floor_s,
    players,
    rate_limited_deployment,
    start_workers,
    sync_all,
    use_riot,
    wait_for,
)

SCALED = "20:1,100:12"  # a development key's limits, the 2-minute window shortened to 12 s


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def limiter(clock, **kwargs) -> RateLimiter:
    return RateLimiter(
        **{
            "default_app_limits": parse_limits(SCALED),
            "alias": "default",
            "processes": 4,
            "margin": 0.05,
            "inline_wait": 30.0,
            "clock": clock,
            "sleep": clock.sleep,
            **kwargs,
        }
    )


def test_the_limiter_grants_what_every_window_allows_and_no_more(db):
    clock = Clock()
    shared, other = limiter(clock), limiter(clock)  # two processes, one store
    starts = []
    for i in range(130):
        (shared if i % 2 else other).acquire("europe", "match-v5.getMatch")
        starts.append(clock.now - 1_000_000.0)
    # the earliest schedule the limits allow, each window 50 ms longer (the margin)
    assert starts[19] == 0 and 1.0 <= starts[20] <= 1.1 and 12.0 <= starts[100] <= 12.2, starts
    assert starts[-1] == pytest.approx(floor_s(130, "20:1.05,100:12.05"), abs=0.1)
    americas = limiter(clock)
    before = clock.now
    americas.acquire("americas", "match-v5.getMatch")  # another region: its own limit
    assert clock.now == before


def test_headers_teach_every_process_and_a_429_blocks_its_key_for_everyone(db):
    clock = Clock()
    one, two = limiter(clock), limiter(clock)
    one.learn("europe", "match-v5.getTimeline", parse_limits("20:1,100:12"), parse_limits("2:10"))
    for _ in range(2):  # `two` has learned nothing itself: the store's limits hold for it at once
        two.acquire("europe", "match-v5.getTimeline")
    before = clock.now
    two.acquire("europe", "match-v5.getTimeline")  # the method's 2 per 10 s
    assert clock.now - before == pytest.approx(10.05, abs=0.02)
    one.rate_limited("europe", "match-v5.getMatch", "application", retry_after=5)
    before = clock.now
    two.acquire("europe", "match-v5.getMatch")
    assert clock.now - before == pytest.approx(5, abs=0.02)


def test_a_store_that_does_not_answer_leaves_each_process_its_share(db, monkeypatch):
    clock = Clock()
    alone = limiter(clock)

    def unreachable(*args):
        raise DatabaseError("unable to open database file")

    for operation in ("try_acquire", "learn", "block"):
        monkeypatch.setattr(DatabaseStore, operation, unreachable)
    for _ in range(5):  # 20 per second / 4 processes
        alone.acquire("europe", "match-v5.getMatch")
    before = clock.now
    alone.acquire("europe", "match-v5.getMatch")
    assert clock.now - before >= 1.0
    assert wait_for_slot([0.5, 0.4], {1: 2}, now=1.0, margin=0.0) == pytest.approx(0.4)


# -- on real parts ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deployment():
    with rate_limited_deployment(max_wait_s=6) as deployment:
        yield deployment


@pytest.fixture
def app(deployment, request):
    riots = []

    def run_with(riot: FakeRiot, everyone, **env):
        riots.append(riot.start())
        use_riot(deployment, riot, everyone)
        deployment.env.update(env)
        start_workers(deployment)

    deployment.purge()
    deployment.run_with = run_with
    try:
        yield deployment
    finally:
        deployment.after_test(request)
        for riot in riots:
            riot.close()


def learned(app) -> dict:
    connection = sqlite3.connect(app.limiter_db, timeout=30)
    try:
        return dict(connection.execute("SELECT key, limits FROM riot_ratekey WHERE limits != ''").fetchall())
    finally:
        connection.close()


def test_two_regions_synced_at_once_by_every_worker_stay_within_every_limit(app):
    everyone = players(1, europe=3, americas=2, matches=20)
    riot = FakeRiot(app_limit=SCALED, method_limits={"match-v5.getTimeline": "10:1,50:12"})
    # the configured default is looser than the fake's: only what the headers teach keeps the run clean
    app.run_with(riot, everyone, RIOT_APP_RATE_LIMIT="40:1,400:12")
    jobs, _ = sync_all(app, everyone, timeout=150)
    assert [(j["status"], j["matches_processed"], j["matches_failed"]) for j in jobs] == [("complete", 20, 0)] * 5
    assert app.parked() == []
    assert riot.violations == []
    assert len(riot.requests) == sum(p.requests for p in everyone)  # no request answered 429, none repeated
    assert learned(app) == {
        "europe": "20:1,100:12",
        "americas": "20:1,100:12",
        **{
            f"{region}:{method}": limits
            for region in ("europe", "americas")
            for method, limits in (
                ("account-v1.getByRiotId", "1000:60"),
                ("match-v5.getMatchIdsByPUUID", "2000:10"),
                ("match-v5.getMatch", "2000:10"),
                ("match-v5.getTimeline", "10:1,50:12"),
            )
        },
    }
    # each region's tasks ran on its own queues
    queues = {q for (q,) in app.query("SELECT DISTINCT queue FROM players_taskattempt WHERE argsrepr LIKE '%NA1_1%'")}
    assert queues == {"match_processing_americas", "timeline_processing_americas"}


def test_429s_spend_no_retry_budget_and_too_long_a_429_parks_the_task_until_replayed(app):
    (flaky, stuck) = players(2, europe=2, americas=0, matches=2)
    riot = FakeRiot(app_limit=SCALED)
    answers = (500, (429, {"Retry-After": "1", "X-Rate-Limit-Type": "application"}))
    paths = [f"/by-riot-id/{flaky.game_name}/TAG1$", f"/by-puuid/{flaky.puuid}/ids$"]
    paths += [f"/matches/{m}{timeline}$" for m in flaky.match_ids for timeline in ("", "/timeline")]
    for path in paths:  # every path: a 500, then a 429, then the data
        riot.fail(path, *answers)
    riot.fail_always(f"/matches/{stuck.match_ids[0]}$", 429)  # 429s past the bound of 6 s
    app.run_with(riot, [flaky, stuck])
    jobs, _ = sync_all(app, [flaky], timeout=90)
    assert (jobs[0]["status"], jobs[0]["matches_processed"], jobs[0]["matches_failed"]) == ("complete", 2, 0)
    for path in paths:  # (a retried sync asks for the account again: the task starts over)
        statuses = [r.status for r in riot.seen(path)]
        assert statuses[:3] == [500, 429, 200] and set(statuses[3:]) <= {200}, (path, statuses)

    stuck_job = app.sync(stuck.game_name, "TAG1", stuck.platform)
    job = app.wait_job(stuck_job, 90, matches_processed=1, matches_failed=1)
    (error,) = [e for (e,) in app.query("SELECT error FROM players_jobmatch WHERE match_id = ?", stuck.match_ids[0])]
    assert "RateLimitedTooLong: rate limited (429) for more than 6s in total" in error, error
    parked = wait_for(lambda: app.parked(), 15, "the rate-limited task parked")
    assert [(p["task"], p["queue"], p["reason"]) for p in parked] == [
        ("matches.tasks.process_match", "match_processing", "rejected")
    ]
    riot.recover(f"/matches/{stuck.match_ids[0]}$")
    replay = app.manage("dead_letters", "replay", "--queue", "match_processing")
    assert replay.returncode == 0, replay.stderr
    job = app.wait_job(stuck_job, 60, matches_processed=2, matches_failed=0)
    assert job["status"] == "complete" and app.parked() == []


def test_with_the_limiters_store_gone_mid_run_syncs_slow_down_but_complete(app):
    everyone = players(3, europe=1, americas=1, matches=20)
    riot = FakeRiot(app_limit=SCALED)
    app.run_with(riot, everyone)
    moved = app.limiter_db.with_name("ratelimit.away")

    def take_the_store_away(path):
        if not moved.exists():
            shutil.move(app.limiter_db, moved)
            app.limiter_db.mkdir()  # a directory where the database file was: nothing can open it

    riot.on_request(r"/matches/\w+_3\d003$", take_the_store_away)
    try:
        jobs, _ = sync_all(app, everyone, timeout=150)
    finally:
        riot.clear_hooks()
        if moved.exists():
            app.limiter_db.rmdir()
            shutil.move(moved, app.limiter_db)
    assert moved.exists() is False and app.limiter_db.is_file()
    assert [(j["status"], j["matches_processed"], j["matches_failed"]) for j in jobs] == [("complete", 20, 0)] * 2
    assert app.parked() == []
    assert any("rate limiter store unreachable" in p.output() for p in app.processes)
    print(f"violations with per-process limits: {len(riot.violations)}")
