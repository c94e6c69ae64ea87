"""Monitoring files from the plan: Prometheus scrape config, alert rules and a Grafana dashboard.

Pure: definition and broker plan in, documents (dicts) out; `render --monitoring` writes them. Per-queue
series come from the prometheus plugin's `/metrics/detailed` endpoint (RabbitMQ 3.10+), asked only for
the two queue families the rules and the dashboard use: `/metrics` alone aggregates queues into one series
unless `prometheus.return_per_object_metrics` is on, and `/metrics/per-object` returns every metric of
every object, which is heavy on a broker with many queues.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import yaml

from infra.definition.model import StackDefinition
from infra.plan.plan import Plan

NODE_JOB, QUEUE_JOB = "rabbitmq", "rabbitmq-queues"
QUEUE_FAMILIES = ("queue_coarse_metrics", "queue_consumer_count")
# Metric names the rules use, as the plugin exposes them (checked against a real node in the tests).
READY, UNACKED, CONSUMERS, MESSAGES = (
    f"rabbitmq_detailed_queue_{m}" for m in ("messages_ready", "messages_unacked", "consumers", "messages")
)
MEMORY_ALARM, DISK_ALARM = "rabbitmq_alarms_memory_used_watermark", "rabbitmq_alarms_free_disk_space_watermark"


@dataclass(frozen=True)
class QueueAlerts:
    vhost: str
    name: str
    backlog: int  # ready messages above which RabbitMQQueueBacklog fires
    consumed: bool  # a worker pool consumes it: no consumer is an outage
    parking: bool  # holds dead letters: growth means tasks are failing


def queue_alerts(d: StackDefinition) -> list[QueueAlerts]:
    """Each queue's thresholds: its own from `queue_backlogs`, else a share of its max length, else the
    stack-wide default. Consumption is judged in the Celery vhost, where the pools are."""
    m = d.monitoring
    consumed = {q for pool in d.celery.workers.values() for q in pool.queues}
    out = []
    for vname in sorted(d.vhosts):
        for qname, q in sorted(d.vhosts[vname].queues.items()):
            if qname in m.queue_backlogs:
                backlog = int(m.queue_backlogs[qname])
            elif q.max_length is not None:
                backlog = max(1, math.floor(int(q.max_length) * m.backlog_ratio))
            else:
                backlog = int(m.queue_backlog)
            out.append(QueueAlerts(vname, qname, backlog, vname == d.celery.vhost and qname in consumed, q.parking))
    return out


def _scrape_host(plan: Plan) -> str:
    # Prometheus on the broker's host reaches the published port; a wildcard bind is reached on loopback.
    ip = plan.broker.publish_ip
    return "127.0.0.1" if ip in ("0.0.0.0", "::") else (f"[{ip}]" if ":" in ip else ip)


def _scheme(plan: Plan) -> dict:
    """With the plain listeners off, the Prometheus endpoint is HTTPS only: verify it with the stack's CA,
    rendered beside prometheus.yml (Prometheus reads relative paths from the config file's directory)."""
    if plan.broker.plain:
        return {}
    return {"scheme": "https", "tls_config": {"ca_file": "tls/ca.pem"}}


def prometheus_config(d: StackDefinition, plan: Plan) -> dict:
    target = f"{_scrape_host(plan)}:{plan.broker.prometheus_port}"

    def labels() -> dict:
        return {"environment": d.environment}  # one dict each: no YAML anchors in the output

    interval = str(d.monitoring.scrape_interval)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {
                "job_name": NODE_JOB,
                "metrics_path": "/metrics",
                **_scheme(plan),
                "static_configs": [{"targets": [target], "labels": labels()}],
            },
            {
                "job_name": QUEUE_JOB,
                "metrics_path": "/metrics/detailed",
                **_scheme(plan),
                "params": {"family": list(QUEUE_FAMILIES)},
                "static_configs": [{"targets": [target], "labels": labels()}],
            },
        ],
    }


def _selector(vhost: str, queue: str) -> str:
    return "{vhost=%s,queue=%s}" % (json.dumps(vhost), json.dumps(queue))


