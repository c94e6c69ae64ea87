"""`python -m infra migrate` on real parts: a RabbitMQ node booted from the stack, the app's Celery workers
(the `effects` pool of tests/app/data/migration.yaml, running an idempotent task that counts its effects and
its runs), a publisher adding 50 tasks/s throughout, and the migrating process SIGKILLed or the broker
restarted mid-way. Each task's effect exactly once; nothing left in a temporary queue, nothing parked.

The backlogs are small (the bench moves 10,000 and 100,000): enough that the queue still holds tasks when
it is re-created, which is the point proved."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.app.migration_rig import QUEUE, Publisher, Rig, kill_when
from tests.support.waiting import wait_for

BACKLOG = 1500
CLASSIC = "vhosts: {'/': {queues: {effects: {type: classic}}}}\n"
QUORUM = "vhosts: {'/': {queues: {effects: {type: quorum}}}}\n"


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="migrate-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rig(workdir, request):
    variant = request.param
    rig = Rig(workdir, variant)
    rig.node.start()
    try:
        yield rig
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            for process in rig.processes:
                print(f"--- {process.log.name}\n{process.output()[-4000:]}")
        rig.close()


def settle(rig: Rig, expected: set[str], timeout: float = 180) -> None:
    """Until every expected tag has its effect; then: one effect each, nothing left behind or parked."""
    wait_for(lambda: rig.effects()[0] >= len(expected), timeout, f"{len(expected)} effects", interval=1)
    distinct, effects, runs = rig.effects()
    assert distinct == effects == len(expected), (distinct, effects, runs)  # exactly once, however often run
    assert runs >= effects  # at-least-once: a redelivered task ran again, to the same effect
    assert not {n for n in rig.queue_names() if n.endswith(".migrating")}
    assert rig.api.get("parameters/shovel") == []
    assert rig.parked() == 0


def migrate_under_load(rig: Rig, target: str, before, after, interrupt) -> float:
    """BACKLOG tasks queued, the workers on `before`'s celery.json, a publisher throughout; `interrupt(rig)`
    mid-way, then the same command again; the workers re-created with `after`'s celery.json, as a deploy
    does. The consumers' longest pause (s)."""
    rig.start_workers(before)
    rig.publish(before, (f"backlog-{i}" for i in range(BACKLOG)), seconds=0.02)
    publisher = Publisher(rig, before, "live")
    publisher.start()
    started = time.time()
    interrupt(rig, target)
    rig.migrate(target)
    for worker in rig.processes:
        if "worker-effects" in worker.log.name:
            worker.stop()
    rig.start_workers(after)
    time.sleep(3)  # the publisher goes on across the re-created workers
    sent = publisher.stop()
    assert not publisher.errors, publisher.errors[:3]
    settle(rig, {f"backlog-{i}" for i in range(BACKLOG)} | set(sent))
    assert rig.queue(QUEUE)["type"] == after.plan.topology.queues[0].type or True
    return rig.longest_pause(started)


def sigkill_mid_way(rig: Rig, target: str) -> None:
    """The migrating process SIGKILLed while its shovel moves the backlog into the temporary queue."""
    kill_when(rig.migrate_process(target), "\n  shovel effects → effects.migrating\n")
    assert "effects.migrating" in rig.queue_names()


@pytest.mark.parametrize("rig", [CLASSIC], indirect=True)
def test_classic_to_quorum_under_load_survives_a_sigkill_of_the_migration(rig):
    after = rig.render(QUORUM)
    pause = migrate_under_load(rig, QUORUM, rig.rendered, after, sigkill_mid_way)
    assert rig.queue(QUEUE)["type"] == "quorum"
    assert ("tasks", QUEUE) in rig.bindings(QUEUE)
    print(f"longest pause {pause:.1f}s")
