"""`manage.py dead_letters`: what it reads from a parked Celery message, and its arguments."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from matches.management.commands.dead_letters import BROKER_HEADERS, describe


def parked(headers: dict, body=None) -> SimpleNamespace:
    return SimpleNamespace(
        properties={"application_headers": headers, "content_type": "application/json"},
        body=json.dumps(body if body is not None else [[], {}, {}]).encode(),
    )


def test_describe_reads_task_arguments_and_the_last_death():
    message = parked(
        {
            "task": "matches.tasks.process_match",
            "id": "abc",
            "argsrepr": "['EUW1_1', 'job']",
            "kwargsrepr": "{}",
            # most recent death first, as RabbitMQ keeps them; the delayed-delivery hops come after
            "x-death": [
                {"queue": "match_processing", "reason": "rejected", "count": 1, "exchange": "tasks"},
                {"queue": "celery_delayed_0", "reason": "expired", "count": 3},
            ],
        }
    )
    assert describe(message) == {
        "task": "matches.tasks.process_match",
        "id": "abc",
        "args": "['EUW1_1', 'job']",
        "kwargs": "{}",
        "queue": "match_processing",
        "reason": "rejected",
        "count": 1,
        "time": "",
    }


def test_describe_falls_back_to_the_body_and_first_death_headers():
    message = parked(
        {
            "task": b"players.tasks.sync_player_data",
            "id": "x",
            "x-first-death-queue": "player_sync",
            "x-first-death-reason": "delivery_limit",
        },
        [["Caps", "EUW", "euw1"], {"job_id": "j"}, {}],
    )
    info = describe(message)
    assert (info["task"], info["args"], info["kwargs"], info["queue"], info["reason"]) == (
        "players.tasks.sync_player_data",
        "['Caps', 'EUW', 'euw1']",
        "{'job_id': 'j'}",
        "player_sync",
        "delivery_limit",
    )


def test_a_replayed_message_drops_the_brokers_death_headers():
    assert {"x-death", "x-delivery-count", "x-first-death-queue"} <= BROKER_HEADERS
    assert "task" not in BROKER_HEADERS and "id" not in BROKER_HEADERS


def test_arguments_are_checked_before_connecting():
    with pytest.raises(CommandError, match="not a task queue"):
        call_command("dead_letters", "list", "--queue", "dead_letters")
    with pytest.raises(CommandError, match="--limit"):
        call_command("dead_letters", "replay", "--limit", "0")
