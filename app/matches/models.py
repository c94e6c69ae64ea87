"""Matches as match-v5 gives them: the match, one row per participant, the timeline."""

from django.db import models


class Match(models.Model):
    match_id = models.CharField(max_length=40, unique=True)  # EUW1_6543210
    platform = models.CharField(max_length=8)
    game_creation = models.DateTimeField()
    game_duration_s = models.PositiveIntegerField()
    game_mode = models.CharField(max_length=40, blank=True, default="")
    queue_id = models.IntegerField(default=0)
    game_version = models.CharField(max_length=40, blank=True, default="")
    players = models.ManyToManyField("players.Player", related_name="matches", blank=True)
    fetched_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-game_creation"]

    def __str__(self) -> str:
        return self.match_id


class Participant(models.Model):
    match = models.ForeignKey(Match, on_delete=models.CASCADE, related_name="participants")
    puuid = models.CharField(max_length=100)
    riot_id = models.CharField(max_length=120, blank=True, default="")
    champion_name = models.CharField(max_length=40)
    team_id = models.IntegerField()
    position = models.CharField(max_length=20, blank=True, default="")
    win = models.BooleanField()
    kills = models.PositiveIntegerField()
    deaths = models.PositiveIntegerField()
    assists = models.PositiveIntegerField()
    cs = models.PositiveIntegerField(default=0)  # totalMinionsKilled + neutralMinionsKilled
    gold_earned = models.PositiveIntegerField(default=0)
    damage_to_champions = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["match", "puuid"], name="one_row_per_match_and_player")]

    def as_dict(self) -> dict:
        return {
            "puuid": self.puuid,
            "riot_id": self.riot_id,
            "champion": self.champion_name,
            "team_id": self.team_id,
            "position": self.position,
            "win": self.win,
            "kills": self.kills,
            "deaths": self.deaths,
            "assists": self.assists,
            "cs": self.cs,
            "gold_earned": self.gold_earned,
            "damage_to_champions": self.damage_to_champions,
        }


class Timeline(models.Model):
    match = models.OneToOneField(Match, on_delete=models.CASCADE, related_name="timeline")
    frame_interval_ms = models.PositiveIntegerField()
    frame_count = models.PositiveIntegerField()
    event_count = models.PositiveIntegerField()
    frames = models.JSONField()  # the frames as Riot sends them
    fetched_at = models.DateTimeField(auto_now=True)
