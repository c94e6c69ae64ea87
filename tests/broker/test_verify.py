"""`python -m infra verify` on a real node: in sync after boot, Celery's own objects are not drift, and
hand-made changes are each reported, exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import kombu
import pika
import pytest
import yaml
from celery import Celery
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from infra.cli.main import ExitStatus, main
from tests.support.stacks import booted

ROOT = "%2F"


@pytest.fixture(scope="module")
def node():
    with booted(stack="dev") as (node, rendered):
        yield node, rendered


@pytest.fixture
def secrets_file(node, tmp_path):
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(node[1].passwords))
    path.chmod(0o600)
    return path


def _verify(node, secrets_file, capsys, *extra) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{node[0].ports.management}"
    status = main(["verify", "--stack", "dev", "--management-url", url, "--secrets", str(secrets_file), *extra])
    out = capsys.readouterr()
    return status, out.out, out.err


def _admin(node):
    return node[0].api("admin", node[1].password("admin")).session


def _url(node, path: str) -> str:
    return f"http://127.0.0.1:{node[0].ports.management}/api/{path}"


def test_a_freshly_booted_stack_is_in_sync(node, secrets_file, monkeypatch):
    monkeypatch.setenv("RABBITMQ_PASSWORD", node[1].password("admin"))
    # The real command line, in a process of its own, password from the environment only.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra",
            "verify",
            "--stack",
            "dev",
            "--management-url",
            f"http://127.0.0.1:{node[0].ports.management}",
            "--secrets",
            str(secrets_file),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == ExitStatus.OK, result.stderr
    assert json.loads(result.stdout) == {"in_sync": True, "drift": [], "passwords_not_checked": []}


def _celery_app(node) -> Celery:
    """A worker of the sync pool, as its own user: it declares what a real one declares."""
    url = f"amqp://worker-sync:{node[1].password('worker-sync')}@127.0.0.1:{node[0].ports.amqp}/{ROOT}"
    return Celery("verify-test", broker=url)


def test_objects_celery_declares_itself_are_not_drift(node, secrets_file, capsys):
    rendered = node[1]
    params = pika.ConnectionParameters(
        "127.0.0.1", node[0].ports.amqp, "/", pika.PlainCredentials("worker-sync", rendered.password("worker-sync"))
    )
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    # What a worker declares: its remote-control mailbox and, with -E, an event queue.
    channel.exchange_declare("celery.pidbox", "fanout", auto_delete=False)
    channel.queue_declare("sync@host.celery.pidbox", auto_delete=True)
    channel.queue_bind("sync@host.celery.pidbox", "celery.pidbox")
    channel.exchange_declare("celeryev", "topic", durable=True)
    channel.queue_declare("celeryev.5c0ffee0-0000-4000-8000-000000000000", auto_delete=True)
    channel.queue_bind("celeryev.5c0ffee0-0000-4000-8000-000000000000", "celeryev", "worker.#")
    app = _celery_app(node)
    # A real `celery inspect ping` declares the reply exchange; its reply queue is gone when it returns,
    # so one is held open here as a ping in flight would have it.
    app.control.ping(timeout=0.2)
    channel.queue_declare("5c0ffee0-0000-4000-8000-000000000001.reply.celery.pidbox", auto_delete=True)
    channel.queue_bind(
        "5c0ffee0-0000-4000-8000-000000000001.reply.celery.pidbox",
        "reply.celery.pidbox",
        "5c0ffee0-0000-4000-8000-000000000001",
    )
    # kombu's own native delayed delivery declarations, as a worker on quorum queues makes them.
    with app.connection_for_write() as conn:
        declare_native_delayed_delivery_exchanges_and_queues(conn, "quorum")
        for declared in [d for d in rendered.celery["task_queues"] if d["name"] == "player_sync"]:  # its own
            queue = kombu.Queue(
                declared["name"],
                kombu.Exchange(declared["exchange"], declared["exchange_type"]),
                declared["routing_key"],
                queue_arguments=declared["queue_arguments"],
            )
            bind_queue_to_native_delayed_delivery_exchange(conn, queue)
    live = node[0].api("admin", rendered.password("admin"))
    assert {"celery.pidbox", "reply.celery.pidbox", "celeryev", "celery_delayed_delivery", "celery_delayed_27"} <= {
        e["name"] for e in live.get("exchanges")
    }
    assert any(b["routing_key"] == "#.player_sync" for b in live.get("bindings"))
    status, out, err = _verify(node, secrets_file, capsys)
    connection.close()
    assert (status, out) == (ExitStatus.OK, ""), err


def test_hand_made_changes_are_each_reported_exactly(node, secrets_file, capsys):
    admin = _admin(node)
    policy = admin.get(_url(node, f"policies/{ROOT}/queue.player_sync")).json()
    edited = {**policy["definition"], "max-length": 5}
    for method, path, body in [
        (
            "put",
            f"policies/{ROOT}/queue.player_sync",
            {"pattern": policy["pattern"], "definition": edited, "priority": policy["priority"], "apply-to": "queues"},
        ),
        ("delete", f"queues/{ROOT}/match_processing", None),
        ("put", "users/intruder", {"password": "intruder-password", "tags": ""}),
        ("put", f"permissions/{ROOT}/web", {"configure": "^$", "write": ".*", "read": ".*"}),
        ("put", "users/monitor", {"password": "changed-by-hand", "tags": "monitoring"}),
    ]:
        response = getattr(admin, method)(_url(node, path), json=body, timeout=30)
        assert response.status_code in (201, 204), (path, response.text)

    status, out, err = _verify(node, secrets_file, capsys, "--json")
    assert status == ExitStatus.DRIFT, err
    found = {(d["kind"], d["name"], d["state"]): d["detail"] for d in json.loads(out)["drift"]}
    assert set(found) == {
        ("policy", "/ queue.player_sync", "different"),
        ("queue", "/ match_processing", "missing"),
        ("binding", "/ tasks → match_processing (match_processing)", "missing"),  # went with its queue
        ("user", "intruder", "extra"),
        ("permission", "web @ /", "different"),
        ("user", "monitor", "different"),
    }
    assert found[("policy", "/ queue.player_sync", "different")] == "definition.max-length: 1000 → 5"
    assert (
        found[("permission", "web @ /", "different")]
        == "configure: '' → '^$'; read: '^(dead_letters)$' → '.*'; write: '^(tasks|celery_delayed_27)$' → '.*'"
    )
    assert found[("user", "monitor", "different")] == "password: the broker's differs from the secrets"

    status, table, _ = _verify(node, secrets_file, capsys)  # the same, as a table
    assert status == ExitStatus.DRIFT
    assert table.splitlines()[0].split() == ["kind", "object", "drift", "detail"]
    assert len(table.splitlines()) == 2 + len(found)
    assert "changed-by-hand" not in table and "intruder-password" not in table


def test_a_user_without_the_administrator_tag_is_told_what_it_lacks(node, secrets_file, capsys, monkeypatch):
    monkeypatch.setenv("RABBITMQ_PASSWORD", node[1].password("web"))  # web: no management tag at all
    status, _, err = _verify(node, secrets_file, capsys, "--user", "web")
    assert status == ExitStatus.ERROR and "refused (401)" in err
    # monitor (tag `monitoring`) logs in, but may not list users: the message says which tag is needed.
    monkeypatch.setenv("RABBITMQ_PASSWORD", "changed-by-hand")  # its password since the drift test
    status, _, err = _verify(node, secrets_file, capsys, "--user", "monitor")
    assert status == ExitStatus.ERROR and "administrator tag" in err, err


def test_refused_credentials_exit_1_without_echoing_the_password(node, secrets_file, capsys, monkeypatch):
    monkeypatch.setenv("RABBITMQ_PASSWORD", "not-the-admin-password")
    status, out, err = _verify(node, secrets_file, capsys)
    assert status == ExitStatus.ERROR
    assert "refused (401)" in err and "not-the-admin-password" not in out + err
