"""`render --compose`: the docker-compose file runs the same containers as the Pulumi program, and every
credential is in a 0600 env file beside it, never in the compose file."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from infra.definition.load import load_definition, require
from infra.plan.plan import APP_TLS_FILES, BROKER_TLS_FILES, build_plan
from infra.plan.services import BROKER_CONFIG_DIR, CONFIG_DIR
from infra.pulumi import program
from infra.pulumi.preview import run
from infra.render import files as render
from infra.render.compose import TLS_MOUNT, compose_file, compose_yaml
from tests.support.stacks import TEST_SECRETS
from tests.unit.program.test_program import unwrap, with_config


def render_compose(tmp_path, stack: str) -> tuple[dict, dict]:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(TEST_SECRETS))
    secrets.chmod(0o600)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra",
            "render",
            "--stack",
            stack,
            "--out",
            str(out),
            "--compose",
            "--secrets",
            str(secrets),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    files = {p.name: p for p in out.iterdir()}
    return yaml.safe_load(files["docker-compose.yml"].read_text()), files


def pulumi_containers(stack: str, ca_dir) -> dict:
    with_config(TEST_SECRETS)
    try:  # the mock CA certificate, out of the repository
        monitor, _ = run(lambda: program.main(ca_dir=ca_dir), stack=stack)
    finally:
        with_config({})
    containers = {r.name: r.inputs for r in monitor.of_type("docker:index/container:Container")}
    # the app's image: Pulumi tags the same build `<image>:<project>-<stack>-<digest>` (its own tag per stack)
    for image in monitor.of_type("docker:index/image:Image"):
        repository, tag = image.inputs["imageName"].rsplit(":", 1)
        containers[image.name] = {"image": f"{repository}:{tag.rsplit('-', 1)[1]}"}
    return containers


def final_paths(container: dict) -> set[str]:
    """Where Pulumi's uploads end up: a private file is staged root-only and moved into place by the container's
    entry point (`install -D … SOURCE TARGET`)."""
    files = {u["file"] for u in unwrap(container.get("uploads")) or []}
    script = (container.get("entrypoints") or ["", "", ""])[2]
    for source, target in re.findall(r"install -D -o \S+ -g \S+ -m \d+ (\S+) (\S+)", script):
        files = files - {source} | {target}
    return files


def unescaped(test: list[str]) -> list[str]:
    """A compose health check as Docker gets it: compose reads `$$` as `$`."""
    return [part.replace("$$", "$") for part in test]


def mount_paths(volumes: list[str]) -> set[str]:
    return {v.split(":")[1] for v in volumes}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_compose_services_equal_the_pulumi_containers(tmp_path, stack):
    compose, files = render_compose(tmp_path, stack)
    containers = pulumi_containers(stack, tmp_path / "ca")
    plan = build_plan(require(load_definition(stack=stack)))
    # with TLS, compose mounts the rendered tls/ directory where Pulumi uploads each file
    tls = {f"{CONFIG_DIR}/tls/{n}" for n in APP_TLS_FILES} if plan.broker.tls else set()
    broker_tls = {f"{BROKER_CONFIG_DIR}/tls/{n}" for n in BROKER_TLS_FILES} if plan.broker.tls else set()
    assert set(compose["services"]) == {"rabbitmq"} | {s.name for s in plan.services}
    for spec in plan.services:
        service, container = compose["services"][spec.name], containers[f"app-{spec.name}"]
        assert service["image"] == (containers["app-image"]["image"] if spec.runs_app else spec.image)
        assert service.get("command", []) == container.get("command", [])
        env_file = (tmp_path / "out" / service["env_file"][0].removeprefix("./")).read_text()
        compose_env = set(service.get("environment", {})) | {line.split("=", 1)[0] for line in env_file.splitlines()}
        assert compose_env == {e.split("=", 1)[0] for e in unwrap(container["envs"])}, spec.name
        pulumi_files = final_paths(container)
        mounted = mount_paths(service["volumes"])
        if spec.runs_app and tls:
            assert TLS_MOUNT in mounted and service["entrypoint"][:2] == ["sh", "-c"]
            mounted = mounted - {TLS_MOUNT} | tls
        assert mounted == {v["containerPath"] for v in container["volumes"]} | pulumi_files
        assert service.get("ports", []) == [
            f"{p['ip']}:{int(p['external'])}:{int(p['internal'])}" for p in container.get("ports", [])
        ]
        assert unescaped(service["healthcheck"]["test"]) == container["healthcheck"]["tests"]
        assert service["hostname"] == container["hostname"]
    broker, container = compose["services"]["rabbitmq"], containers["broker-container"]
    assert broker["ports"] == [f"{p['ip']}:{int(p['external'])}:{int(p['internal'])}" for p in container["ports"]]
    assert unescaped(broker["healthcheck"]["test"]) == container["healthcheck"]["tests"]
    assert mount_paths(broker["volumes"]) - {"/run/secrets/definitions.json", TLS_MOUNT} | {
        "/etc/rabbitmq/definitions.json"
    } | broker_tls == {v["containerPath"] for v in container["volumes"]} | final_paths(container)


def test_credentials_live_in_0600_env_files_only(tmp_path):
    compose, files = render_compose(tmp_path, "prod")
    text = files["docker-compose.yml"].read_text()
    assert not any(value in text for value in TEST_SECRETS.values())
    assert "&id" not in text and "*id" not in text  # no YAML aliases: each service reads on its own
    # one env file per service: each Celery service has its own broker user, and sees only its password
    services = {"web", "beat", "worker-sync", "worker-matches", "worker-background"}
    assert {name for name in files if name.endswith(".env")} == {f"{s}.env" for s in services | {"postgres"}}
    for name in [f"{s}.env" for s in services] + ["postgres.env", "definitions.json"]:
        assert files[name].stat().st_mode & 0o777 == 0o600, name
    # prod: AMQPS on 5671 (the name `rabbitmq` is in the broker's certificate)
    for service in services:
        env = dict(line.split("=", 1) for line in files[f"{service}.env"].read_text().splitlines())
        key = "rabbitmq" + "".join(part.capitalize() for part in service.split("-")) + "Password"
        assert env["CELERY_BROKER_URL"] == f"amqps://{service}:{TEST_SECRETS[key]}@rabbitmq:5671/%2F"
        others = [TEST_SECRETS[k] for k in TEST_SECRETS if k.startswith("rabbitmq") and k != key]
        assert not any(value in files[f"{service}.env"].read_text() for value in others), service
        assert compose["services"][service]["env_file"] == [f"./{service}.env"]
    app_env = dict(line.split("=", 1) for line in files["web.env"].read_text().splitlines())
    assert files["tls"].is_dir()
    for key in ("server.key", "client.key"):
        assert (files["tls"] / key).stat().st_mode & 0o777 == 0o600, key
    assert "PRIVATE KEY" not in text
    assert app_env["DATABASE_URL"] == f"postgres://app:{TEST_SECRETS['postgresPassword']}@postgres:5432/app"
    assert files["postgres.env"].read_text() == f"POSTGRES_PASSWORD={TEST_SECRETS['postgresPassword']}\n"
    # the app's services wait for a healthy broker and database; ports only on loopback
    assert compose["services"]["worker-sync"]["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    ports = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)


def test_compose_with_a_host_target_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra",
            "render",
            "--stack",
            "dev",
            "--out",
            str(tmp_path),
            "--compose",
            "--target",
            "host",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 64 and "--compose" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_changed_mounted_file_changes_only_its_services_label():
    """docker-compose does not look inside bind-mounted files: the config digest label makes `up` re-create
    exactly the services whose files changed."""
    from infra.render import certs, compose
    from infra.render import files as render

    plan = build_plan(require(load_definition(stack="staging")))
    values = {**TEST_SECRETS, **certs.issue(plan.broker.tls, {})}
    files = {**render.render_files(plan, TEST_SECRETS), **render.tls_files(plan, values)}
    label = "org.rabbitmq-celery.config-digest"

    def labels(mounted):
        doc = compose.compose_file(plan, mounted, "app:tag", None, "base")
        return {name: s.get("labels", {}).get(label) for name, s in doc["services"].items()}

    before = labels(files)
    after_celery = labels({**files, "celery.json": files["celery.json"] + " "})
    assert {n for n in before if before[n] != after_celery[n]} == {
        "web",
        "beat",
        "worker-sync",
        "worker-matches",
        "worker-background",
    }
    after_conf = labels({**files, "rabbitmq.conf": files["rabbitmq.conf"] + "\n"})
    assert {n for n in before if before[n] != after_conf[n]} == {"rabbitmq"}
    after_server_cert = labels({**files, "tls/server.pem": "re-issued"})
    assert {n for n in before if before[n] != after_server_cert[n]} == {"rabbitmq"}
    after_client_cert = labels({**files, "tls/client.pem": "re-issued"})
    assert "rabbitmq" not in {n for n in before if before[n] != after_client_cert[n]}
    after_definitions = labels({**files, "definitions.json": "{}"})
    assert after_definitions == before  # the topology is applied in place, not by re-creating the broker


def test_a_three_node_stack_is_three_broker_services_the_app_waits_for(tmp_path):
    overlay = tmp_path / "cluster.yaml"
    overlay.write_text("broker: {nodes: 3}\n")
    plan = build_plan(require(load_definition(stack="local", overlays=(overlay,))))
    files = render.render_files(plan, TEST_SECRETS)
    compose = compose_file(plan, files, "app:1", None, "base")
    brokers = {name: s for name, s in compose["services"].items() if name.startswith("rabbitmq")}
    assert sorted(brokers) == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
    b = plan.broker
    for i, (name, service) in enumerate(sorted(brokers.items())):
        assert service["hostname"] == name and service["networks"]["stack"]["aliases"] == [name]
        assert f"{name}-data:/var/lib/rabbitmq" in service["volumes"]
        assert service["ports"] == [
            f"127.0.0.1:{p + i}:{p}" for p in (b.amqp_port, b.management_port, b.prometheus_port)
        ]
        assert "./erlang.cookie:/run/secrets/erlang.cookie:ro" in service["volumes"]
        assert "./boot-definitions.json:/run/secrets/boot-definitions.json:ro" in service["volumes"]
        assert ".erlang.cookie" in service["entrypoint"][2] and "boot-definitions.json" in service["entrypoint"][2]
    assert set(compose["volumes"]) >= {"rabbitmq-1-data", "rabbitmq-2-data", "rabbitmq-3-data"}
    # one after another: the first forms the cluster, each next one joins it
    assert "depends_on" not in brokers["rabbitmq-1"]
    assert brokers["rabbitmq-2"]["depends_on"] == {"rabbitmq-1": {"condition": "service_healthy"}}
    assert brokers["rabbitmq-3"]["depends_on"] == {"rabbitmq-2": {"condition": "service_healthy"}}
    for spec in plan.services:
        if spec.runs_app:
            assert set(compose["services"][spec.name]["depends_on"]) >= set(brokers)
    assert TEST_SECRETS["rabbitmqErlangCookie"] not in compose_yaml(compose)


def test_health_checks_probe_fast_until_healthy_then_at_the_specs_interval(tmp_path):
    """The paced check in a real shell: it runs the probe until it passes, then answers from the time of the
    last success until `interval` has gone by; a failing probe is never skipped."""
    import subprocess

    from infra.plan.services import LAST_OK, HealthCheck

    calls = tmp_path / "calls"
    state = tmp_path / "state"
    probe = f"echo x >> {calls}; [ -f {state} ]"
    check = HealthCheck(("CMD-SHELL", probe), interval="30s", retries=3).paced()
    assert (check.interval, check.retries) == ("2s", 45)
    script = check.test[1].replace(LAST_OK, str(tmp_path / "last-ok"))

    def run() -> int:
        return subprocess.run(["sh", "-c", script]).returncode

    assert run() != 0 and run() != 0  # not ready: probed each time
    state.touch()
    assert run() == 0 and run() == 0 and run() == 0  # ready: probed once, then skipped
    assert calls.read_text().count("x") == 3
    (tmp_path / "last-ok").write_text("0\n")  # the last success long ago: probed again, and fails now
    state.unlink()
    assert run() != 0 and calls.read_text().count("x") == 4