def _rule(name: str, expr: str, duration, severity: str, summary: str, description: str, **labels) -> dict:
    rule: dict = {"alert": name, "expr": expr}
    if duration:
        rule["for"] = str(duration)
    rule["labels"] = {"severity": severity, **labels}  # per-queue rules carry their queue: no two alike
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def alert_rules(d: StackDefinition) -> dict:
    m = d.monitoring
    queues = queue_alerts(d)
    per_queue = []
    for q in queues:
        at, which = _selector(q.vhost, q.name), {"vhost": q.vhost, "queue": q.name}
        if q.parking:  # growth is the signal here; its size is bounded by max_length_bytes
            per_queue.append(
                _rule(
                    "RabbitMQDeadLettersGrowing",
                    f"delta({MESSAGES}{at}[{m.dead_letters_window}]) > 0",
                    None,
                    "warning",
                    f"Dead letters are piling up in {q.name}",
                    f"Tasks expired, were refused or hit their delivery limit: {{{{ $value }}}} more in "
                    f"{q.vhost}/{q.name} within {m.dead_letters_window}. Inspect with `manage.py dead_letters list`.",
                    **which,
                )
            )
            continue
        per_queue.append(
            _rule(
                "RabbitMQQueueBacklog",
                f"{READY}{at} > {q.backlog}",
                m.backlog_for,
                "warning",
                f"{q.name} holds more than {q.backlog} ready messages",
                f"{{{{ $value }}}} ready messages in {q.vhost}/{q.name} for {m.backlog_for}: workers do not keep up.",
                **which,
            )
        )
        if q.consumed:
            per_queue.append(
                _rule(
                    "RabbitMQNoConsumer",
                    f"{CONSUMERS}{at} == 0",
                    m.no_consumer_for,
                    "critical",
                    f"No worker consumes {q.name}",
                    f"No consumer on {q.vhost}/{q.name} for {m.no_consumer_for}: its worker pool is down, "
                    f"tasks routed there wait.",
                    **which,
                )
            )
    node = [
        _rule(
            "RabbitMQDown",
            f'up{{job=~"{NODE_JOB}|{QUEUE_JOB}"}} == 0',
            m.node_down_for,
            "critical",
            "RabbitMQ metrics cannot be scraped",
            f"Scraping {{{{ $labels.instance }}}} ({{{{ $labels.job }}}}) has failed for {m.node_down_for}: "
            f"the node or its prometheus plugin is down.",
        ),
        _rule(
            "RabbitMQMemoryAlarm",
            f"{MEMORY_ALARM} == 1",
            None,
            "critical",
            "RabbitMQ memory alarm: publishers are blocked",
            "The node is above its memory high watermark and blocks every publishing connection.",
        ),
        _rule(
            "RabbitMQDiskAlarm",
            f"{DISK_ALARM} == 1",
            None,
            "critical",
            "RabbitMQ disk alarm: publishers are blocked",
            "Free disk is below disk_free_limit; the node blocks every publishing connection.",
        ),
        _rule(
            "RabbitMQUnackedStuck",
            f"{UNACKED} > 0 and changes({UNACKED}[{m.unacked_stuck_for}]) == 0",
            m.unacked_stuck_for,
            "warning",
            "Unacknowledged messages are stuck in {{ $labels.queue }}",
            f"{{{{ $value }}}} deliveries unacknowledged and unchanged for {m.unacked_stuck_for}: a worker "
            f"hangs on its tasks (the broker requeues them at consumer_timeout).",
        ),
    ]
    return {
        "groups": [
            {"name": f"rabbitmq-{d.environment}-node", "rules": node},
            {"name": f"rabbitmq-{d.environment}-queues", "rules": per_queue},
        ]
    }


def _panel(pid: int, title: str, expr: str, legend: str, y: int, x: int = 0, kind: str = "timeseries") -> dict:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "targets": [{"refId": "A", "expr": expr, "legendFormat": legend}],
    }


def dashboard(d: StackDefinition) -> dict:
    names = "|".join(re.escape(q.name) for q in queue_alerts(d))
    only = f'{{queue=~"{names}"}}'
    panels = [
        _panel(1, "Ready messages", f"{READY}{only}", "{{vhost}}/{{queue}}", 0),
        _panel(2, "Unacknowledged messages", f"{UNACKED}{only}", "{{vhost}}/{{queue}}", 0, 12),
        _panel(3, "Consumers", f"{CONSUMERS}{only}", "{{vhost}}/{{queue}}", 8),
        _panel(4, "Alarms (1 = publishers blocked)", f"{MEMORY_ALARM} or {DISK_ALARM}", "{{__name__}}", 8, 12),
        _panel(5, "Scrape up", f'up{{job=~"{NODE_JOB}|{QUEUE_JOB}"}}', "{{job}}", 16, 0, "stat"),
    ]
    return {
        "title": f"RabbitMQ queues ({d.environment})",
        "uid": f"rabbitmq-celery-{d.environment}",
        "schemaVersion": 39,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["rabbitmq", "celery", d.environment],
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": panels,
    }


def monitoring_files(d: StackDefinition, plan: Plan) -> dict[str, str]:
    """File name → content, for every file in render.MONITORING_FILES. No credential: the prometheus
    endpoint takes none."""

    def dump(data) -> str:
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120)

    return {
        "prometheus.yml": dump(prometheus_config(d, plan)),
        "alerts.yml": dump(alert_rules(d)),
        "dashboard.json": json.dumps(dashboard(d), indent=2) + "\n",
    }
