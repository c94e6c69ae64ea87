"""`make deploy`'s blue-green upgrade on the real Pulumi engine: the `local` stack deployed on RabbitMQ 3.10,
messages queued (a durable queue of the test's own and parked messages), then `broker.version: "4.0"`. A plain
`pulumi up` refuses it; `python -m infra deploy` carries it out with green a resource of the program, is
SIGKILLed while blue drains (a plain `pulumi up` then refuses to touch the upgrade under way) and is run again.
Then: every message on the stack's broker, now RabbitMQ 4.0.5 under its own name, port and volume name; green
gone from Docker and from the state; `verify` exit 0; nothing left for `pulumi preview` to change; a sync through
the web API stored by the workers on the new broker."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from pathlib import Path

import pytest

from tests.e2e.harness import docker
from tests.pulumi.project import DEPLOY_TIMEOUT, new_project, wait_healthy
from tests.pulumi.test_stack_local import amqp, drain, publish, verify
from tests.support.waiting import wait_for

pytestmark = pytest.mark.pulumi

FOUR = {"broker": {"version": "4.0", "image": "rabbitmq-celery-local/rabbitmq:4.0"}}
PROBE = "upgrade_probe"  # a durable queue the definition does not hold: the upgrade carries it too
QUEUED, PARKED = 3000, 40
CHECKED = {"RABBITMQ_CELERY_MIGRATIONS_CHECKED": "1"}


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


def test_deploy_upgrades_3_10_to_4_0_blue_green_with_the_programs_own_resources_and_loses_nothing():
    work = Path(tempfile.mkdtemp(prefix="pulumi-upgrade-"))
    project = new_project(work)
    try:
        project.deploy(timeout=DEPLOY_TIMEOUT)
        broker = f"{project.prefix}-rabbitmq"
        with amqp(project) as connection:
            connection.channel().queue_declare(PROBE, durable=True)
        publish(project, PROBE, QUEUED, "probe")
        publish(project, "dead_letters", PARKED, "parked")
        blue = docker("inspect", "--format", "{{.Id}}", broker)

        project.edit_stack(FOUR)
        plain = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert plain.returncode != 0
        said = plain.stdout + plain.stderr
        assert "cannot take in place" in said and f"python -m infra deploy --stack {project.stack}" in said, said
        assert docker("inspect", "--format", "{{.Id}}", broker) == blue

        output = deploy_killed_while_blue_drains(project)
        assert "upgrade: start green" in output and "upgrade: switch" in output, output
        assert green_in_state(project)  # created by the engine, not behind its back
        plain = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert plain.returncode != 0 and "upgrade of the broker is under way" in plain.stdout + plain.stderr

        result = project.deploy(check=False, timeout=DEPLOY_TIMEOUT)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "upgraded: the broker runs rabbitmq-celery-local/rabbitmq:4.0" in result.stderr, result.stderr
        print("".join(line + "\n" for line in result.stderr.splitlines() if line.startswith(("upgrade", "  "))))

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
        project.cleanup()
