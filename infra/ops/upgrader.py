"""The executor of blue-green upgrades (upgrade.py): the brokers through their management APIs, the
containers through `BrokerContainers`, an adapter per way of running them (compose's in
infra/cli/compose_upgrade.py; a Pulumi program's can implement the same few operations).

Where things are is read from the containers and the brokers each time (`observe`), and every step is safe
to repeat, so the same call after a SIGKILL, a broker restart or a reboot carries on. Messages cross with
dynamic shovels on blue that acknowledge a message only once green confirmed it (`ack-mode: on-confirm`):
at-least-once, never lost. Blue is drained when its queues themselves (not the management statistics, which
RabbitMQ 4.x may have turned off) report no message, ready or unacknowledged, for `quiet_s`.
"""

from __future__ import annotations

import json
import time
from typing import Optional, Protocol

from infra.ops.broker_api import BrokerAPIError, ManagementClient, api_path
from infra.ops.migration import shovel_value
from infra.ops.upgrade import Observed, Step, UpgradePath, drain_policies, remaining, upgrade_path
from infra.plan.plan import Plan

SHOVEL_PREFIX = "upgrade-"
RETRY_S = 2.0
PENDING_WAIT_S = 300.0  # a loaded machine's `rabbitmqctl` can miss _ctl's 120 s: a few more tries
QUIET_S = 3.0  # the queues' own counts are exact: a short quiet spell covers a shovel between two reads


class UpgradeTimeout(Exception):
    pass


class Downgrade(Exception):
    """The running broker is newer than the definition's series."""

    def __init__(self, running: str, wanted: str):
        self.running, self.wanted = running, wanted
        super().__init__(f"RabbitMQ {running} cannot be downgraded to {wanted}")


class BrokerContainers(Protocol):
    """The containers of an upgrade, by role: "blue" is the stack's broker container on the old image, "green"
    the new version's beside it, "new" the stack's broker container again, on the new image with a new
    volume (what a fresh deploy of the new version makes)."""

    def service(self) -> Optional[tuple[bool, bool]]:
        """The stack's broker container: (it runs the definition's image, it is running); None: none."""

    def green(self) -> Optional[tuple[bool, bool]]:
        """Green's container: (present, running); None: none."""

    def switched(self) -> bool:
        """Green holds the broker's name: the app's services connect to it."""

    def api(self, role: str) -> ManagementClient:
        """A serving broker's management API (green before the second switch, the new broker)."""

    def version(self, role: str) -> str: ...

    def start_green(self) -> None:
        """Green created (if missing), started and booted."""

    def start_new(self) -> None:
        """The stack's broker container created on the new image (if missing), started and answering."""

    def switch(self, source: str, target: str) -> None:
        """`source` in maintenance mode for good (its clients disconnected, its listeners, management's too,
        suspended), `target` where the app's clients reconnect by the broker's name."""

    def export(self, role: str) -> dict:
        """`role`'s definitions (it may be in maintenance mode: read with its CLI tools)."""

    def set_shovels(self, role: str, shovels: list[tuple[str, str, dict]], policies: list[dict]) -> None:
        """Dynamic shovels (vhost, name, definition) and `policies` (as a definitions file lists them) set on
        `role`, all at once."""

    def amqp_uri(self, role: str) -> str:
        """Where a shovel on the other broker reaches `role`: credentials, no vhost (amqp://admin:…@host:5672;
        with TLS amqps://admin:…@host:5671?<TLS options>: the vhost goes before the options)."""

    def queue_messages(self, role: str) -> dict[tuple[str, str], int]:
        """(vhost, queue) → messages ready or unacknowledged in `role`'s durable queues, from the queues."""

    def remove(self, role: str) -> None:
        """`role`'s container and data volume removed (blue or green)."""


