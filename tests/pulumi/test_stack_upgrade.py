"""`make deploy`'s blue-green upgrade on the real Pulumi engine, under the compose proof's load
(tests/support/upgrade_load.py): the `local` stack deployed on RabbitMQ 3.10 from a copy of the repository whose
app also loads the migration tests' idempotent task (its workers record each run on the app's data volume); a
backlog across the seed's task queues, countdown tasks, parked messages and a durable queue of the test's own;
a publisher at 50 tasks/s on the stack's network throughout. Then `broker.version: "4.0"`. A plain `pulumi up`
refuses it; `python -m infra deploy` carries it out with green a resource of the program, is SIGKILLed while
blue drains (a plain `pulumi up` then refuses to touch the upgrade under way) and is run again. Then: every
effect there (duplicates counted), every countdown task run within the bound, every message on the stack's
broker, now RabbitMQ 4.0.5 under its own name, port and volume name; green gone from Docker and from the state;
`verify` exit 0; nothing left for `pulumi preview` to change; a sync through the web API stored by the workers
on the new broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from infra.plan.services import CELERY_JSON, DATA_DIR
from tests.e2e.harness import REPO, docker
from tests.pulumi.project import DEPLOY_TIMEOUT, Project, new_project, wait_healthy
from tests.pulumi.test_stack_local import admin_password, amqp, drain, publish, verify
from tests.support import upgrade_load as load
from tests.support.waiting import wait_for

pytestmark = pytest.mark.pulumi

FOUR = {"broker": {"version": "4.0", "image": "rabbitmq-celery-local/rabbitmq:4.0"}}
PROBE = "upgrade_probe"  # a durable queue the definition does not hold: the upgrade carries it too
QUEUED, PARKED = 3000, 40
BACKLOG = 2000  # tasks across the seed's queues, run by the workers
CHECKED = {"RABBITMQ_CELERY_MIGRATIONS_CHECKED": "1"}
EFFECTS_DB = f"{DATA_DIR}/upgrade-effects.db"  # on the app's data volume, which every app container mounts


def with_the_test_task(project: Project) -> None:
    """The copy's Celery app also loads tests/app/migrationtasks.py, writing to EFFECTS_DB: the app image built
    from this copy alone holds it, and every worker of the stack runs it."""
    config = project.root / "app" / "config"
    shutil.copy(REPO / "tests" / "app" / "migrationtasks.py", config / "migrationtasks.py")
    with (config / "celery_app.py").open("a") as celery_app:
        celery_app.write(
            f"\nos.environ.setdefault('MIGRATION_DB', {EFFECTS_DB!r})  # the upgrade test's copy only\n"
            "from config import migrationtasks  # noqa: E402,F401\n"
        )


def effects_db(project: Project) -> Path:
    """EFFECTS_DB as the host sees it: in the data volume's directory."""
    mounts = json.loads(docker("inspect", "--format", "{{json .Mounts}}", f"{project.prefix}-worker-sync"))
    return Path(next(m["Source"] for m in mounts if m["Destination"] == DATA_DIR)) / Path(EFFECTS_DB).name


def start_publisher(project: Project, work: Path) -> str:
    """upgrade_load's publisher on the stack's network in the stack's app image, as the stack's admin."""
    web = json.loads(docker("inspect", f"{project.prefix}-web"))[0]
    network = next(iter(web["NetworkSettings"]["Networks"]))
    (work / "celery.json").write_text(docker("exec", f"{project.prefix}-web", "cat", CELERY_JSON))
    out = work / "publisher"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    url = f"amqp://admin:{admin_password(project)}@rabbitmq:{project.ports['amqp']}/%2F"
    return load.start_publisher(f"{project.name}-publisher", network, url, work / "celery.json", out, web["Image"])


def client(project: Project, work: Path):
    url = f"amqp://admin:{admin_password(project)}@127.0.0.1:{project.ports['amqp']}/%2F"
    return load.client(url, json.loads((work / "celery.json").read_text()))


