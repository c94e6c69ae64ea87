"""What `pulumi up` runs (the root __main__.py): the Pulumi program, given the stack's definition as `make local`
sees it and a check that stops the update before it reaches the broker while a queue migration is pending.

So plain `pulumi up -s ENV` behaves as `make deploy`, which runs the migrations first and then tells the program
so (MIGRATIONS_CHECKED), and a first `up` of the local stack without a Riot key runs the sample Riot API.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional

import pulumi

from infra.cli import main as cli
from infra.cli.localstack import sample_overlay
from infra.paths import REPO
from infra.plan.stack import Stack
from infra.pulumi import program
from infra.pulumi.deploy import MIGRATIONS_CHECKED, UPGRADE_GREEN


class MigrationPending(Exception):
    pass


class UpgradeRefused(Exception):
    """A downgrade, or a version the running broker cannot take in place (infra/ops/upgrade.py)."""


def load(stack: str, config: pulumi.Config) -> Stack:
    """The stack, with the sample Riot API laid over a local one whose Riot key is not in the stack config."""
    overlays: tuple = ()
    if stack == "local":
        sample = sample_overlay(
            stack, REPO / "build" / f"pulumi-{stack}", key_is_set=lambda k: config.get(k) is not None
        )
        overlays = (sample,) if sample else ()
    return Stack.load(stack=stack, overlays=overlays)


def broker_gate(loaded: Stack):
    """A check for program.main's `before_broker`: raises UpgradeRefused when the live broker's version cannot
    become the definition's in place (or would go down), and MigrationPending, naming the command, when it holds
    a queue whose type, arguments or name must change by migration; a broker that does not answer yet (a first
    `up`) has nothing to check."""
    from infra.ops import broker_api, upgrade
    from infra.ops.migrator import Migrator

    plan, stack = loaded.plan, pulumi.get_stack()

    def check(password: str, ca_pem: Optional[str]) -> None:
        if green_container(f"{pulumi.get_project()}-{stack}") is not None:
            raise UpgradeRefused(
                f"a blue-green upgrade of the broker is under way: nothing was changed. Run `python -m infra deploy "
                f"--stack {stack}` (or `make deploy STACK={stack}`): it carries the upgrade on, then runs pulumi up."
            )
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca:
            ca.write(ca_pem or "")
            ca.flush()
            client = broker_api.ManagementClient(
                plan.broker.management_url, plan.broker.admin_user, password, ca_cert=ca.name if ca_pem else None
            )
            try:
                refusal = upgrade.pulumi_refusal(
                    loaded.source, upgrade.running_version(client), plan.broker.version, stack
                )
                if refusal is not None:
                    raise UpgradeRefused(refusal.text)
                pending = Migrator(client, plan).pending()
            except broker_api.BrokerAPIError as exc:
                if str(exc).startswith("cannot reach"):
                    return
                raise
        if pending:
            queues = ", ".join(sorted({m.target for m in pending}))
            raise MigrationPending(
                f"queue migration pending ({queues}): nothing was changed. Run `python -m infra migrate --stack "
                f"{stack}` (or `make deploy STACK={stack}`, which migrates, then runs pulumi up), then `pulumi up` again."
            )

    return check


def green_container(prefix: str):
    """The green node of an upgrade under way on this stack (infra/cli/pulumi_upgrade.py), or None. A plain `up`,
    which does not declare it, would delete it and the messages it holds."""
    from infra.cli.docker_brokers import inspect
    from infra.cli.pulumi_upgrade import green_name

    try:
        return inspect(green_name(prefix))
    except FileNotFoundError:  # no Docker CLI here: no upgrade either (`deploy` drives it with that CLI)
        return None


def run() -> None:
    stack = pulumi.get_stack()
    loaded = cli._valid(load(stack, pulumi.Config()), "nothing deployed")
    if loaded is None:
        raise SystemExit(1)
    gate = None if os.environ.get(MIGRATIONS_CHECKED) else broker_gate(loaded)
    program.main(loaded.definition, loaded.plan, before_broker=gate, green=bool(os.environ.get(UPGRADE_GREEN)))
