"""What a change of definition does to a running system: two plans in, classified changes out.

Pure. `python -m infra diff` feeds it the plan at a git ref and the working tree's, and prints the result.
The classes follow what `pulumi up` does with the program's resources; MEANING says what falls in each (the
docs' table of `diff`'s classes is generated from it).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from infra.definition.units import Duration, Size
from infra.ops import upgrade
from infra.ops.migration import EXPECTED_PAUSE, label, planned_migrations
from infra.plan.plan import Plan, PolicySpec
from infra.plan.services import broker_hosts
from infra.render import files as render


class Impact(Enum):
    DATA_LOSS = "data loss"
    UPGRADE = "upgrade (blue-green)"
    MIGRATION = "migration"
    RESTART = "restart"
    IN_PLACE = "in place"


# What falls in each class, worst first: the one description of the classes (docs/deploying.md's table is
# generated from it by `python -m infra.cli.regenerate`).
MEANING = {
    Impact.DATA_LOSS: "a queue removed (or its vhost) without `renamed_from`: the queue and its messages are "
    "deleted; a cluster losing the majority of its quorum queues' members; a broker node that starts anew "
    "with an empty data volume (1 ↔ N nodes, a node moved to another Docker host, `broker.hosts` set or "
    "removed on a running cluster)",
    Impact.UPGRADE: "`broker.version` changes in a way the broker cannot take in place (a major version, a "
    "skipped series): `python -m infra upgrade` replaces the broker blue-green before `pulumi up`, every "
    "message carried across ([Upgrades](upgrades.md)); the consumers pause twice, briefly. A downgrade is refused",
    Impact.MIGRATION: "a queue's arguments change (its `type`, a classic queue's `max_priority`) or it is "
    "renamed (`renamed_from`): `python -m infra migrate` moves its messages through a temporary queue before "
    "`pulumi up` ([Queue migrations](migrations.md)); its consumers pause briefly",
    Impact.RESTART: "the broker container is replaced: `rabbitmq.conf` (each changed setting listed), plugins, "
    "image, published address, the admin it boots with (name, tags, password key), a server certificate "
    "re-issued. Durable queues and persistent messages stay in the data volume; every connection drops",
    Impact.IN_PLACE: "through the management API: policies (TTL, max length, overflow, dead-lettering, "
    "delivery limit), users and tags, permissions, bindings, new queues and vhosts, exchanges (a changed one "
    "is deleted and re-created with its bindings: a warning says publishes fail meanwhile); service "
    "containers re-created (a pool's command or concurrency, env, image, health check, `celery.json`): warm "
    "shutdown, unacknowledged tasks are redelivered",
}


@dataclass(frozen=True)
class Change:
    impact: Impact
    subject: str  # e.g. "queue /:player_sync", "broker"
    what: str
    warnings: tuple[str, ...] = field(default=())


def _q(vhost: str, name: str) -> str:
    return f"{vhost}:{name}"


def _fmt(key: str, value) -> str:
    if value is None:
        return "unset"
    if key == "message-ttl":
        return str(Duration(value))
    if key == "max-length-bytes":
        return str(Size(value))
    return str(value)


def _conf_changes(old: str, new: str) -> list[str]:
    """Changed settings of a rendered `key = value` file, e.g. 'vm_memory_high_watermark.relative 0.6 → 0.5'."""

    def settings(text: str) -> dict:
        return dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith("#"))

    a, b = settings(old), settings(new)
    return [f"{k} {a.get(k, 'unset')} → {b.get(k, 'unset')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# TLS settings by what they re-issue: the broker's certificate, the app's (and the CA, which both hold).
SERVER_TLS = ("ca", "secrets", "server_names", "validity_days", "ca_validity_days", "node_names")
CLIENT_TLS = ("ca", "secrets", "client_name", "validity_days", "ca_validity_days")


def tls_changes(base: Plan, head: Plan, fields: tuple[str, ...]) -> list[str]:
    """The changed TLS settings among `fields`: what re-issues a certificate, which rabbitmq.conf does not
    show. (TLS turned on or off shows in rabbitmq.conf, the broker URL and celery.json.)"""
    a, b = base.broker.tls, head.broker.tls
    if a is None or b is None:
        return []
    return [f"TLS {f} {getattr(a, f)} → {getattr(b, f)}" for f in fields if getattr(a, f) != getattr(b, f)]


def broker_changes(base: Plan, head: Plan) -> list[Change]:
    old_nodes, new_nodes = base.broker.nodes, head.broker.nodes
    if (old_nodes == 1) != (new_nodes == 1):
        # One node is rabbit@rabbitmq on its volume, a cluster's are rabbit@rabbitmq-<i> on theirs: the new
        # broker starts empty, and the old node's messages stay behind in its retained volume.
        return [
            Change(
                Impact.DATA_LOSS,
                "broker",
                f"nodes {old_nodes} → {new_nodes}: new nodes with new data "
                f"volumes; the queues are declared again, empty, and the messages on the old "
                f"{'node' if old_nodes == 1 else 'nodes'} are not moved (drain the queues first)",
            )
        ]
    old_version, new_version = base.broker.version, head.broker.version
    path = upgrade.upgrade_path(old_version, new_version)
    if path is upgrade.UpgradePath.BLUE_GREEN:
        return [version_upgrade(old_version, new_version)]
    restart = []
    if path is upgrade.UpgradePath.IN_PLACE:
        restart.append(f"version {old_version} → {new_version} (in place: the next series)")
    old_conf, new_conf = render.rabbitmq_conf(base), render.rabbitmq_conf(head)
    if old_conf != new_conf:
        restart.append("rabbitmq.conf: " + ", ".join(_conf_changes(old_conf, new_conf) or ["comments"]))
    if base.broker.plugins != head.broker.plugins:
        restart.append(f"plugins {', '.join(base.broker.plugins)} → {', '.join(head.broker.plugins)}")
    if base.broker.image != head.broker.image:
        restart.append(f"image {base.broker.image} → {head.broker.image}")
    restart += [c + " (its certificate is re-issued)" for c in tls_changes(base, head, SERVER_TLS)]
    was, now = (bool(p.broker.tls and p.broker.tls.inter_node) for p in (base, head))
    if was != now:  # a TLS node and a plaintext one cannot talk: no rolling restart across this change
        restart.append(
            f"inter-node TLS {'on → off' if was else 'off → on'}: a node with it and a node without cannot "
            f"talk, so the nodes cannot be rolled one by one; stop every node (the last one first, node 1 "
            f"last, as it boots first), then `pulumi up`: the cluster is down in between, the volumes kept"
        )
    if base.broker.publish_ip != head.broker.publish_ip:
        restart.append(f"published on {base.broker.publish_ip} → {head.broker.publish_ip}")
    # the admin-only definitions.json the container boots with (name, tags, password key)
    admin = lambda p: p.topology.only_user(p.broker.admin_user).users  # noqa: E731
    if admin(base) != admin(head):
        (a,), (b,) = admin(base), admin(head)
        restart.append(
            f"boot admin {a.name} [{', '.join(a.tags)}] {a.password.secret} → "
            f"{b.name} [{', '.join(b.tags)}] {b.password.secret}"
        )
    majority_lost, steps = resized_cluster(base, head)
    if majority_lost:
        return [
            Change(
                Impact.DATA_LOSS,
                "broker",
                f"nodes {old_nodes} → {new_nodes}: a majority of every quorum "
                f"queue's {old_nodes} members is removed; the queues are left without a leader and their "
                f"messages out of reach, unless shrunk first",
                tuple(steps),
            )
        ]
    if not restart:
        return []
    return [
        Change(
            Impact.RESTART,
            "broker",
            "; ".join(restart) + ": the container is replaced, connections "
            "drop; durable queues and persistent messages stay in the data volume",
            tuple(steps),
        )
    ]


def version_upgrade(old: str, new: str) -> Change:
    """A version the broker cannot take in place: the blue-green upgrade, its steps as the change's notes."""
    return Change(
        Impact.UPGRADE,
        "broker",
        f"version {old} → {new}: {upgrade.why_blue_green(old, new)}; `python -m infra upgrade` replaces the "
        f"broker blue-green before `pulumi up`, every queued message carried across; the consumers pause "
        f"{upgrade.EXPECTED_PAUSE} (the steps: `upgrade --dry-run`)",
        tuple(f"upgrade step {i}: {upgrade.describe(s, old, new)}" for i, s in enumerate(upgrade.ALL_STEPS, 1)),
    )


