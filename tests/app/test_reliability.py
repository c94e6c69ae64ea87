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
import requests

from config.topology import time_limits
from sample_riot.server import FakeRiot
from tests.app.deployment import deploy, wait_for


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
        deployment.after_test(request)


def match_ids(prefix: str, count: int) -> list[str]:
    return [f"EUW1_{prefix}{i:03d}" for i in range(1, count + 1)]


def rows(app, job_id: str, match_ids_: list[str]) -> dict:
    marks = ",".join("?" * len(match_ids_))
    one = lambda sql, *p: app.query(sql, *p)[0][0]  # noqa: E731
    return {
        "matches": one(f"SELECT COUNT(*) FROM matches_match WHERE match_id IN ({marks})", *match_ids_),
        "distinct_matches": one(
            f"SELECT COUNT(DISTINCT match_id) FROM matches_match WHERE match_id IN ({marks})", *match_ids_
        ),
        "participants": one(
            f"SELECT COUNT(*) FROM matches_participant p JOIN matches_match m ON p.match_id = m.id "
            f"WHERE m.match_id IN ({marks})",
            *match_ids_,
        ),
        "timelines": one(
            f"SELECT COUNT(*) FROM matches_timeline t JOIN matches_match m ON t.match_id = m.id "
            f"WHERE m.match_id IN ({marks})",
            *match_ids_,
        ),
        "job_matches": one("SELECT COUNT(*) FROM players_jobmatch WHERE job_id = ?", job_id.replace("-", "")),
    }


def attempts(app, task: str, like: str) -> list[tuple]:
    return app.query(
        "SELECT queue, retries, redelivered, argsrepr FROM players_taskattempt "
        "WHERE task_name = ? AND argsrepr LIKE ? ORDER BY id",
        task,
        f"%{like}%",
    )


def test_whole_flow_stores_everything_and_each_task_runs_on_its_queue(app, riot):
    ids = match_ids("1", 4)
    riot.add_player("Flow", "EUW", "puuid-flow", ids)
    app.start_worker("sync")
    app.start_worker("matches")
    job_id = app.sync("Flow", "EUW", "euw1")
    job = app.wait_job(job_id, 60, matches_processed=4)
    assert (job["status"], job["matches_found"], job["matches_failed"]) == ("complete", 4, 0)
    assert rows(app, job_id, ids) == {
        "matches": 4,
        "distinct_matches": 4,
        "participants": 40,
        "timelines": 4,
        "job_matches": 4,
    }
    routes = app.rendered.celery["task_regional_routes"]  # europe's (EUW1) are the default queues
    for task in ("players.tasks.sync_player_data", "matches.tasks.process_match", "matches.tasks.process_timeline"):
        seen = {queue for queue, *_ in app.query("SELECT queue FROM players_taskattempt WHERE task_name = ?", task)}
        assert seen == {routes[task]["default"]["routing_key"]}, task
    player = app.query("SELECT puuid, game_name FROM players_player WHERE puuid = 'puuid-flow'")
    assert player == [("puuid-flow", "Flow")]
    detail = requests.get(app.url("/api/players/euw1/Flow/EUW"), timeout=30).json()
    assert sorted(m["match_id"] for m in detail["matches"]) == ids
    assert all(m["timeline"]["frames"] == 3 for m in detail["matches"])
    health = requests.get(app.url("/healthz"), timeout=30)
    assert health.status_code == 200 and health.json()["broker"] == "ok"
    assert app.healthcheck() == 0


def test_the_seeds_commands_run_from_app(app, riot):
    """`celery -A config worker -l info -Q player_sync` and `celery -A config beat -l info`, as the seed has them,
    each as its own broker user. The worker is named for its pool (`-n sync@%h`, as the plan's command does):
    the sync pool's user may declare only `sync@…` remote-control queues."""
    riot.add_player("Seed", "EUW", "puuid-seed", [])
    app.start_celery(
        ("celery", "-A", "config", "worker", "-l", "info", "-Q", "player_sync", "-n", "sync@%h"),
        "seed-worker",
        " ready.",
        service="worker-sync",
    )
    job = app.wait_job(app.sync("Seed", "EUW", "euw1"), 30, matches_found=0)
    assert job["status"] == "complete"
    beat = app.start_celery(
        ("celery", "-A", "config", "beat", "-l", "info"), "beat", "beat: Starting...", service="beat"
    )
    wait_for(lambda: list(app.workdir.glob("celerybeat-schedule*")), 15, "beat's schedule in DJANGO_DATA_DIR")
    assert beat.alive() and "ERROR" not in beat.output()


