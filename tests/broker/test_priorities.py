"""Priorities and compression on a real node with real Celery workers, settings only from celery.json.

Priorities: 500 background tasks (priority 0, as recovery sends them) wait in a queue before its worker
starts; a task whose route carries priority 9 (what a user waits for), sent last, is among the first run.
On a classic queue (`x-max-priority`) on every series, and on a quorum queue on 4.x (two levels, nothing
declared); on 3.x `validate` refuses the quorum one (tests/data/invalid/quorum-priority-on-3.yaml).
Compression: a large payload's size on the broker (management API `message_bytes`) with and without the
route's zlib, and the compressed task runs with its payload intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
from celery import Celery

from config.topology import celery_settings
from tests.app.deployment import VENV_BIN, Process, celery_argv
from tests.support.rabbit_series import REPO, current
from tests.support.stacks import booted
from tests.support.waiting import wait_for

DEFINITION = Path("tests/data/valid/priorities.yaml")
MATCH = Path("app/sample_riot/data/match.json")
BACKGROUND = 500
FIRST_FEW = 5
# Quorum queues honour priorities from RabbitMQ 4.0 on.
QUEUE_TYPES = ["classic"] + (["quorum"] if current().name.startswith("4.") else [])


@pytest.fixture(scope="module", params=QUEUE_TYPES)
def probe(request):
    work = Path(tempfile.mkdtemp(prefix="priorities-"))
    overlay = work / "queue-type.yaml"
    overlay.write_text(f"vhosts:\n  probe:\n    queues:\n      work: {{type: {request.param}}}\n")
    with booted(file=DEFINITION, overlays=(overlay,)) as (node, rendered):
        yield node, rendered, work


def url(node, rendered, user: str) -> str:
    return f"amqp://{user}:{quote(rendered.password(user), safe='')}@127.0.0.1:{node.ports.amqp}/probe"


def client(node, rendered, declarations: dict) -> Celery:
    """A publisher as the web service is: web's user, the settings celery.json gives, confirmed publishes."""
    app = Celery("probe-client", broker=url(node, rendered, "web"))
    app.conf.update(celery_settings(declarations), broker_transport_options={"confirm_publish": True})
    return app


def start_worker(node, rendered, work: Path, pool: str, log: Path) -> Process:
    spec = next(w for w in rendered.plan.workers if w.name == pool)
    argv = celery_argv(spec.command)
    argv[argv.index("config")] = "tests.support.celery_probe"  # the probe's tasks, not the Django app's
    env = {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{REPO}:{REPO / 'app'}",
        "CELERY_BROKER_URL": url(node, rendered, f"worker-{pool}"),
        "CELERY_TOPOLOGY_FILE": str(rendered.config_dir / "celery.json"),
        "PROBE_LOG": str(log),
    }
    return Process(argv, env, work / f"worker-{pool}.log", cwd=REPO)


def ran(log: Path) -> list[dict]:
    """What the worker recorded so far: whole lines only (one may be half written)."""
    return [json.loads(line) for line in log.read_text().split("\n")[:-1]] if log.exists() else []


def match_history(count: int) -> list:
    """A large task payload as the app has them: `count` matches of one player (the fixture's document, its
    every number drawn anew per match, so no two are alike and zlib's 32 kB window cannot just repeat one)."""
    rng = random.Random(7)

    def vary(value):
        if isinstance(value, dict):
            return {k: vary(v) for k, v in value.items()}
        if isinstance(value, list):
            return [vary(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool):
            return rng.randint(0, max(10, value * 2))
        return value

    match = json.loads(MATCH.read_text())
    return [{**vary(match), "metadata": {**match["metadata"], "matchId": f"EUW1_{7000 + i}"}} for i in range(count)]


def test_a_routed_high_priority_task_runs_before_queued_background_work(probe):
    node, rendered, work = probe
    app = client(node, rendered, rendered.celery)
    api = node.api("admin", rendered.password("admin"))
    for i in range(BACKGROUND):
        app.send_task("probe.background", (f"background-{i}",), priority=0)  # as recovery sends its work
    app.send_task("probe.urgent", ("urgent",))  # the route's priority 9, as the web view sends a sync
    queue = api.get_when("queues/probe/work", lambda q: q.get("messages") == BACKGROUND + 1, timeout=30)
    assert queue["messages"] == BACKGROUND + 1
    log = work / "ran-priorities.jsonl"
    worker = start_worker(node, rendered, work, "work", log)
    try:
        wait_for(lambda: len(ran(log)) >= 20 or not worker.alive(), 90, "the worker ran 20 tasks", interval=0.2)
    finally:
        worker.stop()
    order = [entry["label"] for entry in ran(log)]
    assert len(order) >= 20, worker.output()[-3000:]
    assert "urgent" in order[:FIRST_FEW], order[:20]
    assert order.index("urgent") < order.index("background-3")  # and not just by luck of a short queue


def test_a_compressed_payload_is_smaller_on_the_broker_and_the_task_runs(probe):
    node, rendered, work = probe
    payload = json.dumps(match_history(60))
    api = node.api("admin", rendered.password("admin"))
    plain_routes = {
        task: {k: v for k, v in route.items() if k != "compression"}
        for task, route in rendered.celery["task_routes"].items()
    }
    sizes = {}
    for label, declarations in (("plain", {**rendered.celery, "task_routes": plain_routes}), ("zlib", rendered.celery)):
        client(node, rendered, declarations).send_task("probe.bulk", (payload,))
        queue = api.get_when(
            "queues/probe/bulk", lambda q: q.get("messages") == 1 and q.get("message_bytes"), timeout=30
        )
        sizes[label] = queue["message_bytes"]
        if label == "plain":
            node.ctl("rabbitmqctl", "purge_queue", "-p", "probe", "bulk")
            api.get_when("queues/probe/bulk", lambda q: q.get("messages") == 0, timeout=30)
    ratio = sizes["plain"] / sizes["zlib"]
    print(
        f"\nRabbitMQ {current().name}: payload {len(payload)} characters, "
        f"message_bytes plain {sizes['plain']}, zlib {sizes['zlib']}: {ratio:.1f}x smaller"
    )
    assert sizes["plain"] >= len(payload) and ratio > 2, sizes

    log = work / "ran-bulk.jsonl"
    worker = start_worker(node, rendered, work, "bulk", log)
    try:
        wait_for(lambda: ran(log) or not worker.alive(), 90, "the bulk task ran", interval=0.2)
    finally:
        worker.stop()
    assert ran(log) == [{"sha256": hashlib.sha256(payload.encode()).hexdigest(), "length": len(payload)}], (
        worker.output()[-3000:]
    )
