"""The app under Riot's rate limits: two measurements on real parts, as in tests/app/test_rate_limits.py (one
RabbitMQ node, web, two worker processes per pool, the limiter's store in SQLite). Prints Markdown tables
for bench/RESULTS.md.

    .venv/bin/python bench/rate_limits.py [--europe 3] [--americas 2] [--matches 20] [--runs 5]

Floor: the fake Riot API enforces Riot's real `20:1,100:120` per routing region and its documented method
limits. Every player's sync is posted at once; the time runs from the first POST to the last job `complete`
(polled every 0.5 s). The floor is when the last request could start at the earliest under the limits, for
the busiest region, counting no work at all: ratio = time / floor.

Pacing: why a sync of 20 matches took 2.2 s the first time and 6.1 s (median) the next five in
`make bench-local`. The same back-to-back syncs (each posted when the previous one is complete), side by
side, with the seed's Celery rate limit on player_sync (`10/m`) and with the Riot rate limiter that replaced
it; the fake answers under a production key's limits (the figure is about the app's own pacing).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "app"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from sample_riot.server import DEV_KEY_LIMIT, FakeRiot  # noqa: E402
from tests.app.rate_limit_run import (  # noqa: E402
    players,
    rate_limited_deployment,
    region_of,
    regional_floor_s,
    start_workers,
    sync_all,
    use_riot,
)

# The seed's pacing: the sync task on one queue with Celery's per-worker-process rate limit of 10 a minute.
SEED_PACING = """
celery:
  regional_routes: {players.tasks.sync_player_data: ~}
  routes: {players.tasks.sync_player_data: player_sync}
vhosts: {"/": {queues: {player_sync: {rate_limit: 10/m}}}}
"""


def floor(args) -> None:
    everyone = players(1, args.europe, args.americas, args.matches)
    riot = FakeRiot(app_limit=DEV_KEY_LIMIT).start()
    try:
        with rate_limited_deployment() as deployment:
            use_riot(deployment, riot, everyone)
            start_workers(deployment)
            jobs, seconds = sync_all(deployment, everyone, timeout=900)
            parked = deployment.parked()
    finally:
        riot.close()
    assert all(j["status"] == "complete" and j["matches_failed"] == 0 for j in jobs), jobs
    floor = regional_floor_s(everyone, DEV_KEY_LIMIT)
    per_region = {}
    for p in everyone:
        per_region[region_of(p)] = per_region.get(region_of(p), 0) + p.requests
    print("\n| measure | value |\n| --- | --- |")
    for name, value in [
        ("players × matches", f"{args.europe} europe + {args.americas} americas × {args.matches}"),
        ("Riot requests per region", ", ".join(f"{r} {n}" for r, n in sorted(per_region.items()))),
        ("jobs complete / parked", f"{sum(j['status'] == 'complete' for j in jobs)} / {len(parked)}"),
        ("429s (limit violations) at the fake", str(len(riot.violations))),
        ("floor the limits allow (busiest region)", f"{floor:.1f} s"),
        ("all syncs complete", f"{seconds:.1f} s"),
        ("ratio", f"{seconds / floor:.3f}"),
    ]:
        print(f"| {name} | {value} |")


def back_to_back(overlays: tuple, series: int, runs: int, matches: int) -> list[float]:
    everyone = players(series, europe=runs + 1, americas=0, matches=matches)
    riot = FakeRiot().start()
    try:
        with rate_limited_deployment(overlays=overlays) as deployment:
            use_riot(deployment, riot, everyone)
            start_workers(deployment)
            return [sync_all(deployment, [p], timeout=300)[1] for p in everyone]
    finally:
        riot.close()


def pacing(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "seed-pacing.yaml"
        seed.write_text(SEED_PACING)
        rows = [
            ("player_sync at Celery's 10/m (the seed)", back_to_back((seed,), 5, args.runs, args.matches)),
            ("Riot rate limiter (now)", back_to_back((), 6, args.runs, args.matches)),
        ]
    print(f"\n| pacing | first sync | next {args.runs} (median, min–max) |\n| --- | --- | --- |")
    for name, times in rows:
        warm = times[1:]
        print(f"| {name} | {times[0]:.1f} s | {statistics.median(warm):.1f} s ({min(warm):.1f}–{max(warm):.1f}) |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--europe", type=int, default=3)
    parser.add_argument("--americas", type=int, default=2)
    parser.add_argument("--matches", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5, help="back-to-back syncs after the first (pacing)")
    args = parser.parse_args()
    print(f"Machine: {os.cpu_count()} cores, {platform.platform()}")
    floor(args)
    pacing(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
