"""The app under Riot's rate limits, on real parts, for tests/app/test_rate_limits.py and bench/rate_limits.py:
the reliability deployment (one RabbitMQ node, web, SQLite) with tests/app/data/rate_limits.yaml over it, the
rate limiter's store in its own SQLite file (so a test can take it away while the app's database stays), and
a fake Riot API that enforces its limits.

Players in two routing regions are synced at once by two worker processes per pool; `floor_s` is the least
time the limits allow for their requests, whatever the order."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from sample_riot.server import FakeRiot, parse_limits
from tests.app.deployment import deploy, wait_for

OVERLAY = Path(__file__).resolve().parent / "data" / "rate_limits.yaml"
WORKER_PROCESSES = 4  # two pools of two (the overlay)


@dataclass(frozen=True)
class Player:
    game_name: str
    platform: str  # euw1 (europe), na1 (americas)
    matches: int
    number: int  # its match ids' series: unique in a module, whose runs share one database

    @property
    def puuid(self) -> str:
        return f"puuid-{self.game_name.lower()}"

    @property
    def match_ids(self) -> list[str]:
        prefix = self.platform.upper()
        return [f"{prefix}_{self.number}{i:03d}" for i in range(self.matches)]

    @property
    def requests(self) -> int:
        """account, match ids, then each match and its timeline."""
        return 2 + 2 * self.matches


def players(series: int, europe: int, americas: int, matches: int) -> list[Player]:
    """`series` (1-9) keeps one run's players and matches apart from another's."""
    regions = ["euw1"] * europe + ["na1"] * americas
    return [Player(f"S{series}P{i}", platform, matches, series * 10 + i) for i, platform in enumerate(regions)]


def region_of(player: Player) -> str:
    return {"euw1": "europe", "na1": "americas"}[player.platform]


def floor_s(requests: int, limits: str) -> float:
    """When the last of `requests` can start at the earliest, the first at 0, under `limits` (sliding
    windows): request k waits for request k - count of each window to leave it."""
    windows = parse_limits(limits)
    starts: list[float] = []
    for k in range(requests):
        starts.append(max([0.0] + [starts[k - count] + window for count, window in windows if k >= count]))
    return starts[-1] if starts else 0.0


def regional_floor_s(everyone: list[Player], limits: str) -> float:
    per_region: dict[str, int] = {}
    for p in everyone:
        per_region[region_of(p)] = per_region.get(region_of(p), 0) + p.requests
    return max(floor_s(n, limits) for n in per_region.values())


@contextlib.contextmanager
def rate_limited_deployment(max_wait_s: float = 15 * 60, overlays: tuple = ()):
    """(deployment) with the limiter's store migrated; the fake Riot API is set per run (`use_riot`)."""
    placeholder = FakeRiot()  # deploy() wants one for the web's environment; each run brings its own
    deployment, cleanup = deploy(placeholder, overlays=(OVERLAY, *overlays))
    placeholder.server.server_close()
    try:
        deployment.limiter_db = deployment.workdir / "ratelimit.sqlite3"
        deployment.env.update(
            {
                "RIOT_RATE_LIMIT_DATABASE_URL": f"sqlite:///{deployment.limiter_db}",
                "RIOT_RATE_LIMIT_PROCESSES": str(WORKER_PROCESSES),
                "RIOT_RATE_LIMIT_MAX_WAIT_S": str(max_wait_s),
            }
        )
        migrated = deployment.manage("migrate", "--database", "ratelimit")
        assert migrated.returncode == 0, migrated.stderr
        yield deployment
    finally:
        cleanup()


def use_riot(deployment, riot: FakeRiot, everyone: list[Player]) -> None:
    for p in everyone:
        riot.add_player(p.game_name, "TAG1", p.puuid, p.match_ids)
    deployment.riot = riot
    deployment.env["RIOT_API_BASE_URL"] = riot.base_url


def start_workers(deployment) -> None:
    deployment.start_worker("sync")
    deployment.start_worker("matches")


def sync_all(deployment, everyone: list[Player], timeout: float) -> tuple[list[dict], float]:
    """POST every player's sync at once; (their jobs once settled, seconds from the first POST)."""
    started = time.monotonic()
    job_ids = [deployment.sync(p.game_name, "TAG1", p.platform) for p in everyone]
    jobs = [
        deployment.wait_job(job_id, max(1.0, timeout - (time.monotonic() - started)), matches_processed=p.matches)
        for job_id, p in zip(job_ids, everyone)
    ]
    return jobs, time.monotonic() - started


__all__ = [
    "Player",
    "floor_s",
    "players",
    "rate_limited_deployment",
    "regional_floor_s",
    "start_workers",
    "sync_all",
    "use_riot",
    "wait_for",
]
