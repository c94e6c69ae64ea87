"""`python -m infra migrate` on real parts: a RabbitMQ node booted from the stack, the app's Celery workers
(the `effects` pool of tests/app/data/migration.yaml, running an idempotent task that counts its effects and
its runs), a publisher adding 50 tasks/s throughout, and the migrating process SIGKILLed or the broker
restarted mid-way. Each task's effect exactly once; nothing left in a temporary queue, nothing parked.

A type change moves a backlog of 10,000 tasks; the rename 1,000 (the bench moves 10,000 and 100,000 with a
plain consumer)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pika
import pytest

from infra.cli import main as cli
from infra.ops.amqp_depth import AMQPError
from infra.ops.broker_api import ManagementClient
from infra.ops.migrator import Migrator
from infra.plan.stack import Stack
from tests.app.deployment import print_logs_if_failed
from tests.app.migration_rig import QUEUE, Publisher, Rig, kill_when
from tests.support.stacks import TEST_SECRETS
from tests.support.waiting import WaitTimeout, wait_for

BACKLOG = 10_000  # tasks queued before a type change
RENAME_BACKLOG = 1000
PRIORITY_MESSAGES = 500
CLASSIC = "vhosts: {'/': {queues: {effects: {type: classic}}}}\n"
QUORUM = "vhosts: {'/': {queues: {effects: {type: quorum}}}}\n"
RENAMED = (
    "vhosts: {'/': {queues: {effects: ~, effects_v2: {type: quorum, renamed_from: effects}}}}\n"
    "celery: {workers: {effects: {queues: [effects_v2]}}}\n"
)


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="migrate-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rig(workdir, request):
    rig = Rig(workdir, request.param)
    rig.node.start()
    try:
        yield rig
    finally:
        print_logs_if_failed(request, rig.processes)
        rig.close()


def settle(rig: Rig, expected: set[str], unconfirmed: set[str] = frozenset(), timeout: float = 600) -> None:
    """Until every expected task has had its effect; then: no other effect (a publish that failed while the
    broker was down may have landed all the same), nothing left in a temporary queue, nothing parked."""
    try:
        wait_for(lambda: expected <= rig.effects()[0], timeout, f"{len(expected)} effects", interval=1)
    except WaitTimeout:  # say what is missing and where the broker's messages are, for the next look
        missing = sorted(expected - rig.effects()[0])
        queues = {q["name"]: q.get("messages") for q in rig.api.get("queues") if q.get("messages")}
        raise WaitTimeout(
            f"{len(missing)} effect(s) missing, e.g. {missing[:5]}; queues holding some: {queues}"
        ) from None
    effects, runs = rig.effects()
    assert expected <= effects <= expected | unconfirmed, sorted(effects - expected - unconfirmed)[:5]
    print(f"{len(effects)} effects, {runs} runs ({runs - len(effects)} redelivered and run again)")
    assert not {n for n in rig.queue_names() if n.endswith(".migrating")}
    assert rig.api.get("parameters/shovel") == []
    assert rig.parked() == 0


def migrate_under_load(
    rig: Rig, target: str, interrupt, queue: str = QUEUE, broker_down: bool = False, backlog: int = BACKLOG
) -> float:
    """`backlog` tasks queued, the workers and a publisher (50/s) on the first render's celery.json; the
    migration started, `interrupt(rig, process, target)` mid-way; then the workers and the publisher re-created with
    the target's celery.json, as a deploy does after migrating. The consumers' longest pause (s)."""
    before, after = rig.rendered, rig.render(target)
    rig.start_workers(before)
    rig.publish(before, (f"backlog-{i}" for i in range(backlog)), seconds=0.01)
    publisher = Publisher(rig, before, "live")
    publisher.start()
    started = time.time()
    process = rig.migrate_process(target)
    try:
        interrupt(rig, process, target)
    except BaseException:  # the publisher thread outlives a failed test otherwise, publishing on its port
        publisher.stop()
        raise
    if process.alive() or process.popen.returncode != 0:
        wait_for(lambda: not process.alive(), 240, "migrate finished", interval=0.5)
    rig.apply_topology(after)
    rig.stop_workers()
    rig.start_workers(after)
    sent = publisher.stop()
    late = Publisher(rig, after, "after", queue=queue)
    late.start()
    time.sleep(2)
    sent += late.stop()
    # While the broker is down a publish fails, is not counted as sent, and its tag is sent again.
    assert broker_down or not publisher.errors + late.errors, (publisher.errors + late.errors)[:3]
    settle(rig, {f"backlog-{i}" for i in range(backlog)} | set(sent), publisher.unconfirmed | late.unconfirmed)
    return rig.longest_pause(started)


def sigkill_then_rerun(rig: Rig, process, target: str) -> None:
    """The migrating process SIGKILLed while its shovel moves the backlog out; then run again, as `deploy`
    runs it before `pulumi up` (its hook, in-process), which says the state needs a refresh."""
    kill_when(process, "\n  shovel effects → effects.migrating\n")
    assert "effects.migrating" in rig.queue_names()
    loaded = Stack.load(stack="dev", overlays=rig.overlays(target))
    os.environ["RABBITMQ_PASSWORD"] = TEST_SECRETS["rabbitmqAdminPassword"]
    try:
        assert cli._migrations_before_up(loaded, dry_run=False)(lambda key: None) is True
    finally:
        del os.environ["RABBITMQ_PASSWORD"]


@pytest.mark.parametrize("rig", [CLASSIC], indirect=True)
def test_classic_to_quorum_under_load_survives_a_sigkill_of_the_migration(rig):
    pause = migrate_under_load(rig, QUORUM, sigkill_then_rerun)
    assert rig.queue(QUEUE)["type"] == "quorum"
    assert {("tasks", QUEUE), ("tasks", "#.effects")} <= rig.bindings(QUEUE)
    print(f"consumers' longest pause: {pause:.1f} s")


def restart_the_broker(rig: Rig, process, target: str) -> None:
    """The broker stopped and started while the migration waits for the queue to drain; the same process
    waits for it and carries on."""
    wait_for(
        lambda: "\n  shovel effects → effects.migrating\n" in process.output(), 120, "the shovel out", interval=0.05
    )
    rig.node.stop()
    rig.node.start()
    wait_for(lambda: not process.alive(), 240, "migrate finished", interval=0.5)
    assert process.popen.returncode == 0, process.output()[-3000:]
    assert "retrying" in process.output()


@pytest.mark.parametrize("rig", [QUORUM], indirect=True)
def test_quorum_to_classic_under_load_survives_a_broker_restart(rig):
    pause = migrate_under_load(rig, CLASSIC, restart_the_broker, broker_down=True)
    assert rig.queue(QUEUE)["type"] == "classic"
    assert ("tasks", QUEUE) in rig.bindings(QUEUE)
    print(f"consumers' longest pause: {pause:.1f} s")


def run_to_the_end(rig: Rig, process, target: str) -> None:
    wait_for(lambda: not process.alive(), 240, "migrate finished", interval=0.5)
    assert process.popen.returncode == 0, process.output()[-3000:]


@pytest.mark.parametrize("rig", [QUORUM], indirect=True)
def test_a_rename_moves_the_messages_and_the_pool_follows_its_queue(rig):
    """The pool's -Q moves from effects to effects_v2 (its workers re-created after the migration); tasks
    published with the old routing key meanwhile still arrive, through the old key's binding carried over."""
    dry = rig.migrate(RENAMED, 60, "--dry-run")
    assert "queue /:effects → effects_v2 (quorum)" in dry and "effects_v2" not in rig.queue_names()
    migrate_under_load(rig, RENAMED, run_to_the_end, queue="effects_v2", backlog=RENAME_BACKLOG)
    assert "effects" not in rig.queue_names()
    assert rig.queue("effects_v2")["type"] == "quorum"
    assert {("tasks", "effects_v2"), ("tasks", QUEUE)} <= rig.bindings("effects_v2")
    assert "0 queue migration(s) pending" in rig.migrate(RENAMED, 60)  # done: running it again does nothing


