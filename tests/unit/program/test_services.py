"""The Services component under mocks: web, a worker per pool and beat, exactly as the plan specifies them."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from infra.definition.load import load_definition, require
from infra.paths import REPO
from infra.plan.plan import build_plan
from infra.plan.services import CELERY_JSON, DATA_DIR, HealthCheck, SecretEnv
from infra.pulumi import program
from infra.pulumi.preview import run
from infra.render import files as render
from infra.render.images import context_digest
from tests.support.stacks import TEST_SECRETS
from tests.unit.program.test_program import PROJECT, is_secret, unwrap, with_config

CONTAINER = "docker:index/container:Container"


def containers_as_specs(monitor) -> dict:
    """The captured app containers, in the plan's terms: name → (command, env, ports, healthcheck)."""
    found = {}
    for r in monitor.of_type(CONTAINER):
        if r.parent_name != "app":
            continue
        inputs = r.inputs
        assert is_secret(inputs["envs"]), r.name  # some values are credentials, so the list is secret
        env = dict(e.split("=", 1) for e in unwrap(inputs["envs"]))
        found[r.name.removeprefix("app-")] = {
            "command": tuple(inputs.get("command", ())),
            "env": env,
            "ports": {(p["internal"], p["external"], p["ip"]) for p in inputs.get("ports", [])},
            "healthcheck": tuple(inputs["healthcheck"]["tests"]),
            "hostname": inputs["hostname"],
            "stop_timeout": inputs["stopTimeout"],
        }
    return found


def specs_as_expected(plan) -> dict:
    return {
        s.name: {
            "command": s.command,
            "env": {**dict(s.env), **{n: t.fill(TEST_SECRETS[t.key]) for n, t in s.secret_env}},
            "ports": {(p.internal, p.external, p.ip) for p in s.ports},
            "healthcheck": HealthCheck(s.healthcheck).paced().test,
            "hostname": s.hostname,
            "stop_timeout": s.stop_timeout_s,
        }
        for s in plan.services
    }


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_captured_containers_equal_the_plans_service_specs(stack):
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack=stack)
    plan = build_plan(require(load_definition(stack=stack)))
    assert containers_as_specs(monitor) == specs_as_expected(plan)
    database = {"postgres"} if stack != "dev" else set()  # dev keeps SQLite in the app's volume
    assert {s.name for s in plan.services} == {"web", "beat", *(f"worker-{w.name}" for w in plan.workers)} | database


def test_every_worker_runs_the_seeds_command_for_its_pool():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="prod")
    plan = build_plan(require(load_definition(stack="prod")))
    for pool in plan.workers:
        command = monitor.named(f"app-worker-{pool.name}").inputs["command"]
        assert command[:4] == ["celery", "-A", "config", "worker"]
        assert command[command.index("-Q") + 1] == ",".join(pool.queues)
        assert command[command.index("--concurrency") + 1] == str(pool.concurrency)


def test_containers_share_the_network_volume_image_and_celery_json():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="dev")
    plan = build_plan(require(load_definition(stack="dev")))
    image = monitor.named("app-image")
    tag = context_digest(REPO / "app")
    # tagged for this stack alone, and removed with it through a RemoteImage that is not kept
    assert image.inputs["imageName"] == f"rabbitmq-celery-app:{PROJECT}-dev-{tag}" and image.inputs["skipPush"] is True
    local = monitor.named("app-image-local")
    assert local.inputs["name"] == image.inputs["imageName"] and local.inputs["keepLocally"] is False
    assert all(
        c.inputs["wait"] is True for c in monitor.of_type("docker:index/container:Container")
    )  # `up` ends when every service is healthy
    assert image.inputs["build"]["args"] == {"BASE_IMAGE": "python:3.11-slim"}
    assert image.inputs["build"]["context"] == str(REPO / "app")
    assert monitor.named("app-data").request.retainOnDelete
    topology = monitor.named("topology")
    topology_children = {r.urn for r in monitor.registered if r.parent == topology.urn}
    for r in monitor.of_type(CONTAINER):
        if r.parent_name != "app":
            continue
        inputs = r.inputs
        assert inputs["networksAdvanced"][0]["name"] == f"{PROJECT}-dev-net"
        assert inputs["volumes"] == [{"containerPath": DATA_DIR, "volumeName": f"{PROJECT}-dev-app-data"}]
        (upload,) = inputs["uploads"]
        assert upload["file"] == CELERY_JSON and upload["content"] == render.celery_json(plan)
        assert inputs["restart"] == "unless-stopped" and r.request.deleteBeforeReplace
        # depending on the component is depending on all its children: users and queues exist before any client
        assert topology_children <= set(r.request.dependencies), r.name
    assert monitor.named("app-web").inputs["wait"] is True


