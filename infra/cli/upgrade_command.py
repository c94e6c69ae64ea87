"""`python -m infra upgrade --stack ENV [--dry-run]`: the compose stack's broker upgraded blue-green when the
definition's `broker.version` is one the running broker cannot take in place (infra/ops/upgrade.py).

The stack is rendered as `make local` renders it (the new version's files are green's), the steps still to
do are printed from where the containers and brokers are, then carried out. A downgrade is refused as a
finding on `broker.version` before anything starts. `make local` runs the same upgrade before it starts the
broker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.cli.localstack import LocalStack, sample_overlay
from infra.ops import upgrade
from infra.ops.broker_api import BrokerAPIError
from infra.ops.upgrader import Downgrade, UpgradeTimeout
from infra.plan.stack import Stack


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def say_pending(where: str, running, steps: list, b) -> None:
    """The upgrade's remaining steps, numbered (`b`: the new version's BrokerConfig)."""
    say(f"upgrade pending on {where}: RabbitMQ {running or '(blue gone)'} → {b.version} ({b.image}):")
    for i, step in enumerate(steps, 1):
        say(f"  {i}. {upgrade.describe(step, running or '?', b.version)}")


def run_upgrade(args) -> int:
    from infra.cli.main import ExitStatus, _report, _valid

    overlays = tuple(args.overlay)
    loaded = _valid(Stack.load(stack=args.stack, overlays=overlays), "nothing upgraded")
    if loaded is None:
        return ExitStatus.INVALID
    out = args.out or Path("build") / args.stack
    sample = sample_overlay(args.stack, out, args.secrets, overlays)
    local = LocalStack(
        args.stack,
        out,
        args.project or f"rabbitmq-celery-{args.stack}",
        secrets=args.secrets,
        overlays=overlays + ((sample,) if sample else ()),
    )
    if not args.dry_run:
        local.render()  # the new version's files, which green mounts
    upgrader = local.upgrader(progress=say, timeout_s=args.timeout)
    b = local.plan.broker
    try:
        running, steps = upgrader.pending_when_answering()
    except Downgrade as exc:
        _report([upgrade.downgrade_finding(loaded.source, upgrade.VERSION_KEY, exc.running, exc.wanted)])
        say("nothing upgraded")
        return ExitStatus.INVALID
    except (BrokerAPIError, RuntimeError) as exc:
        say(f"python -m infra upgrade: {exc}")
        return ExitStatus.ERROR
    if not steps:
        say(f"no upgrade pending on {local.project}: the broker runs {running or b.image}")
        return ExitStatus.OK
    if b.nodes != 1:
        say(f"python -m infra upgrade: {local.project} needs an upgrade, but a cluster stack is not upgraded yet")
        return ExitStatus.ERROR
    say_pending(local.project, running, steps, b)
    if args.dry_run:
        return ExitStatus.OK
    try:
        upgrader.run()
    except (BrokerAPIError, UpgradeTimeout, RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        say(f"python -m infra upgrade: {exc}")
        return ExitStatus.ERROR
    say(f"upgraded: {local.project}'s broker runs {b.image}")
    return ExitStatus.OK
