"""Cold and warm times of the local stack (issue 5): image build, stack up to healthy, a full sync.

    make bench-local            # or: .venv/bin/python bench/local_stack.py [--matches N] [--runs R]

Cold build: every image rebuilt (`scripts/build-local-images --force`, debootstrap included); warm: all
current. Cold up: from nothing (new volumes) to every container healthy; warm up: `down` keeping the
volumes, then up again. Sync: POST a player with N matches (the fake Riot API answering at once) until
the job is complete, median of R runs, cold (first after a cold up) and warm. Prints a Markdown table for
bench/RESULTS.md.

`--first-run`: only a fresh clone's `make local` — no Riot key, the stack's own sample Riot API — from
nothing (new volumes) to every container healthy, and warm (`down` keeping the volumes, then up), each the
median of --runs; side by side, runs alternating, with the health checks as Docker ran them before they were
paced (each spec's own test and interval: HealthCheck.paced undone in the compose file).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from infra.plan.services import BROKER_HEALTHCHECK, HealthCheck  # noqa: E402
from infra.render.compose import COMPOSE_FILE  # noqa: E402
from tests.e2e.harness import running_stack  # noqa: E402


def build(force: bool) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-local-images"), *(["--force"] if force else [])],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def sync_seconds(stack, player: dict) -> float:
    started = time.monotonic()
    job = stack.wait_job(stack.sync(player), timeout=600)
    assert job["status"] == "complete" and job["matches_processed"] == len(player["match_ids"]), job
    return time.monotonic() - started


def unpaced(local) -> None:
    """The compose file with each health check as its spec says, every `interval` from the start."""
    path = local.out / COMPOSE_FILE
    document = yaml.safe_load(path.read_text())
    specs = {s.name: HealthCheck(s.healthcheck) for s in local.plan.services}
    for name, service in document["services"].items():
        check = specs.get(name, BROKER_HEALTHCHECK)
        service["healthcheck"] = {
            "test": [part.replace("$", "$$") for part in check.test],
            "interval": check.interval,
            "timeout": check.timeout,
            "retries": check.retries,
            "start_period": check.start_period,
        }
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def first_run(runs: int) -> list[tuple[str, str]]:
    times: dict[str, list[float]] = {f"{kind} {when}": [] for kind in ("paced", "unpaced") for when in ("cold", "warm")}
    for run in range(runs):
        for kind, prepare in (("paced", None), ("unpaced", unpaced)):
            with running_stack(None, {}, project=f"rcfirst{os.getpid()}x{run}{kind}", prepare=prepare) as stack:
                times[f"{kind} cold"].append(stack.up_seconds)
                stack.local.down()
                started = time.monotonic()
                stack.local.start(progress=lambda line: None)
                times[f"{kind} warm"].append(time.monotonic() - started)

    def spread(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f} s (min {min(xs):.1f}, max {max(xs):.1f})"

    rows = []
    for when, what in (("cold", "new volumes"), ("warm", "volumes kept")):
        paced, before = times[f"paced {when}"], times[f"unpaced {when}"]
        rows += [
            (f"first run up to healthy, {when} ({what}), paced checks", spread(paced)),
            (f"first run up to healthy, {when} ({what}), unpaced checks", spread(before)),
            (f"ratio paced / unpaced, {when} (medians)", f"{statistics.median(paced) / statistics.median(before):.2f}"),
        ]
    return rows


def machine() -> str:
    return (
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Docker "
        f"{subprocess.run(['docker', 'version', '-f', '{{.Server.Version}}'], capture_output=True, text=True).stdout.strip()}"
        f", load average at the end {os.getloadavg()[0]:.1f}"
    )


def table(rows: list[tuple[str, str]]) -> None:
    print(machine())
    print("\n| measure | time |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--matches", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--first-run", action="store_true", help="only make local's first run, with no Riot key")
    args = parser.parse_args()
    if args.first_run:
        table(first_run(args.runs))
        return 0
    players = [
        {
            "game_name": f"Bench{r}",
            "tag_line": "EUW",
            "puuid": f"puuid-bench-{r}",
            "match_ids": [f"EUW1_9{r:02d}{i:04d}" for i in range(args.matches)],
        }
        for r in range(args.runs + 1)
    ]
    rows = [
        ("image build, cold (all rebuilt)", f"{build(force=True):.0f} s"),
        ("image build, warm (all current)", f"{build(force=False):.1f} s"),
    ]
    with running_stack(players, {}, project=f"rcbench{os.getpid()}") as stack:
        rows.append(("stack up to healthy, cold (new volumes)", f"{stack.up_seconds:.0f} s"))
        rows.append((f"sync of {args.matches} matches, first", f"{sync_seconds(stack, players[0]):.1f} s"))
        warm = [sync_seconds(stack, p) for p in players[1:]]
        rows.append(
            (
                f"sync of {args.matches} matches, warm (median of {len(warm)})",
                f"{statistics.median(warm):.1f} s (min {min(warm):.1f}, max {max(warm):.1f})",
            )
        )
        stack.local.down()
        started = time.monotonic()
        stack.local.up()
        stack.local.wait_healthy(progress=lambda line: None)
        rows.append(("stack up to healthy, warm (volumes kept)", f"{time.monotonic() - started:.0f} s"))
    table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
