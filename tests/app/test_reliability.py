"""The seed's reliability promises on real parts: a RabbitMQ node booted from the rendered stack, the web
process, Celery workers started with exactly the plan's command lines, and a fake Riot API.

One node, web and database for the module (tests/app/deployment.py); workers per test. Each test uses its
own player and match ids, so tests do not see each other's rows."""
from __future__ import annotations

import os
import signal
import threading
import time

import pika
import pytest

from tests.app.deployment import deploy, wait_for
from tests.app.fake_riot import FakeRiot


@pytest.fixture(scope="module")
def riot():
    fake = FakeRiot().start()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def deployment(riot):
    deployment, cleanup = deploy(riot)
    try:
        yield deployment
    finally:
        cleanup()


@pytest.fixture
def app(deployment, request):
    """The deployment, with the workers a test starts stopped (and their groups killed) afterwards."""
    deployment.purge()
    try:
        yield deployment
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            for process in deployment.processes:
                print(f"--- {process.log.name}\n{process.output()[-4000:]}")
        deployment.stop_workers()
        deployment.processes = [p for p in deployment.processes if p.alive()]


def match_ids(prefix: str, count: int) -> list[str]:
    return [f"EUW1_{prefix}{i:03d}" for i in range(1, count + 1)]


def rows(app, job_id: str, match_ids_: list[str]) -> dict:
    marks = ",".join("?" * len(match_ids_))
    one = lambda sql, *p: app.query(sql, *p)[0][0]  # noqa: E731
    return {
        "matches": one(f"SELECT COUNT(*) FROM matches_match WHERE match_id IN ({marks})", *match_ids_),
        "distinct_matches": one(f"SELECT COUNT(DISTINCT match_id) FROM matches_match WHERE match_id IN ({marks})",
                                *match_ids_),
        "participants": one(f"SELECT COUNT(*) FROM matches_participant p JOIN matches_match m ON p.match_id = m.id "
                            f"WHERE m.match_id IN ({marks})", *match_ids_),
        "timelines": one(f"SELECT COUNT(*) FROM matches_timeline t JOIN matches_match m ON t.match_id = m.id "
                         f"WHERE m.match_id IN ({marks})", *match_ids_),
        "job_matches": one("SELECT COUNT(*) FROM players_jobmatch WHERE job_id = ?", job_id.replace("-", "")),
    }


def attempts(app, task: str, like: str) -> list[tuple]:
    return app.query("SELECT queue, retries, redelivered, argsrepr FROM players_taskattempt "
                     "WHERE task_name = ? AND argsrepr LIKE ? ORDER BY id", task, f"%{like}%")


def test_whole_flow_stores_everything_and_each_task_runs_on_its_queue(app, riot):
    ids = match_ids("1", 4)
    riot.add_player("Flow", "EUW", "puuid-flow", ids)
    app.start_worker("sync")
    app.start_worker("matches")
    job_id = app.sync("Flow", "EUW", "euw1")
    job = app.wait_job(job_id, 60, matches_processed=4)
    assert (job["status"], job["matches_found"], job["matches_failed"]) == ("complete", 4, 0)
    assert rows(app, job_id, ids) == {"matches": 4, "distinct_matches": 4, "participants": 40, "timelines": 4,
                                      "job_matches": 4}
    routes = app.rendered.celery["task_routes"]
    for task in ("players.tasks.sync_player_data", "matches.tasks.process_match", "matches.tasks.process_timeline"):
        seen = {queue for queue, *_ in app.query("SELECT queue FROM players_taskattempt WHERE task_name = ?", task)}
        assert seen == {routes[task]["routing_key"]}, task
    player = app.query("SELECT puuid, game_name FROM players_player WHERE puuid = 'puuid-flow'")
    assert player == [("puuid-flow", "Flow")]
    import requests

    detail = requests.get(app.url("/api/players/euw1/Flow/EUW"), timeout=30).json()
    assert sorted(m["match_id"] for m in detail["matches"]) == ids
    assert all(m["timeline"]["frames"] == 3 for m in detail["matches"])
    health = requests.get(app.url("/healthz"), timeout=30)
    assert health.status_code == 200 and health.json()["broker"] == "ok"
    assert app.healthcheck() == 0