def resized_cluster(base: Plan, head: Plan) -> tuple[bool, list[str]]:
    """A cluster of N nodes now M (both > 1): (whether the quorum queues lose the majority of their members,
    what to run). RabbitMQ 3.x moves no replica by itself: a quorum queue keeps the members it was declared
    with, so new nodes hold none until grown onto, and removed nodes take theirs away."""
    old, new = base.broker.nodes, head.broker.nodes
    if old == new or 1 in (old, new) or not any(q.type == "quorum" for q in base.topology.queues):
        return False, []
    if new > old:
        added = ", ".join(f"rabbit@{h}" for h in broker_hosts(new)[old:])
        return False, [
            f"the quorum queues keep their {old} members: after `pulumi up`, place their replicas on "
            f"the new nodes with `rabbitmq-queues grow <node> all` in any node's container, for "
            f"each of {added}"
        ]
    removed = [f"rabbit@{h}" for h in broker_hosts(old)[new:]]
    return len(removed) > old // 2, [
        f"before `pulumi up`, move the quorum queues off the nodes that go: `rabbitmq-queues shrink <node>` "
        f"for each of {', '.join(removed)}; after it, `rabbitmqctl forget_cluster_node <node>` for each"
    ]


def host_changes(base: Plan, head: Plan) -> list[Change]:
    """`broker.hosts`: a node's data volume lives on its Docker host, so a node that moves to another host
    starts there empty; the old volume stays behind (retained)."""
    old, new = base.broker.hosts, head.broker.hosts
    if old == new or base.broker.nodes == 1 or head.broker.nodes == 1:  # 1 ↔ N is reported by broker_changes
        return []
    if not old or not new:
        where = "onto the hosts in broker.hosts" if new else "back onto Pulumi's default Docker host"
        return [
            Change(
                Impact.DATA_LOSS,
                "broker",
                f"broker.hosts {'set' if new else 'removed'}: every node moves "
                f"{where} and starts there with a new, empty data volume (the old ones stay where they "
                f"were) and joins a new cluster: the queues are declared again, empty, and the messages on the "
                f"old nodes are not moved (drain the queues first)",
            )
        ]
    changes = []
    for i, (a, b) in enumerate(zip(old, new), start=1):
        node = f"node rabbitmq-{i}"
        if a.docker != b.docker:
            changes.append(
                Change(
                    Impact.DATA_LOSS,
                    node,
                    f"Docker host {a.docker} → {b.docker}: the node starts "
                    f"there with a new, empty data volume (the old one stays on {a.docker}); its "
                    f"classic queues and the messages only it held are lost; if it does not rejoin, "
                    f"run `rabbitmqctl forget_cluster_node rabbit@rabbitmq-{i}` on another node",
                )
            )
        elif a.address != b.address:
            changes.append(
                Change(
                    Impact.RESTART,
                    node,
                    f"address {a.address} → {b.address}: its container is "
                    f"replaced (ports published there), and every container that reaches it by name "
                    f"is re-created with the new /etc/hosts entry; data stays in its volume",
                )
            )
        elif a.ssh_opts != b.ssh_opts:
            changes.append(
                Change(
                    Impact.IN_PLACE,
                    node,
                    f"ssh_opts {' '.join(a.ssh_opts) or 'none'} → "
                    f"{' '.join(b.ssh_opts) or 'none'}: only how Pulumi reaches its Docker host",
                )
            )
    return changes


