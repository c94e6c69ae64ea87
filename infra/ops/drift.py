"""Drift: a live broker's topology against the plan's, as findings. Pure: two snapshots in, findings out.

`broker_api.read_snapshot` reads the live side from the management API; `expected_snapshot` builds the other
from the plan. Objects Celery declares for itself and the broker's own are never drift, missing or extra.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from infra.plan.plan import Topology

# rabbit_password_hashing_<algorithm> → hashlib name; sha256 is what `render` writes and the default.
HASHES = {
    "rabbit_password_hashing_sha256": "sha256",
    "rabbit_password_hashing_sha512": "sha512",
    "rabbit_password_hashing_md5": "md5",
}

# Names Celery and kombu declare at run time (Celery 5.5+, kombu 5.5+): the remote-control mailbox
# (`celery.pidbox` fanout, `<worker>.celery.pidbox` queues), its replies (`reply.celery.pidbox`,
# `<uuid>.reply.celery.pidbox`), events (`celeryev`, `celeryev.<uuid>`), and native delayed delivery
# (`celery_delayed_0`…`celery_delayed_27` exchanges and queues, `celery_delayed_delivery`; with a
# prefix: `<prefix>_celery_delayed_…`).
CELERY_EXCHANGES = re.compile(r"^(celery\.pidbox|reply\.celery\.pidbox|celeryev|(.+_)?celery_delayed_(\d+|delivery))$")
CELERY_QUEUES = re.compile(r"^(.+\.celery\.pidbox|.+\.reply\.celery\.pidbox|celeryev\..+|(.+_)?celery_delayed_\d+)$")


@dataclass
class Snapshot:
    """One broker topology. Keys identify an object; values are what is compared."""

    vhosts: dict = field(default_factory=dict)  # name → {description}
    users: dict = field(default_factory=dict)  # name → (sorted tags, password_hash, hashing_algorithm)
    permissions: dict = field(default_factory=dict)  # (user, vhost) → {configure, write, read}
    exchanges: dict = field(default_factory=dict)  # (vhost, name) → {type, durable, auto_delete, internal, arguments}
    queues: dict = field(default_factory=dict)  # (vhost, name) → {durable, auto_delete, arguments}
    bindings: set = field(default_factory=set)  # (vhost, source, destination, destination_type, routing_key)
    policies: dict = field(default_factory=dict)  # (vhost, name) → {pattern, apply-to, priority, definition}


@dataclass(frozen=True, order=True)
class Drift:
    kind: str  # vhost, user, permission, exchange, queue, binding, policy
    name: str  # the object, e.g. "/ player_sync" or "app @ /"
    state: str  # missing (planned, not on the broker), extra (on the broker, not planned), different
    detail: str = ""

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "state": self.state, "detail": self.detail}


def expected_snapshot(topology: Topology) -> Snapshot:
    """The plan's topology; users' password hashes are not known here (see `compare`'s `passwords`)."""
    return Snapshot(
        vhosts={name: {"description": description} for name, description in topology.vhosts},
        users={u.name: (tuple(sorted(u.tags)), None, None) for u in topology.users},
        permissions={
            (p.user, p.vhost): {"configure": p.configure, "write": p.write, "read": p.read}
            for p in topology.permissions
        },
        exchanges={
            (e.vhost, e.name): {
                "type": e.type,
                "durable": e.durable,
                "auto_delete": e.auto_delete,
                "internal": e.internal,
                "arguments": {},
            }
            for e in topology.exchanges
        },
        queues={
            (q.vhost, q.name): {"durable": True, "auto_delete": False, "arguments": q.arguments}
            for q in topology.queues
        },
        bindings={(b.vhost, b.source, b.destination, "queue", b.routing_key) for b in topology.bindings},
        policies={
            (p.vhost, p.name): {
                "pattern": p.pattern,
                "apply-to": p.apply_to,
                "priority": p.priority,
                "definition": p.definition,
            }
            for p in topology.policies
        },
    )


def password_matches(password: str, password_hash: str, algorithm: str) -> bool:
    """RabbitMQ's hash is base64(4-byte salt + H(salt + password)): hash again with the live salt."""
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except (ValueError, TypeError):
        return False
    name = HASHES.get(algorithm)
    if name is None or len(raw) < 5:
        return False
    salt = raw[:4]
    return raw == salt + hashlib.new(name, salt + password.encode("utf-8")).digest()


def _broker_owned_exchange(name: str) -> bool:
    return name == "" or name.startswith("amq.")


def is_celerys(kind: str, key: tuple, expected: Snapshot) -> bool:
    """An object Celery (or the broker) creates itself: absent from the plan, and not drift."""
    if kind == "exchange":
        return _broker_owned_exchange(key[1]) or bool(CELERY_EXCHANGES.match(key[1]))
    if kind == "queue":
        return bool(CELERY_QUEUES.match(key[1]))
    if kind == "binding":
        vhost, source, destination, destination_type, routing_key = key
        if _broker_owned_exchange(source) or CELERY_EXCHANGES.match(source):
            return True  # the default exchange's implicit bindings, and Celery's own exchanges'
        if (destination_type == "queue" and CELERY_QUEUES.match(destination)) or (
            destination_type == "exchange" and CELERY_EXCHANGES.match(destination)
        ):
            return True
        # Native delayed delivery binds each task queue again with `#.<its key>` (kombu's
        # bind_queue_to_native_delayed_delivery_exchange): Celery's, when the plain binding is planned.
        return (
            routing_key.startswith("#.") and (vhost, source, destination, "queue", routing_key[2:]) in expected.bindings
        )
    return False


def _fmt(name) -> str:
    return " ".join(name) if isinstance(name, tuple) else name


_UNSET = "(unset)"


def _flat(value, prefix: str = "") -> dict:
    """{"definition": {"max-length": 5}} → {"definition.max-length": 5}: a difference names its key."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict = {}
    for key, inner in value.items():
        out.update(
            _flat(inner, f"{prefix}.{key}" if prefix else str(key))
            if isinstance(inner, dict) and inner
            else {f"{prefix}.{key}" if prefix else str(key): inner}
        )
    return out


def _diff_values(want, have) -> str:
    want, have = _flat(want), _flat(have)
    return "; ".join(
        f"{k}: {_show(want.get(k, _UNSET))} → {_show(have.get(k, _UNSET))}"
        for k in sorted(set(want) | set(have))
        if want.get(k, _UNSET) != have.get(k, _UNSET)
    )


def _show(value) -> str:
    return value if value is _UNSET else repr(value)


def _compare_map(kind: str, want: dict, have: dict, expected: Snapshot, name=_fmt) -> list[Drift]:
    out = []
    for key in sorted(set(want) - set(have)):
        out.append(Drift(kind, name(key), "missing"))
    for key in sorted(set(have) - set(want)):
        if not is_celerys(kind, key, expected):
            out.append(Drift(kind, name(key), "extra"))
    for key in sorted(set(want) & set(have)):
        if want[key] != have[key]:
            out.append(Drift(kind, name(key), "different", _diff_values(want[key], have[key])))
    return out


def compare(expected: Snapshot, live: Snapshot, passwords: dict[str, str] | None = None) -> list[Drift]:
    """Every difference between the plan and the broker. `passwords` (user → plaintext, from the secrets)
    checks each live user's hash; a user without a known password has only its tags compared."""
    passwords = passwords or {}
    found = _compare_map("vhost", expected.vhosts, live.vhosts, expected)
    for user in sorted(set(expected.users) - set(live.users)):
        found.append(Drift("user", user, "missing"))
    for user in sorted(set(live.users) - set(expected.users)):
        found.append(Drift("user", user, "extra"))
    for user in sorted(set(expected.users) & set(live.users)):
        want_tags, (tags, password_hash, algorithm) = expected.users[user][0], live.users[user]
        if tuple(want_tags) != tuple(tags):
            found.append(Drift("user", user, "different", f"tags: {list(want_tags)!r} → {list(tags)!r}"))
        if user in passwords and not password_matches(passwords[user], password_hash or "", algorithm or ""):
            found.append(Drift("user", user, "different", "password: the broker's differs from the secrets"))
    found += _compare_map(
        "permission", expected.permissions, live.permissions, expected, name=lambda k: f"{k[0]} @ {k[1]}"
    )
    found += _compare_map("exchange", expected.exchanges, live.exchanges, expected)
    found += _compare_map("queue", expected.queues, live.queues, expected)
    found += _compare_map(
        "binding",
        {b: None for b in expected.bindings},
        {b: None for b in live.bindings},
        expected,
        name=lambda k: f"{k[0]} {k[1]} → {k[2]} ({k[4]})",
    )
    found += _compare_map("policy", expected.policies, live.policies, expected)
    return found