@pytest.mark.parametrize("rig", [CLASSIC], indirect=True)
def test_a_max_priority_added_to_a_classic_queue_keeps_its_messages(rig):
    """x-max-priority is a queue argument too: the queue is re-created with it, its messages moved."""
    with pika.BlockingConnection(rig.node.amqp_params("/", "admin", TEST_SECRETS["rabbitmqAdminPassword"])) as c:
        channel = c.channel()
        channel.confirm_delivery()
        for i in range(PRIORITY_MESSAGES):
            channel.basic_publish("tasks", QUEUE, str(i).encode(), pika.BasicProperties(delivery_mode=2))
    output = rig.migrate("vhosts: {'/': {queues: {effects: {type: classic, max_priority: 5}}}}\n")
    assert "queue /:effects classic → classic (max priority 5)" in output
    queue = wait_for(
        lambda: (lambda q: q if q.get("messages") == PRIORITY_MESSAGES else None)(rig.queue(QUEUE)),
        30,
        "every message in the re-created queue",
    )
    assert queue["arguments"] == {"x-max-priority": 5, "x-queue-type": "classic"}
    assert ("tasks", QUEUE) in rig.bindings(QUEUE)


@pytest.mark.parametrize("rig", [CLASSIC], indirect=True)
def test_the_count_to_move_is_the_queues_own_not_the_lagging_statistics(rig):
    """`migrate`'s "N message(s) to move" asks the queue (a passive declare), not the management API, whose
    statistics are emitted every 5 s: right after a publish (or a shovel's start) they may still say 0."""
    with pika.BlockingConnection(rig.node.amqp_params("/", "admin", TEST_SECRETS["rabbitmqAdminPassword"])) as c:
        channel = c.channel()
        channel.confirm_delivery()
        for i in range(PRIORITY_MESSAGES):
            channel.basic_publish("tasks", QUEUE, str(i).encode(), pika.BasicProperties(delivery_mode=2))
    the_plan = Stack.load(stack="dev", overlays=rig.overlays(CLASSIC)).plan
    client = ManagementClient(rig.api.base, "admin", TEST_SECRETS["rabbitmqAdminPassword"])
    statistics = rig.queue(QUEUE).get("messages")  # often none yet: not emitted since the queue was declared
    depth = cli._queue_depth(the_plan, client)
    assert depth("/", QUEUE) == PRIORITY_MESSAGES
    print(f"right after the publish: the statistics say {statistics}, the queue {PRIORITY_MESSAGES}")
    assert Migrator(client, the_plan, depth=depth)._waiting("/", QUEUE, statistics) == str(PRIORITY_MESSAGES)
    with pytest.raises(AMQPError, match="404"):
        depth("/", "no-such-queue")
    wrong = ManagementClient(rig.api.base, "admin", "not-the-password")
    with pytest.raises(AMQPError):  # refused (403), or the connection reset or timed out: the broker delays a refusal
        cli._queue_depth(the_plan, wrong)("/", QUEUE)
    # a queue that cannot be asked: the statistics, said to be such
    assert (
        Migrator(client, the_plan, depth=cli._queue_depth(the_plan, wrong))._waiting("/", QUEUE, 7) == "7 (statistics)"
    )
