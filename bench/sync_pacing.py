"""Why a sync of 20 matches took 2.2 s the first time and 6.1 s (median) the next five (`make bench-local`):
the same back-to-back syncs, side by side, with the seed's Celery rate limit on player_sync (`10/m`) and
with the Riot rate limiter that replaced it.

    .venv/bin/python bench/sync_pacing.py [--matches 20] [--runs 5]

Real parts as in tests/app/test_rate_limits.py; the fake Riot API answers at once, under a production key's
limits (the figure is about the app's own pacing). Each sync is posted when the previous one is complete.
Prints a Markdown table for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "app"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from tests.app.fake_riot import FakeRiot  # noqa: E402
from tests.app.rate_limit_run import players, rate_limited_deployment, start_workers, sync_all, use_riot  # noqa: E402

# The seed's pacing: the sync task on one queue with Celery's per-worker-process rate limit of 10 a minute.
SEED_PACING = """
celery:
  regional_routes: {players.tasks.sync_player_data: ~}
  routes: {players.tasks.sync_player_data: player_sync}
vhosts: {"/": {queues: {player_sync: {rate_limit: 10/m}}}}
"""


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--matches", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "seed-pacing.yaml"
        seed.write_text(SEED_PACING)
        rows = [("player_sync at Celery's 10/m (the seed)", back_to_back((seed,), 5, args.runs, args.matches)),
                ("Riot rate limiter (now)", back_to_back((), 6, args.runs, args.matches))]
    print(f"\n| pacing | first sync | next {args.runs} (median, min–max) |\n| --- | --- | --- |")
    for name, times in rows:
        warm = times[1:]
        print(f"| {name} | {times[0]:.1f} s | {statistics.median(warm):.1f} s ({min(warm):.1f}–{max(warm):.1f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