def green_in_state(project) -> bool:
    state = json.loads(project.pulumi("stack", "export").stdout)
    return any(r["urn"].endswith("::broker-green-container") for r in state["deployment"].get("resources", []))


def deploy_killed_while_blue_drains(project) -> str:
    """`python -m infra deploy` started, SIGKILLed (its process group) once the upgrade says blue drains."""
    process = project.start_deploy()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: "upgrade: drain\n" in lines or process.poll() is not None, 900, "the upgrade draining blue")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    output = "".join(lines)
    assert "upgrade: drain\n" in lines, output
    return output


@pytest.mark.timeout(2400)  # a deploy from nothing, two upgrade runs, the backlog and countdowns run
def test_deploy_upgrades_3_10_to_4_0_blue_green_with_the_programs_own_resources_and_loses_nothing():
    work = Path(tempfile.mkdtemp(prefix="pulumi-upgrade-"))
    project = new_project(work)
    publisher = f"{project.name}-publisher"
    with_the_test_task(project)
    try:
        project.deploy(timeout=DEPLOY_TIMEOUT)
        broker = f"{project.prefix}-rabbitmq"
        with amqp(project) as connection:
            connection.channel().queue_declare(PROBE, durable=True)
        publish(project, PROBE, QUEUED, "probe")
        publish(project, "dead_letters", PARKED, "parked")
        start_publisher(project, work)
        due = load.queue_backlog_and_countdowns(client(project, work), BACKLOG)
        blue = docker("inspect", "--format", "{{.Id}}", broker)

        project.edit_stack(FOUR)
        plain = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert plain.returncode != 0
        said = plain.stdout + plain.stderr
        assert "cannot take in place" in said and f"python -m infra deploy --stack {project.stack}" in said, said
        assert docker("inspect", "--format", "{{.Id}}", broker) == blue

        started = time.time()
        output = deploy_killed_while_blue_drains(project)
        assert "upgrade: start green" in output and "upgrade: switch" in output, output
        assert green_in_state(project)  # created by the engine, not behind its back
        plain = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert plain.returncode != 0 and "upgrade of the broker is under way" in plain.stdout + plain.stderr

        result = project.deploy(check=False, timeout=DEPLOY_TIMEOUT)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "upgraded: the broker runs rabbitmq-celery-local/rabbitmq:4.0" in result.stderr, result.stderr
        print("".join(line + "\n" for line in result.stderr.splitlines() if line.startswith(("upgrade", "  "))))
        upgraded = time.time()
        sent = load.stop_publisher(publisher, work / "publisher")
        after = load.send_after(client(project, work))  # they run too: the workers consume the new broker
        backlog = {f"backlog-{i}" for i in range(BACKLOG)}
        load.assert_every_effect(effects_db(project), backlog | set(due) | sent | after, due, started, upgraded)

        four = docker("image", "inspect", "--format", "{{.Id}}", FOUR["broker"]["image"])
        assert docker("inspect", "--format", "{{.Image}}", broker) == four
        assert docker("inspect", f"{broker}-green", check=False) in ("", "[]")
        assert f"{broker}-green-data" not in docker("volume", "ls", "--format", "{{.Name}}").split()
        assert not green_in_state(project)
        # on the stack's own AMQP port, as its admin
        assert sorted(drain(project, PROBE)) == sorted(f"probe-{i}" for i in range(QUEUED))
        assert sorted(drain(project, "dead_letters")) == sorted(f"parked-{i}" for i in range(PARKED))
        with amqp(project) as connection:
            connection.channel().queue_delete(PROBE)  # the test's own: `verify` would report it as extra
        result = verify(project)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "4.0.5" in docker("exec", broker, "rabbitmqctl", "version")
        project.pulumi("preview", "--expect-no-changes", env=CHECKED)
        wait_healthy(project)
        job = project.sync_sample_player()
        assert job["status"] == "complete", job
    finally:
        load.remove_publisher(publisher)
        project.cleanup()