class Upgrader:
    def __init__(
        self,
        containers: BrokerContainers,
        plan: Plan,
        definitions: bytes,
        progress=print,
        quiet_s: float = QUIET_S,
        timeout_s: float = 3600,
        poll_s: float = 0.5,
    ):
        """`definitions`: the rendered definitions.json of the new version, imported into green."""
        self.c, self.plan, self.definitions, self.progress = containers, plan, definitions, progress
        self.quiet_s, self.timeout_s, self.poll_s = quiet_s, timeout_s, poll_s

    # -- where things are
    def blue_version(self) -> str:
        return self.c.version("blue")

    def observe(self) -> Observed:
        service = self.c.service()
        green = self.c.green()
        return Observed(service, green, switched=bool(green) and self.c.switched())

    def pending_when_answering(self, within_s: float = PENDING_WAIT_S) -> tuple[Optional[str], list[Step]]:
        """`pending`, asked again while a broker does not answer (restarting, or too loaded to answer its CLI
        within `_ctl`'s timeout), for up to `within_s`: a busy broker is not a reason to stop a deploy."""
        return self._answering(self.pending, time.monotonic() + within_s)

    def pending(self) -> tuple[Optional[str], list[Step]]:
        """(blue's running version, the steps still to do). A blue whose version the new series takes in place
        needs no upgrade: the restart on the new image is `pulumi up`'s (or compose's)."""
        observed = self.observe()
        steps = remaining(observed)
        if not observed.blue:
            return None, steps
        version = self.blue_version()
        path = upgrade_path(version, self.plan.broker.version)
        if path is UpgradePath.DOWNGRADE:
            raise Downgrade(version, self.plan.broker.version)
        if path is not UpgradePath.BLUE_GREEN and not observed.green:
            return version, []
        return version, steps

    # -- the steps, each one safe to repeat
    def _topology(self, source: str, target: str) -> None:
        """The new version's definitions into `target`, then what Celery declared on `source` itself and the
        plan does not hold (native delayed delivery: its celery_delayed_* queues and exchanges and their
        bindings), as declared there; transient objects (pidbox, events, reply queues) are left: their clients
        declare them again."""
        green = self.c.api(target)
        green.call("POST", "definitions", json=_json(self.definitions))
        exported = self.c.export(source)
        planned_queues = {(q.vhost, q.name) for q in self.plan.topology.queues}
        queues = [
            q
            for q in exported.get("queues", [])
            if q.get("durable") and not q.get("auto_delete") and (q["vhost"], q["name"]) not in planned_queues
        ]
        exchanges = [
            e
            for e in exported.get("exchanges", [])
            if e.get("durable") and not e.get("auto_delete") and not e["name"].startswith("amq.")
        ]
        known = {(o["vhost"], o["name"]) for o in queues + exchanges} | planned_queues
        known |= {(e.vhost, e.name) for e in self.plan.topology.exchanges}
        bindings = [
            b
            for b in exported.get("bindings", [])
            if b["source"] and (b["vhost"], b["source"]) in known and (b["vhost"], b["destination"]) in known
        ]
        self.progress(
            f"  {target}: the definition's topology, and {len(queues)} queue(s), {len(exchanges)} exchange(s) "
            f"and {len(bindings)} binding(s) Celery declared on {source}"
        )
        green.call("POST", "definitions", json={"queues": queues, "exchanges": exchanges, "bindings": bindings})

    def _durable_queues(self, role: str) -> list[dict]:
        return [q for q in self.c.export(role).get("queues", []) if q.get("durable") and not q.get("auto_delete")]

    def _shovels(self, source: str, target: str) -> None:
        """A shovel per durable queue of `source` into the same queue of `target` (declared there first, as
        `source` declared it, if the topology did not: a message published to a missing queue is lost)."""
        green = self.c.api(target)
        on_green = {(q["vhost"], q["name"]) for q in green.get("queues", columns="vhost,name")}
        uri = self.c.amqp_uri(target)
        queues = self._durable_queues(source)
        shovels = []
        for q in queues:
            vhost, name = q["vhost"], q["name"]
            if (vhost, name) not in on_green:
                green.call(
                    "PUT",
                    f"queues/{api_path(vhost, name)}",
                    json={"durable": True, "auto_delete": False, "arguments": q.get("arguments") or {}},
                )
            shovels.append((vhost, SHOVEL_PREFIX + name, shovel_value(vhost, name, name, uri)))
        self.c.set_shovels(source, shovels, drain_policies([v for v, _, _ in shovels]))
        self.progress(f"  shovel {len(queues)} queue(s) {source} → {target} (ack on confirm; {source}'s limits lifted)")

    def _wait_drained(self, role: str, deadline: float) -> None:
        """Until `role`'s queues have held no message for `quiet_s`: a delayed-delivery queue dead-letters
        into another one there meanwhile, and its shovel carries that one across too."""
        quiet_since, last_report = None, 0.0
        while True:
            counts = self.c.queue_messages(role)
            left = sum(counts.values())
            now = time.monotonic()
            if left == 0:
                quiet_since = quiet_since or now
                if now - quiet_since >= self.quiet_s:
                    return
            else:
                quiet_since = None
            if now - last_report >= 5:
                busiest = sorted(((n, q) for q, n in counts.items() if n), reverse=True)[:3]
                self.progress(f"  {role}: {left} message(s) to move" + (f" ({_top(busiest)})" if busiest else ""))
                last_report = now
            if now > deadline:
                raise UpgradeTimeout(
                    f"{role} still holds {left} message(s) after {self.timeout_s:.0f} s; run the command again to carry on"
                )
            time.sleep(self.poll_s)

    def do(self, step: Step, deadline: float) -> None:
        if step is Step.START_GREEN:
            self.c.start_green()
        elif step is Step.TOPOLOGY:
            self._topology("blue", "green")
        elif step is Step.SWITCH:
            self.c.switch("blue", "green")
        elif step is Step.SHOVEL:
            self._shovels("blue", "green")
        elif step is Step.DRAIN:
            self._wait_drained("blue", deadline)
        elif step is Step.REMOVE_BLUE:  # its shovels go with it: drained, they hold nothing in flight
            self.c.remove("blue")
        elif step is Step.START_NEW:
            self.c.start_new()
        elif step is Step.NEW_TOPOLOGY:
            self._topology("green", "new")
        elif step is Step.SWITCH_BACK:
            self.c.switch("green", "new")
        elif step is Step.SHOVEL_BACK:
            self._shovels("green", "new")
        elif step is Step.DRAIN_GREEN:
            self._wait_drained("green", deadline)
        elif step is Step.REMOVE_GREEN:
            self.c.remove("green")

    def run(self) -> list[Step]:
        """Every remaining step, from wherever things are; the steps done. A broker that stops answering
        (restarting) is waited for within the timeout, and each pass re-reads where things are."""
        deadline = time.monotonic() + self.timeout_s
        done: list[Step] = []

        def remaining_steps() -> list[Step]:
            _, steps = self.pending()
            for step in steps:
                self.progress(f"upgrade: {step.value}")
                self.do(step, deadline)
                done.append(step)
            return done

        return self._answering(remaining_steps, deadline)

    def _answering(self, attempt, deadline: float):
        """`attempt()`, made again every RETRY_S while a broker does not answer, until `deadline`."""
        while True:
            try:
                return attempt()
            except BrokerAPIError as exc:
                if time.monotonic() > deadline:
                    raise
                self.progress(f"  broker: {exc}; retrying")
                time.sleep(RETRY_S)


def _json(raw: bytes):
    return json.loads(raw)


def _top(busiest: list[tuple[int, tuple[str, str]]]) -> str:
    return ", ".join(f"{q}: {n}" for n, (_, q) in busiest)
