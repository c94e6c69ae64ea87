"""The Celery services' permissions, derived from the definition (infra/plan/permissions.py): what each regex
lets through and what it does not, checked name by name against the shipped stacks' objects. The broker
itself is asked in tests/app/test_least_privilege.py."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from infra.definition.load import load_definition, require
from infra.plan.permissions import service_access
from infra.plan.plan import build_plan

CELERYS_OWN = [
    "celery.pidbox",
    "reply.celery.pidbox",
    "celeryev",
    "celeryev.5c0ffee0-0000-4000-8000-000000000000",
    "5c0ffee0-0000-4000-8000-000000000001.reply.celery.pidbox",
    "celery_delayed_0",
    "celery_delayed_27",
    "celery_delayed_delivery",
]


def matches(regex: str, name: str) -> bool:
    return bool(regex) and re.search(regex, name) is not None  # RabbitMQ's match: unanchored search


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request):
    definition = require(load_definition(stack=request.param))
    return definition, {a.service: a for a in service_access(definition)}, build_plan(definition).topology


def test_every_celery_service_has_its_own_user_with_derived_permissions_in_the_celery_vhost(stack):
    definition, access, topology = stack
    assert set(access) == {"web", "beat", "worker-sync", "worker-matches", "worker-background"}
    assert len({a.user for a in access.values()}) == len(access)
    planned = {(p.user, p.vhost): (p.configure, p.write, p.read) for p in topology.permissions}
    for a in access.values():
        assert planned[(a.user, definition.celery.vhost)] == (a.configure, a.write, a.read)
    assert definition.broker.admin_user not in {a.user for a in access.values()}


def test_no_service_may_declare_or_delete_what_the_deployer_owns(stack):
    _, access, topology = stack
    owned = [q.name for q in topology.queues] + [e.name for e in topology.exchanges]
    for a in access.values():
        assert not [name for name in owned if matches(a.configure, name)], a.service


def test_web_and_beat_publish_tasks_and_only_web_reads_the_parking_queue(stack):
    _, access, topology = stack
    for service in ("web", "beat"):
        a = access[service]
        assert a.configure == ""
        assert [e.name for e in topology.exchanges if matches(a.write, e.name)] == ["tasks"]
        assert matches(a.write, "celery_delayed_27")  # a countdown from the web goes there
        assert not matches(a.write, "celery.pidbox") and not matches(a.write, "dlx")
    assert [q.name for q in topology.queues if matches(access["web"].read, q.name)] == ["dead_letters"]
    assert access["beat"].read == ""


def test_each_pool_reads_exactly_its_own_queues(stack):
    definition, access, topology = stack
    for name, pool in definition.celery.workers.items():
        a = access[f"worker-{name}"]
        readable = {q.name for q in topology.queues if matches(a.read, q.name)}
        assert readable == set(pool.queues), name
        writable = {q.name for q in topology.queues if matches(a.write, q.name)}  # binding #.<key> to delayed delivery
        assert writable == set(pool.queues), name
        assert matches(a.read, "tasks") and matches(a.write, "tasks") and not matches(a.write, "dlx")
        for own in CELERYS_OWN:
            assert matches(a.configure, own) and matches(a.write, own) and matches(a.read, own), (name, own)
        assert matches(a.configure, f"{name}@worker-{name}.celery.pidbox")
        others = [p for p in definition.celery.workers if p != name]
        assert not any(matches(a.configure, f"{other}@worker-{other}.celery.pidbox") for other in others)


def test_queue_names_are_matched_literally_and_whole():
    definition = require(load_definition(stack="dev"))
    sync = next(a for a in service_access(definition) if a.service == "worker-sync")
    assert matches(sync.read, "player_sync")
    for near in ("player_sync2", "xplayer_sync", "player-sync", "player_syncX"):
        assert not matches(sync.read, near), near
    assert not matches(sync.configure, "celery.pidboxes") and not matches(sync.configure, "celeryevXfoo")


def test_a_pool_that_changes_its_queues_changes_its_permissions(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "celery:\n  workers:\n    sync: {queues: [player_sync, player_sync_americas, player_sync_asia, "
        "player_sync_sea, recovery]}\n"
        "    background: {queues: [default, maintenance]}\n"
    )
    definition = require(load_definition(stack="dev", overlays=(overlay,)))
    sync = next(a for a in service_access(definition) if a.service == "worker-sync")
    assert matches(sync.read, "recovery") and matches(sync.read, "player_sync")


def test_without_beat_there_is_no_beat_permission():
    definition = require(load_definition(stack="dev"))
    without = replace(definition, app=replace(definition.app, beat=False))
    assert "beat" not in {a.service for a in service_access(without)}
