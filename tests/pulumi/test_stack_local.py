"""The whole `local` stack through the real Pulumi engine and the provider plugins `make pulumi` built: `make deploy`'s
`python -m infra deploy` from nothing, a no-change `up`, changes compared with what `python -m infra diff` said,
drift, an interrupted `up`, plain `pulumi up`, and `destroy`. The tests of this module run in order on one stack."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pika
import pytest

from infra.cli.diff_report import MARK
from tests.e2e.harness import docker
from tests.pulumi.project import Project, new_project, timed, wait_healthy
from tests.support.waiting import wait_for

pytestmark = pytest.mark.pulumi


@pytest.fixture(scope="module")
def project():
    work = Path(tempfile.mkdtemp(prefix="pulumi-stack-"))
    project = new_project(work)
    project.run("git", "init", "-q", ".")
    commit(project, "the stack as shipped")
    try:
        yield project
    finally:
        project.cleanup()


def commit(project: Project, message: str) -> None:
    project.run("git", "add", "-A")
    project.run("git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", message, "--allow-empty")


def diff_says(project: Project) -> dict[str, str]:
    """`python -m infra diff --base HEAD`'s table, as subject → impact."""
    return {subject: impact for subject, (impact, _) in diff_rows(project).items()}


def diff_rows(project: Project) -> dict[str, tuple[str, str]]:
    """`python -m infra diff --base HEAD`'s table, as subject → (impact, what it says)."""
    result = project.infra("diff", "--stack", project.stack, "--base", "HEAD", "--format", "markdown", check=False)
    assert result.returncode in (0, 3), result.stderr
    impacts = {mark: impact.value for impact, mark in MARK.items()}
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in impacts:
            rows[cells[1].strip("`")] = (impacts[cells[0]], cells[2])
    return rows


def changed(steps: dict[str, str]) -> dict[str, str]:
    return {name: op for name, op in steps.items() if op not in ("same", "read")}


def admin_password(project: Project) -> str:
    return project.outputs()["rabbitmqAdminPassword"]


def test_deploy_from_nothing_brings_every_service_up_healthy(project):
    result, seconds = timed(project.deploy, timeout=1200)
    print(f"deploy from nothing: {seconds:.1f} s")
    health = project.health()
    assert health and all(state in ("healthy", "none") for state in health.values()), health
    expected = {"rabbitmq", "postgres", "web", "beat", "riot-sample"}
    expected |= {f"worker-{pool}" for pool in ("sync", "matches", "background")}
    assert {name.removeprefix(f"{project.prefix}-") for name in health} == expected
    outputs = project.outputs()
    assert outputs["web_url"] == f"http://127.0.0.1:{project.ports['web']}"
    assert outputs["management_url"] == project.management_url


def verify(project: Project):
    """`python -m infra verify` against the stack's broker, as its admin."""
    return project.infra(
        "verify",
        "--stack",
        project.stack,
        "--management-url",
        project.management_url,
        env={"RABBITMQ_PASSWORD": admin_password(project)},
        check=False,
    )


