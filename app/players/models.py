"""Players and sync jobs: the seed's "progress tracking".

A job's counts are derived from one JobMatch row per (job, match), never incremented: a redelivered task
updates the same row, so counts cannot drift however often a task runs.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Count, Q


class Player(models.Model):
    puuid = models.CharField(max_length=100, unique=True)
    game_name = models.CharField(max_length=100)
    tag_line = models.CharField(max_length=10)
    region = models.CharField(max_length=8)  # platform: euw1, na1, kr, ...
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["region", "game_name", "tag_line"])]

    def __str__(self) -> str:
        return f"{self.game_name}#{self.tag_line} ({self.region})"


class SyncJob(models.Model):
    PENDING, RUNNING, COMPLETE, FAILED = "pending", "running", "complete", "failed"
    STATUSES = [(s, s) for s in (PENDING, RUNNING, COMPLETE, FAILED)]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    game_name = models.CharField(max_length=100)
    tag_line = models.CharField(max_length=10)
    region = models.CharField(max_length=8)
    player = models.ForeignKey(Player, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def counts(self) -> dict[str, int]:
        c = self.matches.aggregate(
            found=Count("id"),
            processed=Count("id", filter=Q(state=JobMatch.PROCESSED)),
            failed=Count("id", filter=Q(state=JobMatch.FAILED)),
        )
        return {"matches_found": c["found"], "matches_processed": c["processed"], "matches_failed": c["failed"]}

    def refresh_status(self) -> None:
        """Complete once no match is pending (failed ones count as settled: they are parked for replay)."""
        if self.status in (self.RUNNING, self.COMPLETE) and self.player_id is not None:
            pending = self.matches.filter(state=JobMatch.PENDING).exists()
            status = self.RUNNING if pending else self.COMPLETE
            if status != self.status:
                SyncJob.objects.filter(pk=self.pk).update(status=status)
                self.status = status

    def as_dict(self) -> dict:
        return {
            "job_id": str(self.id),
            "status": self.status,
            "game_name": self.game_name,
            "tag_line": self.tag_line,
            "region": self.region,
            "error": self.error or None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            **self.counts(),
        }


class JobMatch(models.Model):
    """One match of one sync job and how far it got."""

    PENDING, PROCESSED, FAILED = "pending", "processed", "failed"
    STATES = [(s, s) for s in (PENDING, PROCESSED, FAILED)]

    job = models.ForeignKey(SyncJob, on_delete=models.CASCADE, related_name="matches")
    match_id = models.CharField(max_length=40)
    state = models.CharField(max_length=10, choices=STATES, default=PENDING)
    error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "match_id"], name="one_row_per_job_and_match")]


class TaskAttempt(models.Model):
    """Every start of a task in a worker: which queue delivered it, which retry, whether redelivered.
    For operators (and the tests): duplicates here are expected (at-least-once); in the data they are not."""

    task_id = models.CharField(max_length=64)
    task_name = models.CharField(max_length=100)
    queue = models.CharField(max_length=100, blank=True, default="")  # the delivery's routing key
    retries = models.PositiveIntegerField(default=0)
    redelivered = models.BooleanField(default=False)
    argsrepr = models.CharField(max_length=300, blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["task_name", "started_at"])]
