"""Syncs under a development key's real rate limits, against the least time those limits allow.

    .venv/bin/python bench/rate_limits.py [--europe 3] [--americas 2] [--matches 20]

Real parts as in tests/app/test_rate_limits.py (one RabbitMQ node, web, two worker processes per pool, the
limiter's store in SQLite), with the fake Riot API enforcing Riot's real `20:1,100:120` per routing region
and its documented method limits. Every player's sync is posted at once; the time runs from the first POST
to the last job `complete` (polled every 0.5 s). The floor is when the last request could start at the
earliest under the limits, for the busiest region, counting no work at all: ratio = time / floor.
Prints a Markdown table for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "app"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from tests.app.fake_riot import DEV_KEY_LIMIT, FakeRiot  # noqa: E402
from tests.app.rate_limit_run import (players, rate_limited_deployment, region_of, regional_floor_s,  # noqa: E402
                                      start_workers, sync_all, use_riot)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--europe", type=int, default=3)
    parser.add_argument("--americas", type=int, default=2)
    parser.add_argument("--matches", type=int, default=20)
    args = parser.parse_args()
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
    print(f"Machine: {os.cpu_count()} cores, {platform.platform()}")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
