"""`python -m infra upgrade` on the local stack: RabbitMQ 3.10 → 4.0 blue-green, while the app keeps working.

The stack on 3.10 (compose, as `make local` runs it) with every worker pool also running the migration
tests' idempotent task (tests/app/migrationtasks.py: an effect per tag, a row per run, in one SQLite file);
a backlog queued across the seed's task queues, parked messages, countdown tasks (Celery's native delayed
delivery: they wait in celery_delayed_* queues), and a publisher at 50 tasks/s on the stack's network
throughout. Then `broker.version: "4.0"`, the upgrade SIGKILLed while blue drains, and run again. Every
effect there, duplicates counted; the parked messages on the new broker; every countdown task run no
earlier than asked and within the stated bound; blue and green gone; RabbitMQ 4.0.5 under the stack's
name, ports and volume, `verify` exit 0, the workers consuming it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest
import yaml

from infra.render.compose import COMPOSE_FILE
from infra.render.images import app_image_name
from tests.e2e.harness import REPO, SERIES_OVERLAYS, docker, running_stack
from tests.support import upgrade_load as load
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

BACKLOG = int(os.environ.get("UPGRADE_BACKLOG", "10000"))  # tasks queued before the upgrade
PARKED = 40
PROJECT = "upgrade-e2e"
FOUR = SERIES_OVERLAYS["4.0"][0]
TASKS_DIR = REPO / "tests" / "app"  # migrationtasks.py


def effect_workers(effects: Path):
    """The compose file's worker services also run migrationtasks, writing to `effects`."""

    def prepare(local) -> None:
        path = local.out / COMPOSE_FILE
        document = yaml.safe_load(path.read_text())
        for name, service in document["services"].items():
            if name.startswith("worker-"):
                service["command"] = [*service["command"], "-I", "migrationtasks"]
                service["environment"] |= {"PYTHONPATH": "/app:/e2e-tasks", "MIGRATION_DB": "/e2e-effects/db"}
                service["volumes"] += [f"{TASKS_DIR}:/e2e-tasks:ro", f"{effects}:/e2e-effects"]
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    return prepare


def client(stack):
    url = f"amqp://admin:{stack.secrets['rabbitmqAdminPassword']}@127.0.0.1:{stack.ports['amqp']}/%2F"
    return load.client(url, json.loads((stack.local.out / "celery.json").read_text()))


def overlays(stack) -> list[str]:
    """The 4.0 overlay, then what the stack was started with (the test's ports, the sample Riot API)."""
    return [arg for path in (FOUR, *stack.local.overlays) for arg in ("--overlay", str(path))]


def upgrade_argv(stack, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "infra", "upgrade", "--stack", "local", *overlays(stack),
        "--secrets", str(stack.work / "secrets.yaml"), "--out", str(stack.local.out), "--project", stack.project,
        *extra,
    ]  # fmt: skip


