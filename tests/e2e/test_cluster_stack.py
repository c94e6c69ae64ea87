"""The local stack with `broker.nodes: 3` on the real Docker engine: three broker containers that form one
cluster, every quorum queue on all three, and the node leading the task queues crashed mid-batch (SIGKILL
to its container's main process from the host): the app fails over, the job completes once, and Docker's
restart policy brings the node back into the cluster."""

from __future__ import annotations

import os
import signal

import pytest
import requests

from tests.e2e.harness import PLAYERS, ImagesMissing, docker, running_stack
from tests.e2e.test_local_stack import assert_complete_once, mid_batch, player
from tests.support.rabbit_cluster import TASK_QUEUES
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]


@pytest.fixture(scope="module")
def cluster_stack():
    try:
        with running_stack(PLAYERS, {"timeline": 1.5}, project=f"rcc{os.getpid()}", nodes=3) as stack:
            yield stack
    except ImagesMissing as exc:
        raise pytest.UsageError(str(exc)) from None


def running(stack) -> set[str]:
    return {n["name"] for n in stack.management.get("nodes") if n.get("running")}


def members_online(stack) -> bool:
    return all(
        sorted(stack.management.get(f"queues/%2F/{q}").get("online", [])) == [f"rabbit@{n}" for n in NODES]
        for q in TASK_QUEUES
    )


def whole(stack) -> bool:
    """Three nodes running and every queue's members online; False while the first node's API is down."""
    try:
        return len(running(stack)) == 3 and members_online(stack)
    except requests.RequestException:
        return False


def test_three_broker_containers_form_one_cluster_with_every_queue_on_each(cluster_stack):
    stack = cluster_stack
    health = stack.local.health()
    assert {health[n] for n in NODES} == {"healthy"} and set(health.values()) == {"healthy"}
    assert running(stack) == {f"rabbit@{n}" for n in NODES}
    for name in TASK_QUEUES:
        queue = stack.management.get(f"queues/%2F/{name}")
        assert sorted(queue["members"]) == [f"rabbit@{n}" for n in NODES], name
    for node in NODES:  # each published on loopback, at its own ports
        bindings = docker("port", stack.container(node)).splitlines()
        assert bindings and all("127.0.0.1:" in line for line in bindings), bindings


def test_the_task_queues_leader_crashes_mid_batch_and_nothing_is_lost(cluster_stack):
    stack, p = cluster_stack, player("Kill")
    leader = stack.management.get("queues/%2F/match_processing")["leader"].split("@", 1)[1]
    container = stack.container(leader)
    restarts = int(docker("inspect", "-f", "{{.RestartCount}}", container))
    job_id = stack.sync(p)
    mid_batch(stack, job_id)
    os.kill(int(docker("inspect", "-f", "{{.State.Pid}}", container)), signal.SIGKILL)
    assert_complete_once(stack, job_id, p)
    wait_for(
        lambda: int(docker("inspect", "-f", "{{.RestartCount}}", container)) > restarts,
        120,
        "the restart policy restarting the node",
        interval=1.0,
    )
    wait_for(lambda: whole(stack), 180, "the node back in the cluster", interval=1.0)
