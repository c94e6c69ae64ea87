"""Models and tasks in eager mode: the sync flow, idempotence under redelivery, retries and their delays,
failures counted, recovery and maintenance."""

from __future__ import annotations

import random
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from config.tasks import backoff_delay
from matches.models import Match, Participant, Timeline
from matches.tasks import process_match, process_timeline, purge_old_data
from players.models import JobMatch, Player, SyncJob
from players.tasks import recover_stale_jobs, sync_player_data
from riot import RateLimits, RiotRateLimited

MATCHES = ["EUW1_1001", "EUW1_1002", "EUW1_1003"]


@pytest.fixture
def player(riot):
    riot.add_player("Caps", "EUW", "puuid-caps", MATCHES)
    return riot


def test_sync_stores_every_match_participant_and_timeline_and_completes_the_job(db, player):
    job_id = sync_player_data.delay("Caps", "EUW", "euw1").get()
    job = SyncJob.objects.get(pk=job_id)
    assert job.status == SyncJob.COMPLETE
    assert job.counts() == {"matches_found": 3, "matches_processed": 3, "matches_failed": 0}
    caps = Player.objects.get(puuid="puuid-caps")
    assert (caps.game_name, caps.tag_line, caps.region) == ("Caps", "EUW", "euw1")
    assert sorted(caps.matches.values_list("match_id", flat=True)) == MATCHES
    assert Participant.objects.count() == 30 and Timeline.objects.count() == 3
    me = Participant.objects.get(match__match_id="EUW1_1001", puuid="puuid-caps")
    assert (me.champion_name, me.kills, me.cs, me.win) == ("Ahri", 0, 150, True)
    timeline = Timeline.objects.get(match__match_id="EUW1_1001")
    assert (timeline.frame_count, timeline.event_count, timeline.frame_interval_ms) == (3, 5, 60000)


def test_redelivered_tasks_change_nothing(db, player):
    job_id = sync_player_data.delay("Caps", "EUW", "euw1").get()
    before = (Match.objects.count(), Participant.objects.count(), Timeline.objects.count(), JobMatch.objects.count())
    for _ in range(2):  # what at-least-once delivery may do: run every task again
        sync_player_data.delay("Caps", "EUW", "euw1", job_id=job_id).get()
        for match_id in MATCHES:
            process_match.delay(match_id, job_id).get()
            process_timeline.delay(match_id, job_id).get()
    after = (Match.objects.count(), Participant.objects.count(), Timeline.objects.count(), JobMatch.objects.count())
    assert before == after == (3, 30, 3, 3)
    assert SyncJob.objects.get(pk=job_id).counts() == {"matches_found": 3, "matches_processed": 3, "matches_failed": 0}
    assert Player.objects.count() == 1


def test_transient_errors_are_retried_with_growing_delays_that_honour_retry_after(db, player):
    player.fail("/matches/EUW1_1002$", 500, (429, {"Retry-After": "9"}))
    with mock.patch(
        "celery.app.task.Task.retry",
        autospec=True,
        side_effect=lambda *a, **k: (_ for _ in ()).throw(RuntimeError(k["countdown"])),
    ) as retry:
        with pytest.raises(RuntimeError):
            process_match.delay("EUW1_1002", None).get()
        assert retry.call_args.kwargs["countdown"] == 1  # first retry: 1 s (+ up to half of it)
        with pytest.raises(RuntimeError):
            process_match.apply(args=("EUW1_1002", None), retries=1).get()
        assert retry.call_args.kwargs["countdown"] == 9  # the 429's Retry-After, longer than the 2-3 s backoff


