"""Settings come from the environment and celery.json only: production refuses to start without its
secrets; queues, routes, rate limits and the derived limits come from the rendered topology."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from config import topology
from config.celery_app import app as celery_app
from infra.definition.load import load_definition, require
from infra.plan.plan import celery_declarations

APP_DIR = Path(__file__).resolve().parents[3] / "app"
GOLDEN = Path("tests/golden")


def run_django(env: dict, code: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=APP_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_without_a_secret_key_is_improperly_configured():
    result = run_django(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_ALLOWED_HOSTS": "x",
            "CELERY_TOPOLOGY_FILE": str(GOLDEN.resolve() / "dev" / "celery.json"),
        },
        "",
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_reads_everything_from_the_environment(tmp_path):
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "s3cret",
        "DJANGO_ALLOWED_HOSTS": "api.example.org, web",
        "DJANGO_DATA_DIR": str(tmp_path),
        "CELERY_BROKER_URL": "amqp://app:pw@rabbitmq:5672//",
        "RIOT_API_KEY": "RGAPI-x",
        "CELERY_TOPOLOGY_FILE": str(GOLDEN.resolve() / "prod" / "celery.json"),
    }
    code = (
        "from django.conf import settings as s; from config.celery_app import app; import json; "
        "print(json.dumps([s.SECRET_KEY, s.ALLOWED_HOSTS, str(s.DATABASES['default']['NAME']), s.DEBUG, "
        "app.conf.broker_url, s.RIOT_API_KEY, s.RIOT_API_BASE_URL, app.conf.task_default_queue]))"
    )
    result = run_django(env, code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "s3cret",
        ["api.example.org", "web"],
        str(tmp_path / "db.sqlite3"),
        False,
        "amqp://app:pw@rabbitmq:5672//",
        "RGAPI-x",
        "https://{routing}.api.riotgames.com",
        "default",
    ]
    pg = run_django(
        {**env, "DATABASE_URL": "postgres://u:p@db:5432/lol"},
        "from django.conf import settings as s; d = s.DATABASES['default']; "
        "print(d['ENGINE'], d['NAME'], d['HOST'], d['PORT'])",
    )
    assert pg.stdout.split() == ["django.db.backends.postgresql", "lol", "db", "5432"], pg.stderr


def test_missing_topology_file_is_improperly_configured(tmp_path):
    result = run_django(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": "s",
            "DJANGO_ALLOWED_HOSTS": "x",
            "CELERY_TOPOLOGY_FILE": str(tmp_path / "none.json"),
        },
        "",
    )
    assert result.returncode != 0 and "CELERY_TOPOLOGY_FILE" in result.stderr


def test_queues_routes_and_rate_limits_come_from_celery_json():
    declarations = json.loads((GOLDEN / "dev" / "celery.json").read_text())
    conf = celery_app.conf
    assert [q.name for q in conf.task_queues] == [d["name"] for d in declarations["task_queues"]]
    assert all(q.queue_arguments == {"x-queue-type": "quorum"} for q in conf.task_queues)
    assert "dead_letters" not in {q.name for q in conf.task_queues}  # nobody consumes the parking queue
    import matches.tasks  # noqa: E401,F401 (registered: the routes read the tasks' regions)

    regional, routes = conf.task_routes
    assert routes == declarations["task_routes"] and regional.routes == declarations["task_regional_routes"]
    assert conf.task_annotations == declarations["task_annotations"]
    assert celery_app.tasks["players.tasks.recover_stale_jobs"].rate_limit == "5/m"
    assert celery_app.tasks["matches.tasks.process_match"].rate_limit is None  # the Riot rate limiter's work
    assert conf.task_create_missing_queues is False
    route = celery_app.amqp.router.route
    assert route({}, "players.tasks.recover_stale_jobs")["queue"].name == "recovery"
    # the tasks that call Riot go to the queue of their routing region, europe's to the default one
    assert route({}, "matches.tasks.process_timeline", args=("NA1_1",))["queue"].name == "timeline_processing_americas"
    assert route({}, "matches.tasks.process_match", args=("OC1_1", None))["queue"].name == "match_processing_sea"
    for _ in range(2):  # the second time too: Celery's router takes the route apart
        assert route({}, "matches.tasks.process_match", args=("EUW1_1",))["queue"].name == "match_processing"
    assert route({}, "players.tasks.sync_player_data", args=("a", "b", "kr"))["queue"].name == "player_sync_asia"
    assert (
        route({}, "players.tasks.sync_player_data", kwargs={"game_name": "a", "tag_line": "b", "region": "br1"})[
            "queue"
        ].name
        == "player_sync_americas"
    )


def test_time_limits_stay_below_the_consumer_timeout_and_heartbeat_follows_the_broker():
    assert celery_app.conf.task_time_limit == 1440 and celery_app.conf.task_soft_time_limit == 1260  # 30 min
    assert celery_app.conf.broker_heartbeat == 60
    for timeout_ms in (2000, 5000, 12_000, 60_000, 1_800_000, 3_600_000):
        soft, hard = topology.time_limits(timeout_ms)
        assert 0 < soft <= hard < timeout_ms / 1000
        if timeout_ms >= 5000:
            assert soft < hard


def test_reliability_settings():
    conf = celery_app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.task_acks_on_failure is False and conf.task_acks_on_timeout is False
    assert conf.task_default_delivery_mode == "persistent"
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS == {}  # test settings: the memory transport
    assert conf.broker_connection_retry_on_startup and conf.worker_detect_quorum_queues


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_shipped_stack_gives_valid_settings(stack):
    declarations = celery_declarations(require(load_definition(stack=stack)))
    settings_ = topology.celery_settings(declarations)
    assert settings_["task_time_limit"] * 1000 < declarations["broker_consumer_timeout_ms"]
    assert topology.dead_letter_queue(declarations)["name"] == "dead_letters"
    assert topology.queue_declaration(declarations, "match_processing")["routing_key"] == "match_processing"


def test_quorum_settings_follow_the_queue_type():
    declarations = json.loads((GOLDEN / "dev" / "celery.json").read_text())
    quorum = topology.celery_settings(declarations)
    assert quorum["worker_detect_quorum_queues"] is True
    assert quorum["broker_native_delayed_delivery_queue_type"] == "quorum"
    for queue in declarations["task_queues"]:
        queue["queue_arguments"] = {"x-queue-type": "classic"}
    assert "broker_native_delayed_delivery_queue_type" not in topology.celery_settings(declarations)


def test_compression_and_priorities_come_from_celery_json():
    declarations = celery_declarations(require(load_definition(file="tests/data/valid/priorities.yaml")))
    settings_ = topology.celery_settings(declarations)
    assert "task_compression" not in settings_  # no global compression: only the bulk route's
    _, routes = settings_["task_routes"]  # (the regional router, the task → queue routes)
    assert routes["probe.bulk"]["compression"] == "zlib"
    assert routes["probe.urgent"]["priority"] == 9
    work = next(q for q in settings_["task_queues"] if q.name == "work")
    assert work.queue_arguments == {"x-queue-type": "classic", "x-max-priority": 9}
    assert topology.celery_settings({**declarations, "task_compression": "bzip2"})["task_compression"] == "bzip2"
