"""Match tasks: store a match and its participants, then its timeline; purge old data (beat)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.tasks import RETRY_OPTIONS, AppTask
from matches.models import Match, Participant, Timeline
from players.models import JobMatch, Player, SyncJob
from riot import RiotClient
from riot.client import platform_of_match, regional_routing

log = logging.getLogger(__name__)


def _set_state(job_id: str | None, match_id: str, state: str, error: str = "", only_from: str | None = None) -> None:
    """Move the job's row for this match to `state` (only from state `only_from`, if given) and settle the
    job's status. Idempotent."""
    if not job_id:
        return
    with transaction.atomic():
        rows = JobMatch.objects.filter(job_id=job_id, match_id=match_id)
        if only_from:
            rows = rows.filter(state=only_from)
        rows.update(state=state, error=error[:500], updated_at=timezone.now())
        job = SyncJob.objects.filter(pk=job_id).first()
        if job is None:
            return
        if state == JobMatch.PENDING and job.status == SyncJob.COMPLETE:
            SyncJob.objects.filter(pk=job_id).update(status=SyncJob.RUNNING, updated_at=timezone.now())
            job.status = SyncJob.RUNNING
        else:
            SyncJob.objects.filter(pk=job_id).update(updated_at=timezone.now())
        job.refresh_status()


class MatchTask(AppTask):
    abstract = True

    @staticmethod
    def riot_region(match_id: str = "", job_id: str | None = None) -> str | None:
        """The routing region of the match's Riot calls: the queue of celery.regional_routes it goes to."""
        try:
            return regional_routing(platform_of_match(match_id))
        except ValueError:
            return None

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Retries exhausted or a permanent error: counted as failed; the message goes to dead_letters,
        where `manage.py dead_letters replay` finds it."""
        match_id = args[0] if args else (kwargs or {}).get("match_id")
        job_id = args[1] if len(args) > 1 else (kwargs or {}).get("job_id")
        _set_state(job_id, match_id, JobMatch.FAILED, f"{self.name}: {exc.__class__.__name__}: {exc}")


def _ms(value) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=dt_timezone.utc)


def store_match(data: dict) -> Match:
    """Upsert a match-v5 match and its participants: storing it twice changes nothing."""
    info, metadata = data["info"], data["metadata"]
    duration = int(info.get("gameDuration", 0))
    if "gameEndTimestamp" not in info:  # before patch 11.20 gameDuration was in milliseconds
        duration //= 1000
    with transaction.atomic():
        match, _ = Match.objects.update_or_create(
            match_id=metadata["matchId"],
            defaults={
                "platform": platform_of_match(metadata["matchId"]),
                "game_creation": _ms(info["gameCreation"]),
                "game_duration_s": duration,
                "game_mode": info.get("gameMode", ""),
                "queue_id": info.get("queueId", 0),
                "game_version": info.get("gameVersion", ""),
            },
        )
        for p in info["participants"]:
            riot_id = f"{p.get('riotIdGameName', '')}#{p.get('riotIdTagline', '')}".strip("#")
            Participant.objects.update_or_create(
                match=match,
                puuid=p["puuid"],
                defaults={
                    "riot_id": riot_id,
                    "champion_name": p.get("championName", ""),
                    "team_id": p["teamId"],
                    "position": p.get("teamPosition") or p.get("individualPosition", ""),
                    "win": p["win"],
                    "kills": p["kills"],
                    "deaths": p["deaths"],
                    "assists": p["assists"],
                    "cs": p.get("totalMinionsKilled", 0) + p.get("neutralMinionsKilled", 0),
                    "gold_earned": p.get("goldEarned", 0),
                    "damage_to_champions": p.get("totalDamageDealtToChampions", 0),
                },
            )
        match.players.add(*Player.objects.filter(puuid__in=metadata.get("participants", [])))
    return match


def store_timeline(match: Match, data: dict) -> Timeline:
    info = data["info"]
    frames = info.get("frames", [])
    timeline, _ = Timeline.objects.update_or_create(
        match=match,
        defaults={
            "frame_interval_ms": info.get("frameInterval", 60000),
            "frame_count": len(frames),
            "event_count": sum(len(f.get("events", [])) for f in frames),
            "frames": frames,
        },
    )
    return timeline


@shared_task(bind=True, base=MatchTask, **RETRY_OPTIONS)
def process_match(self, match_id: str, job_id: str | None = None) -> str:
    """Fetch and store a match, then enqueue its timeline."""
    store_match(RiotClient.from_settings().match(match_id))
    # back from failed when a parked task is replayed
    _set_state(job_id, match_id, JobMatch.PENDING, only_from=JobMatch.FAILED)
    process_timeline.delay(match_id, job_id)
    return match_id


@shared_task(bind=True, base=MatchTask, **RETRY_OPTIONS)
def process_timeline(self, match_id: str, job_id: str | None = None) -> str:
    """Fetch and store a match's timeline (once: a stored timeline is not fetched again); the match then
    counts as processed for its job."""
    match = Match.objects.get(match_id=match_id)
    if not Timeline.objects.filter(match=match).exists():
        store_timeline(match, RiotClient.from_settings().timeline(match_id))
    _set_state(job_id, match_id, JobMatch.PROCESSED)
    return match_id


@shared_task(bind=True, base=AppTask, **RETRY_OPTIONS)
def purge_old_data(self, retention_days: int | None = None) -> dict:
    """Delete matches played, and finished jobs last touched, longer ago than the retention period."""
    cutoff = timezone.now() - timedelta(days=retention_days or settings.DATA_RETENTION_DAYS)
    matches, _ = Match.objects.filter(game_creation__lt=cutoff).delete()
    jobs, _ = SyncJob.objects.filter(status__in=[SyncJob.COMPLETE, SyncJob.FAILED], updated_at__lt=cutoff).delete()
    from players.models import TaskAttempt

    attempts, _ = TaskAttempt.objects.filter(started_at__lt=cutoff).delete()
    log.info("purged %d match rows, %d job rows, %d attempt rows older than %s", matches, jobs, attempts, cutoff)
    return {"matches": matches, "jobs": jobs, "attempts": attempts}
