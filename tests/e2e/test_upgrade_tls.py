"""`python -m infra upgrade` of a TLS stack: the local stack on 3.10 with `broker.tls` as prod ships it (AMQPS
and HTTPS only, mutual TLS), upgraded blue-green to 4.0 with tasks queued, parked messages and countdown
tasks. The shovels cross over AMQPS, presenting the app's client certificate and checking each broker's
against the stack's CA; the upgrade reaches green's management API over HTTPS. Every effect there, the
parked messages on the new broker, no plaintext listener on it, `verify` exit 0 against it over HTTPS.
The SIGKILL and the publisher throughout are the plaintext proof's (test_upgrade.py): the steps are the same."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest
import yaml

from infra.ops.broker_api import ManagementClient
from tests.e2e.harness import REPO, amqps_parameters, docker, running_stack
from tests.e2e.test_upgrade import effect_workers, overlays, upgrade_argv
from tests.support import upgrade_load as load
from tests.support.rabbit_node import free_ports

pytestmark = pytest.mark.e2e

BACKLOG = 2000
PARKED = 2000  # nobody consumes them: they cross both hops by the shovels, over AMQPS
PROJECT = "upgrade-tls-e2e"


def tls_files(stack) -> dict[str, str]:
    return {name: str(stack.local.out / "tls" / name) for name in ("ca.pem", "client.pem", "client.key")}


def client(stack):
    """The Celery client over AMQPS, with the rendered CA and the app's client certificate from the host."""
    b = stack.local.plan.broker
    url = f"amqps://admin:{stack.secrets['rabbitmqAdminPassword']}@127.0.0.1:{b.client_port}/%2F"
    app = load.client(url, json.loads((stack.local.out / "celery.json").read_text()))
    files = tls_files(stack)
    app.conf.broker_use_ssl = {
        "ca_certs": files["ca.pem"],
        "certfile": files["client.pem"],
        "keyfile": files["client.key"],
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": None,
    }
    return app


def management(stack) -> ManagementClient:
    b = stack.local.plan.broker
    return ManagementClient(
        b.management_url, "admin", stack.secrets["rabbitmqAdminPassword"], ca_cert=tls_files(stack)["ca.pem"]
    )


@pytest.mark.timeout(1800)
def test_a_tls_stack_upgraded_to_4_0_moves_every_message_over_amqps():
    effects = Path(os.environ.get("TMPDIR", "/tmp")) / f"{PROJECT}-effects-{os.getpid()}"
    effects.mkdir(mode=0o777)
    effects.chmod(0o777)
    port_amqps, port_https = free_ports(2)
    overlay = effects.parent / f"{PROJECT}-tls-{os.getpid()}.yaml"
    tls = {"enabled": True, "plain_listeners": False, "verify_peer": True, "amqps": port_amqps}
    overlay.write_text(yaml.safe_dump({"broker": {"tls": {**tls, "management": port_https}}}))
    try:
        with running_stack(None, {}, PROJECT, prepare=effect_workers(effects), overlays=(overlay,)) as stack:
            try:
                upgrade_and_check(stack, effects / "db")
            finally:
                docker("rm", "-f", f"{PROJECT}-upgrade-green", check=False)
                docker("volume", "rm", f"{PROJECT}-upgrade-green-data", check=False)
    finally:
        overlay.unlink(missing_ok=True)
        shutil.rmtree(effects, ignore_errors=True)


def upgrade_and_check(stack, db: Path) -> None:
    b = stack.local.plan.broker
    assert b.tls and not b.plain and b.tls.verify_peer  # prod's TLS
    due = load.queue_backlog_and_countdowns(client(stack), BACKLOG)
    with pika.BlockingConnection(amqps_parameters(stack.local, stack.local.plan.broker.client_port)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(PARKED):
            channel.basic_publish("", "dead_letters", f"parked-{i}".encode(), pika.BasicProperties(delivery_mode=2))

    started = time.time()
    done = subprocess.run(
        upgrade_argv(stack),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    print(done.stderr[-4000:])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "upgrade: shovel" in done.stderr and "upgrade: remove green" in done.stderr
    upgraded = time.time()

    api = management(stack)  # the stack's own HTTPS port: the new broker
    assert api.get("overview")["rabbitmq_version"] == "4.0.5"
    listeners = {(x["protocol"], x["port"]) for x in api.get("overview")["listeners"]}
    assert ("amqp/ssl", b.client_port) in listeners and not {p for p, _ in listeners} & {"amqp", "http"}
    after = load.send_after(client(stack))
    load.assert_every_effect(db, {f"backlog-{i}" for i in range(BACKLOG)} | set(due) | after, due, started, upgraded)
    with pika.BlockingConnection(amqps_parameters(stack.local, stack.local.plan.broker.client_port)) as connection:
        assert connection.channel().queue_declare("dead_letters", passive=True).method.message_count == PARKED
    assert api.get("parameters/shovel") == []
    assert docker("ps", "-aq", "--filter", f"name={stack.project}-upgrade-green") == ""
    inspected = json.loads(docker("inspect", f"{stack.project}_rabbitmq_1"))[0]
    assert inspected["Config"]["Image"] == "rabbitmq-celery-local/rabbitmq:4.0"
    consumed = {c["queue"]["name"] for c in api.get("consumers")}
    assert set(load.TASK_QUEUES) <= consumed, consumed
    verify = subprocess.run(
        [
            sys.executable, "-m", "infra", "verify", "--stack", "local", *overlays(stack),
            "--secrets", str(stack.work / "secrets.yaml"),
            "--management-url", b.management_url, "--ca-cert", tls_files(stack)["ca.pem"],
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
