"""A 3-node cluster stack deployed for real (`python -m infra deploy`, the engine and the plugins `make pulumi`
built, the local images): three containers that form one cluster, every quorum queue with a member on each node,
a sync stored through it, and `pulumi destroy` leaving no container or network."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import requests

from tests.pulumi.project import (
    assert_destroyed,
    assert_every_container_healthy,
    deployed,
    management,
    new_project,
)

# The first test waits for the stack's deploy from nothing, on a shared 2-core machine.
pytestmark = [pytest.mark.pulumi, pytest.mark.timeout(2400)]

NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]


@pytest.fixture(scope="module")
def cluster_stack():
    project = new_project(Path(tempfile.mkdtemp(prefix="pulumi-cluster-")), nodes=3)
    project.edit_stack({"broker": {"nodes": 3}})
    yield from deployed(project)


def test_the_cluster_stack_comes_up_as_one_cluster_of_three(cluster_stack):
    project = cluster_stack
    assert_every_container_healthy(project, NODES)
    running = {n["name"] for n in management(project, "nodes") if n.get("running")}
    assert running == {f"rabbit@{n}" for n in NODES}


def test_every_quorum_queue_has_its_three_members(cluster_stack):
    project = cluster_stack
    quorum = [q for q in management(project, "queues") if q.get("type") == "quorum"]
    names = {q["name"] for q in quorum}
    assert {"player_sync", "match_processing", "timeline_processing", "default"} <= names, names
    for queue in quorum:
        detail = management(project, f"queues/{requests.utils.quote(queue['vhost'], safe='')}/{queue['name']}")
        assert sorted(detail["members"]) == [f"rabbit@{n}" for n in NODES], (queue["name"], detail["members"])


def test_a_sync_through_the_cluster_is_stored(cluster_stack):
    job = cluster_stack.sync_sample_player()
    assert job["status"] == "complete", job


def test_destroy_of_the_cluster_stack_leaves_no_container_or_network(cluster_stack):
    assert_destroyed(cluster_stack)
