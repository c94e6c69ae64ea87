"""The JSON API: start a sync, follow its job, read a player with their stored matches."""

from __future__ import annotations

import json
import logging
import re

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from players.models import Player, SyncJob
from riot.client import PLATFORM_REGIONS

log = logging.getLogger(__name__)

# A request waits at most a few seconds for the broker (the workers' policy rides out a restart, ~40 s,
# longer than gunicorn's 30 s worker timeout); then the client gets a 503 and may try again.
WEB_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 1, "interval_max": 2}

# Riot IDs: a game name of 3-16 characters and a tag line of 3-5 letters or digits.
GAME_NAME = re.compile(r"^[^\x00-\x1f#/\\?]{3,16}$")
TAG_LINE = re.compile(r"^[0-9A-Za-z]{3,5}$")


def error(status: int, message: str, field: str | None = None) -> JsonResponse:
    body = {"error": message}
    if field:
        body["field"] = field
    return JsonResponse(body, status=status)


def validate_riot_id(game_name, tag_line, region) -> tuple[str, str] | None:
    """(field, message) of the first bad value, or None."""
    if not isinstance(game_name, str) or not GAME_NAME.match(game_name.strip()):
        return "game_name", "game_name must be a Riot ID game name of 3 to 16 characters"
    if not isinstance(tag_line, str) or not TAG_LINE.match(tag_line.strip()):
        return "tag_line", "tag_line must be 3 to 5 letters or digits, without '#'"
    if not isinstance(region, str) or region.lower() not in PLATFORM_REGIONS:
        return "region", f"region must be one of {', '.join(sorted(PLATFORM_REGIONS))}"
    return None


@csrf_exempt  # a JSON API for other programs: no session cookies, so no CSRF to guard against
@require_POST
def sync_player(request):
    try:
        payload = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        return error(400, "the body must be a JSON object")
    if not isinstance(payload, dict):
        return error(400, "the body must be a JSON object")
    game_name, tag_line, region = (payload.get(k) for k in ("game_name", "tag_line", "region"))
    problem = validate_riot_id(game_name, tag_line, region)
    if problem:
        return error(400, problem[1], problem[0])
    game_name, tag_line, region = game_name.strip(), tag_line.strip(), region.lower()
    job = SyncJob.objects.create(game_name=game_name, tag_line=tag_line, region=region)
    from players.tasks import sync_player_data

    try:
        sync_player_data.apply_async(
            (game_name, tag_line, region), {"job_id": str(job.pk)}, retry_policy=WEB_PUBLISH_RETRY_POLICY
        )
    except Exception as exc:  # broker down or the queue full (publisher confirm refused): say so, keep no job
        log.exception("could not enqueue the sync of job %s", job.pk)
        job.delete()
        return error(503, f"the task queue did not accept the job: {exc.__class__.__name__}")
    return JsonResponse({"job_id": str(job.pk), "status": job.status}, status=202)


@require_GET
def job_status(request, job_id):
    job = SyncJob.objects.filter(pk=job_id).first()
    if job is None:
        return error(404, f"no job {job_id}")
    return JsonResponse(job.as_dict())


@require_GET
def player_detail(request, region, game_name, tag_line):
    problem = validate_riot_id(game_name, tag_line, region)
    if problem:
        return error(400, problem[1], problem[0])
    player = (
        Player.objects.filter(region=region.lower(), game_name__iexact=game_name, tag_line__iexact=tag_line)
        .order_by("-updated_at")
        .first()
    )
    if player is None:
        return error(404, f"no player {game_name}#{tag_line} in {region.lower()}")
    matches = []
    for match in player.matches.prefetch_related("participants").select_related("timeline"):
        me = next((p for p in match.participants.all() if p.puuid == player.puuid), None)
        timeline = getattr(match, "timeline", None)
        matches.append(
            {
                "match_id": match.match_id,
                "game_creation": match.game_creation.isoformat(),
                "game_duration_s": match.game_duration_s,
                "game_mode": match.game_mode,
                "queue_id": match.queue_id,
                "game_version": match.game_version,
                "player": me.as_dict() if me else None,
                "participants": [p.as_dict() for p in match.participants.all()],
                "timeline": (
                    {
                        "frame_interval_ms": timeline.frame_interval_ms,
                        "frames": timeline.frame_count,
                        "events": timeline.event_count,
                    }
                    if timeline
                    else None
                ),
            }
        )
    return JsonResponse(
        {
            "puuid": player.puuid,
            "game_name": player.game_name,
            "tag_line": player.tag_line,
            "region": player.region,
            "matches": matches,
        }
    )