def test_worker_loss_mid_batch_loses_nothing_and_duplicates_nothing(app, riot):
    ids = match_ids("2", 8)
    riot.add_player("Loss", "EUW", "puuid-loss", ids)
    downloads = r"/matches/EUW1_2\d{3}$"
    riot.slow(downloads, 1.5)  # slow match downloads: the kill lands mid-task
    app.start_worker("sync")
    doomed = app.start_worker("matches")
    job_id = app.sync("Loss", "EUW", "euw1")
    # killed with no download in flight, only prefetched tasks would come back: each downloads once
    wait_for(
        lambda: len(riot.seen(downloads)) >= 3 and len(riot.arrived(downloads)) > len(riot.seen(downloads)),
        60,
        "three match downloads done and one in flight",
        interval=0.05,
    )
    doomed.kill()  # SIGKILL to the worker and its pool mid-download: tasks in flight, unacked
    assert not doomed.alive()
    app.start_worker("matches")  # what the container's restart policy does
    job = app.wait_job(job_id, 90, matches_processed=8)
    assert (job["status"], job["matches_found"], job["matches_failed"]) == ("complete", 8, 0)
    assert rows(app, job_id, ids) == {
        "matches": 8,
        "distinct_matches": 8,
        "participants": 80,
        "timelines": 8,
        "job_matches": 8,
    }
    # at-least-once: the killed worker's tasks were delivered again (and ran again, to the same effect)
    redelivered = [a for a in attempts(app, "matches.tasks.process_match", "EUW1_2") if a[2]]
    assert redelivered, "no task was in flight when the worker was killed"
    assert len(riot.seen(downloads)) > 8  # the download the kill cut off, done again


def test_broker_restart_mid_batch_workers_reconnect_nothing_lost_nothing_duplicated(app, riot):
    ids = match_ids("3", 8)
    riot.add_player("Restart", "EUW", "puuid-restart", ids)
    riot.slow(r"/matches/EUW1_3\d{3}$", 1.0)
    workers = [app.start_worker("sync"), app.start_worker("matches")]
    job_id = app.sync("Restart", "EUW", "euw1")
    wait_for(lambda: len(riot.seen(r"/matches/EUW1_3\d{3}$")) >= 2, 60, "two match downloads started")
    app.node.stop()  # a clean broker shutdown (docker stop), tasks in flight and queued
    app.node.start()
    job = app.wait_job(job_id, 120, matches_processed=8)
    assert (job["status"], job["matches_found"], job["matches_failed"]) == ("complete", 8, 0)
    assert rows(app, job_id, ids) == {
        "matches": 8,
        "distinct_matches": 8,
        "participants": 80,
        "timelines": 8,
        "job_matches": 8,
    }
    for worker in workers:  # the same processes, reconnected by themselves
        assert worker.alive()
        assert worker.output().count("Connected to amqp://") >= 2, worker.output()[-3000:]


def test_retries_honour_retry_after_and_permanent_failures_are_parked_then_replayed(app, riot):
    ok, flaky, broken = "EUW1_4001", "EUW1_4002", "EUW1_4003"
    riot.add_player("Retry", "EUW", "puuid-retry", [ok, flaky, broken])
    riot.fail(f"/matches/{flaky}$", 500, (429, {"Retry-After": "3"}))
    riot.fail_always(f"/matches/{broken}$", 500)
    app.start_worker("sync")
    app.start_worker("matches")
    job_id = app.sync("Retry", "EUW", "euw1")
    job = app.wait_job(job_id, 90, matches_processed=2, matches_failed=1)
    assert job["status"] == "complete"

    # the flaky match: 500, then 429 (Retry-After 3 s), then success; each wait longer than the one before
    times = [r.at for r in riot.seen(f"/matches/{flaky}$")]
    assert [r.status for r in riot.seen(f"/matches/{flaky}$")] == [500, 429, 200]
    first_wait, second_wait = times[1] - times[0], times[2] - times[1]
    assert 0.9 <= first_wait < second_wait and second_wait >= 3.0, (first_wait, second_wait)
    assert [a[1] for a in attempts(app, "matches.tasks.process_match", flaky)] == [0, 1, 2]

    # the broken one: 1 try + 3 retries, then rejected into the parking queue, not acked away
    assert len(riot.seen(f"/matches/{broken}$")) == 4
    parked = wait_for(lambda: app.parked(), 15, "the failed task parked")
    assert [(p["task"], p["queue"], p["reason"]) for p in parked] == [
        ("matches.tasks.process_match", "match_processing", "rejected")
    ]
    assert broken in parked[0]["args"] and job_id in parked[0]["args"]
    assert app.parked() == parked  # listing does not consume

    riot.recover(f"/matches/{broken}$")
    replay = app.manage("dead_letters", "replay", "--queue", "match_processing")
    assert replay.returncode == 0 and broken in replay.stdout, replay.stderr
    job = app.wait_job(job_id, 60, matches_processed=3, matches_failed=0)
    assert app.parked() == []
    assert rows(app, job_id, [ok, flaky, broken])["timelines"] == 3


