"""Queue migrations: a queue whose arguments change (its type, classic ↔ quorum, or a classic queue's max
priority) or which is renamed (`renamed_from`).

Pure. The broker cannot change a queue's arguments in place, so the queue is re-created; its messages move
through a temporary queue with dynamic shovels while publishers keep publishing:

    arguments change of Q                    rename OLD → NEW
    1. declare T (Q's temporary queue)       1. declare NEW (its arguments), bind it like OLD
    2. bind T like Q, then unbind Q          2. unbind OLD
    3. shovel Q → T until Q is empty         3. shovel OLD → NEW until OLD is empty
    4. delete Q                              4. delete OLD
    5. declare Q with its new arguments
    6. bind Q, then unbind T
    7. shovel T → Q until T is empty
    8. delete T

Every step is decided from what the broker holds (which queues exist, their type, the shovels), never from
a local file, so running `migrate` again after an interruption takes up where the broker is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

from infra.plan.plan import Plan

TEMPORARY_SUFFIX = ".migrating"
SHOVEL_PREFIX = "migrate-"
DELAYED_LEVEL = re.compile(r"celery_delayed_\d+")  # a level of Celery's native delayed delivery

# The consumers of a migrated queue get nothing from the moment it is empty until it is declared again
# (steps 4-5) and the shovel back fills it: the executor waits out the management statistics' interval to
# be sure no worker still holds one of its messages. Measured worst case: bench/RESULTS.md.
EXPECTED_PAUSE = "about 10 s (at most 12.5 s measured)"


# A queue's arguments, the ones a migration changes: its type, and a classic queue's max priority.
Arguments = tuple[tuple[str, object], ...]


def arguments_of(arguments: dict) -> Arguments:
    return tuple(sorted(arguments.items()))


def live_arguments(queue: dict) -> Arguments:
    """What the management API says of a queue, as a QueueSpec states it."""
    declared = queue.get("arguments") or {}
    return arguments_of(
        {
            "x-queue-type": queue.get("type", "classic"),
            **({"x-max-priority": declared["x-max-priority"]} if "x-max-priority" in declared else {}),
        }
    )


def label(arguments: Optional[Arguments]) -> str:
    if arguments is None:
        return "?"
    given = dict(arguments)
    priority = f" (max priority {given['x-max-priority']})" if "x-max-priority" in given else ""
    return f"{given['x-queue-type']}{priority}"


@dataclass(frozen=True)
class Migration:
    vhost: str
    source: str  # the queue whose messages move (Q, or OLD for a rename)
    target: str  # the queue that holds them afterwards (Q, or NEW)
    source_arguments: Optional[Arguments]  # None: unknown (the queue is gone: its migration is under way)
    target_arguments: Arguments

    @property
    def is_rename(self) -> bool:
        return self.source != self.target

    @property
    def temporary(self) -> str:
        """The queue messages wait in while the queue is re-created (argument changes only)."""
        return self.target + TEMPORARY_SUFFIX

    def describe(self) -> str:
        if self.is_rename:
            return f"queue {self.vhost}:{self.source} → {self.target} ({label(self.target_arguments)})"
        return f"queue {self.vhost}:{self.target} {label(self.source_arguments)} → {label(self.target_arguments)}"

    def steps(self) -> list[str]:
        """What the executor does, in order, for `migrate --dry-run` and the diff."""
        if self.is_rename:
            return [
                f"declare {self.target} ({label(self.target_arguments)}) and bind it like {self.source}",
                f"unbind {self.source}: new messages go to {self.target}",
                f"shovel {self.source} → {self.target} (ack on confirm) until {self.source} is empty "
                f"and no consumer holds one of its messages",
                f"delete {self.source} and the shovel",
            ]
        return [
            f"declare {self.temporary} ({label(self.target_arguments)}) and bind it like {self.target}",
            f"unbind {self.target}: new messages wait in {self.temporary}",
            f"shovel {self.target} → {self.temporary} (ack on confirm) until {self.target} is empty and no "
            f"consumer holds one of its messages",
            f"delete {self.target} and the shovel (its consumers pause from here)",
            f"declare {self.target} ({label(self.target_arguments)}), bind it, unbind {self.temporary}",
            f"shovel {self.temporary} → {self.target} until {self.temporary} is empty (consumers resume)",
            f"delete {self.temporary} and the shovel",
        ]


def planned_migrations(base: Plan, head: Plan) -> list[Migration]:
    """The migrations from one plan to the next: `diff`'s view, before any broker is read."""
    old = {(q.vhost, q.name): q for q in base.topology.queues}
    found = []
    for q in head.topology.queues:
        before = old.get((q.vhost, q.name))
        if before is not None and before.arguments != q.arguments:
            found.append(Migration(q.vhost, q.name, q.name, arguments_of(before.arguments), arguments_of(q.arguments)))
        elif before is None and q.renamed_from and (q.vhost, q.renamed_from) in old:
            found.append(
                Migration(
                    q.vhost,
                    q.renamed_from,
                    q.name,
                    arguments_of(old[(q.vhost, q.renamed_from)].arguments),
                    arguments_of(q.arguments),
                )
            )
    return found


def live_migrations(head: Plan, live: dict[tuple[str, str], Arguments]) -> list[Migration]:
    """The migrations a broker needs to match the plan, from its queues' arguments by (vhost, name), the
    temporary queues included: a migration interrupted half-way is found again by its temporary queue
    (the queue itself may be gone) or its old name (a rename)."""
    found = []
    for q in head.topology.queues:
        key, temporary, wanted = (q.vhost, q.name), (q.vhost, q.name + TEMPORARY_SUFFIX), arguments_of(q.arguments)
        if q.renamed_from and (q.vhost, q.renamed_from) in live:
            found.append(Migration(q.vhost, q.renamed_from, q.name, live[(q.vhost, q.renamed_from)], wanted))
        elif temporary in live or (key in live and live[key] != wanted):
            found.append(Migration(q.vhost, q.name, q.name, live.get(key), wanted))
    return found


def shovel_value(vhost: str, source: str, dest: str, dest_uri: str = "amqp://") -> dict:
    """A dynamic shovel's definition: `source` of this broker into queue `dest` of the one at `dest_uri` (this
    one by default), each message acknowledged once the destination confirmed it. Messages go in through the
    default exchange by the queue's name, so the shovel never declares `dest` itself.

    A delayed-delivery level moved into its namesake keeps each message's own routing key, which spells out
    when and where it is due: a level dead-letters by that key into the next one, so a message re-keyed with
    the queue's name would never route on. It goes through the level's exchange, which routes every key held
    in its queue back into that queue."""
    base, _, options = dest_uri.partition("?")  # TLS options follow the vhost
    value = {
        "src-protocol": "amqp091",
        "src-uri": f"amqp:///{quote(vhost, safe='')}",
        "src-queue": source,
        "dest-protocol": "amqp091",
        "dest-uri": f"{base}/{quote(vhost, safe='')}" + (f"?{options}" if options else ""),
        "dest-exchange": "",
        "dest-exchange-key": dest,
        "ack-mode": "on-confirm",
        "src-delete-after": "never",
    }
    if dest == source and DELAYED_LEVEL.fullmatch(source):
        value["dest-exchange"] = source
        del value["dest-exchange-key"]  # the shovel then publishes with the message's own routing key
    return value
