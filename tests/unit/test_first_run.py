"""The first run: with no Riot key, `make local` lays the sample Riot API over the local stack; with a key,
nothing changes. The sample server itself, on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import yaml

from infra.cli.localstack import SAMPLE_OVERLAY, sample_note, sample_overlay
from infra.paths import REPO, SAMPLE_RIOT_PLAYERS
from infra.plan.services import SAMPLE_RIOT_URL
from tests.support.rabbit_node import free_ports
from tests.support.stacks import TEST_SECRETS
from tests.support.waiting import wait_for


def render(tmp_path, secrets: dict, overlays=()) -> subprocess.CompletedProcess:
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump(secrets))
    path.chmod(0o600)
    argv = [
        sys.executable,
        "-m",
        "infra",
        "render",
        "--stack",
        "local",
        "--out",
        str(tmp_path / "out"),
        "--compose",
        "--secrets",
        str(path),
        *(a for o in overlays for a in ("--overlay", str(o))),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def without_key() -> dict:
    return {k: v for k, v in TEST_SECRETS.items() if k != "riotApiKey"}


def test_without_a_key_the_local_stack_renders_on_the_sample_riot_api(tmp_path):
    refused = render(tmp_path, without_key())  # the stack alone needs the key
    assert refused.returncode == 2 and "secret 'riotApiKey' is not set" in refused.stdout + refused.stderr
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(without_key()))
    overlay = sample_overlay("local", tmp_path / "out", secrets)
    assert overlay == tmp_path / "out" / SAMPLE_OVERLAY
    result = render(tmp_path, without_key(), [overlay])
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((tmp_path / "out" / "docker-compose.yml").read_text())
    sample = compose["services"]["riot-sample"]
    assert sample["image"] == compose["services"]["web"]["image"]  # the app image: nothing more to build
    assert sample["command"] == ["python", "-m", "sample_riot", "--port", "8080"] and "ports" not in sample
    for name in ("web", "worker-sync", "worker-matches", "worker-background", "beat"):
        assert compose["services"][name]["environment"]["RIOT_API_BASE_URL"] == SAMPLE_RIOT_URL
        assert "RIOT_API_KEY=" not in (tmp_path / "out" / f"{name}.env").read_text()


def test_with_a_key_the_stack_talks_to_riot(tmp_path):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(TEST_SECRETS))
    assert sample_overlay("local", tmp_path / "out", secrets) is None
    assert render(tmp_path, TEST_SECRETS).returncode == 0
    compose = yaml.safe_load((tmp_path / "out" / "docker-compose.yml").read_text())
    assert "riot-sample" not in compose["services"]
    assert compose["services"]["web"]["environment"]["RIOT_API_BASE_URL"] == "https://{routing}.api.riotgames.com"


def test_the_output_names_the_sample_and_a_player_to_sync():
    note = sample_note("local", "http://127.0.0.1:8000")
    first = json.loads(SAMPLE_RIOT_PLAYERS.read_text())["players"][0]
    assert note.startswith("riot-sample ") and f'"game_name": "{first["game_name"]}"' in note
    assert "http://127.0.0.1:8000/api/players/sync" in note and ".secrets/local.yaml" in note


def test_the_sample_server_serves_its_players_in_riots_shapes():
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [sys.executable, "-m", "sample_riot", "--port", str(port)], cwd=REPO / "app", stdout=subprocess.PIPE, text=True
    )
    try:
        assert "Sample Mid#EUW" in server.stdout.readline()
        base = f"http://127.0.0.1:{port}"

        def get(path: str):
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return json.loads(response.read())

        account = wait_for(
            lambda: get("/europe/riot/account/v1/accounts/by-riot-id/Sample%20Mid/EUW"), 10, "the sample's account"
        )
        ids = get(f"/europe/lol/match/v5/matches/by-puuid/{account['puuid']}/ids")
        assert len(ids) == 5
        assert get(f"/europe/lol/match/v5/matches/{ids[0]}")["metadata"]["matchId"] == ids[0]
    finally:
        server.kill()
        server.wait(timeout=10)