def test_poison_message_is_dead_lettered_after_the_delivery_limit(app, riot):
    poison = "EUW1_5001"
    riot.add_player("Poison", "EUW", "puuid-poison", [poison])
    worker = app.start_worker("matches")

    def kill_the_pool(path):  # the task takes its worker process down, every time it runs
        for pid in worker.children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)

    riot.on_request(f"/matches/{poison}$", kill_the_pool)
    app.client_app().send_task("matches.tasks.process_match", args=[poison, None])
    try:
        parked = wait_for(lambda: app.parked(), 120, "the poison message parked", interval=1)
        deliveries = len(riot.arrived(f"/matches/{poison}$"))  # `seen` logs the last one 0.5 s later
        time.sleep(2)
        assert len(riot.arrived(f"/matches/{poison}$")) == deliveries  # not looping any more
    finally:
        riot.clear_hooks()
    assert [(p["task"], p["queue"], p["reason"]) for p in parked] == [
        ("matches.tasks.process_match", "match_processing", "delivery_limit")
    ]
    limit = int(
        next(p for p in app.rendered.definitions["policies"] if p["name"] == "queue.match_processing")["definition"][
            "delivery-limit"
        ]
    )
    assert deliveries == limit + 1, deliveries
    assert worker.alive()  # the worker itself lives on; only its pool processes died


def test_long_tasks_within_the_limits_are_not_cut_off_by_the_consumer_timeout(app, riot):
    timeout_s = app.rendered.celery["broker_consumer_timeout_ms"] / 1000
    ids = match_ids("6", 5)
    riot.add_player("Long", "EUW", "puuid-long", ids)
    task_s = 5.0
    soft_limit, _ = time_limits(app.rendered.celery["broker_consumer_timeout_ms"])
    assert task_s < soft_limit < timeout_s
    riot.slow(r"/matches/EUW1_6\d{3}$", task_s)

    # The control: a consumer that holds a delivery past the timeout has its channel closed by the broker.
    closed = {}

    def hold_a_delivery():
        admin = app.rendered.plan.broker.admin_user  # a probe queue of the test's own: the deployer's user
        credentials = pika.PlainCredentials(admin, app.rendered.password(admin))
        connection = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", app.node.ports.amqp, "/", credentials)
        )
        channel = connection.channel()
        channel.queue_declare("consumer_timeout_probe", durable=False, exclusive=True)
        channel.basic_publish("", "consumer_timeout_probe", b"held")
        channel.basic_consume("consumer_timeout_probe", lambda *a: closed.setdefault("delivered", time.monotonic()))
        # pika's blocking channel only says it is closed; its underlying channel tells why
        channel._impl.add_on_close_callback(lambda _, reason: closed.update(reason=str(reason), at=time.monotonic()))
        try:
            deadline = time.monotonic() + timeout_s + 20
            while time.monotonic() < deadline and channel.is_open:
                connection.process_data_events(time_limit=0.5)
        except pika.exceptions.ChannelClosedByBroker as exc:
            closed.setdefault("reason", str(exc))
            closed.setdefault("at", time.monotonic())
        finally:
            if connection.is_open:
                connection.close()

    control = threading.Thread(target=hold_a_delivery)
    control.start()
    app.start_worker("sync")
    app.start_worker("matches")  # 2 processes, prefetch 1 each: 5 tasks in 3 rounds, longer than the timeout
    started = time.monotonic()
    job_id = app.sync("Long", "EUW", "euw1")
    job = app.wait_job(job_id, 90, matches_processed=5)
    batch_s = time.monotonic() - started
    control.join(timeout=60)
    assert not control.is_alive()
    assert "PRECONDITION_FAILED" in closed.get("reason", ""), closed
    assert closed["at"] - closed["delivered"] >= timeout_s
    assert batch_s > timeout_s, batch_s
    assert job["matches_failed"] == 0
    # each task ran once: no channel closed under the workers, nothing redelivered, nothing cut off
    runs = attempts(app, "matches.tasks.process_match", "EUW1_6")
    assert len(runs) == 5 and not any(redelivered for _, _, redelivered, _ in runs)
    assert len(riot.seen(r"/matches/EUW1_6\d{3}$")) == 5
    assert rows(app, job_id, ids)["timelines"] == 5
