"""Broker upgrades the broker cannot take in place: a blue-green replacement of the whole broker.

Pure. RabbitMQ upgrades in place only along its supported path: a patch release of the same series, or the
next minor series (3.12 → 3.13). A major version (3.x → 4.0: 4.0 needs 3.13 first with every stable feature
flag enabled, and classic mirrored queues are gone) or a skipped series (3.10 → 3.12) needs a new broker
beside the old one, the blue-green deployment RabbitMQ's documentation recommends:

    1. start green: the new version in its own container, volume and ports, beside blue
    2. green gets the definition's topology, and the queues Celery declared on blue (delayed delivery)
    3. switch: blue's clients disconnected, the broker's name moved to green: every app service reconnects
       there (the consumers' pause); blue refuses clients from then on
    4. shovel every durable queue of blue into the same queue on green (ack-mode on-confirm)
    5. wait until blue holds no message, ready or unacknowledged
    6. remove blue (container, volume, shovels)
    7. the second hop, green → the stack's own broker: started on the new version with a new volume under
       the stack's name and ports (what a fresh deploy makes), the topology, the name switched back, green's
       queues shovelled there, green drained and removed

Every step is decided from what the containers and the brokers hold (`Observed`), never from a local file,
so running `upgrade` again after a SIGKILL, a broker restart or a reboot carries on where things are, and
never undoes a step. A downgrade is refused: a broker's data cannot go back to an older series.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from infra.definition.findings import Finding, format_finding
from infra.definition.model import RABBITMQ_SERIES

# The consumers pause at the two switches, while the app's clients reconnect (measured: docs/upgrades.md).
EXPECTED_PAUSE = "twice, at each switch of the broker's name, while the clients reconnect (docs/upgrades.md)"


VERSION_KEY = ("broker", "version")


class UpgradePath(Enum):
    SAME = "same series"
    IN_PLACE = "in place"  # a patch of the series or the next minor: a restart on the new image
    BLUE_GREEN = "blue-green"
    DOWNGRADE = "downgrade"


def series_of(version: str) -> str:
    """'3.10.8' → '3.10'; a series stays itself."""
    return ".".join(version.split(".")[:2])


def upgrade_path(old: str, new: str) -> UpgradePath:
    """How a broker of series (or version) `old` becomes `new`."""
    a, b = series_of(old), series_of(new)
    if a == b:
        return UpgradePath.SAME
    i, j = RABBITMQ_SERIES.index(a), RABBITMQ_SERIES.index(b)
    if j < i:
        return UpgradePath.DOWNGRADE
    if a.split(".")[0] != b.split(".")[0] or j - i > 1:
        return UpgradePath.BLUE_GREEN
    return UpgradePath.IN_PLACE


def why_blue_green(old: str, new: str) -> str:
    a, b = series_of(old), series_of(new)
    if a.split(".")[0] != b.split(".")[0]:
        return f"RabbitMQ {b} cannot start on {a}'s data (a major version: it needs 3.13 with every feature flag on)"
    skipped = RABBITMQ_SERIES[RABBITMQ_SERIES.index(a) + 1 : RABBITMQ_SERIES.index(b)]
    return f"RabbitMQ upgrades in place one series at a time ({a} → {b} skips {', '.join(skipped)})"


class Step(Enum):
    START_GREEN = "start green"
    TOPOLOGY = "topology"
    SWITCH = "switch"
    SHOVEL = "shovel"
    DRAIN = "drain"
    REMOVE_BLUE = "remove blue"
    START_NEW = "start the stack's broker"
    NEW_TOPOLOGY = "its topology"
    SWITCH_BACK = "switch back"
    SHOVEL_BACK = "shovel back"
    DRAIN_GREEN = "drain green"
    REMOVE_GREEN = "remove green"


def describe(step: Step, old: str, new: str) -> str:
    return {
        Step.START_GREEN: f"start green: RabbitMQ {new} in its own container, volume and ports, beside blue ({old})",
        Step.TOPOLOGY: "import the definition's topology into green (users, vhosts, permissions, policies, queues "
        "as it declares them), and the queues and exchanges Celery declared on blue (celery_delayed_*)",
        Step.SWITCH: "switch: blue's clients disconnected and blue closed to new ones; the broker's name moved to "
        "green, where every app service reconnects (publishers and workers: the consumers' first pause)",
        Step.SHOVEL: "shovel every durable queue of blue (task queues, parking queues, celery_delayed_*) into the "
        "same queue on green, each message acknowledged on blue once green confirmed it",
        Step.DRAIN: "wait until blue holds no message, ready or unacknowledged",
        Step.REMOVE_BLUE: "remove blue: its container and data volume (its shovels with them)",
        Step.START_NEW: f"start the stack's broker on RabbitMQ {new} with a new data volume, under the stack's "
        "own name and ports (a fresh deploy of the new version)",
        Step.NEW_TOPOLOGY: "import the same topology into it, and the queues and exchanges Celery declared on green",
        Step.SWITCH_BACK: "switch back: green's clients disconnected and green closed to new ones; the broker's name "
        "is the stack's broker's alone (the consumers' second pause)",
        Step.SHOVEL_BACK: "shovel every durable queue of green into the same queue of the stack's broker (ack on "
        "confirm)",
        Step.DRAIN_GREEN: "wait until green holds no message, ready or unacknowledged",
        Step.REMOVE_GREEN: "remove green: its container and data volume (its shovels with them)",
    }[step]


@dataclass(frozen=True)
class Observed:
    """What the containers and brokers say now. `service`: the stack's broker container (the compose service
    or the program's resource), as (it runs the definition's image, it is running); `green`: the green
    container, as (present, running); `switched`: green holds the broker's name (it serves the app)."""

    service: Optional[tuple[bool, bool]]
    green: Optional[tuple[bool, bool]]
    switched: bool = False

    @property
    def blue(self) -> bool:
        """The stack's broker container still runs the old image."""
        return self.service is not None and not self.service[0]