def test_broker_url_reaches_the_broker_container_as_the_services_own_user():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="dev")
    for service, key in [
        ("web", "rabbitmqWebPassword"),
        ("beat", "rabbitmqBeatPassword"),
        ("worker-matches", "rabbitmqWorkerMatchesPassword"),
    ]:
        env = dict(e.split("=", 1) for e in unwrap(monitor.named(f"app-{service}").inputs["envs"]))
        assert env["CELERY_BROKER_URL"] == f"amqp://{service}:{TEST_SECRETS[key]}@rabbitmq:5672/%2F"
    env = dict(e.split("=", 1) for e in unwrap(monitor.named("app-worker-sync").inputs["envs"]))
    assert (
        env["CELERY_BROKER_URL"] == f"amqp://worker-sync:{TEST_SECRETS['rabbitmqWorkerSyncPassword']}@rabbitmq:5672/%2F"
    )
    assert env["DJANGO_SECRET_KEY"] == TEST_SECRETS["djangoSecretKey"]
    assert env["RIOT_API_KEY"] == TEST_SECRETS["riotApiKey"]
    assert env["CELERY_TOPOLOGY_FILE"] == CELERY_JSON
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"


def test_a_password_with_url_characters_is_percent_encoded_in_the_broker_url():
    url = SecretEnv("k", "amqp://app:{secret}@rabbitmq:5672/%2F", url_quoted=True).fill("p@ss:w/rd%?#")
    password = url.split("://app:", 1)[1].rsplit("@rabbitmq", 1)[0]
    assert "@" not in password and "/" not in password and unquote(password) == "p@ss:w/rd%?#"


def test_stack_outputs_keep_the_amqp_url_secret():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="dev")
    outputs = monitor.outputs
    assert is_secret(outputs["amqp_url"])
    # web's URL: a publisher's, the least a client on the host needs
    assert unwrap(outputs["amqp_url"]) == f"amqp://web:{TEST_SECRETS['rabbitmqWebPassword']}@127.0.0.1:5672/%2F"
    # the admin's password, for `deploy`'s migration check, is an output too: secret
    assert is_secret(outputs["rabbitmqAdminPassword"])
    assert unwrap(outputs["rabbitmqAdminPassword"]) == TEST_SECRETS["rabbitmqAdminPassword"]
    plain = {k: v for k, v in outputs.items() if k not in ("amqp_url", "rabbitmqAdminPassword")}
    assert plain["web_url"] == "http://127.0.0.1:8000" and plain["management_url"] == "http://127.0.0.1:15672"
    assert plain["worker_pools"]["matches"] == [
        f"{task}_processing{region}" for task in ("match", "timeline") for region in ("", "_americas", "_asia", "_sea")
    ]
    assert not any(s in json.dumps(plain) for s in TEST_SECRETS.values())


