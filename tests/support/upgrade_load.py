"""The load both blue-green upgrade proofs run under (tests/e2e/test_upgrade.py on compose,
tests/pulumi/test_stack_upgrade.py through `make deploy`): a backlog across the seed's task queues, countdown
tasks (Celery's native delayed delivery: they wait in celery_delayed_* queues), a publisher at 50 tasks/s on
the stack's network throughout, and the workers running tests/app/migrationtasks.py's idempotent task, which
records an effect per tag and a row per run in one SQLite file. Then every effect is looked for, duplicates
counted, and every countdown task checked to run no earlier than asked and within the stated bound."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery

from config.topology import celery_settings
from tests.e2e.harness import REPO, docker
from tests.support.waiting import wait_for

TASK = "migration.record"
TASK_QUEUES = ("player_sync", "match_processing", "default")  # one per worker pool
COUNTDOWN_QUEUE = "player_sync_sea"  # no backlog ahead of a countdown task once it is due
COUNTDOWNS = tuple(range(20, 100, 4))  # whole seconds: 20 tasks, due during and after the upgrade
# A countdown task runs no earlier than asked, and at most its own countdown later (shovelled from a
# delayed-delivery level of blue into the same level of green, it waits that level's time again: less than
# 2^level ≤ countdown), plus the consumers' pauses and this busy machine's scheduling.
PAUSES_S = 90
PUBLISHER = REPO / "tests" / "e2e" / "upgrade_publisher.py"
PUBLISH_RATE = 50  # tasks a second


def backlog_queue(i: int) -> str:
    """Where backlog task i goes: 1 in 20 to player_sync (its max length is 1,000, and a full queue refuses
    publishes), the rest split between match_processing (5,000) and default (10,000)."""
    return TASK_QUEUES[0] if i % 20 == 0 else TASK_QUEUES[1 + i % 2]


def client(amqp_url: str, celery_json: dict) -> Celery:
    """A Celery client of the stack's queues (celery.json), publishing with confirms, as the app does."""
    app = Celery("upgrade-test", broker=amqp_url, set_as_current=False)
    app.conf.update(celery_settings(celery_json))
    app.conf.broker_transport_options = {"confirm_publish": True}
    app.conf.broker_connection_timeout = 60  # a machine shared with other builds and tests
    return app


def queue_backlog_and_countdowns(app: Celery, backlog: int) -> dict[str, float]:
    """`backlog` tasks across the task queues, and a countdown task per COUNTDOWNS; each countdown task's tag
    → when it is due."""
    due = {}
    with app.producer_or_acquire() as producer:
        for i in range(backlog):
            app.send_task(TASK, args=[f"backlog-{i}"], queue=backlog_queue(i), producer=producer)
        for i, seconds in enumerate(COUNTDOWNS):
            due[f"countdown-{i}"] = time.time() + seconds
            app.send_task(TASK, args=[f"countdown-{i}"], countdown=seconds, queue=COUNTDOWN_QUEUE, producer=producer)
    return due


def send_after(app: Celery, count: int = 30) -> set[str]:
    """Tasks published once the upgrade is done: they run too when the workers consume the new broker."""
    tags = [f"after-{i}" for i in range(count)]
    with app.producer_or_acquire() as producer:
        for i, tag in enumerate(tags):
            app.send_task(TASK, args=[tag], queue=TASK_QUEUES[i % len(TASK_QUEUES)], producer=producer)
    return set(tags)


# Run as the file's owner (the workers' user) where it can: a reader as root may create the WAL index (-shm) root's
# own, and the next worker to write fails with "attempt to write a readonly database" (its task dead-lettered).
READ_EFFECTS = """
import json, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], timeout=60)
try:
    first = dict(connection.execute("SELECT tag, MIN(at) FROM runs GROUP BY tag").fetchall())
    runs = connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    pauses = [t for (t,) in connection.execute(
        "SELECT at FROM runs WHERE at BETWEEN ? AND ? ORDER BY at", (float(sys.argv[2]), float(sys.argv[3])))]
except sqlite3.OperationalError:
    first, runs, pauses = {}, 0, []
print(json.dumps([first, runs, max((b - a for a, b in zip(pauses, pauses[1:])), default=0.0)]))
"""


SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, which any user may run (the venv's interpreter lives under /root)


def _read(db: Path, after: float = 0.0, before: float = 0.0) -> tuple[dict[str, float], int, float]:
    """READ_EFFECTS as the file's owner; where that user cannot reach the file (a Docker volume's directory is
    root's alone), in this process."""
    if not db.exists():
        return {}, 0, 0.0
    owner = db.stat()
    argv = [str(db), str(after), str(before)]
    try:
        out = subprocess.run(
            [SYSTEM_PYTHON, "-c", READ_EFFECTS, *argv], cwd="/",
            user=owner.st_uid, group=owner.st_gid, capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
    except (subprocess.CalledProcessError, OSError):  # OSError: no Debian python3 on this machine
        out = subprocess.run(
            [sys.executable, "-c", READ_EFFECTS, *argv], capture_output=True, text=True, timeout=120, check=True
        ).stdout
    first, runs, pause = json.loads(out)
    return first, runs, pause


def effects(db: Path) -> tuple[dict[str, float], int]:
    """(tag → its first run's time, how many runs there were)."""
    first, runs, _ = _read(db)
    return first, runs


def longest_pause(db: Path, after: float, before: float) -> float:
    """The longest time between two runs of any task in [after, before]: the consumers' longest pause."""
    return _read(db, after, before)[2]


def start_publisher(name: str, network: str, broker_url: str, celery_json: Path, out: Path, image: str) -> str:
    """The live publisher (upgrade_publisher.py, PUBLISH_RATE tasks/s) in a container of the app image on the
    stack's network, as the web service is, so it follows the switch by the broker's name; its container's
    name once it publishes. It writes each confirmed tag to `out`/sent.txt and stops when `out`/stop appears."""
    docker(
        "run", "-d", "--name", name, "--network", network,
        "-e", f"BROKER_URL={broker_url}", "-e", "CELERY_TOPOLOGY_FILE=/etc/app/celery.json", "-e", "PYTHONPATH=/app",
        "-v", f"{celery_json}:/etc/app/celery.json:ro", "-v", f"{PUBLISHER}:/e2e-tests/{PUBLISHER.name}:ro",
        "-v", f"{out}:/e2e-effects",
        image, "python", f"/e2e-tests/{PUBLISHER.name}", ",".join(TASK_QUEUES), str(PUBLISH_RATE),
    )  # fmt: skip
    sent = out / "sent.txt"
    wait_for(lambda: sent.exists() and sent.stat().st_size > 0, 120, "the publisher publishing")
    return name


def stop_publisher(name: str, out: Path) -> set[str]:
    """The publisher stopped; the tags the broker confirmed to it."""
    (out / "stop").touch()
    wait_for(lambda: "sent " in docker("logs", name, check=False), 60, "the publisher stopped")
    return set((out / "sent.txt").read_text().split())


def remove_publisher(name: str) -> None:
    logs = docker("logs", "--tail", "30", name, check=False)
    print(f"publisher's log:\n{logs}")
    docker("rm", "-f", name, check=False)


def assert_every_effect(db: Path, expected: set[str], due: dict[str, float], started: float, upgraded: float):
    """Every expected tag run (an extra one only a publish the broker took but did not confirm), duplicates
    counted and reported (at-least-once), every countdown task no earlier than asked and within the bound."""
    wait_for(lambda: expected <= set(effects(db)[0]), 1200, f"{len(expected)} effects", interval=2)
    first_runs, runs, pause = _read(db, started, upgraded)
    extra = set(first_runs) - expected
    assert all(t.startswith("live-") for t in extra), sorted(extra)[:5]  # a publish unconfirmed but landed
    print(
        f"{len(first_runs)} effects, {runs} runs ({runs - len(first_runs)} duplicates: redelivered and run again); "
        f"upgrade {upgraded - started:.0f} s; consumers' longest pause {pause:.1f} s"
    )
    for tag, at in due.items():
        ran = first_runs[tag]
        countdown = COUNTDOWNS[int(tag.split("-")[1])]
        assert ran >= at - 1, f"{tag} ran {at - ran:.1f} s early"  # Celery's whole-second eta
        assert ran <= at + countdown + PAUSES_S, f"{tag} ran {ran - at:.0f} s late (countdown {countdown} s)"
    print("countdown lateness (s):", sorted(round(first_runs[t] - at) for t, at in due.items()))
