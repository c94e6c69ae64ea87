"""A broker's live topology and the rendered definitions, put in one comparable shape."""

from __future__ import annotations

import re


def _ours(exchange_name: str) -> bool:
    return exchange_name != "" and not exchange_name.startswith("amq.")


def expected_topology(definitions: dict) -> dict:
    d = definitions
    return {
        "vhosts": {v["name"] for v in d["vhosts"]},
        "users": {u["name"]: (sorted(u["tags"]), u["password_hash"], u["hashing_algorithm"]) for u in d["users"]},
        "permissions": {(p["user"], p["vhost"]): (p["configure"], p["write"], p["read"]) for p in d["permissions"]},
        "exchanges": {
            (e["vhost"], e["name"]): (e["type"], e["durable"], e["auto_delete"], e["internal"], e["arguments"])
            for e in d["exchanges"]
        },
        "queues": {(q["vhost"], q["name"]): (q["durable"], q["auto_delete"], q["arguments"]) for q in d["queues"]},
        "bindings": {
            (b["vhost"], b["source"], b["destination"], b["destination_type"], b["routing_key"]) for b in d["bindings"]
        },
        "policies": {
            (p["vhost"], p["name"]): (p["pattern"], p["apply-to"], p["priority"], p["definition"])
            for p in d["policies"]
        },
        # the policy that applies to each queue, and what it sets
        "effective": {
            (p["vhost"], q["name"]): (p["name"], p["definition"])
            for q in d["queues"]
            for p in d["policies"]
            if p["vhost"] == q["vhost"] and p["pattern"] == f"^{re.escape(q['name'])}$"
        },
    }


def live_topology(api) -> dict:
    # A queue's policy shows once the node has emitted its first statistics (`messages` appears with it).
    queues = api.get_when(
        "queues",
        lambda qs: all("messages" in q for q in qs),
        columns="vhost,name,durable,auto_delete,arguments,policy,effective_policy_definition,messages",
    )

    def tags(u):
        return sorted(u["tags"] if isinstance(u["tags"], list) else filter(None, u["tags"].split(",")))

    return {
        "vhosts": {v["name"] for v in api.get("vhosts")},
        "users": {u["name"]: (tags(u), u["password_hash"], u["hashing_algorithm"]) for u in api.get("users")},
        "permissions": {
            (p["user"], p["vhost"]): (p["configure"], p["write"], p["read"]) for p in api.get("permissions")
        },
        "exchanges": {
            (e["vhost"], e["name"]): (e["type"], e["durable"], e["auto_delete"], e["internal"], e["arguments"])
            for e in api.get("exchanges")
            if _ours(e["name"])
        },
        "queues": {(q["vhost"], q["name"]): (q["durable"], q["auto_delete"], q["arguments"]) for q in queues},
        "bindings": {
            (b["vhost"], b["source"], b["destination"], b["destination_type"], b["routing_key"])
            for b in api.get("bindings")
            if b["source"] != ""
        },
        "policies": {
            (p["vhost"], p["name"]): (p["pattern"], p["apply-to"], p["priority"], p["definition"])
            for p in api.get("policies")
        },
        "effective": {
            (q["vhost"], q["name"]): (q["policy"], q["effective_policy_definition"]) for q in queues if q.get("policy")
        },
    }


# What Celery declares by itself on a broker its workers use: remote-control (pidbox) and event queues and
# exchanges, and native delayed delivery's exchanges and levelled queues (Celery 5.5+ on quorum queues).
CELERYS_OWN = re.compile(
    r"(\.celery\.pidbox$|^celery\.pidbox$|^reply\.celery\.pidbox$|^celeryev(\.|$)|^celery_delayed)"
)


def without_celerys_own(topology: dict) -> dict:
    """A live topology less the objects Celery creates for itself, which no definition lists."""
    own = lambda name: bool(CELERYS_OWN.search(name))  # noqa: E731
    return {
        **topology,
        "exchanges": {k: v for k, v in topology["exchanges"].items() if not own(k[1])},
        "queues": {k: v for k, v in topology["queues"].items() if not own(k[1])},
        # and delayed delivery binds each task queue to its exchange with `#.<routing key>`
        "bindings": {b for b in topology["bindings"] if not (own(b[1]) or own(b[2]) or b[4].startswith("#."))},
        "effective": {k: v for k, v in topology["effective"].items() if not own(k[1])},
    }