def test_context_digest_follows_the_files_docker_builds_from(tmp_path):
    """What .dockerignore leaves out (caches, local databases, beat's schedule) does not change the tag; the
    app's files and the Dockerfile (ignored as context, read by the build) do."""
    (tmp_path / ".dockerignore").write_text("**/__pycache__\n*.sqlite3\ncelerybeat-schedule*\nDockerfile\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "manage.py").write_text("print(1)\n")
    first = context_digest(tmp_path)
    (tmp_path / "players" / "__pycache__").mkdir(parents=True)
    (tmp_path / "players" / "__pycache__" / "models.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "db.sqlite3").write_bytes(b"\0")
    (tmp_path / "celerybeat-schedule").write_bytes(b"\0")
    assert context_digest(tmp_path) == first
    (tmp_path / "Dockerfile").write_text("FROM scratch\nUSER app\n")
    second = context_digest(tmp_path)
    assert second != first
    (tmp_path / "manage.py").write_text("print(2)\n")
    assert context_digest(tmp_path) != second


def test_context_digest_follows_dockerignore_exceptions(tmp_path):
    """A `!pattern` takes a file back into the context (Docker's rule): it changes the tag; the files still
    ignored do not. Patterns are anchored at the context's root, so a nested `notes.md` is built from."""
    (tmp_path / ".dockerignore").write_text("data/*.json\n!data/players.json\nnotes.md\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "players.json").write_text("[]\n")
    (tmp_path / "data" / "cache.json").write_text("{}\n")
    (tmp_path / "notes.md").write_text("a\n")
    first = context_digest(tmp_path)
    (tmp_path / "data" / "cache.json").write_text('{"more": 1}\n')
    (tmp_path / "notes.md").write_text("b\n")
    assert context_digest(tmp_path) == first
    (tmp_path / "data" / "players.json").write_text("[1]\n")
    second = context_digest(tmp_path)
    assert second != first
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("c\n")
    assert context_digest(tmp_path) != second


def test_postgres_runs_with_its_own_volume_and_the_app_reaches_it_with_a_secret_url():
    with_config(TEST_SECRETS | {"postgresPassword": "pg/pass@word"})
    monitor, _ = run(program.main, stack="prod")
    postgres = monitor.named("app-postgres").inputs
    assert postgres["volumes"] == [
        {"containerPath": "/var/lib/postgresql/data", "volumeName": f"{PROJECT}-prod-app-postgres-data"}
    ]
    assert "uploads" not in postgres and "command" not in postgres  # the official image's own entry point
    env = dict(e.split("=", 1) for e in unwrap(postgres["envs"]))
    assert env == {"POSTGRES_DB": "app", "POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pg/pass@word"}
    assert postgres["healthcheck"]["tests"] == list(
        HealthCheck(("CMD", "pg_isready", "-U", "app", "-d", "app")).paced().test
    )
    web = monitor.named("app-web")
    web_env = dict(e.split("=", 1) for e in unwrap(web.inputs["envs"]))
    assert web_env["DATABASE_URL"] == "postgres://app:pg%2Fpass%40word@postgres:5432/app"
    assert monitor.named("app-postgres").urn in web.request.dependencies
    assert monitor.named("app-postgres-data").request.retainOnDelete


def test_the_database_boots_beside_the_broker_and_only_the_brokers_clients_wait_for_its_topology():
    with_config(TEST_SECRETS)
    monitor, _ = run(program.main, stack="prod")
    topology = monitor.named("topology")
    waited_for = {r.urn for r in monitor.registered if r.parent == topology.urn} | {
        monitor.named("broker-container").urn
    }
    postgres = monitor.named("app-postgres")
    assert not waited_for & set(postgres.request.dependencies), postgres.request.dependencies
    clients = [r for r in monitor.of_type(CONTAINER) if r.parent_name == "app" and r.name != "app-postgres"]
    assert {r.name for r in clients} >= {"app-web", "app-beat", "app-worker-sync"}
    for r in clients:
        assert monitor.named("topology-queue-root-player_sync").urn in r.request.dependencies, r.name
