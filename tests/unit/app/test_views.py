"""The JSON API and /healthz, with eager tasks against the fake Riot API."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.test import Client

from players.models import SyncJob


@pytest.fixture
def client(db):
    return Client()


def post_sync(client, payload):
    return client.post("/api/players/sync", data=json.dumps(payload), content_type="application/json")


def test_sync_answers_202_with_a_job_that_reports_progress(client, riot):
    riot.add_player("Chovy", "KR1", "puuid-chovy", ["KR_7000000001", "KR_7000000002"])
    response = post_sync(client, {"game_name": "Chovy", "tag_line": "KR1", "region": "kr"})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    job = client.get(f"/api/jobs/{job_id}").json()
    assert (job["status"], job["matches_found"], job["matches_processed"], job["matches_failed"]) == (
        "complete",
        2,
        2,
        0,
    )
    player = client.get("/api/players/kr/Chovy/KR1").json()
    assert [m["match_id"] for m in player["matches"]] and player["puuid"] == "puuid-chovy"
    assert {m["match_id"] for m in player["matches"]} == {"KR_7000000001", "KR_7000000002"}
    first = player["matches"][0]
    assert first["player"]["puuid"] == "puuid-chovy" and len(first["participants"]) == 10
    assert first["timeline"] == {"frame_interval_ms": 60000, "frames": 3, "events": 5}
    assert client.get("/api/players/KR/chovy/kr1").status_code == 200  # region and Riot ID case-insensitive


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"tag_line": "KR1", "region": "kr"}, "game_name"),
        ({"game_name": "ab", "tag_line": "KR1", "region": "kr"}, "game_name"),
        ({"game_name": "Chovy", "tag_line": "K#1", "region": "kr"}, "tag_line"),
        ({"game_name": "Chovy", "tag_line": "KR1", "region": "mars"}, "region"),
        ({"game_name": "Chovy", "tag_line": 7, "region": "kr"}, "tag_line"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client, payload, field):
    response = post_sync(client, payload)
    assert response.status_code == 400
    assert response.json()["field"] == field and field in response.json()["error"]
    assert SyncJob.objects.count() == 0


def test_a_body_that_is_not_a_json_object_is_a_400(client):
    for body in (b"not json", b"[1, 2]"):
        response = client.post("/api/players/sync", data=body, content_type="application/json")
        assert response.status_code == 400 and "JSON object" in response.json()["error"]
    assert client.get("/api/players/sync").status_code == 405


def test_unknown_job_and_player_are_404(client):
    assert client.get("/api/jobs/8f0c1e9a-8d55-4c43-9a4c-3e0f8f6c1d2e").status_code == 404
    assert client.get("/api/jobs/not-a-uuid").status_code == 404
    response = client.get("/api/players/euw1/Nobody/EUW")
    assert response.status_code == 404 and "Nobody#EUW" in response.json()["error"]
    assert client.get("/api/players/mars/Nobody/EUW").json()["field"] == "region"


def test_a_refused_publish_is_a_503_and_leaves_no_job(client):
    with mock.patch("players.tasks.sync_player_data.apply_async", side_effect=OSError("refused")):
        response = post_sync(client, {"game_name": "Chovy", "tag_line": "KR1", "region": "kr"})
    assert response.status_code == 503
    assert SyncJob.objects.count() == 0


def test_healthz_checks_database_and_broker(client):
    with mock.patch("config.health.check_broker", return_value="ok"):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    with mock.patch("config.health.check_broker", return_value="error: refused"):
        response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["broker"] == "error: refused"
