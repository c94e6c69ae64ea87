"""`render --monitoring`: thresholds from the definition, and files Prometheus' own promtool accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.cli.main import ExitStatus, main
from infra.definition.findings import format_finding
from infra.definition.load import load_definition, require
from infra.render import monitoring

# The queues of the tasks that call Riot: one per routing region (europe keeps the seed's names).
RIOT_QUEUES = {
    f"{queue}{region}"
    for queue in ("player_sync", "match_processing", "timeline_processing")
    for region in ("", "_americas", "_asia", "_sea")
}

SHIPPED = ["dev", "staging", "prod", "local"]


def _render(tmp_path: Path, stack: str, *extra: str) -> Path:
    out = tmp_path / stack
    status = main(
        [
            "render",
            "--stack",
            stack,
            "--out",
            str(out),
            "--secrets",
            str(tmp_path / "secrets.yaml"),
            "--monitoring",
            *extra,
        ]
    )
    assert status == ExitStatus.OK
    return out


def _overlay(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitoring.yaml"
    path.write_text(text)
    return path


def test_backlog_thresholds_default_share_of_max_length_and_overrides(tmp_path):
    overlay = _overlay(
        tmp_path, "monitoring:\n  queue_backlog: 50\n  backlog_ratio: 0.5\n  queue_backlogs: {recovery: 7}\n"
    )
    d = require(load_definition(stack="dev", overlays=(overlay,)))
    by_name = {q.name: q for q in monitoring.queue_alerts(d)}
    assert by_name["player_sync"].backlog == 500  # max_length 1000 × 0.5
    assert by_name["recovery"].backlog == 7  # its own
    assert by_name["dead_letters"].parking and not by_name["dead_letters"].consumed
    assert {q.name for q in by_name.values() if q.consumed} == {"default", "recovery", "maintenance", *RIOT_QUEUES}
    d = require(load_definition(stack="dev"))
    assert {q.name: q.backlog for q in monitoring.queue_alerts(d)}["default"] == 8000  # 10,000 × 0.8 default


def test_an_override_for_an_undeclared_queue_names_its_file_and_line(tmp_path):
    overlay = _overlay(tmp_path, "monitoring:\n  backlog_ratio: 1.5\n  queue_backlogs:\n    player_synk: 10\n")
    loaded = load_definition(stack="dev", overlays=(overlay,))
    assert [format_finding(f) for f in loaded.errors] == [
        f"{overlay}:2: monitoring.backlog_ratio: expected a fraction in (0, 1], got 1.5",
        f"{overlay}:4: monitoring.queue_backlogs.player_synk: no queue 'player_synk' is declared "
        f"(did you mean 'player_sync'?)",
    ]


@pytest.mark.parametrize("stack", SHIPPED)
def test_promtool_accepts_the_rendered_config_and_rules(tmp_path, stack):
    out = _render(tmp_path, stack)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert {n: modes[n] for n in ("prometheus.yml", "alerts.yml", "dashboard.json")} == {
        "prometheus.yml": 0o644,
        "alerts.yml": 0o644,
        "dashboard.json": 0o644,
    }
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make prometheus` installs Debian's prometheus"
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run([promtool, *args], cwd=out, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_the_task_asks_for_is_there_per_queue(tmp_path):
    out = _render(tmp_path, "prod")
    rules = [r for g in yaml.safe_load((out / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    by_alert: dict[str, set] = {}
    for rule in rules:
        by_alert.setdefault(rule["alert"], set()).add(rule["labels"].get("queue"))
    task_queues = {"default", "recovery", "maintenance", *RIOT_QUEUES}
    assert by_alert == {
        "RabbitMQQueueBacklog": task_queues,
        "RabbitMQNoConsumer": task_queues,
        "RabbitMQDeadLettersGrowing": {"dead_letters"},
        "RabbitMQDown": {None},
        "RabbitMQMemoryAlarm": {None},
        "RabbitMQDiskAlarm": {None},
        "RabbitMQUnackedStuck": {None},
    }
    backlog = next(r for r in rules if r["alert"] == "RabbitMQQueueBacklog" and r["labels"]["queue"] == "recovery")
    assert backlog["expr"] == 'rabbitmq_detailed_queue_messages_ready{vhost="/",queue="recovery"} > 80'
    assert backlog["for"] == "10m"
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    assert [(j["job_name"], j["metrics_path"], j.get("params")) for j in config["scrape_configs"]] == [
        ("rabbitmq", "/metrics", None),
        ("rabbitmq-queues", "/metrics/detailed", {"family": ["queue_coarse_metrics", "queue_consumer_count"]}),
    ]
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:15692"]
    board = json.loads((out / "dashboard.json").read_text())
    assert "player_sync" in board["panels"][0]["targets"][0]["expr"]


def test_monitoring_without_the_prometheus_plugin_is_refused(tmp_path, capsys):
    overlay = _overlay(tmp_path, "broker:\n  plugins: [rabbitmq_management]\n")
    status = main(
        [
            "render",
            "--stack",
            "dev",
            "--overlay",
            str(overlay),
            "--out",
            str(tmp_path / "out"),
            "--secrets",
            str(tmp_path / "s.yaml"),
            "--monitoring",
        ]
    )
    assert status == ExitStatus.INVALID and not (tmp_path / "out").exists()
    assert "rabbitmq_prometheus" in capsys.readouterr().err
