"""A fresh clone's first run: no Riot key anywhere, and `make local`'s stack comes up healthy on its own sample
Riot API service, which a sync then reaches end to end (web → broker → workers → PostgreSQL)."""

from __future__ import annotations

import json
import os

import pytest

from infra.paths import SAMPLE_RIOT_PLAYERS
from tests.e2e.harness import ImagesMissing, running_stack


@pytest.mark.timeout(600)
def test_without_a_key_the_stack_comes_up_on_the_sample_riot_api_and_a_sync_completes():
    player = json.loads(SAMPLE_RIOT_PLAYERS.read_text())["players"][0]
    try:
        with running_stack(None, {}, project=f"rcfirst{os.getpid()}") as stack:
            print(f"up to healthy from nothing: {stack.up_seconds:.1f} s")
            health = stack.local.health()
            assert health.get("riot-sample") == "healthy" and set(health.values()) == {"healthy"}, health
            job = stack.wait_job(stack.sync(player), timeout=180)
            n = len(player["match_ids"])
            assert (job["status"], job["matches_found"], job["matches_processed"]) == ("complete", n, n), job
            assert stack.count("matches_match") == n
    except ImagesMissing as exc:
        raise pytest.UsageError(str(exc)) from None