def test_backoff_delays_grow_with_jitter_and_stop_at_the_maximum():
    rng = random.Random(4)
    for retries in range(12):
        delays = {backoff_delay(retries, rng=rng) for _ in range(50)}
        base = min(600, 2**retries)
        assert min(delays) >= base and max(delays) <= min(600, base + base // 2)
        if retries >= 2 and base < 600:
            assert len(delays) > 1  # jittered
        if retries:
            assert min(delays) > max(backoff_delay(retries - 1, rng=rng) for _ in range(50)) - 1


def test_a_permanent_failure_is_counted_as_failed_and_raised(db, player):
    player.fail_always("/matches/EUW1_1003$", 404)
    app = sync_player_data.app
    app.conf.task_eager_propagates = False  # as in a worker: the failure goes through on_failure
    try:
        result = sync_player_data.delay("Caps", "EUW", "euw1")
    finally:
        app.conf.task_eager_propagates = True
    job = SyncJob.objects.get(pk=result.get())
    assert job.counts() == {"matches_found": 3, "matches_processed": 2, "matches_failed": 1}
    assert job.status == SyncJob.COMPLETE  # settled: the failed one waits in dead_letters for a replay
    player.recover("/matches/EUW1_1003$")
    process_match.delay("EUW1_1003", str(job.pk)).get()  # what a replay does
    assert job.counts() == {"matches_found": 3, "matches_processed": 3, "matches_failed": 0}


def test_unknown_player_fails_the_job_without_a_retry(db, player):
    job_id = sync_player_data.delay("Nobody", "000", "euw1").get()
    job = SyncJob.objects.get(pk=job_id)
    assert (job.status, job.error) == (SyncJob.FAILED, "player not found")
    assert len(player.requests) == 1


def test_rate_limited_error_carries_the_parsed_limits():
    error = RiotRateLimited("x", retry_after=2, limits=RateLimits(limit_type="application"))
    assert error.retry_after == 2 and error.limits.limit_type == "application"


def test_recovery_reenqueues_only_stale_unfinished_work(db, player):
    job_id = sync_player_data.delay("Caps", "EUW", "euw1").get()
    JobMatch.objects.filter(job_id=job_id, match_id="EUW1_1002").update(state=JobMatch.PENDING)
    SyncJob.objects.filter(pk=job_id).update(status=SyncJob.RUNNING, updated_at=timezone.now() - timedelta(hours=1))
    fresh = SyncJob.objects.create(game_name="Fresh", tag_line="EUW", region="euw1")
    with (
        mock.patch("matches.tasks.process_match.delay") as process,
        mock.patch("players.tasks.sync_player_data.apply_async") as sync,
    ):
        assert recover_stale_jobs.delay().get() == 1
    process.assert_called_once_with("EUW1_1002", job_id)
    sync.assert_not_called()
    SyncJob.objects.filter(pk=fresh.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    with mock.patch("players.tasks.sync_player_data.apply_async") as sync:
        assert recover_stale_jobs.delay().get() == 1
    # re-sent at the lowest priority: after any sync a user asked for (on a queue with priorities)
    sync.assert_called_once_with(("Fresh", "EUW", "euw1"), {"job_id": str(fresh.pk)}, priority=0)
    assert recover_stale_jobs.delay().get() == 0  # touched: not stale any more


def test_maintenance_purges_old_matches_and_finished_jobs(db, player):
    job_id = sync_player_data.delay("Caps", "EUW", "euw1").get()
    Match.objects.filter(match_id="EUW1_1001").update(game_creation=timezone.now() - timedelta(days=200))
    SyncJob.objects.filter(pk=job_id).update(updated_at=timezone.now() - timedelta(days=200))
    running = SyncJob.objects.create(game_name="Run", tag_line="EUW", region="euw1", status=SyncJob.RUNNING)
    SyncJob.objects.filter(pk=running.pk).update(updated_at=timezone.now() - timedelta(days=200))
    purge_old_data.delay().get()
    assert sorted(Match.objects.values_list("match_id", flat=True)) == ["EUW1_1002", "EUW1_1003"]
    assert Participant.objects.count() == 20 and Timeline.objects.count() == 2
    assert list(SyncJob.objects.values_list("pk", flat=True)) == [running.pk]  # unfinished jobs stay