def queue_changes(base: Plan, head: Plan) -> list[Change]:
    old = {(q.vhost, q.name): q for q in base.topology.queues}
    new = {(q.vhost, q.name): q for q in head.topology.queues}
    head_vhosts = {v for v, _ in head.topology.vhosts}
    migrations = planned_migrations(base, head)
    moved = {(m.vhost, m.source) for m in migrations}  # renamed: emptied into the new name, not lost
    changes = []
    for key in sorted(old.keys() - new.keys() - moved):
        why = f"vhost {key[0]} removed" if key[0] not in head_vhosts else "removed"
        changes.append(Change(Impact.DATA_LOSS, f"queue {_q(*key)}", f"{why}: the queue and its messages are deleted"))
    for m in migrations:
        how = (
            f"renamed from {m.source}: its messages move here"
            if m.is_rename
            else f"{label(m.source_arguments)} → {label(m.target_arguments)}: re-created, its messages moved "
            f"through {m.temporary}"
        )
        changes.append(
            Change(
                Impact.MIGRATION,
                f"queue {_q(m.vhost, m.target)}",
                f"{how} by `python -m infra migrate` before `pulumi up`; its consumers pause "
                f"{EXPECTED_PAUSE} (the steps: `migrate --dry-run`)",
            )
        )
    renamed = {(m.vhost, m.target) for m in migrations if m.is_rename}
    for key in sorted(new.keys() - old.keys() - renamed):
        changes.append(Change(Impact.IN_PLACE, f"queue {_q(*key)}", f"created ({new[key].type})"))
    return changes


