"""Player tasks: the sync that starts a job, and the recovery of jobs stuck past their deadline."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.tasks import RETRY_OPTIONS, AppTask
from config.topology import BACKGROUND_PRIORITY
from players.models import JobMatch, Player, SyncJob
from riot import RiotClient, RiotNotFound, regional_routing

log = logging.getLogger(__name__)


class SyncTask(AppTask):
    abstract = True

    @staticmethod
    def riot_region(game_name: str = "", tag_line: str = "", region: str = "", job_id: str | None = None) -> str | None:
        """The routing region of the player's Riot calls: the queue of celery.regional_routes it goes to."""
        try:
            return regional_routing(region)
        except ValueError:
            return None

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Retries exhausted or a permanent error: the job says so; the message goes to dead_letters."""
        job_id = (kwargs or {}).get("job_id") or (args[3] if len(args) > 3 else None)
        if job_id:
            SyncJob.objects.filter(pk=job_id).update(
                status=SyncJob.FAILED, error=f"{exc.__class__.__name__}: {exc}"[:500], updated_at=timezone.now()
            )


@shared_task(bind=True, base=SyncTask, **RETRY_OPTIONS)
def sync_player_data(self, game_name: str, tag_line: str, region: str, job_id: str | None = None) -> str:
    """Resolve the account, list the recent matches, enqueue one process_match each. Idempotent: a rerun
    finds the same player and the same JobMatch rows, and re-enqueues only what is not processed yet."""
    if job_id is None:
        job = SyncJob.objects.create(game_name=game_name, tag_line=tag_line, region=region)
    else:
        job = SyncJob.objects.get(pk=job_id)
    client = RiotClient.from_settings()
    try:
        account = client.account_by_riot_id(game_name, tag_line, region)
    except RiotNotFound:
        # A definite answer, not a lost task: the job says so and the message is acked.
        SyncJob.objects.filter(pk=job.pk).update(
            status=SyncJob.FAILED, error="player not found", updated_at=timezone.now()
        )
        return str(job.pk)
    match_ids = client.match_ids(account["puuid"], region, count=settings.RIOT_MATCHES_PER_SYNC)
    with transaction.atomic():
        player, _ = Player.objects.update_or_create(
            puuid=account["puuid"],
            defaults={
                "game_name": account.get("gameName") or game_name,
                "tag_line": account.get("tagLine") or tag_line,
                "region": region.lower(),
            },
        )
        for match_id in match_ids:
            JobMatch.objects.get_or_create(job=job, match_id=match_id)
        SyncJob.objects.filter(pk=job.pk).update(
            player=player, status=SyncJob.RUNNING, error="", updated_at=timezone.now()
        )
    job.refresh_from_db()
    from matches.tasks import process_match

    for match_id in job.matches.filter(state=JobMatch.PENDING).values_list("match_id", flat=True):
        process_match.delay(match_id, str(job.pk))
    job.refresh_status()
    return str(job.pk)


@shared_task(bind=True, base=AppTask, **RETRY_OPTIONS)
def recover_stale_jobs(self, stale_after_s: int | None = None) -> int:
    """Re-enqueue the work of jobs nobody touched for `stale_after_s` (their messages expired, were
    purged, or were parked and forgotten). Safe to run any time: every task it sends is idempotent."""
    from matches.tasks import process_match

    deadline = timezone.now() - timedelta(seconds=stale_after_s or settings.SYNC_JOB_STALE_AFTER_S)
    recovered = 0
    for job in SyncJob.objects.filter(status__in=[SyncJob.PENDING, SyncJob.RUNNING], updated_at__lt=deadline):
        if job.player_id is None:
            # after any sync a user is waiting for, where the queue has priorities
            sync_player_data.apply_async(
                (job.game_name, job.tag_line, job.region), {"job_id": str(job.pk)}, priority=BACKGROUND_PRIORITY
            )
        else:
            for match_id in job.matches.exclude(state=JobMatch.PROCESSED).values_list("match_id", flat=True):
                process_match.delay(match_id, str(job.pk))
        SyncJob.objects.filter(pk=job.pk).update(updated_at=timezone.now())
        recovered += 1
    if recovered:
        log.info("recovered %d stale sync job(s)", recovered)
    return recovered