def start_upgrade(stack, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        upgrade_argv(stack),
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.timeout(3600)
def test_a_3_10_stack_upgraded_to_4_0_under_load_loses_nothing():
    work_effects = Path(os.environ.get("TMPDIR", "/tmp")) / f"{PROJECT}-effects-{os.getpid()}"
    work_effects.mkdir(mode=0o777)
    work_effects.chmod(0o777)
    db = work_effects / "db"
    publisher = f"{PROJECT}-publisher"
    with running_stack(None, {}, PROJECT, prepare=effect_workers(work_effects)) as stack:
        try:
            run_the_upgrade(stack, work_effects, db, publisher)
        finally:
            load.remove_publisher(publisher)
            docker("rm", "-f", f"{PROJECT}-upgrade-green", check=False)
            docker("volume", "rm", f"{PROJECT}-upgrade-green-data", check=False)
            docker("network", "rm", f"{PROJECT}-upgrade", check=False)
    shutil.rmtree(work_effects, ignore_errors=True)


def run_the_upgrade(stack, work_effects: Path, db: Path, publisher: str) -> None:
    admin = stack.secrets["rabbitmqAdminPassword"]
    due = load.queue_backlog_and_countdowns(client(stack), BACKLOG)  # across the seed's queues
    params = pika.URLParameters(f"amqp://admin:{admin}@127.0.0.1:{stack.ports['amqp']}/%2F")
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(PARKED):
            channel.basic_publish("", "dead_letters", f"parked-{i}".encode(), pika.BasicProperties(delivery_mode=2))
    delayed = [q for q in stack.management.get("queues") if q["name"].startswith("celery_delayed_")]
    assert delayed, "countdown tasks go through Celery's native delayed delivery"
    assert start_publisher(stack, work_effects) == publisher

    dry = subprocess.run(upgrade_argv(stack, "--dry-run"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert "RabbitMQ 3.10.8 → 4.0" in dry.stderr and "1. start green" in dry.stderr, dry.stderr

    started = time.time()
    first_log = stack.work / "upgrade-1.log"
    first = start_upgrade(stack, first_log)
    wait_for(lambda: "upgrade: drain" in first_log.read_text() or first.poll() is not None, 600, "blue draining")
    assert first.poll() is None, first_log.read_text()[-3000:]
    time.sleep(2)  # the shovels are moving the backlog
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    on_blue = json.loads(
        docker(
            "exec",
            f"{stack.project}_rabbitmq_1",
            "rabbitmqctl",
            "list_queues",
            "-q",
            "--formatter",
            "json",
            "name",
            "messages",
        )  # fmt: skip
    )
    print(f"SIGKILLed with {sum(q['messages'] for q in on_blue)} message(s) still on blue")
    second_log = stack.work / "upgrade-2.log"
    second = start_upgrade(stack, second_log)
    second.wait(timeout=1800)
    output = second_log.read_text()
    print(output[-4000:])
    assert second.returncode == 0, output[-4000:]
    assert "upgrade: start green" not in output and "upgrade: shovel" in output  # carried on, not started over
    upgraded = time.time()

    sent = load.stop_publisher(publisher, work_effects)
    api = stack.management  # the stack's own port: the new broker
    assert api.get("overview")["rabbitmq_version"] == "4.0.5"
    after = load.send_after(client(stack))  # they run too: the workers consume the new broker
    load.assert_every_effect(
        db, {f"backlog-{i}" for i in range(BACKLOG)} | set(due) | sent | after, due, started, upgraded
    )

    with pika.BlockingConnection(params) as connection:
        assert connection.channel().queue_declare("dead_letters", passive=True).method.message_count == PARKED
    # blue and green gone; the stack's broker container on 4.0 with the stack's volume
    assert docker("ps", "-aq", "--filter", f"name={stack.project}-upgrade-green") == ""
    assert f"{stack.project}-upgrade-green-data" not in docker("volume", "ls", "-q").split()
    assert f"{stack.project}-upgrade" not in docker("network", "ls", "--format", "{{.Name}}").split()
    inspected = json.loads(docker("inspect", f"{stack.project}_rabbitmq_1"))[0]
    assert inspected["Config"]["Image"] == "rabbitmq-celery-local/rabbitmq:4.0"
    assert any(m.get("Name") == f"{stack.project}_rabbitmq-data" for m in inspected["Mounts"])
    assert api.get("parameters/shovel") == []
    consumed = {c["queue"]["name"] for c in api.get("consumers")}
    assert set(load.TASK_QUEUES) <= consumed, consumed
    verify = subprocess.run(
        [
            sys.executable, "-m", "infra", "verify", "--stack", "local", *overlays(stack),
            "--secrets", str(stack.work / "secrets.yaml"),
            "--management-url", f"http://127.0.0.1:{stack.ports['management']}",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def start_publisher(stack, effects: Path) -> str:
    """upgrade_load's publisher on the compose stack's network, as the stack's admin; its container's name."""
    url = f"amqp://admin:{stack.secrets['rabbitmqAdminPassword']}@rabbitmq:{stack.ports['amqp']}/%2F"
    celery_json = stack.local.out / "celery.json"
    image = app_image_name_for_local()
    return load.start_publisher(
        f"{stack.project}-publisher", f"{stack.project}_stack", url, celery_json, effects, image
    )


def app_image_name_for_local() -> str:
    from infra.definition.load import load_definition, require

    return app_image_name(require(load_definition(stack="local")).app, REPO)
