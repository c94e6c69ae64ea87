"""Random valid stack definitions of any size, for the broker tests and the benchmarks.

The same seed gives the same definition. Every queue option is drawn only where its queue type supports
it, so each generated definition passes validation; the first vhost is Celery's.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

DURATIONS = ["30s", "5m", "30m", "2h", "1d"]
SIZES = ["64kB", "1MB", "512MB", "2GB"]
RATES = ["5/s", "10/m", "100/h"]


def _queue(rng: random.Random, qtype: str, parking_queue: str | None) -> dict:
    queue: dict = {"type": qtype}
    if rng.random() < 0.5:
        queue["ttl"] = rng.choice(DURATIONS)
    if rng.random() < 0.5:
        queue["max_length"] = rng.randint(1, 100_000)
    if rng.random() < 0.3:
        queue["max_length_bytes"] = rng.choice(SIZES)
    if ("max_length" in queue or "max_length_bytes" in queue) and rng.random() < 0.7:
        choices = ["drop-head", "reject-publish"] + (["reject-publish-dlx"] if qtype == "classic" else [])
        queue["overflow"] = rng.choice(choices)
    if parking_queue and rng.random() < 0.7:
        queue["dead_letter"] = parking_queue
    if qtype == "quorum" and rng.random() < 0.5:
        queue["delivery_limit"] = rng.randint(1, 20)
    return queue


def generate(seed: int, queues: int, vhosts: int = 1) -> dict:
    """A definition with `queues` queues spread over `vhosts` vhosts (plus one parking queue each)."""
    rng = random.Random(seed)
    names = [f"v{i:02d}" for i in range(vhosts)]
    definition = {
        "environment": "staging",
        "roles": {"administrator": {"configure": ".*", "write": ".*", "read": ".*"}, "reader": {"read": "^q"}},
        "users": {
            "admin": {
                "password": {"secret": "rabbitmqAdminPassword"},
                "tags": ["administrator"],
                "permissions": {v: "administrator" for v in names},
            },
            "web": {"password": {"secret": "rabbitmqWebPassword"}},
            "beat": {"password": {"secret": "rabbitmqBeatPassword"}},
        },
        "vhosts": {},
    }
    for vi, vname in enumerate(names):
        queues_here = queues // vhosts + (1 if vi < queues % vhosts else 0)
        parking = "parked" if rng.random() < 0.8 or vi == 0 else None
        vhost = {
            "exchanges": {"tasks": {"type": "topic"}, "events": {"type": rng.choice(["direct", "fanout"])}},
            "queues": {},
        }
        for qi in range(queues_here):
            qtype = rng.choice(["quorum", "quorum", "classic"])
            queue = _queue(rng, qtype, parking)
            if vi and rng.random() < 0.2 and qtype == "classic":
                queue["exchange"] = "events"
            if qi == 0 and vi == 0:
                queue["rate_limit"] = rng.choice(RATES)
            vhost["queues"][f"q{qi:04d}"] = queue
        if parking:
            vhost["queues"]["parked"] = {"type": "quorum", "parking": True, "max_length_bytes": "1GB"}
        definition["vhosts"][vname] = vhost
        if vi:
            definition["users"][f"reader-{vname}"] = {
                "password": {"secret": "rabbitmqMonitorPassword"},
                "permissions": {vname: "reader"},
            }
    celery_queues = [q for q, spec in definition["vhosts"][names[0]]["queues"].items() if not spec.get("parking")]
    definition["celery"] = {
        "vhost": names[0],
        "web_user": "web",
        "beat_user": "beat",
        "default_queue": celery_queues[0],
        "routes": {f"tasks.t{i}": q for i, q in enumerate(celery_queues[:20])},
        "workers": {
            f"pool{i}": {"queues": celery_queues[i::4], "user": f"worker-pool{i}", "concurrency": 1 + i}
            for i in range(min(4, len(celery_queues)))
        },
    }
    for pool in definition["celery"]["workers"]:  # a user per pool (one test secret for all of them)
        definition["users"][f"worker-{pool}"] = {"password": {"secret": "rabbitmqWorkerSyncPassword"}}
    return definition


def write(path: Path, definition: dict) -> Path:
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path
