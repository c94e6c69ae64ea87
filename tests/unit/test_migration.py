"""Queue migrations, pure: which ones a change of definition or a live broker calls for, and their steps."""

from __future__ import annotations

import dataclasses

from infra.definition.load import load_definition, require
from infra.ops.migration import Migration, arguments_of, live_migrations, planned_migrations
from infra.plan.plan import QueueSpec, Topology, build_plan
from tests.unit.test_cli import infra

PLAN = build_plan(require(load_definition(stack="dev")))


def args(queue_type: str, **extra) -> tuple:
    return arguments_of({"x-queue-type": queue_type, **{k.replace("_", "-"): v for k, v in extra.items()}})


def with_queues(*changes: tuple[str, QueueSpec | None]):
    """PLAN with queues of vhost / replaced (a QueueSpec), removed (None) or added, by name."""
    queues = {q.name: q for q in PLAN.topology.queues}
    for name, spec in changes:
        queues.pop(name, None)
        if spec is not None:
            queues[spec.name] = spec
    topology: Topology = dataclasses.replace(PLAN.topology, queues=tuple(queues.values()))
    return dataclasses.replace(PLAN, topology=topology)


def test_a_type_change_and_a_rename_are_migrations_and_a_removal_is_not():
    head = with_queues(
        ("recovery", QueueSpec("/", "recovery", "classic")),
        ("maintenance", QueueSpec("/", "housekeeping", "quorum", renamed_from="maintenance")),
        ("default", None),
    )
    assert planned_migrations(PLAN, head) == [
        Migration("/", "recovery", "recovery", args("quorum"), args("classic")),
        Migration("/", "maintenance", "housekeeping", args("quorum"), args("quorum")),
    ]


def test_a_max_priority_change_is_a_migration_too():
    head = with_queues(("dead_letters", QueueSpec("/", "dead_letters", "classic", max_priority=10)))
    (m,) = planned_migrations(PLAN, head)
    assert m.describe() == "queue /:dead_letters classic → classic (max priority 10)"
    assert m.target_arguments == args("classic", x_max_priority=10)


def test_the_broker_decides_what_is_left_to_do():
    head = with_queues(
        ("recovery", QueueSpec("/", "recovery", "classic")),
        ("maintenance", QueueSpec("/", "housekeeping", "quorum", renamed_from="maintenance")),
    )
    live = {("/", q.name): arguments_of(q.arguments) for q in PLAN.topology.queues}
    assert [m.describe() for m in live_migrations(head, live)] == [
        "queue /:recovery quorum → classic",
        "queue /:maintenance → housekeeping (quorum)",
    ]
    # interrupted after `recovery` was deleted: its temporary queue says a migration is under way
    del live[("/", "recovery")]
    live[("/", "recovery.migrating")] = args("classic")
    assert live_migrations(head, live)[0] == Migration("/", "recovery", "recovery", None, args("classic"))
    # done: the new type and no temporary queue; the old name gone
    live = {("/", q.name): arguments_of(q.arguments) for q in head.topology.queues}
    assert live_migrations(head, live) == []


def test_steps_name_the_temporary_queue_and_where_consumers_pause():
    steps = Migration("/", "recovery", "recovery", args("quorum"), args("classic")).steps()
    assert steps[0] == "declare recovery.migrating (classic) and bind it like recovery"
    assert "its consumers pause from here" in steps[3] and len(steps) == 7
    rename = Migration("/", "old", "new", args("quorum"), args("quorum")).steps()
    assert rename[0] == "declare new (quorum) and bind it like old" and len(rename) == 4


def test_migrate_refuses_an_invalid_definition_and_reports_an_unreachable_broker(tmp_path):
    bad = infra("migrate", "--file", "tests/data/invalid/rename-chain.yaml", "--dry-run")
    assert bad.returncode == 2 and "nothing migrated" in bad.stderr
    assert "rename-chain.yaml:19: vhosts.main.queues.sync_v2.renamed_from:" in bad.stderr
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("rabbitmqAdminPassword: x\n")
    down = infra(
        "migrate", "--stack", "dev", "--dry-run", "--secrets", str(secrets), "--management-url", "http://127.0.0.1:9"
    )  # the discard port: nothing listens
    assert down.returncode == 1 and "python -m infra migrate: cannot reach http://127.0.0.1:9/api" in down.stderr