# While a broker drains into the next one, a message the next one refuses (its queue full: reject-publish) goes
# back to the source's queue, and on a quorum queue each return counts toward the source's delivery-limit: past
# it the message would be dead-lettered instead of moved (seen under load: tasks parked, not run). The source
# serves no client by then, so a policy above every other lifts its limits for the drain; it goes with the
# source. Only the delivery limit is kept, far out of reach: a policy cannot be empty.
DRAIN_POLICY = "upgrade-drain"
DRAIN_POLICY_PRIORITY = 1000  # above any policy of the definition's
DRAIN_DELIVERY_LIMIT = 1_000_000


def drain_policies(vhosts: list[str]) -> list[dict]:
    """The drain policy for every vhost, as a definitions file lists policies."""
    return [
        {
            "vhost": vhost,
            "name": DRAIN_POLICY,
            "pattern": ".*",
            "apply-to": "queues",
            "priority": DRAIN_POLICY_PRIORITY,
            "definition": {"delivery-limit": DRAIN_DELIVERY_LIMIT},
        }
        for vhost in sorted(set(vhosts))
    ]


FIRST_HOP = [Step.START_GREEN, Step.TOPOLOGY, Step.SWITCH, Step.SHOVEL, Step.DRAIN, Step.REMOVE_BLUE]
SECOND_HOP = [
    Step.START_NEW,
    Step.NEW_TOPOLOGY,
    Step.SWITCH_BACK,
    Step.SHOVEL_BACK,
    Step.DRAIN_GREEN,
    Step.REMOVE_GREEN,
]


def remaining(observed: Observed) -> list[Step]:
    """The steps still to do, in order, from what is observed. Empty: nothing to upgrade (the service runs
    the definition's image and no green is left), or no broker at all (a first deploy: nothing to carry).

    Two hops, blue → green → the stack's own broker, so that no broker ever restarts holding messages:
    a quorum queue of RabbitMQ 4.0.5 that dead-letters (Celery's delayed delivery) messages that fell due
    while its node was down can fail to route them at boot and keep them (measured here), so green's data
    is moved with shovels again rather than copied into the stack's volume and restarted there."""
    o = observed
    # A switch is repeated on every run (it is idempotent): a broker restarted after it may serve clients again.
    if o.blue:
        steps = [] if o.green and o.green[1] else [Step.START_GREEN]  # started again after a reboot
        if not o.switched:
            steps.append(Step.TOPOLOGY)
        return steps + FIRST_HOP[2:] + SECOND_HOP
    if o.green is None:
        return []
    steps = [] if o.green[1] else [Step.START_GREEN]
    if o.service is None or not o.service[1]:
        steps.append(Step.START_NEW)
    if o.switched:
        steps.append(Step.NEW_TOPOLOGY)
    return steps + SECOND_HOP[2:]


ALL_STEPS = remaining(Observed(service=(False, True), green=None))


def downgrade_finding(source, version_path: tuple, live: str, wanted: str) -> Optional[Finding]:
    """`file:line: broker.version: ...` when `wanted` is older than the broker's `live` series."""
    if upgrade_path(live, wanted) is not UpgradePath.DOWNGRADE:
        return None
    file, line = source.where(version_path)
    return Finding(
        file,
        line,
        version_path,
        f"{wanted} is older than the broker's {live}: a downgrade is refused (RabbitMQ cannot start an older "
        f"series on a newer one's data); deploy a new stack and move the app to it instead",
    )


def running_version(client) -> str:
    """The RabbitMQ version a broker's management API reports (`client`: a ManagementClient)."""
    return client.get("overview", columns="rabbitmq_version")["rabbitmq_version"]


@dataclass(frozen=True)
class Refusal:
    """Why `pulumi up` must stop before it touches the broker. `invalid`: a downgrade, a finding on
    broker.version (`text` is `file:line: broker.version: ...`)."""

    text: str
    invalid: bool


def pulumi_refusal(source, live: str, wanted: str, stack: str) -> Optional[Refusal]:
    """A downgrade, or a blue-green jump, from the running `live` version to the definition's `wanted`; None
    when `pulumi up` may go on. The program replaces the broker's container when its image changes, on the
    same data volume: fine along RabbitMQ's in-place path, but a blue-green jump would start the new series on
    data it refuses (the node does not boot: the broker is down). `deploy` carries out the blue-green upgrade
    of a single node before its `up` (infra/cli/pulumi_upgrade.py); a plain `pulumi up` cannot."""
    finding = downgrade_finding(source, VERSION_KEY, live, wanted)
    if finding is not None:
        return Refusal(format_finding(finding), invalid=True)
    if upgrade_path(live, wanted) is not UpgradePath.BLUE_GREEN:
        return None
    return Refusal(
        f"the broker runs RabbitMQ {live} and the definition asks for {wanted}, which it cannot take in place "
        f"({why_blue_green(live, wanted)}): nothing was changed. `python -m infra deploy --stack {stack}` "
        f"(make deploy) upgrades a single node blue-green first (docs/upgrades.md); a cluster "
        f"stack is not upgraded that way yet: keep broker.version at {series_of(live)} there, or deploy a new "
        f"stack on {wanted} and move the app to it.",
        invalid=False,
    )
