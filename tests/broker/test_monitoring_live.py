"""The rendered monitoring files against a real node and a real Prometheus (Debian's 2.42), on loopback.

The endpoints scraped are read from the rendered prometheus.yml itself, so a wrong path or family would
fail here, not in production. Every wait is bounded; nothing asserts on how long anything took.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pika
import pytest
import requests
import yaml

from infra.cli.main import ExitStatus, main
from tests.support.prometheus import running_prometheus
from tests.support.stacks import TEST_SECRETS, booted
from tests.support.waiting import wait_for

WAIT_S = 45
METRIC = re.compile(r"\b(rabbitmq_[a-z0-9_]+)\b")
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s")


@pytest.fixture(scope="module")
def stack():
    with booted(stack="dev") as (node, rendered):
        work = Path(tempfile.mkdtemp(prefix="monitoring-"))
        overlay = work / "overlay.yaml"
        # The node's ports; scrape each second and alert on `recovery` from 2 ready messages, to see rules fire.
        overlay.write_text(
            node.ports.overlay() + "monitoring:\n  scrape_interval: 1s\n  queue_backlogs: {recovery: 1}\n"
        )
        secrets = work / "secrets.yaml"
        secrets.write_text(yaml.safe_dump(TEST_SECRETS))
        assert (
            main(
                [
                    "render",
                    "--stack",
                    "dev",
                    "--overlay",
                    str(overlay),
                    "--out",
                    str(work / "out"),
                    "--secrets",
                    str(secrets),
                    "--monitoring",
                ]
            )
            == ExitStatus.OK
        )
        try:
            yield node, rendered, work / "out"
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _scrape(job: dict) -> str:
    target = job["static_configs"][0]["targets"][0]
    response = requests.get(f"http://{target}{job['metrics_path']}", params=job.get("params", {}), timeout=30)
    response.raise_for_status()
    return response.text


def _series(text: str) -> set[str]:
    """`name{labels}` of every sample, labels as the exposition writes them."""
    return {m.group(1) + (m.group(2) or "") for line in text.splitlines() if (m := SERIES.match(line))}


def _rules(out: Path) -> list[dict]:
    return [r for g in yaml.safe_load((out / "alerts.yml").read_text())["groups"] for r in g["rules"]]


def test_every_metric_the_alert_rules_use_is_exposed_with_per_queue_series(stack):
    node, rendered, out = stack
    jobs = yaml.safe_load((out / "prometheus.yml").read_text())["scrape_configs"]
    queues = {(q.vhost, q.name) for q in rendered.plan.topology.queues}
    # Per-queue series appear with the node's first statistics emission after boot.
    wanted = {f'rabbitmq_detailed_queue_messages_ready{{vhost="{v}",queue="{q}"}}' for v, q in queues}
    series = wait_for(
        lambda: (s := set().union(*(_series(_scrape(j)) for j in jobs))) >= wanted and s,
        WAIT_S,
        "per-queue series for every queue of the stack",
        interval=0.5,
    )
    names = {s.split("{")[0] for s in series}
    used = {name for rule in _rules(out) for name in METRIC.findall(rule["expr"])}
    assert used and used <= names, used - names
    for rule in _rules(out):  # a per-queue rule's own series, with exactly its labels
        if "queue" in rule["labels"]:
            for name in METRIC.findall(rule["expr"]):
                label = f'{{vhost="{rule["labels"]["vhost"]}",queue="{rule["labels"]["queue"]}"}}'
                assert name + label in series, (rule["alert"], name + label)


@pytest.fixture
def prometheus(stack, tmp_path):
    with running_prometheus(stack[2] / "prometheus.yml", tmp_path, WAIT_S) as base:
        yield base


def _get(base: str, path: str, **params):
    try:
        response = requests.get(base + path, params=params, timeout=10)
    except requests.ConnectionError:
        return None
    return response.json() if response.ok and path.startswith("/api") else (response.ok or None)


def test_a_real_prometheus_scrapes_the_node_loads_the_rules_and_they_fire(stack, prometheus):
    node, rendered, out = stack

    def up():
        return {
            r["metric"]["job"]: r["value"][1] for r in _get(prometheus, "/api/v1/query", query="up")["data"]["result"]
        }

    wait_for(
        lambda: up() == {"rabbitmq": "1", "rabbitmq-queues": "1"}, WAIT_S, "both jobs scraped and up", interval=0.5
    )

    def rules():
        groups = _get(prometheus, "/api/v1/rules")["data"]["groups"]
        return [r for g in groups for r in g["rules"]]

    wait_for(
        lambda: (rs := rules()) and all(r["health"] == "ok" for r in rs),
        WAIT_S,
        "every rule evaluated, no error",
        interval=0.5,
    )
    assert len(rules()) == len(_rules(out))

    # Two tasks waiting in `recovery` (threshold 1) and no worker anywhere: both rules hold on real data.
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", node.ports.amqp, "/", pika.PlainCredentials("web", rendered.password("web"))
        )
    )
    for _ in range(2):
        connection.channel().basic_publish("tasks", "recovery", b"{}")
    connection.close()

    def firing():
        alerts = _get(prometheus, "/api/v1/alerts")["data"]["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("queue")) for a in alerts if a["state"] == "pending"}

    seen = wait_for(
        lambda: (s := firing()) >= {("RabbitMQQueueBacklog", "recovery"), ("RabbitMQNoConsumer", "player_sync")} and s,
        WAIT_S,
        "backlog and no-consumer alerts pending",
        interval=0.5,
    )
    assert ("RabbitMQQueueBacklog", "player_sync") not in seen  # empty queue, threshold 800
    assert not {a for a in seen if a[0] in ("RabbitMQDown", "RabbitMQMemoryAlarm", "RabbitMQDiskAlarm")}
