"""The local stack end to end on the real Docker engine: healthy from nothing, the broker as the definition
says, a sync stored in PostgreSQL by the worker containers, and the faults: a killed worker container, a
crashed one (restart policy), a restarted broker, a TTL changed in place, the stack down and up again."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from tests.e2e.harness import PLAYERS, docker
from tests.support.live import expected_topology, live_topology, without_celerys_own
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def player(name: str) -> dict:
    return next(p for p in PLAYERS if p["game_name"] == name)


def stored(stack, p: dict) -> dict:
    ids = ",".join(f"'{m}'" for m in p["match_ids"])
    return {
        "matches": stack.count("matches_match", f"WHERE match_id IN ({ids})"),
        "timelines": stack.count(
            "matches_timeline t JOIN matches_match m ON t.match_id = m.id", f"WHERE m.match_id IN ({ids})"
        ),
        "participants": stack.count(
            "matches_participant x JOIN matches_match m ON x.match_id = m.id", f"WHERE m.match_id IN ({ids})"
        ),
    }


def assert_complete_once(stack, job_id: str, p: dict) -> None:
    job = stack.wait_job(job_id)
    n = len(p["match_ids"])
    assert (job["status"], job["matches_found"], job["matches_processed"], job["matches_failed"]) == (
        "complete",
        n,
        n,
        0,
    ), job
    counts = stored(stack, p)
    assert counts["matches"] == n and counts["timelines"] == n, counts
    assert counts["participants"] == 10 * n, counts  # the fixture's ten participants, once each


def mid_batch(stack, job_id: str, at_least: int = 2) -> None:
    """Until the job is under way: some matches processed, not all."""

    def under_way():
        job = stack.job(job_id)
        return at_least <= job["matches_processed"] < job["matches_found"]

    wait_for(under_way, 120, f"job {job_id} half done", interval=0.3)


def test_the_stack_comes_up_healthy_with_the_broker_as_defined(e2e_stack):
    stack = e2e_stack
    assert set(stack.local.health().values()) == {"healthy"}
    assert set(stack.local.health()) == {
        "rabbitmq",
        "postgres",
        "web",
        "beat",
        "worker-sync",
        "worker-matches",
        "worker-background",
    }
    definitions = json.loads((stack.local.out / "definitions.json").read_text())
    # the series the stack says (RABBITMQ_SERIES=4.0 lays stacks/overlays/rabbitmq-4.0.yaml over it)
    assert stack.management.get("overview")["rabbitmq_version"].startswith(stack.local.plan.broker.version + ".")
    assert without_celerys_own(live_topology(stack.management)) == expected_topology(definitions)
    environment = docker("exec", stack.container("rabbitmq"), "rabbitmq-diagnostics", "environment")
    assert re.search(r"\{vm_memory_high_watermark,0\.4\}", environment)
    assert re.search(r"\{consumer_timeout,1800000\}", environment)
    # published on loopback only
    for service in ("rabbitmq", "web"):
        bindings = docker("port", stack.container(service)).splitlines()
        assert bindings and all("127.0.0.1:" in line for line in bindings), bindings


def test_a_sync_is_stored_in_postgres_by_the_worker_containers(e2e_stack):
    p = player("Flow")
    job_id = e2e_stack.sync(p)
    assert_complete_once(e2e_stack, job_id, p)
    assert e2e_stack.sql(f"SELECT game_name FROM players_player WHERE puuid = '{p['puuid']}'") == ["Flow"]


def test_a_killed_worker_container_finishes_its_tasks_once_it_is_started_again(e2e_stack):
    """`docker kill` is a manual stop for Docker: the restart policy does not bring it back (checked here),
    the operator does; the tasks it held unacknowledged are redelivered to it."""
    stack, p = e2e_stack, player("Kill")
    job_id = stack.sync(p)
    mid_batch(stack, job_id)
    worker = stack.container("worker-matches")
    docker("kill", worker)
    assert docker("inspect", "-f", "{{.State.Running}}", worker) == "false"
    processed = stack.job(job_id)["matches_processed"]
    assert processed < len(p["match_ids"])
    docker("start", worker)
    assert_complete_once(stack, job_id, p)


def test_a_crashed_worker_is_restarted_by_its_policy_and_its_tasks_complete_once(e2e_stack):
    """SIGKILL to the container's main process from the host, as the OOM killer would: Docker's restart
    policy (unless-stopped) starts it again by itself."""
    stack, p = e2e_stack, player("Crash")
    worker = stack.container("worker-matches")
    restarts = int(docker("inspect", "-f", "{{.RestartCount}}", worker))
    job_id = stack.sync(p)
    mid_batch(stack, job_id)
    os.kill(int(docker("inspect", "-f", "{{.State.Pid}}", worker)), signal.SIGKILL)
    wait_for(
        lambda: int(docker("inspect", "-f", "{{.RestartCount}}", worker)) > restarts,
        60,
        "the restart policy restarting the worker",
        interval=1.0,
    )
    assert_complete_once(stack, job_id, p)


def test_a_broker_restart_mid_batch_loses_nothing_and_duplicates_nothing(e2e_stack):
    stack, p = e2e_stack, player("Restart")
    job_id = stack.sync(p)
    mid_batch(stack, job_id)
    broker = stack.container("rabbitmq")
    docker("restart", broker, timeout=180)
    assert_complete_once(stack, job_id, p)
    stack.local.wait_healthy(timeout=180, progress=lambda line: None)  # every worker reconnected by itself


def test_a_ttl_change_applies_in_place_and_data_survives_down_and_up(e2e_stack):
    stack = e2e_stack
    broker = stack.container("rabbitmq")
    started = docker("inspect", "-f", "{{.Id}} {{.State.StartedAt}}", broker)
    overlay = stack.local.overlays[0]
    overlay.write_text(overlay.read_text() + "\n# the change under test\n")
    ttl_overlay = stack.work / "ttl.yaml"
    ttl_overlay.write_text('vhosts: {"/": {queues: {player_sync: {ttl: 1h}}}}\n')
    stack.local.overlays = (*stack.local.overlays, ttl_overlay)
    stack.local.render()
    stack.local.up()
    stack.local.apply_topology()
    policy = wait_for(
        lambda: (lambda q: q if q.get("effective_policy_definition", {}).get("message-ttl") == 3600000 else None)(
            stack.management.get("queues/%2F/player_sync")
        ),
        30,
        "the new TTL in effect",
        interval=1.0,
    )
    assert policy["policy"] == "queue.player_sync"
    assert docker("inspect", "-f", "{{.Id}} {{.State.StartedAt}}", broker) == started  # not replaced, not restarted

    players_before = stack.count("players_player")
    docker("rm", "-f", stack.fake_riot)  # off the network, so `down` can remove it
    stack.local.down()  # volumes kept
    stack.local.up()
    stack.local.wait_healthy(progress=lambda line: None)
    assert stack.count("players_player") == players_before > 0
    assert stack.management.get("queues/%2F/player_sync")["arguments"] == {"x-queue-type": "quorum"}