def test_the_broker_equals_the_definition(project):
    result = verify(project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_sync_through_the_web_api_is_stored(project):
    job = project.sync_sample_player()
    assert job["status"] == "complete", job


def test_the_private_files_keep_their_owner_and_mode(project):
    broker = f"{project.prefix}-rabbitmq"
    listing = docker(
        "exec", broker, "stat", "-c", "%n %U %a", "/etc/rabbitmq/definitions.json", "/etc/rabbitmq/rabbitmq.conf"
    )
    assert listing.splitlines() == [
        "/etc/rabbitmq/definitions.json rabbitmq 600",
        "/etc/rabbitmq/rabbitmq.conf root 644",
    ]
    staged = docker("exec", broker, "stat", "-c", "%U %a", "/run/secrets/rabbitmq/definitions.json")
    assert staged == "root 400"


def test_the_state_holds_no_plaintext_secret(project):
    state = project.state_text()
    outputs = project.outputs()
    assert state and outputs["rabbitmqAdminPassword"] not in state
    assert outputs["amqp_url"].split(":")[2].split("@")[0] not in state  # web's password
    assert "BEGIN" not in state or "PRIVATE KEY" not in state


def test_a_second_up_changes_nothing(project):
    _, seconds = timed(
        project.pulumi, "preview", "--expect-no-changes", env={"RABBITMQ_CELERY_MIGRATIONS_CHECKED": "1"}
    )
    print(f"no-change preview: {seconds:.1f} s")
    _, seconds = timed(project.deploy)
    print(f"no-change deploy: {seconds:.1f} s")
    assert not changed(project.preview_steps())


def test_a_ttl_change_updates_the_policy_in_place(project):
    broker = f"{project.prefix}-rabbitmq"
    before = docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", broker)
    project.edit_stack({"vhosts": {"/": {"queues": {"player_sync": {"ttl": "45m"}}}}})
    said = diff_says(project)
    steps = changed(project.preview_steps())
    assert said and set(said.values()) == {"in place"}, said
    assert steps and set(steps.values()) == {"update"} and all("policy:Policy" in n for n in steps), steps
    _, seconds = timed(project.deploy)
    print(f"one-policy change: {seconds:.1f} s")
    assert docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", broker) == before
    commit(project, "ttl")


def amqp(project: Project) -> pika.BlockingConnection:
    credentials = pika.PlainCredentials("admin", admin_password(project))
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", project.ports["amqp"], "/", credentials))


def publish(project: Project, queue: str, count: int, tag: str) -> None:
    """`count` persistent messages straight into `queue`, each confirmed by the broker."""
    with amqp(project) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(count):
            channel.basic_publish(
                "", queue, f"{tag}-{i}".encode(), pika.BasicProperties(delivery_mode=2), mandatory=True
            )


def drain(project: Project, queue: str) -> list[str]:
    """Every message of `queue`, taken off it."""
    bodies = []
    with amqp(project) as connection:
        channel = connection.channel()
        for _ in range(100_000):
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            bodies.append(body.decode())
    return bodies


def depth(project: Project, queue: str) -> int:
    """The queue's ready messages as the queue says it now (a passive declare), not the management API's
    statistics, which lag up to 5 s behind."""
    with amqp(project) as connection:
        return connection.channel().queue_declare(queue, passive=True).method.message_count


def test_a_watermark_change_restarts_the_broker_and_keeps_confirmed_messages(project):
    publish(project, "dead_letters", 100, "watermark")
    project.edit_stack({"broker": {"memory_high_watermark": 0.45}})
    said = diff_says(project)
    steps = changed(project.preview_steps())
    assert said.get("broker") == "restart" and set(said.values()) == {"restart"}, said
    assert steps == {"docker:index/container:Container::broker-container": "replace"}, steps
    project.deploy()
    wait_healthy(project)
    assert sorted(drain(project, "dead_letters")) == sorted(f"watermark-{i}" for i in range(100))
    commit(project, "watermark")


NEW_QUEUES = {
    "reports": {
        "type": "quorum",
        "ttl": "1h",
        "max_length": 100,
        "overflow": "reject-publish",
        "delivery_limit": 5,
        "dead_letter": "dead_letters",
    },
    "archive": {"type": "quorum", "parking": True, "max_length": 100000},  # no worker consumes it: parked
}


def test_a_new_queue_and_worker_pool_are_created_and_nothing_of_the_broker_replaced(project):
    project.edit_stack(
        {
            "users": {"worker-reports": {"password": {"secret": "rabbitmqWorkerReportsPassword", "generate": True}}},
            "vhosts": {"/": {"queues": NEW_QUEUES}},
            "celery": {"workers": {"reports": {"queues": ["reports"], "user": "worker-reports", "concurrency": 1}}},
        }
    )
    rows = diff_rows(project)
    said = {subject: impact for subject, (impact, _) in rows.items()}
    steps = changed(project.preview_steps())
    assert "data loss" not in said.values() and "migration" not in said.values(), said
    created = {n for n, op in steps.items() if op == "create"}
    assert {
        "rabbitmq:index/queue:Queue::topology-queue-root-reports",
        "rabbitmq:index/queue:Queue::topology-queue-root-archive",
        "docker:index/container:Container::app-worker-reports",
    } <= created, steps
    assert not any(op in ("delete", "replace") and "rabbitmq:" in n for n, op in steps.items()), steps
    assert "docker:index/container:Container::broker-container" not in steps, steps
    # the app's containers carry celery.json: the engine re-creates exactly those diff says are re-created
    replaced = {n.split("::")[1].removeprefix("app-") for n, op in steps.items() if op == "replace"}
    recreated = {s.removeprefix("service ") for s, (_, what) in rows.items() if "re-created" in what}
    assert replaced == recreated, (replaced, rows)
    project.deploy()
    wait_healthy(project)
    assert f"{project.prefix}-worker-reports" in project.health()
    commit(project, "new queue and pool")


def test_a_queue_type_change_is_migrated_by_deploy_and_up_neither_replaces_nor_deletes_it(project):
    publish(project, "archive", 500, "typed")
    project.edit_stack({"vhosts": {"/": {"queues": {"archive": {"type": "classic"}}}}})
    said = diff_says(project)
    assert said.get("queue /:archive") == "migration", said
    result = project.deploy()
    assert "migration" in result.stderr, result.stderr
    assert "Queue::topology-queue-root-archive" not in " ".join(
        line for line in result.stdout.splitlines() if "replace" in line or "delete" in line
    ), result.stdout
    assert not changed(project.preview_steps())
    assert sorted(drain(project, "archive")) == sorted(f"typed-{i}" for i in range(500))
    commit(project, "archive classic")


def test_a_rename_is_migrated_the_same_way(project):
    publish(project, "archive", 300, "renamed")
    path = project.root / "stacks" / "local.yaml"
    import yaml

    data = yaml.safe_load(path.read_text())
    archive = data["vhosts"]["/"]["queues"].pop("archive")
    data["vhosts"]["/"]["queues"]["archive_v2"] = {**archive, "renamed_from": "archive"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    said = diff_says(project)
    assert "migration" in said.values(), said
    project.deploy()
    assert not changed(project.preview_steps())
    assert sorted(drain(project, "archive_v2")) == sorted(f"renamed-{i}" for i in range(300))
    commit(project, "archive renamed")


def test_plain_pulumi_up_stops_before_anything_while_a_migration_is_pending(project):
    publish(project, "archive_v2", 50, "pending")
    project.edit_stack({"vhosts": {"/": {"queues": {"archive_v2": {"type": "quorum"}}}}})
    broker = f"{project.prefix}-rabbitmq"
    before = docker("inspect", "--format", "{{.Id}}", broker)
    result = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    assert f"python -m infra migrate --stack {project.stack}" in result.stdout + result.stderr
    assert docker("inspect", "--format", "{{.Id}}", broker) == before
    assert requests_json(project, "queues/%2F/archive_v2")["type"] == "classic"
    assert depth(project, "archive_v2") == 50
    project.infra("migrate", "--stack", project.stack, env={"RABBITMQ_PASSWORD": admin_password(project)})
    project.pulumi("up", "--yes", "--skip-preview", "--refresh")
    assert requests_json(project, "queues/%2F/archive_v2")["type"] == "quorum"
    assert sorted(drain(project, "archive_v2")) == sorted(f"pending-{i}" for i in range(50))
    commit(project, "archive quorum by plain pulumi up")


def requests_json(project: Project, path: str) -> dict:
    import requests

    response = requests.get(f"{project.management_url}/api/{path}", auth=("admin", admin_password(project)), timeout=30)
    response.raise_for_status()
    return response.json()


def test_a_policy_deleted_by_hand_is_drift_for_refresh_and_verify_and_up_restores_it(project):
    import requests

    policies = [p["name"] for p in requests_json(project, "policies/%2F")]
    victim = next(p for p in policies if "player_sync" in p)
    requests.delete(
        f"{project.management_url}/api/policies/%2F/{victim}", auth=("admin", admin_password(project)), timeout=30
    ).raise_for_status()
    drift = verify(project)
    assert drift.returncode == 4 and victim in drift.stdout, drift.stdout
    refresh = project.pulumi("refresh", "--yes", "--skip-preview", "--json", check=False)
    assert refresh.returncode == 0, refresh.stderr
    steps = changed(project.preview_steps())
    assert any(op == "create" and "policy:Policy" in name for name, op in steps.items()), steps
    project.deploy()
    assert victim in [p["name"] for p in requests_json(project, "policies/%2F")]


def test_destroy_leaves_no_container_or_network_but_keeps_the_volumes(project):
    volumes = docker("volume", "ls", "-q", "--filter", f"name={project.prefix}-")
    assert volumes
    project.pulumi("destroy", "--yes", "--skip-preview", timeout=900)
    assert project.containers() == []
    assert docker("network", "ls", "-q", "--filter", f"name={project.prefix}-") == ""
    assert docker("volume", "ls", "-q", "--filter", f"name={project.prefix}-") == volumes
    image_tags = docker("images", "--format", "{{.Tag}}", "rabbitmq-celery-app")
    assert not any(tag.startswith(project.prefix) for tag in image_tags.split()), image_tags


def test_an_up_killed_midway_converges_on_the_next_deploy(project):
    process = project.start_deploy()
    broker = f"{project.prefix}-rabbitmq"

    def broker_up():
        return process.poll() is None and broker in project.containers() or None

    wait_for(broker_up, 600, "the broker container created")
    time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    result = project.deploy(check=False, timeout=1200)
    if result.returncode and "pulumi cancel" in result.stderr:  # the killed update's lock: the one named command
        project.pulumi("cancel", "--yes")
        result = project.deploy(check=False, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the last update was interrupted" in result.stderr, result.stderr
    names = project.containers()
    assert len(names) == len(set(names)) and broker in names
    wait_healthy(project)
    assert not changed(project.preview_steps())
