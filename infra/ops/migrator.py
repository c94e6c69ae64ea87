"""The executor of queue migrations (migration.py) on a live broker, through its management API.

Every step is idempotent and chosen from what the broker holds now — the queues, their types, bindings
and the dynamic shovels (runtime parameters, kept across restarts) — so the same call, repeated after the
process was killed or the broker restarted, carries on from where things are. A message is acknowledged
on its old queue only once the new one has confirmed it (`ack-mode: on-confirm`): at-least-once, never lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from infra.ops.amqp_depth import AMQPError
from infra.ops.broker_api import BrokerAPIError, ManagementClient, api_path
from infra.ops.migration import (
    SHOVEL_PREFIX,
    Arguments,
    Migration,
    label,
    live_arguments,
    live_migrations,
    shovel_value,
)
from infra.plan.plan import Plan

# Queue statistics are emitted every 5 s (collect_statistics_interval): a queue counts as drained once it
# has reported no message, ready or unacknowledged, for longer than that.
QUIET_S = 6.0


@dataclass(frozen=True)
class Binding:
    source: str
    routing_key: str
    arguments: tuple = ()

    def as_json(self) -> dict:
        return {"routing_key": self.routing_key, "arguments": dict(self.arguments)}


class MigrationTimeout(Exception):
    pass


class Migrator:
    def __init__(
        self,
        client: ManagementClient,
        plan: Plan,
        progress=print,
        quiet_s: float = QUIET_S,
        timeout_s: float = 3600,
        poll_s: float = 0.5,
        depth=None,
    ):
        """`depth(vhost, queue)`: the queue's ready messages as the queue says them now (amqp_depth), for
        the progress lines; None, or one that fails, leaves them to the management API's statistics."""
        self.api, self.plan, self.progress = client, plan, progress
        self.quiet_s, self.timeout_s, self.poll_s = quiet_s, timeout_s, poll_s
        self.depth = depth

    # -- reading the broker
    def queue_arguments(self) -> dict[tuple[str, str], Arguments]:
        return {
            (q["vhost"], q["name"]): live_arguments(q)
            for q in self.api.get("queues", columns="vhost,name,type,arguments")
        }

    def pending(self) -> list[Migration]:
        return live_migrations(self.plan, self.queue_arguments())

    def _queue(self, vhost: str, name: str) -> dict | None:
        response = self.api.call("GET", f"queues/{api_path(vhost, name)}", ok=(200, 404))
        return response.json() if response.status_code == 200 else None

    def _messages(self, vhost: str, name: str) -> int | None:
        """The queue's messages, ready or held by a consumer (None: not reported). From its statistics; with
        RabbitMQ 4.x's deprecated management metrics collection off (`broker.management_metrics: false`) a
        queue's own page has none, and the queue list's totals (`enable_queue_totals`, what the management
        UI shows then) are read instead."""
        queue = self._queue(vhost, name) or {}
        if "messages" in queue or not queue:
            return queue.get("messages")
        listed = self.api.get(f"queues/{api_path(vhost)}", disable_stats="true", enable_queue_totals="true")
        return next((q.get("messages") for q in listed if q["name"] == name), None)

    def _bindings(self, vhost: str, queue: str) -> dict[Binding, str]:
        """The queue's bindings (the default exchange's left out), each with its properties key."""
        return {
            Binding(b["source"], b["routing_key"], tuple(sorted((b.get("arguments") or {}).items()))): b[
                "properties_key"
            ]
            for b in self.api.get(f"queues/{api_path(vhost, queue)}/bindings")
            if b["source"]
        }

    def _planned(self, vhost: str, queue: str) -> set[Binding]:
        return {
            Binding(b.source, b.routing_key)
            for b in self.plan.topology.bindings
            if (b.vhost, b.destination) == (vhost, queue)
        }

    # -- steps, each one safe to repeat
    def _declare(self, vhost: str, name: str, arguments: Arguments) -> None:
        if self._queue(vhost, name) is None:
            self.progress(f"  declare {name} ({label(arguments)})")
            self.api.call(
                "PUT",
                f"queues/{api_path(vhost, name)}",
                json={"durable": True, "auto_delete": False, "arguments": dict(arguments)},
            )

    def _carry_bindings(self, vhost: str, source: str, dest: str, final: str) -> None:
        """`dest` bound like `source` (and as planned for `final`) first, then `source` unbound: a message
        published meanwhile reaches one of them, or both (a duplicate, never a loss)."""
        live = self._bindings(vhost, source)
        have = self._bindings(vhost, dest)
        for binding in sorted((set(live) | self._planned(vhost, final)) - set(have), key=repr):
            self.progress(f"  bind {dest} to {binding.source} ({binding.routing_key})")
            self.api.call("POST", f"bindings/{api_path(vhost, 'e', binding.source, 'q', dest)}", json=binding.as_json())
        for binding, key in live.items():
            self.progress(f"  unbind {source} from {binding.source} ({binding.routing_key})")
            self.api.call(
                "DELETE", f"bindings/{api_path(vhost, 'e', binding.source, 'q', source, key)}", ok=(200, 204, 404)
            )

    def _shovel(self, vhost: str, source: str, dest: str) -> None:
        self.api.call(
            "PUT",
            f"parameters/shovel/{api_path(vhost, SHOVEL_PREFIX + source)}",
            json={"value": shovel_value(vhost, source, dest)},
        )

    def _drop_shovel(self, vhost: str, source: str) -> None:
        """Before its source queue is deleted: a running shovel would declare it again (as classic)."""
        self.api.call("DELETE", f"parameters/shovel/{api_path(vhost, SHOVEL_PREFIX + source)}", ok=(200, 204, 404))

    def _waiting(self, vhost: str, name: str, statistics) -> str:
        """How many messages `name` holds, for a progress line: the queue's own count when it can be asked
        (the statistics lag by up to 5 s: right after the shovel starts they may still say 0)."""
        if self.depth is not None:
            try:
                return f"{self.depth(vhost, name)}"
            except AMQPError:
                pass
        return "?" if statistics is None else f"{statistics} (statistics)"

    def _wait_drained(self, vhost: str, name: str, deadline: float) -> None:
        """Until `name` has reported no message at all (ready, or held by a consumer) for `quiet_s`."""
        quiet_since, last_report = None, 0.0
        while True:
            messages = self._messages(vhost, name)
            now = time.monotonic()
            if messages == 0:
                quiet_since = quiet_since or now
                if now - quiet_since >= self.quiet_s:
                    return
            else:
                quiet_since = None
            if now - last_report >= 5:
                self.progress(f"  {name}: {self._waiting(vhost, name, messages)} message(s) to move")
                last_report = now
            if now > deadline:
                raise MigrationTimeout(
                    f"{name} still holds {messages} message(s) after {self.timeout_s:.0f} s; "
                    f"run the command again to carry on"
                )
            time.sleep(self.poll_s)

    def _move(self, vhost: str, source: str, dest: str, final: str, deadline: float) -> None:
        """Every message of `source` into `dest`, then `source` deleted."""
        self._carry_bindings(vhost, source, dest, final)
        self._shovel(vhost, source, dest)
        self.progress(f"  shovel {source} → {dest}")
        self._wait_drained(vhost, source, deadline)
        self._drop_shovel(vhost, source)
        self.progress(f"  delete {source}")
        self.api.call("DELETE", f"queues/{api_path(vhost, source)}", ok=(200, 204, 404))

    # -- the migration
    def run(self, m: Migration) -> None:
        """Carry `m` through to the end, from whatever step the broker is at. A broker that stops answering
        (restarting) is waited for, within the timeout; each pass re-reads where things are."""
        deadline = time.monotonic() + self.timeout_s
        self.progress(f"migrating {m.describe()}")
        while True:
            try:
                self._advance(m, deadline)
                self.progress(f"migrated {m.describe()}")
                return
            except BrokerAPIError as exc:
                if time.monotonic() > deadline:
                    raise
                self.progress(f"  broker: {exc}; retrying")
                time.sleep(2)

    def _advance(self, m: Migration, deadline: float) -> None:
        v = m.vhost
        if m.is_rename:
            if self._queue(v, m.source) is None:
                self._drop_shovel(v, m.source)
                return
            self._declare(v, m.target, m.target_arguments)
            self._move(v, m.source, m.target, m.target, deadline)
            return
        queue, temporary = self._queue(v, m.target), self._queue(v, m.temporary)
        if queue is not None and live_arguments(queue) != m.target_arguments:
            self._declare(v, m.temporary, m.target_arguments)
            self._move(v, m.target, m.temporary, m.target, deadline)
        elif temporary is None:  # already with its new arguments, nothing waiting
            self._drop_shovel(v, m.target)
            return
        self._drop_shovel(v, m.target)  # the shovel out must not declare the queue again, as classic
        self._declare(v, m.target, m.target_arguments)
        self._move(v, m.temporary, m.target, m.target, deadline)


def run_all(migrator: Migrator) -> list[Migration]:
    """Every migration the broker needs, one after another; the ones done."""
    done = []
    for m in migrator.pending():
        migrator.run(m)
        done.append(m)
    return done
