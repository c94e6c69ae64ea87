"""The pure comparison behind `verify`: plan snapshot against a live one (built here, no broker)."""

from __future__ import annotations

import base64
import copy
import hashlib

import pytest

from infra.cli.main import ExitStatus, main
from infra.definition.load import load_definition, require
from infra.ops.drift import Drift, compare, expected_snapshot, is_celerys, password_matches
from infra.plan.plan import build_plan
from infra.render.secrets import hash_for
from tests.support.rabbit_node import free_ports
from tests.support.stacks import TEST_SECRETS

PASSWORDS = {
    user.name: TEST_SECRETS[user.password.secret]
    for user in build_plan(require(load_definition(stack="dev"))).topology.users
}


@pytest.fixture(scope="module")
def expected():
    return expected_snapshot(build_plan(require(load_definition(stack="dev"))).topology)


def live_like(expected):
    """What a broker freshly loaded with the rendered definitions reports, plus the broker's own objects."""
    live = copy.deepcopy(expected)
    live.users = {
        name: (tags, hash_for(name, PASSWORDS[name]), "rabbit_password_hashing_sha256")
        for name, (tags, _, _) in expected.users.items()
    }
    for name, kind in [("", "direct"), ("amq.direct", "direct"), ("amq.topic", "topic")]:
        live.exchanges[("/", name)] = {
            "type": kind,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
    for vhost, name in expected.queues:  # the default exchange's implicit binding of every queue
        live.bindings.add((vhost, "", name, "queue", name))
    return live


def test_a_broker_equal_to_the_plan_has_no_drift(expected):
    assert compare(expected, live_like(expected), PASSWORDS) == []


def test_celerys_own_objects_are_not_drift(expected):
    live = live_like(expected)
    fanout = {"type": "fanout", "durable": False, "auto_delete": False, "internal": False, "arguments": {}}
    for name in [
        "celery.pidbox",
        "reply.celery.pidbox",
        "celeryev",
        "celery_delayed_delivery",
        "celery_delayed_0",
        "celery_delayed_27",
        "myapp_celery_delayed_3",
    ]:
        live.exchanges[("/", name)] = fanout
    for name in ["sync@web-1.celery.pidbox", "0f4c.reply.celery.pidbox", "celeryev.0f4c", "celery_delayed_12"]:
        live.queues[("/", name)] = {"durable": False, "auto_delete": True, "arguments": {}}
    live.bindings |= {
        ("/", "celery.pidbox", "sync@web-1.celery.pidbox", "queue", ""),
        ("/", "celery_delayed_delivery", "tasks", "exchange", "#.player_sync"),
        ("/", "tasks", "player_sync", "queue", "#.player_sync"),
    }  # delayed delivery's own
    assert compare(expected, live, PASSWORDS) == []


def test_a_delayed_delivery_style_binding_the_plan_does_not_explain_is_drift(expected):
    live = live_like(expected)
    live.bindings.add(("/", "tasks", "player_sync", "queue", "#.match_processing"))
    assert compare(expected, live, PASSWORDS) == [
        Drift("binding", "/ tasks → player_sync (#.match_processing)", "extra")
    ]
    assert not is_celerys("queue", ("/", "celery"), expected)  # Celery's default queue name is a task queue


def test_each_kind_of_difference_is_named(expected):
    live = live_like(expected)
    del live.queues[("/", "recovery")]
    live.queues[("/", "hand_made")] = {"durable": True, "auto_delete": False, "arguments": {}}
    live.queues[("/", "default")] = {**live.queues[("/", "default")], "arguments": {"x-queue-type": "classic"}}
    live.vhosts["staging"] = {"description": ""}
    live.vhosts["/"] = {"description": "edited in the UI"}
    live.users["monitor"] = (("management",), live.users["monitor"][1], live.users["monitor"][2])
    live.users["intruder"] = ((), hash_for("intruder", "x"), "rabbit_password_hashing_sha256")
    live.permissions[("web", "/")] = {**live.permissions[("web", "/")], "configure": ".*"}
    live.exchanges[("/", "tasks")] = {**live.exchanges[("/", "tasks")], "type": "direct"}
    policy = live.policies[("/", "queue.player_sync")]
    live.policies[("/", "queue.player_sync")] = {
        **policy,
        "priority": 0,
        "definition": {**policy["definition"], "message-ttl": 1},
    }
    del live.policies[("/", "queue.maintenance")]
    assert compare(expected, live, PASSWORDS) == [
        Drift("vhost", "staging", "extra"),
        Drift("vhost", "/", "different", "description: 'League of Legends stats tasks' → 'edited in the UI'"),
        Drift("user", "intruder", "extra"),
        Drift("user", "monitor", "different", "tags: ['monitoring'] → ['management']"),
        Drift("permission", "web @ /", "different", "configure: '' → '.*'"),
        Drift("exchange", "/ tasks", "different", "type: 'topic' → 'direct'"),
        Drift("queue", "/ recovery", "missing"),
        Drift("queue", "/ hand_made", "extra"),
        Drift("queue", "/ default", "different", "arguments.x-queue-type: 'quorum' → 'classic'"),
        Drift("policy", "/ queue.maintenance", "missing"),
        Drift("policy", "/ queue.player_sync", "different", "definition.message-ttl: 7200000 → 1; priority: 10 → 0"),
    ]


def test_a_password_changed_on_the_broker_is_drift_and_an_unknown_one_is_not_checked(expected):
    live = live_like(expected)
    live.users["web"] = ((), hash_for("web", "changed"), "rabbit_password_hashing_sha256")
    assert compare(expected, live, PASSWORDS) == [
        Drift("user", "web", "different", "password: the broker's differs from the secrets")
    ]
    assert compare(expected, live, {k: v for k, v in PASSWORDS.items() if k != "web"}) == []


def test_password_matches_reads_the_salt_and_algorithm_from_the_live_hash():
    salt = b"\x01\x02\x03\x04"
    sha512 = base64.b64encode(salt + hashlib.sha512(salt + "pw".encode()).digest()).decode()
    assert password_matches("pw", sha512, "rabbit_password_hashing_sha512")
    assert not password_matches("pw", sha512, "rabbit_password_hashing_sha256")
    assert password_matches("s3cret", hash_for("u", "s3cret"), "rabbit_password_hashing_sha256")
    assert not password_matches("s3cret!", hash_for("u", "s3cret"), "rabbit_password_hashing_sha256")
    assert not password_matches("pw", "not base64!", "rabbit_password_hashing_sha256")
    assert not password_matches("pw", "", "rabbit_password_hashing_sha256")


def test_verify_without_a_password_is_a_usage_error_and_an_unreachable_broker_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RABBITMQ_PASSWORD", raising=False)
    url = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    args = ["verify", "--stack", "dev", "--management-url", url, "--secrets", str(tmp_path / "none.yaml")]
    assert main(args) == ExitStatus.USAGE
    assert "set RABBITMQ_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("RABBITMQ_PASSWORD", "unused-password")
    assert main(args) == ExitStatus.ERROR
    err = capsys.readouterr().err
    assert "cannot reach" in err and "unused-password" not in err