def _policy_warnings(queue: str, old: dict, new: dict) -> list[str]:
    warnings = []
    parked = "dead-letter-exchange" in new
    fate = "dead-lettered" if parked else "dropped"

    def lowered(key: str) -> bool:
        return key in new and (key not in old or new[key] < old[key])

    if lowered("message-ttl"):
        warnings.append(
            f"messages in {queue} now expire after {_fmt('message-ttl', new['message-ttl'])} "
            f"(was {_fmt('message-ttl', old.get('message-ttl'))}) and are {fate}"
        )
    for key, unit in (("max-length", "messages"), ("max-length-bytes", "bytes")):
        if lowered(key):
            full = (
                "new messages are refused"
                if new.get("overflow", "drop-head").startswith("reject-publish")
                else f"the oldest messages are {fate}"
            )
            warnings.append(
                f"{queue} holds at most {_fmt(key, new[key])} {unit} (was {_fmt(key, old.get(key))}); when full, {full}"
            )
    if new.get("overflow", "drop-head") == "drop-head" and old.get("overflow", "drop-head") != "drop-head":
        warnings.append(f"when {queue} is full, its oldest messages are now {fate} instead of new ones refused")
    if lowered("delivery-limit"):
        warnings.append(
            f"a message of {queue} is now {fate} after {new['delivery-limit']} deliveries "
            f"(was {_fmt('delivery-limit', old.get('delivery-limit'))})"
        )
    if "dead-letter-exchange" in old and not parked:
        warnings.append(f"expired, dropped and rejected messages of {queue} are now discarded instead of parked")
    return warnings


def policy_changes(base: Plan, head: Plan) -> list[Change]:
    old = {(p.vhost, p.name): p for p in base.topology.policies}
    new = {(p.vhost, p.name): p for p in head.topology.policies}
    queues = {(q.vhost, q.name) for q in head.topology.queues}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        a: Optional[PolicySpec] = old.get(key)
        b: Optional[PolicySpec] = new.get(key)
        da, db = (a.definition if a else {}), (b.definition if b else {})
        if da == db:
            continue
        diffs = [
            f"{k} {_fmt(k, da.get(k))} → {_fmt(k, db.get(k))}"
            for k in sorted(da.keys() | db.keys())
            if da.get(k) != db.get(k)
        ]
        queue = key[1].removeprefix("queue.")
        warnings = _policy_warnings(queue, da, db) if (key[0], queue) in queues else []
        what = "created: " if a is None else "removed: " if b is None else ""
        changes.append(Change(Impact.IN_PLACE, f"policy {_q(*key)}", what + ", ".join(diffs), tuple(warnings)))
    return changes


def _keyed_changes(kind: str, old: dict, new: dict, describe) -> list[Change]:
    changes = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        what = "created" if a is None else "removed" if b is None else f"{describe(a)} → {describe(b)}"
        changes.append(Change(Impact.IN_PLACE, f"{kind} {key if isinstance(key, str) else _q(*key)}", what))
    return changes


def topology_changes(base: Plan, head: Plan) -> list[Change]:
    t0, t1 = base.topology, head.topology
    changes = _keyed_changes("vhost", dict(t0.vhosts), dict(t1.vhosts), lambda d: repr(d))
    with_queues = {q.vhost for q in t0.queues}  # removing those is reported as data loss, with each queue
    changes = [c for c in changes if not (c.what == "removed" and c.subject.removeprefix("vhost ") in with_queues)]
    changes += _keyed_changes(
        "user",
        {u.name: u for u in t0.users},
        {u.name: u for u in t1.users},
        lambda u: f"tags [{', '.join(u.tags)}] password {u.password.secret}",
    )
    changes += _keyed_changes(
        "permissions",
        {(p.user, p.vhost): p for p in t0.permissions},
        {(p.user, p.vhost): p for p in t1.permissions},
        lambda p: f"configure {p.configure!r} write {p.write!r} read {p.read!r}",
    )
    changes += [
        # the provider cannot update an exchange: it deletes and re-creates it, with its bindings
        Change(c.impact, c.subject, c.what, ("publishes to it fail until it and its bindings are re-created",))
        if "→" in c.what
        else c
        for c in _keyed_changes(
            "exchange",
            {(e.vhost, e.name): e for e in t0.exchanges},
            {(e.vhost, e.name): e for e in t1.exchanges},
            lambda e: f"{e.type}{'' if e.durable else ' transient'}{' auto-delete' if e.auto_delete else ''}",
        )
    ]
    changes += _keyed_changes(
        "binding",
        {(b.vhost, f"{b.source}→{b.destination}:{b.routing_key}"): b for b in t0.bindings},
        {(b.vhost, f"{b.source}→{b.destination}:{b.routing_key}"): b for b in t1.bindings},
        lambda b: "",
    )
    return changes


def service_changes(base: Plan, head: Plan) -> list[Change]:
    old = {s.name: s for s in base.services}
    new = {s.name: s for s in head.services}
    changes = []
    celery_changed = base.celery != head.celery
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            changes.append(Change(Impact.IN_PLACE, f"service {name}", "created" if a is None else "removed"))
            continue
        parts = []
        if a.command != b.command:
            parts.append(f"command {' '.join(a.command)} → {' '.join(b.command)}")
        if a.env != b.env or a.secret_env != b.secret_env:
            parts += [
                f"{k} {dict(a.env).get(k, 'unset')} → {dict(b.env).get(k, 'unset')}"
                for k in sorted(dict(a.env).keys() | dict(b.env).keys())
                if dict(a.env).get(k) != dict(b.env).get(k)
            ]
            parts += [
                f"secret {k}"
                for k in sorted(dict(a.secret_env).keys() | dict(b.secret_env).keys())
                if dict(a.secret_env).get(k) != dict(b.secret_env).get(k)
            ]
        if a.ports != b.ports:
            parts.append("ports " + ", ".join(f"{p.ip}:{p.external}" for p in b.ports))
        parts += [
            f"{label} {getattr(a, field)} → {getattr(b, field)}"
            for field, label in (
                ("image", "image"),
                ("healthcheck", "health check"),
                ("stop_timeout_s", "stop timeout"),
                ("volume", "volume"),
            )
            if getattr(a, field) != getattr(b, field)
        ]
        if celery_changed and b.uses_broker:
            parts.append("celery.json")
        if b.uses_broker:
            parts += [c + " (its client certificate is re-issued)" for c in tls_changes(base, head, CLIENT_TLS)]
        if parts:
            how = (
                "warm shutdown; unacknowledged tasks are redelivered"
                if b.runs_app
                else "its clients reconnect; its data stays in its volume"
            )
            changes.append(
                Change(Impact.IN_PLACE, f"service {name}", "; ".join(parts) + f": the container is re-created ({how})")
            )
    return changes


def classify(base: Optional[Plan], head: Plan) -> list[Change]:
    """Every change from `base` (None: the stack is new) to `head`, worst first."""
    if base is None:
        return [Change(Impact.IN_PLACE, "stack", "new: every resource is created")]
    changes = (
        broker_changes(base, head)
        + host_changes(base, head)
        + queue_changes(base, head)
        + policy_changes(base, head)
        + topology_changes(base, head)
        + service_changes(base, head)
    )
    order = list(Impact)
    return sorted(changes, key=lambda c: order.index(c.impact))


def rendered_diffs(base: Optional[Plan], head: Plan) -> dict[str, str]:
    """Unified diffs of the rendered files that hold no credential, by file name; unchanged files left out
    (and all of them for a new stack, where every file is new)."""
    if base is None:
        return {}

    def files(plan: Plan) -> dict[str, str]:
        return {**render.config_files(plan), "celery.json": render.celery_json(plan)}

    old, new = files(base), files(head)
    diffs = {}
    for name in sorted(new.keys() | old.keys()):
        if old.get(name) != new.get(name):
            diffs[name] = "".join(
                difflib.unified_diff(
                    old.get(name, "").splitlines(keepends=True),
                    new.get(name, "").splitlines(keepends=True),
                    f"base/{name}",
                    f"head/{name}",
                )
            )
    return diffs
